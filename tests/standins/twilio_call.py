"""One inbound call, as Twilio runs it: the signed "A call comes in" webhook, then the TwiML
it gets back, verb by verb, including ``<Connect><Stream>`` and REST updates that move the
live call elsewhere; then the signed status callback.
"""

from __future__ import annotations

import enum
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from tests.standins.twilio_media import CallerVoice
from tests.standins.twilio_rest import API_VERSION, CallUpdate, LiveCall, new_sid
from tests.standins.twilio_script import CallerScript, CallResult
from tests.standins.twilio_stream import StreamIdentity, StreamSession
from tests.standins.twilio_twiml import (
    ConnectStreamVerb,
    DialVerb,
    GatherVerb,
    HangupVerb,
    PauseVerb,
    PlayVerb,
    RedirectVerb,
    RejectVerb,
    SayVerb,
    TwimlError,
    parse_twiml,
    resolve_url,
)

WEBHOOK_USER_AGENT = "TwilioProxy/1.1"
STREAM_USER_AGENT = "Twilio.TmeWs/1.0"
_MAX_DOCUMENTS = 100  # a loop guard: Redirect/Gather cycles that never end fail the call
_TWIML_CONTENT_TYPES = ("text/xml", "application/xml")


@dataclass(frozen=True, slots=True)
class Document:
    text: str
    url: str | None  # the public URL it came from (None for REST-supplied Twiml)


class _Next(enum.Enum):
    VERB = "next verb"


NEXT_VERB = _Next.VERB
Outcome = Document | None | Literal[_Next.VERB]
"""What a verb leads to: a new document, the end of the call, or the next verb."""


