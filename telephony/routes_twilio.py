"""Twilio's webhooks and the Media Stream: ``POST /twilio/voice``, ``POST /twilio/status``,
``WS /twilio/stream``. Every request must carry Twilio's signature."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from starlette.datastructures import FormData

from agent.business import Business
from agent.intake import Intake
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


async def signed_form(request: Request, services: Services) -> dict[str, str]:
    """The POSTed form, after checking X-Twilio-Signature over our public URL."""
    form: FormData = await request.form(max_fields=MAX_FORM_FIELDS, max_part_size=64 * 1024)
    params = {k: str(v) for k, v in form.multi_items()}
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = services.settings.public_url(path)
    try:
        services.signatures.check(url, params, request.headers.get("X-Twilio-Signature"))
    except SignatureError as exc:
        status = 503 if not services.signatures.configured else 403
        metrics.WEBHOOKS_REJECTED.labels(reason="signature").inc()
        log.warning("refused %s: %s", request.url.path, exc)
        raise TwilioRequestRefused(str(exc), status) from exc
    return params


def twiml_response(document: str) -> Response:
    return Response(content=document, media_type="application/xml")


@router.post("/voice")
async def incoming_call(request: Request, services: ServicesDep) -> Response:
    """Twilio's "A call comes in" webhook: pick the business by ``To`` and answer."""
    params = await signed_form(request, services)
    call_sid = params.get("CallSid", "")
    to = params.get("To", "")
    caller = params.get("From", "")
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
    services.store.begin_call(
        call_sid,
        business=business.name,
        business_number=business.number,
        caller_phone=caller,
        mode="office" if ring_office else mode,
    )
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

    return answer_with_receptionist(services, business, call_sid, caller)


OFFICE_ACCEPTED = "office accepted"


@router.post("/voice/screen")
async def screen_office_leg(request: Request, services: ServicesDep) -> Response:
    """The office leg answered: ask whoever it is to press 1 (``<Number url>``)."""
    await signed_form(request, services)
    parent = request.query_params.get("call", "")
    call = services.store.get_call(parent)
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
    accepted = params.get("Digits") == "1" and services.store.get_call(parent) is not None
    if accepted:
        # Closed now (not when the <Dial> ends): a long office conversation is not an
        # idle call for recovery to pick up.
        services.store.close_unsummarized(parent, OFFICE_ACCEPTED)
        log.info("call %s: the office took the call", parent)
    return twiml_response(twiml.accept_office(accepted))


@router.post("/voice/after-dial")
async def after_office_dial(request: Request, services: ServicesDep) -> Response:
    """The office line was rung during opening hours: if nobody answered, we do."""
    params = await signed_form(request, services)
    call_sid = params.get("CallSid", "")
    call = services.store.get_call(call_sid)
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
    return answer_with_receptionist(services, business, call_sid, call.caller_phone)


def answer_with_receptionist(
    services: Services, business: Business, call_sid: str, caller: str
) -> Response:
    """The AI receptionist over a Media Stream, or the scripted intake without OpenAI."""
    settings = services.settings
    mode = "realtime" if settings.openai_configured else "intake"
    services.store.set_mode(call_sid, mode)
    metrics.CALLS.labels(mode=mode).inc()
    log.info("call %s for %s answered (%s)", call_sid, business.name, mode)
    if mode == "intake":
        intake = Intake(business, caller)
        services.store.save_intake(call_sid, intake.to_json(), intake.details().learned())
        prompt = intake.current()
        return twiml_response(
            twiml.gather_speech(
                prompt=prompt.say,
                hints=prompt.hints,
                action=settings.public_url("/twilio/intake/answer"),
                preface=business.greeting,
            )
        )
    return twiml_response(
        twiml.connect_stream(
            stream_url=settings.public_ws_url("/twilio/stream"),
            parameters={"business_number": business.number, "caller": caller, "call_sid": call_sid},
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
    if call_sid and status in FINAL_STATUSES and duration.isdigit():
        services.store.set_duration(call_sid, int(duration))
    if call_sid and status in FINAL_STATUSES and call_sid not in services.live_calls:
        await services.finalize(call_sid, f"status callback ({status})")
    return Response(status_code=204)


@router.websocket("/stream")
async def media_stream(websocket: WebSocket) -> None:
    """The bidirectional Media Stream; the upgrade is signed over the wss:// URL."""
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
    bridge = CallBridge(websocket, services.bridge_context())
    started = dt.datetime.now(dt.UTC)
    try:
        await bridge.run()
    finally:
        log.info(
            "media stream for call %s ended after %.1fs",
            bridge.call_sid or "?",
            (dt.datetime.now(dt.UTC) - started).total_seconds(),
        )
