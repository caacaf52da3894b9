"""Twilio as the app sees it, on real sockets: a caller and the REST API.

```python
async with TwilioStandin() as twilio:            # REST API on twilio.api_base_url
    result = await twilio.place_call(
        app_url=app.url,                           # where the app listens (http://127.0.0.1:P)
        public_base_url="https://receptionist.example",  # what it believes its URL is
        script=CallerScript(steps=[ListenUntilAgentDone(), Say(900), HangUp()]),
    )
```

The caller POSTs the signed "A call comes in" webhook to ``{public_base_url}/twilio/voice``
(really sent to ``app_url``), follows the TwiML (`twilio_call`), opens the Media Stream for
``<Connect><Stream url="wss://…">`` on the app's socket, signed over the wss URL
(`twilio_stream`), and finally POSTs the signed status callback to ``/twilio/status``.
Twilio only streams to ``wss://`` URLs, so a streaming app needs an ``https://`` public
base URL; the stand-in maps it onto ``app_url``.

The REST API (`twilio_rest`) runs on its own thread, like a remote service: Calls update
(Twiml / Url / Status=completed) acts on the live call; Messages are recorded.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.standins.twilio_call import BetweenWebhooks, CallPlan, CallRun
from tests.standins.twilio_numbers import new_number
from tests.standins.twilio_rest import (
    LiveCall,
    PastRecording,
    RestState,
    StandinTwilioHttpClient,
    build_rest_app,
    new_sid,
)
from tests.standins.twilio_script import (
    CallerScript,
    CallResult,
    HangUp,
    Hold,
    InterruptAgent,
    ListenUntilAgentDone,
    Pause,
    PressDigit,
    Say,
    Step,
)
from tests.standins.twilio_server import ThreadedAsgiServer

__all__ = [
    "CallResult",
    "CallerScript",
    "HangUp",
    "Hold",
    "InterruptAgent",
    "ListenUntilAgentDone",
    "Pause",
    "PressDigit",
    "Say",
    "StandinTwilioHttpClient",
    "Step",
    "TwilioStandin",
]


class TwilioStandin:
    """A Twilio caller plus the Twilio REST API, for one test."""

    def __init__(
        self,
        *,
        account_sid: str = "AC" + secrets.token_hex(16),
        auth_token: str = "standin-auth-token",  # noqa: S107 - a test double's token
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._state = RestState(account_sid=account_sid, auth_token=auth_token)
        self._server = ThreadedAsgiServer(build_rest_app(self._state))
        self.api_base_url = ""
        self.agent_busy: Callable[[], object] | None = None
        """Whether the model behind the app is still producing its answer (e.g.
        ``RealtimeStandin.responding``). The caller cannot understand speech, so it cannot
        tell a pause in the agent's audio from the end of its answer; with this set,
        `ListenUntilAgentDone` counts no quiet while the model is still answering, and a
        slow machine cannot make the caller speak over the agent."""

    # -- recorded REST traffic (appended from the REST thread) ----------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """SMS created via REST: To, From, MessagingServiceSid, Body, sid, created_at."""
        return self._state.messages

    @property
    def call_updates(self) -> list[dict[str, Any]]:
        """Every Calls update request received: {"CallSid", "params"}."""
        return self._state.call_updates

    @property
    def rest_requests(self) -> list[tuple[str, str, int]]:
        """(method, path, HTTP status) of every REST request, including refused ones."""
        return self._state.requests

    @property
    def numbers(self) -> list[dict[str, Any]]:
        """The account's IncomingPhoneNumbers (resource JSON, changed by REST updates)."""
        return self._state.numbers

    def buy_number(self, phone_number: str, **fields: Any) -> dict[str, Any]:
        """Add a number to the account as Twilio shows a new one (demo voice URL);
        ``fields`` override resource fields (e.g. ``voice_url``)."""
        number = new_number(
            account_sid=self.account_sid, sid=new_sid("PN"), phone_number=phone_number
        )
        number.update(fields)
        with self._state.lock:
            self._state.numbers.append(number)
        return number

    def set_account_type(self, kind: str) -> None:
        """``"Trial"`` or ``"Full"``, as the Account resource reports it."""
        self._state.account_type = kind

    def record_past_call(
        self,
        *,
        from_: str = "+14155550100",
        to: str = "+14155559999",
        status: str = "completed",
        duration_s: int = 0,
        ago_s: float = 60.0,
        voicemail_s: int | None = None,
        transcription: str | None = None,
    ) -> str:
        """A call in Twilio's call log that never reached the app (it was down, or died
        before storing the first webhook); ``voicemail_s``: the fallback ``<Record>`` took a
        message that long, transcribed as ``transcription`` when given. Returns its SID."""
        sid = new_sid("CA")
        call = LiveCall(
            sid=sid,
            account_sid=self.account_sid,
            from_=from_,
            to=to,
            loop=asyncio.get_running_loop(),
        )
        call.created = time.time() - ago_s
        if status == "completed":
            call.answered = call.created + 1
            call.ended = call.answered + duration_s
            call.mark_completed()
        else:
            call.force_status(status)
        with self._state.lock:
            self._state.calls[sid] = call
            if voicemail_s is not None:
                self._state.recordings.append(
                    PastRecording(
                        sid=new_sid("RE"),
                        call_sid=sid,
                        duration_s=voicemail_s,
                        created=call.created + 5,
                        transcription=transcription,
                        transcription_sid=new_sid("TR"),
                    )
                )
        return sid

    def fail_next_messages(self, count: int) -> None:
        """The next ``count`` SMS requests fail with HTTP 500 (Twilio error 20500)."""
        with self._state.lock:
            self._state.failing_messages = count

    def rest_client_http(self) -> StandinTwilioHttpClient:
        """An HTTP client for ``twilio.rest.Client`` that talks to this stand-in."""
        return StandinTwilioHttpClient(self.api_base_url)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self._server.start()
        self.api_base_url = self._server.url

    async def stop(self) -> None:
        await self._server.stop()

    async def __aenter__(self) -> TwilioStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the caller -----------------------------------------------------------------

    async def place_call(
        self,
        *,
        app_url: str,
        public_base_url: str | None = None,
        from_: str = "+14155550100",
        to: str = "+14155559999",
        script: CallerScript,
        call_sid: str | None = None,
        status_callback: bool = True,
        duplicate_status_callback: bool = False,
        speed: float = 1.0,
        give_up_after_s: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
        between_webhooks: BetweenWebhooks | None = None,
        catch_up: bool = False,
    ) -> CallResult:
        """Place one inbound call to the app and run it to its end.

        ``speed`` > 1 runs audio time faster than real time (logic tests); 1 paces 20 ms
        frames in real time. ``give_up_after_s``: wall seconds the caller stays on a
        stream, silent, after its last step before hanging up (`CallResult.gave_up`).
        ``ssl_context``: the trust for an ``https://`` ``app_url`` (e.g. a proxy's test CA);
        the stream then opens over ``wss://``. ``catch_up``: a stream tick the machine made
        late is caught up with a burst, as a real line's clock runs on whatever the machine
        does (for measuring latency at the caller's ear); by default (tests) the caller's
        audio clock never runs ahead of the event loop.
        """
        if speed <= 0:
            raise ValueError("speed must be positive")
        sid = call_sid or new_sid("CA")
        call = LiveCall(
            sid=sid,
            account_sid=self.account_sid,
            from_=from_,
            to=to,
            loop=asyncio.get_running_loop(),
        )
        with self._state.lock:
            self._state.calls[sid] = call
        plan = CallPlan(
            account_sid=self.account_sid,
            auth_token=self.auth_token,
            app_url=app_url.rstrip("/"),
            public_base_url=(public_base_url or app_url).rstrip("/"),
            from_=from_,
            to=to,
            script=script,
            status_callback=status_callback,
            duplicate_status_callback=duplicate_status_callback,
            speed=speed,
            give_up_after_s=give_up_after_s,
            ssl_context=ssl_context,
            between_webhooks=between_webhooks,
            agent_busy=self.agent_busy,
            catch_up=catch_up,
        )
        verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        async with httpx.AsyncClient(trust_env=False, timeout=30.0, verify=verify) as http:
            return await CallRun(plan, call, http).run()
