"""Twilio's webhooks and the Media Stream: ``POST /twilio/voice``, ``POST /twilio/status``,
``WS /twilio/stream``. Every request must carry Twilio's signature."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import urllib.parse
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from starlette.types import Receive, Scope, Send

from agent.business import Business
from agent.caller_id import read_caller_id
from agent.intake import Intake
from agent.screening import screen_inbound
from telephony import metrics, twiml
from telephony.bridge import CallBridge
from telephony.errors import SignatureError
from telephony.services import Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/twilio")

FINAL_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}
MAX_FORM_FIELDS = 100


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class TwilioRequestRefused(Exception):
    """Raised by ``signed_form``; the app answers 403 (or 503 when Twilio is not set up)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise TwilioRequestRefused("invalid Content-Length", 400)
        if int(declared) > limit:
            raise TwilioRequestRefused(f"request body over {limit} bytes", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TwilioRequestRefused(f"request body over {limit} bytes", 413)
    return bytes(body)


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise TwilioRequestRefused("the form body cannot be read", 400) from exc
    return dict(pairs)


def _refuse(
    request: Request, reason: str, why: str, status: int, *, hint: str = ""
) -> TwilioRequestRefused:
    """``hint`` goes to the log only (e.g. the PUBLIC_BASE_URL mismatch), not to the peer."""
    metrics.WEBHOOKS_REJECTED.labels(reason=reason).inc()
    log.warning("refused %s: %s%s", request.url.path, why, hint)
    return TwilioRequestRefused(why, status)


async def signed_form(request: Request, services: Services) -> dict[str, str]:
    """The POSTed form, after checking X-Twilio-Signature over our public URL.

    Nothing is spooled or parsed before the cheap checks: without a signature header the
    body is never read; only ``application/x-www-form-urlencoded`` is accepted (Twilio
    sends nothing else); the body is read into memory up to ``WEBHOOK_MAX_BYTES`` and
    decoded as a plain query string (no multipart parser, no temporary files), and the
    signature is verified before any value is used.
    """
    signature = request.headers.get("X-Twilio-Signature")
    if not services.signatures.configured:
        raise _refuse(request, "signature", "TWILIO_AUTH_TOKEN is not set", 503)
    if not signature:
        raise _refuse(request, "signature", "missing X-Twilio-Signature", 403)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    wrong_type = f"content type must be {FORM_CONTENT_TYPE}"
    if media_type not in (FORM_CONTENT_TYPE, ""):
        raise _refuse(request, "content_type", wrong_type, 415)
    try:
        body = await _bounded_body(request, services.settings.webhook_max_bytes)
    except TwilioRequestRefused as exc:
        raise _refuse(request, "body", exc.reason, exc.status) from None
    if body and not media_type:  # only an empty POST may come without a content type
        raise _refuse(request, "content_type", wrong_type, 415)
    params = _parse_form(body)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = services.settings.public_url(path)
    try:
        services.signatures.check(url, params, signature)
    except SignatureError as exc:
        hint = _url_hint(request, url)
        raise _refuse(request, "signature", str(exc), 403, hint=hint) from exc
    return params


def _url_hint(request: Request, checked_url: str) -> str:
    """When the request reached us under another host than PUBLIC_BASE_URL, say so: the
    signature is computed over the URL Twilio called, so every webhook fails."""
    host = request.headers.get("host", "")
    expected = urlsplit(checked_url).netloc
    if host and expected and host.lower() != expected.lower():
        return (
            f" (checked against {checked_url} but the request came for host {host}: if that is "
            "the address in the Twilio console, set PUBLIC_BASE_URL to it)"
        )
    return ""


def twiml_response(document: str) -> Response:
    return Response(content=document, media_type="application/xml")


@router.post("/voice")
async def incoming_call(request: Request, services: ServicesDep) -> Response:
    """Twilio's "A call comes in" webhook: pick the business by ``To`` and answer."""
    params = await signed_form(request, services)
    call_sid = params.get("CallSid", "")
    to = params.get("To", "")
    caller_id = read_caller_id(params.get("From"))
    caller = caller_id.e164 or ""  # only a valid number is ever used as one
    business = services.business_for(to)
    if business is None or not call_sid:
        log.warning("call %s to an unknown number; answered with a message", call_sid or "?")
        return twiml_response(
            twiml.say_and_hang_up(
                "Sorry, this phone number is not set up with our answering service yet. "
                "Please try the business again later. Goodbye."
            )
        )
    mode = "realtime" if services.settings.openai_configured else "intake"
    ring_office = bool(business.office_phone) and business.is_open(services.clock())
    await asyncio.to_thread(
        services.store.begin_call,
        call_sid,
        business=business.name,
        business_number=business.number,
        caller_phone=caller,
        caller_id=caller_id.raw,
        mode="office" if ring_office else mode,
    )
    screening = screen_inbound(
        caller=caller,
        stir_verstat=params.get("StirVerstat"),
        blocklist=business.blocklist,
        region=business.region,
    )
    if screening.verdict != "clean" or screening.stir_verstat:
        await asyncio.to_thread(services.store.note_screening, call_sid, screening.to_json())
    if screening.is_spam:
        reason = "spam: " + "; ".join(screening.reasons)
        await asyncio.to_thread(services.store.screen_out, call_sid, reason)
        log.info("call %s refused: %s", call_sid, "; ".join(screening.reasons))
        return twiml_response(twiml.reject())
    if ring_office and business.office_phone:
        log.info("call %s for %s: open hours, ringing the office first", call_sid, business.name)
        return twiml_response(
            twiml.dial_business(
                number=business.office_phone,
                timeout=business.ring_timeout_seconds,
                action=services.settings.public_url("/twilio/voice/after-dial"),
                screen_url=services.settings.public_url(
                    f"/twilio/voice/screen?{urlencode({'call': call_sid})}"
                ),
            )
        )

    return await asyncio.to_thread(answer_with_receptionist, services, business, call_sid, caller)


OFFICE_ACCEPTED = "office accepted"


@router.post("/voice/screen")
async def screen_office_leg(request: Request, services: ServicesDep) -> Response:
    """The office leg answered: ask whoever it is to press 1 (``<Number url>``)."""
    await signed_form(request, services)
    parent = request.query_params.get("call", "")
    call = await asyncio.to_thread(services.store.get_call, parent)
    if call is None or call.state != "active":
        return twiml_response(twiml.hang_up())
    business = services.business_for(call.business_number)
    return twiml_response(
        twiml.screen_office(
            business_name=business.name if business else "the business",
            accept_url=services.settings.public_url(
                f"/twilio/voice/screen/accept?{urlencode({'call': parent})}"
            ),
        )
    )


@router.post("/voice/screen/accept")
async def office_accepts(request: Request, services: ServicesDep) -> Response:
    """The office pressed a key: 1 takes the call (recorded, so the ``<Dial>`` action knows
    a person answered); anything else sends the caller to the receptionist."""
    params = await signed_form(request, services)
    parent = request.query_params.get("call", "")
    accepted = (
        params.get("Digits") == "1"
        and await asyncio.to_thread(services.store.get_call, parent) is not None
    )
    if accepted:
        # Closed now (not when the <Dial> ends): a long office conversation is not an
        # idle call for recovery to pick up.
        await asyncio.to_thread(services.store.close_unsummarized, parent, OFFICE_ACCEPTED)
        log.info("call %s: the office took the call", parent)
    return twiml_response(twiml.accept_office(accepted))


@router.post("/voice/after-dial")
async def after_office_dial(request: Request, services: ServicesDep) -> Response:
    """The office line was rung during opening hours: if nobody answered, we do."""
    params = await signed_form(request, services)
    call_sid = params.get("CallSid", "")
    call = await asyncio.to_thread(services.store.get_call, call_sid)
    business = services.business_for(params.get("To", ""))
    if call is None or business is None or call.state != "active":
        # Closed by the screening: a person at the office took the call and it is over.
        return twiml_response(twiml.hang_up())
    # DialCallStatus "completed" is no proof: a voicemail that picks up completes the
    # <Dial> too. Only a person who pressed 1 on the screening prompt took the call.
    log.info(
        "call %s: nobody at the office took the call (%s)",
        call_sid,
        params.get("DialCallStatus"),
    )
    return await asyncio.to_thread(
        answer_with_receptionist, services, business, call_sid, call.caller_phone
    )


def gather_response(services: Services, intake: Intake, *, news: str = "") -> Response:
    """The ``<Gather>`` for the intake's current question, in its language and voice;
    ``news`` (e.g. "I've just sent your details to our on-call technician") is said right
    after any safety line and before the question."""
    prompt = intake.current()
    say = prompt.say
    if news:
        safety = intake.safety_line_now
        if safety and say.startswith(safety):
            say = f"{safety} {news} {say[len(safety) :].lstrip()}"
        else:
            say = f"{news} {say}"
    return twiml_response(
        twiml.gather_speech(
            prompt=say,
            hints=prompt.hints,
            action=services.settings.public_url("/twilio/intake/answer"),
            language=prompt.language,
            voice=prompt.voice,
            keys=prompt.keys,
        )
    )


def goodbye_response(intake: Intake, text: str | None = None) -> Response:
    """The intake's goodbye (or ``text``), in its language and voice, then hang up."""
    return twiml_response(
        twiml.say_and_hang_up(
            text or intake.goodbye(), voice=intake.voice, language=intake.gather_language
        )
    )


def answer_with_receptionist(
    services: Services, business: Business, call_sid: str, caller: str
) -> Response:
    """The AI receptionist over a Media Stream, or the scripted intake without OpenAI.

    It writes to the database: webhooks run it in a thread, off the event loop."""
    settings = services.settings
    mode = "realtime" if settings.openai_configured else "intake"
    services.store.set_mode(call_sid, mode)
    metrics.CALLS.labels(mode=mode).inc()
    log.info("call %s for %s answered (%s)", call_sid, business.name, mode)
    if mode == "intake":
        intake = Intake(business, caller)
        services.store.save_intake(call_sid, intake.to_json(), intake.details().learned())
        return gather_response(services, intake)
    return twiml_response(
        twiml.connect_stream(
            stream_url=settings.public_ws_url("/twilio/stream"),
            parameters={
                "business_number": business.number,
                "caller": caller,
                "call_sid": call_sid,
                "token": services.stream_token(call_sid, business),
            },
            after_stream_url=settings.public_url("/twilio/intake/resume"),
        )
    )


@router.post("/status", status_code=204)
async def call_status(request: Request, services: ServicesDep) -> Response:
    """Call status callback: a finished call whose stream never ended cleanly is finalized."""
    params = await signed_form(request, services)
    call_sid = params.get("CallSid", "")
    status = params.get("CallStatus", "")
    duration = params.get("CallDuration", "")
    business = services.business_for(params.get("To", ""))
    if call_sid and status in FINAL_STATUSES and business is not None:
        # A call that only ever produced this callback (its first webhook never reached
        # us, or was lost with a process): recorded now, as a missed call — not left for
        # reconcile to find, and never a Warm Lead.
        await asyncio.to_thread(
            services.store.begin_call,
            call_sid,
            business=business.name,
            business_number=business.number,
            caller_phone=params.get("From", ""),
            mode="status",
        )
    if call_sid and status in FINAL_STATUSES and duration.isdigit():
        await asyncio.to_thread(services.store.set_duration, call_sid, int(duration))
    if call_sid and status in FINAL_STATUSES and call_sid not in services.live_calls:
        await services.finalize(call_sid, f"status callback ({status})")
    return Response(status_code=204)


class MediaStreamEndpoint:
    """``WS /twilio/stream``, the bidirectional Media Stream; the upgrade is signed over the
    wss:// URL.

    A plain ASGI app, not a FastAPI websocket route: after the handshake the bridge reads and
    writes the 50-a-second frames through the server's own ``receive`` and ``send``, without
    Starlette's per-message state checks. ``WebSocket`` still does the handshake."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        services: Services = websocket.app.state.services
        url = services.settings.public_ws_url("/twilio/stream")
        try:
            services.signatures.check(url, {}, websocket.headers.get("X-Twilio-Signature"))
        except SignatureError as exc:
            metrics.WEBHOOKS_REJECTED.labels(reason="stream_signature").inc()
            log.warning("refused a media stream upgrade: %s", exc)
            await websocket.close(code=1008)
            return
        await websocket.accept()
        bridge = CallBridge(receive, send, services.bridge_context())
        started = dt.datetime.now(dt.UTC)
        try:
            await bridge.run()
        finally:
            log.info(
                "media stream for call %s ended after %.1fs",
                bridge.call_sid or "?",
                (dt.datetime.now(dt.UTC) - started).total_seconds(),
            )


media_stream = MediaStreamEndpoint()