BetweenWebhooks = Callable[[int], Awaitable[str | None]]
"""Called before webhook ``n`` (0 = "A call comes in"); a returned URL is where the app
is reached from then on — the service restarted on another port behind the same public
URL, or a load balancer sent the next request to another node."""


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything `place_call` was asked to do."""

    account_sid: str
    auth_token: str
    app_url: str
    public_base_url: str
    from_: str
    to: str
    script: CallerScript
    status_callback: bool
    duplicate_status_callback: bool
    speed: float
    give_up_after_s: float
    ssl_context: ssl.SSLContext | None = None
    between_webhooks: BetweenWebhooks | None = None
    agent_busy: Callable[[], object] | None = None
    """See `TwilioStandin.agent_busy`."""
    catch_up: bool = False
    """See `TwilioStandin.place_call`."""


class CallRun:
    """Runs one call to its end and fills in its `CallResult`."""

    def __init__(self, plan: CallPlan, call: LiveCall, http: httpx.AsyncClient) -> None:
        self._plan = plan
        self._call = call
        self._http = http
        self._validator = RequestValidator(plan.auth_token)
        self._voice = CallerVoice(list(plan.script.steps))
        self._speech = list(plan.script.speech)
        self._documents = 0
        self._webhooks = 0
        self._app_base = plan.app_url
        self.result = CallResult(call_sid=call.sid)

    async def run(self) -> CallResult:
        started = time.monotonic()
        base = self._plan.public_base_url.rstrip("/")
        document = await self._fetch(f"{base}/twilio/voice", "POST", {}, call_status="ringing")
        if document is not None:
            self._call.mark_in_progress()
        while document is not None:
            document = await self._execute(document)
        self._call.mark_completed()
        elapsed = (time.monotonic() - started) * self._plan.speed
        self.result.duration_s = max(0, math.ceil(elapsed))
        if self._plan.status_callback:
            times = 2 if self._plan.duplicate_status_callback else 1
            for _ in range(times):
                await self._status_callback(f"{base}/twilio/status")
        return self.result

    # -- TwiML ----------------------------------------------------------------------

    async def _execute(self, document: Document) -> Document | None:
        """Run one document; returns the next one, or None when the call is over."""
        try:
            verbs = parse_twiml(document.text)
        except TwimlError as exc:
            self._fail(str(exc))
            return None
        try:
            for verb in verbs:
                update = self._call.take_update()
                if update is not None:
                    return await self._follow_update(update)
                match verb:
                    case SayVerb(text=text, voice=voice):
                        self.result.said.append(text)
                        self.result.voices.append(voice)
                    case PlayVerb() | PauseVerb():
                        pass  # no audio for the caller to hear; no time passes
                    case GatherVerb():
                        outcome = await self._gather(verb, document)
                        if outcome is not NEXT_VERB:
                            return outcome
                    case RedirectVerb(url=url, method=method):
                        return await self._fetch(resolve_url(url, document.url), method, {})
                    case DialVerb():
                        outcome = await self._dial(verb, document)
                        if outcome is not NEXT_VERB:
                            return outcome
                    case HangupVerb() | RejectVerb():
                        self.result.ended_by = "app_hangup"
                        return None
                    case ConnectStreamVerb():
                        outcome = await self._connect(verb, document)
                        if outcome is not NEXT_VERB:
                            return outcome
        except TwimlError as exc:
            self._fail(str(exc))
            return None
        update = self._call.take_update()
        if update is not None:
            return await self._follow_update(update)
        self.result.ended_by = "twiml_end"
        return None

    async def _gather(self, verb: GatherVerb, document: Document) -> Outcome:
        for prompt in verb.prompts:
            if isinstance(prompt, SayVerb):
                self.result.said.append(prompt.text)
                self.result.voices.append(prompt.voice)
        if not self._speech:
            self.result.ended_by = "caller"  # nothing more to say: the caller hangs up
            return None
        self.result.gather_languages.append(verb.language)
        answer = self._speech.pop(0)
        params: dict[str, str] = {}
        if answer.startswith("dtmf:"):
            keys = answer.removeprefix("dtmf:")
            if "dtmf" in verb.input:
                if verb.num_digits is not None:
                    keys = keys[: verb.num_digits]
                params = {"Digits": keys}
            # keys pressed at a speech-only Gather are ignored: no input
        elif answer and "speech" in verb.input:
            params = {"SpeechResult": answer, "Confidence": "0.92"}
        elif answer and all(c in "0123456789*#" for c in answer):
            params = {"Digits": answer, "FinishedOnKey": ""}
        if not params and not verb.action_on_empty_result:
            return NEXT_VERB  # no input: Twilio goes on to the verb after <Gather>
        action = resolve_url(verb.action or _required(document.url), document.url)
        return await self._fetch(action, verb.method, params)

    async def _dial(self, verb: DialVerb, document: Document) -> Outcome:
        self.result.dialed.append(verb.number)
        outcome = self._plan.script.dial_outcome
        child_sid = new_sid("CA")
        answered = outcome in {"completed", "voicemail"}
        if answered:
            bridged = True
            if verb.screen_url is not None:
                bridged = await self._screen(
                    verb, document, child_sid, person=outcome == "completed"
                )
            if bridged:
                self.result.bridged_to.append(verb.number)
        if verb.action is None:
            return NEXT_VERB
        # Twilio reports the dialled leg as it saw it: a leg that was answered — by a
        # person, or by a voicemail, and even when screening then hung it up — is
        # "completed". Only the app's own screening tells a person from a machine.
        params: dict[str, str] = {"DialCallStatus": "completed" if answered else outcome}
        if answered:
            params |= {"DialCallSid": child_sid, "DialCallDuration": "30"}
        return await self._fetch(resolve_url(verb.action, document.url), verb.method, params)

    async def _screen(
        self, verb: DialVerb, document: Document, child_sid: str, *, person: bool
    ) -> bool:
        """Run the ``<Number url>`` document on the answered leg; True when the legs are
        connected (the document ran to its end), False when it hung the leg up."""
        assert verb.screen_url is not None
        extra = {
            "CallSid": child_sid,
            "ParentCallSid": self._call.sid,
            "Direction": "outbound-dial",
            "To": verb.number,
            "Called": verb.number,
        }
        url: str | None = resolve_url(verb.screen_url, document.url)
        method = verb.screen_method
        params: dict[str, str] = {}
        for _ in range(10):
            if url is None:
                return True
            response = await self._signed_request(
                url, method, self._params("in-progress") | extra | params
            )
            self.result.webhook_urls.append(f"{method} {url}")
            self.result.webhook_statuses.append(response.status_code)
            if response.status_code != 200:
                self._fail(f"11200 screening URL failed: HTTP {response.status_code}")
                return False
            child_url, url, params = url, None, {}
            for child in parse_twiml(response.text):
                if isinstance(child, SayVerb):
                    self.result.screening_heard.append(child.text)
                elif isinstance(child, GatherVerb):
                    for prompt in child.prompts:
                        if isinstance(prompt, SayVerb):
                            self.result.screening_heard.append(prompt.text)
                    digits = self._plan.script.office_digits if person else ""
                    if digits or child.action_on_empty_result:
                        url = resolve_url(child.action or child_url, child_url)
                        method = child.method
                        params = {"Digits": digits} if digits else {}
                        break
                elif isinstance(child, HangupVerb | RejectVerb):
                    return False
                elif isinstance(child, RedirectVerb):
                    url, method = resolve_url(child.url, child_url), child.method
                    break
                elif isinstance(child, DialVerb | ConnectStreamVerb):
                    raise TwimlError(12200, "a screening document may not <Dial> or <Connect>")
        return False

    async def _connect(self, verb: ConnectStreamVerb, document: Document) -> Outcome:
        end = await self._stream(verb)
        if end in {"caller_hangup", "gave_up"}:
            self.result.ended_by = "caller"
            return None
        if end == "rest_update":
            update = self._call.take_update()
            assert update is not None
            return await self._follow_update(update)
        # The app closed the socket (or the stream never opened): Twilio moves on to the
        # <Connect action> URL if there is one, else to the next verb.
        if verb.action is not None:
            return await self._fetch(resolve_url(verb.action, document.url), verb.method, {})
        return NEXT_VERB

    async def _stream(self, verb: ConnectStreamVerb) -> str:
        parts = urlsplit(verb.url)
        app = urlsplit(self._app_base)
        scheme = "wss" if app.scheme == "https" else "ws"
        ws_url = urlunsplit((scheme, app.netloc, parts.path or "/", "", ""))
        headers = {
            "X-Twilio-Signature": self._validator.compute_signature(verb.url, {}),
            "User-Agent": STREAM_USER_AGENT,
        }
        identity = StreamIdentity(
            account_sid=self._plan.account_sid,
            call_sid=self._call.sid,
            stream_sid=new_sid("MZ"),
            custom_parameters=dict(verb.parameters),
        )
        try:
            async with connect(
                ws_url,
                additional_headers=headers,
                user_agent_header=None,
                ping_interval=None,
                open_timeout=10,
                max_size=2**24,
                ssl=self._plan.ssl_context if scheme == "wss" else None,
            ) as ws:
                self.result.streams += 1
                session = StreamSession(
                    ws=ws,
                    identity=identity,
                    call=self._call,
                    voice=self._voice,
                    result=self.result,
                    speed=self._plan.speed,
                    give_up_after_s=self._plan.give_up_after_s,
                    agent_busy=self._plan.agent_busy,
                    catch_up=self._plan.catch_up,
                )
                end = await session.run()
        except InvalidStatus as exc:
            self.result.errors.append(
                f"31920 stream handshake rejected: HTTP {exc.response.status_code}"
            )
            return "failed"
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self.result.errors.append(f"31920 stream connection failed: {exc!r}")
            return "failed"
        self._voice.abandon_step()
        self.result.stream_closed_by = {
            "caller_hangup": "caller",
            "gave_up": "caller",
            "app_closed": "app",
            "rest_update": "rest_update",
        }[end]  # type: ignore[assignment]
        return end

    async def _follow_update(self, update: CallUpdate) -> Document | None:
        if update.hang_up:
            self.result.ended_by = "app_hangup"
            return None
        if update.twiml is not None:
            self.result.twiml.append(update.twiml)
            return Document(update.twiml, None)
        assert update.url is not None
        return await self._fetch(update.url, update.method, {})

    def _fail(self, error: str) -> None:
        self.result.errors.append(error)
        self.result.ended_by = "application_error"

    # -- HTTP -----------------------------------------------------------------------

    def _params(self, call_status: str) -> dict[str, str]:
        p = self._plan
        stir = p.script.stir_verstat
        return ({"StirVerstat": stir} if stir else {}) | {
            "AccountSid": p.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self._call.sid,
            "CallStatus": call_status,
            "Called": p.to,
            "CalledCity": "SAN FRANCISCO",
            "CalledCountry": "US",
            "CalledState": "CA",
            "CalledZip": "94105",
            "Caller": p.from_,
            "CallerCity": "OAKLAND",
            "CallerCountry": "US",
            "CallerState": "CA",
            "CallerZip": "94612",
            "Direction": "inbound",
            "From": p.from_,
            "FromCity": "OAKLAND",
            "FromCountry": "US",
            "FromState": "CA",
            "FromZip": "94612",
            "To": p.to,
            "ToCity": "SAN FRANCISCO",
            "ToCountry": "US",
            "ToState": "CA",
            "ToZip": "94105",
        }

    def _app_url(self, public_url: str) -> str:
        """Where a public URL really is: its path and query on the app's socket."""
        parts = urlsplit(public_url)
        app = urlsplit(self._app_base)
        return urlunsplit((app.scheme, app.netloc, parts.path or "/", parts.query, ""))

    async def _signed_request(
        self, public_url: str, method: str, params: dict[str, str]
    ) -> httpx.Response:
        if self._plan.between_webhooks is not None:
            moved = await self._plan.between_webhooks(self._webhooks)
            if moved:
                self._app_base = moved.rstrip("/")
        self._webhooks += 1
        headers = {"User-Agent": WEBHOOK_USER_AGENT, "Accept": "*/*"}
        if method == "GET":
            sep = "&" if urlsplit(public_url).query else "?"
            full = public_url + sep + urlencode(params)
            headers["X-Twilio-Signature"] = self._validator.compute_signature(full, {})
            return await self._http.get(self._app_url(full), headers=headers)
        headers["X-Twilio-Signature"] = self._validator.compute_signature(public_url, params)
        return await self._http.post(self._app_url(public_url), data=params, headers=headers)

    async def _fetch(
        self,
        public_url: str,
        method: str,
        extra: dict[str, str],
        *,
        call_status: str = "in-progress",
    ) -> Document | None:
        self._documents += 1
        if self._documents > _MAX_DOCUMENTS:
            self._fail(f"more than {_MAX_DOCUMENTS} TwiML documents: a redirect loop?")
            return None
        params = self._params(call_status) | extra
        self.result.webhook_urls.append(f"{method} {public_url}")
        try:
            response = await self._signed_request(public_url, method, params)
        except httpx.HTTPError as exc:
            self.result.webhook_statuses.append(0)
            self._fail(f"11200 HTTP retrieval failure: {exc!r}")
            return None
        self.result.webhook_statuses.append(response.status_code)
        if response.status_code != 200:
            self._fail(f"11200 HTTP retrieval failure: HTTP {response.status_code}")
            return None
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _TWIML_CONTENT_TYPES:
            self._fail(f"12300 Invalid Content-Type {content_type!r}")
            return None
        self.result.twiml.append(response.text)
        return Document(response.text, public_url)

    async def _status_callback(self, public_url: str) -> None:
        params = self._params("completed") | {
            "CallDuration": str(self.result.duration_s),
            "Duration": str(max(1, math.ceil(self.result.duration_s / 60))),
            "Timestamp": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
        }
        try:
            response = await self._signed_request(public_url, "POST", params)
        except httpx.HTTPError:
            self.result.status_callbacks.append(0)
            return
        self.result.status_callbacks.append(response.status_code)


def _required(url: str | None) -> str:
    if url is None:
        raise TwimlError(12200, "a <Gather> in REST-supplied Twiml needs an absolute action")
    return url
