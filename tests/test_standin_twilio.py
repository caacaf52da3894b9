"""The Twilio stand-in against a tiny FastAPI app written here (not the product app).

The app checks every signature with twilio's own RequestValidator and records what it got;
the REST side is driven with twilio's own client library.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.standins import audio
from tests.standins.twilio import (
    CallerScript,
    CallResult,
    HangUp,
    Hold,
    InterruptAgent,
    ListenUntilAgentDone,
    Pause,
    PressDigit,
    Say,
    TwilioStandin,
)
from tests.standins.twilio_media import (
    SILENT_FRAME,
    AppClear,
    AppMark,
    AppMedia,
    CallerVoice,
    Playback,
    ProtocolViolation,
    parse_app_message,
)
from tests.standins.twilio_server import AsgiServer

PUBLIC = "https://receptionist.example"
FAST = 20.0  # speed for logic tests
TWIML = "application/xml"

StreamHandler = Callable[["StreamSide"], Awaitable[None]]


@dataclass
class Hit:
    path: str
    method: str
    params: dict[str, str]
    signature_ok: bool


@dataclass
class TinyApp:
    """What the app under test saw; its behaviour is set per test."""

    token: str
    routes: dict[str, Callable[[dict[str, str]], str]] = field(default_factory=dict)
    stream: StreamHandler | None = None
    hits: list[Hit] = field(default_factory=list)
    streams: list[StreamSide] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)

    def hits_to(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]


@dataclass
class StreamSide:
    """The app's end of one Media Stream."""

    ws: WebSocket
    received: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    closed_by_caller: bool = False
    stream_sid: str = ""

    async def next_message(self) -> dict[str, Any] | None:
        try:
            text = await self.ws.receive_text()
        except WebSocketDisconnect:
            self.closed_by_caller = True
            return None
        message: dict[str, Any] = json.loads(text)
        self.received.append(message)
        self.arrivals.append(asyncio.get_running_loop().time())
        return message

    async def open(self) -> dict[str, Any]:
        """Read ``connected`` and ``start``; returns the start message."""
        connected = await self.next_message()
        assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = await self.next_message()
        assert start is not None and start["event"] == "start"
        self.stream_sid = start["streamSid"]
        return start

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        while (message := await self.next_message()) is not None:
            if predicate(message):
                return message
        return None

    async def drain(self) -> None:
        """Read until the caller closes the socket."""
        while await self.next_message() is not None:
            pass

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message))

    async def play(self, data: bytes) -> None:
        payload = base64.b64encode(data).decode()
        await self.send(
            {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        )

    async def mark(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def media(self) -> list[dict[str, Any]]:
        return [m for m in self.received if m["event"] == "media"]

    def echoed(self, name: str) -> bool:
        """The caller echoed mark ``name`` back (so it handled everything sent before)."""
        return any(m["event"] == "mark" and m["mark"]["name"] == name for m in self.received)


def app_got_echo(tiny: TinyApp, name: str) -> Callable[[], bool]:
    """For `Hold`: the app has received the caller's echo of mark ``name``."""
    return lambda: bool(tiny.streams) and tiny.streams[0].echoed(name)


def build_app(tiny: TinyApp) -> FastAPI:
    validator = RequestValidator(tiny.token)
    app = FastAPI()

    @app.api_route("/twilio/{name:path}", methods=["GET", "POST"])
    async def webhook(name: str, request: Request) -> Response:
        path = "/twilio/" + name
        signature = request.headers.get("x-twilio-signature", "")
        if request.method == "POST":
            params = {k: str(v) for k, v in (await request.form()).items()}
            url = PUBLIC + path
            ok = validator.validate(url, params, signature)
        else:
            params = dict(request.query_params)
            ok = validator.validate(PUBLIC + path + "?" + request.url.query, {}, signature)
        tiny.hits.append(Hit(path, request.method, params, ok))
        if not ok:
            return Response(status_code=403)
        handler = tiny.routes.get(path)
        body = handler(params) if handler else "<Response/>"
        tiny.answered_at.append(asyncio.get_running_loop().time())
        return Response(content=body, media_type=TWIML)

    @app.websocket("/twilio/stream")
    async def stream(ws: WebSocket) -> None:
        signature = ws.headers.get("x-twilio-signature", "")
        if not validator.validate(PUBLIC.replace("https", "wss") + "/twilio/stream", {}, signature):
            await ws.close(code=1008)  # before accept: the upgrade is refused with HTTP 403
            return
        await ws.accept()
        side = StreamSide(ws)
        tiny.streams.append(side)
        assert tiny.stream is not None
        await tiny.stream(side)
        if not side.closed_by_caller:
            await ws.close()

    return app


@pytest.fixture
def standin(twilio_standin: TwilioStandin) -> TwilioStandin:
    """The plugin's fixture (tests/standins/plugin_twilio.py), under a shorter name."""
    return twilio_standin


@pytest.fixture
async def served(standin: TwilioStandin) -> AsyncIterator[tuple[TinyApp, str]]:
    tiny = TinyApp(token=standin.auth_token)
    async with AsgiServer(build_app(tiny)) as server:
        yield tiny, server.url


async def call(
    standin: TwilioStandin, app_url: str, script: CallerScript, **kwargs: Any
) -> CallResult:
    kwargs.setdefault("speed", FAST)
    return await standin.place_call(
        app_url=app_url, public_base_url=PUBLIC, script=script, **kwargs
    )


def connect_twiml(
    *params: tuple[str, str], after: str = "", host: str = "receptionist.example"
) -> str:
    inner = "".join(f'<Parameter name="{n}" value="{v}"/>' for n, v in params)
    return (
        f'<Response><Connect><Stream url="wss://{host}/twilio/stream">{inner}'
        f"</Stream></Connect>{after}</Response>"
    )


def rest_client(standin: TwilioStandin, token: str | None = None) -> Client:
    return Client(
        standin.account_sid, token or standin.auth_token, http_client=standin.rest_client_http()
    )


# -- webhooks and TwiML ---------------------------------------------------------------


async def test_webhooks_are_signed_like_twilio_and_status_callback_follows(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: "<Response><Say>Hello there</Say><Hangup/></Response>"

    result = await call(standin, url, CallerScript(), from_="+14155550123", to="+14155559876")

    voice, status = tiny.hits_to("/twilio/voice"), tiny.hits_to("/twilio/status")
    assert [h.signature_ok for h in tiny.hits] == [True, True]
    params = voice[0].params
    assert (
        re.fullmatch(r"CA[0-9a-f]{32}", params["CallSid"]) and params["CallSid"] == result.call_sid
    )
    assert params["AccountSid"] == standin.account_sid
    assert params["From"] == params["Caller"] == "+14155550123"
    assert params["To"] == params["Called"] == "+14155559876"
    assert (params["CallStatus"], params["Direction"], params["ApiVersion"]) == (
        "ringing",
        "inbound",
        "2010-04-01",
    )
    assert {"FromCity", "FromState", "FromZip", "FromCountry"} <= params.keys()
    assert status[0].params["CallStatus"] == "completed"
    assert status[0].params["CallDuration"].isdigit()
    assert result.said == ["Hello there"]
    assert result.ended_by == "app_hangup"
    assert result.webhook_statuses == [200]
    assert result.status_callbacks == [200]


async def test_a_refused_webhook_ends_the_call(served: tuple[TinyApp, str]) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: "<Response><Say>never heard</Say></Response>"
    async with TwilioStandin(auth_token="some-other-token") as wrong:
        result = await call(wrong, url, CallerScript(), duplicate_status_callback=True)

    assert result.webhook_statuses == [403]
    assert result.said == []
    assert result.ended_by == "application_error"
    assert result.status_callbacks == [403, 403]


async def test_gather_redirect_and_dial_are_followed(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes |= {
        "/twilio/voice": lambda p: (
            '<Response><Gather input="speech" action="/twilio/intake/name" speechTimeout="auto">'
            "<Say>Who is calling?</Say></Gather><Say>No name</Say></Response>"
        ),
        "/twilio/intake/name": lambda p: (
            "<Response><Redirect>https://receptionist.example/twilio/intake/need</Redirect>"
            "</Response>"
        ),
        "/twilio/intake/need": lambda p: (
            '<Response><Gather input="speech" action="done"><Say>What do you need?</Say>'
            '</Gather><Say>Let me connect you.</Say><Dial action="/twilio/dial-done" '
            'timeout="20">+14155550111</Dial><Say>unreachable</Say></Response>'
        ),
        "/twilio/dial-done": lambda p: "<Response><Say>Nobody answered.</Say></Response>",
    }

    result = await call(standin, url, CallerScript(speech=["Jane Doe", ""]))

    assert [h.path for h in tiny.hits] == [
        "/twilio/voice",
        "/twilio/intake/name",
        "/twilio/intake/need",
        "/twilio/dial-done",
        "/twilio/status",
    ]
    assert all(h.signature_ok for h in tiny.hits)
    name = tiny.hits_to("/twilio/intake/name")[0].params
    assert name["SpeechResult"] == "Jane Doe" and float(name["Confidence"]) > 0
    assert name["CallStatus"] == "in-progress"
    assert "SpeechResult" not in tiny.hits_to("/twilio/intake/need")[0].params
    assert tiny.hits_to("/twilio/dial-done")[0].params["DialCallStatus"] == "no-answer"
    assert result.said == [
        "Who is calling?",
        "What do you need?",
        "Let me connect you.",
        "Nobody answered.",
    ]
    assert result.dialed == ["+14155550111"]
    assert result.ended_by == "twiml_end"


async def test_empty_answer_goes_to_action_only_with_action_on_empty_result(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes |= {
        "/twilio/voice": lambda p: (
            '<Response><Gather input="speech" action="/twilio/again" method="GET" '
            'actionOnEmptyResult="true"><Say>Hello?</Say></Gather></Response>'
        ),
        "/twilio/again": lambda p: '<Response><Gather input="speech"/></Response>',
    }

    # One empty answer; at the second Gather the caller has nothing more to say.
    result = await call(standin, url, CallerScript(speech=[""]))

    again = tiny.hits_to("/twilio/again")
    assert len(again) == 1 and again[0].method == "GET" and again[0].signature_ok
    assert "SpeechResult" not in again[0].params
    assert result.ended_by == "caller"


async def test_bad_twiml_is_an_application_error(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: (
        '<Response><Connect><Stream url="ws://receptionist.example/twilio/stream"/>'
        "</Connect></Response>"
    )

    result = await call(standin, url, CallerScript())

    assert result.ended_by == "application_error"
    assert result.errors and result.errors[0].startswith("31922")
    assert tiny.streams == []


# -- media streams --------------------------------------------------------------------


async def test_stream_start_carries_custom_parameters_and_the_call_continues_after(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml(
        ("business", "Acme HVAC"), ("caller", p["From"]), after="<Say>Goodbye</Say>"
    )
    starts: list[dict[str, Any]] = []

    async def handler(side: StreamSide) -> None:
        starts.append(await side.open())
        await side.until(lambda m: m["event"] == "media" and m["media"]["chunk"] == "3")

    tiny.stream = handler
    result = await call(standin, url, CallerScript())

    start = starts[0]
    assert start["sequenceNumber"] == "1"
    assert re.fullmatch(r"MZ[0-9a-f]{32}", start["streamSid"])
    assert start["start"] == {
        "accountSid": standin.account_sid,
        "streamSid": start["streamSid"],
        "callSid": result.call_sid,
        "tracks": ["inbound"],
        "customParameters": {"business": "Acme HVAC", "caller": "+14155550100"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    media = tiny.streams[0].media()
    assert [m["sequenceNumber"] for m in media] == ["2", "3", "4"]
    assert [(m["media"]["chunk"], m["media"]["timestamp"]) for m in media] == [
        ("1", "0"),
        ("2", "20"),
        ("3", "40"),
    ]
    assert base64.b64decode(media[0]["media"]["payload"]) == audio.silence(20)
    assert result.stream_closed_by == "app"
    assert result.said == ["Goodbye"]
    assert result.ended_by == "twiml_end"


async def test_a_refused_stream_upgrade_is_reported_and_the_call_moves_on(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    # Signed over the URL in the TwiML, which is not the URL the app checks against.
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml(
        host="elsewhere.example", after="<Say>after</Say>"
    )
    tiny.stream = StreamSide.drain

    result = await call(standin, url, CallerScript())

    assert result.errors == ["31920 stream handshake rejected: HTTP 403"]
    assert tiny.streams == [] and result.streams == 0
    assert result.said == ["after"]
    assert result.ended_by == "twiml_end"


@pytest.mark.parametrize("speed", [1.0, 5.0])
async def test_frames_flow_every_20_ms_of_audio_time(
    standin: TwilioStandin, served: tuple[TinyApp, str], speed: float
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml()
    tiny.stream = lambda side: side.drain()
    script = CallerScript(steps=[Pause(100), Say(200), Pause(100), HangUp()])

    result = await call(standin, url, script, speed=speed)

    side = tiny.streams[0]
    media = [m for m in side.received if m["event"] == "media"]
    frames = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert all(len(f) == audio.FRAME_BYTES for f in frames)
    assert [m["media"]["timestamp"] for m in media] == [str(20 * i) for i in range(20)]
    speaking = [audio.rms(f) > 1000 for f in frames]
    assert speaking == [False] * 5 + [True] * 10 + [False] * 5
    # Pacing: the stream starts after the app answered the webhook, and frame n is not sent
    # before n * 20 ms / speed into the stream.
    answered = tiny.answered_at[0]
    times = [t for t, m in zip(side.arrivals, side.received, strict=True) if m["event"] == "media"]
    assert all(t - answered >= n * 0.020 / speed for n, t in enumerate(times))
    assert side.received[-1]["event"] == "stop"
    assert side.received[-1]["stop"] == {
        "accountSid": standin.account_sid,
        "callSid": result.call_sid,
    }
    assert side.closed_by_caller
    assert (result.stream_closed_by, result.ended_by) == ("caller", "caller")


async def test_marks_are_echoed_once_the_audio_before_them_has_played(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml()
    greeting = audio.tone(400, frequency=440) + audio.tone(200, frequency=330)

    async def handler(side: StreamSide) -> None:
        await side.open()
        await side.mark("nothing-queued")
        await side.play(greeting[: 400 * 8])
        await side.mark("first")
        await side.play(greeting[400 * 8 :])
        await side.mark("second")
        await side.drain()

    tiny.stream = handler
    script = CallerScript(steps=[Hold(until=app_got_echo(tiny, "second")), HangUp()])
    result = await call(standin, url, script)

    assert result.script_timeouts == []
    assert result.marks_echoed == ["nothing-queued", "first", "second"]
    assert result.played_audio_ms == 600 and result.heard_audio == greeting
    sent = result.sent
    echo_at = {m["mark"]["name"]: i for i, m in enumerate(sent) if m["event"] == "mark"}
    media_before = {
        name: sum(1 for m in sent[:i] if m["event"] == "media") for name, i in echo_at.items()
    }
    # 400 ms of audio is 20 ticks of playback, 600 ms is 30: a mark cannot come sooner.
    assert media_before["first"] >= 20 and media_before["second"] >= 30
    assert media_before["second"] - media_before["first"] >= 10
    app_echoes = [m for m in tiny.streams[0].received if m["event"] == "mark"]
    assert [m["mark"]["name"] for m in app_echoes] == result.marks_echoed
    assert all(m["streamSid"] == tiny.streams[0].stream_sid for m in app_echoes)


async def test_clear_drops_queued_audio_and_echoes_pending_marks(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml()
    long_answer = audio.tone(2000, frequency=440)
    after_clear = audio.tone(200, frequency=300)

    async def handler(side: StreamSide) -> None:
        await side.open()
        await side.play(long_answer[:8000])
        await side.mark("a")
        await side.play(long_answer[8000:])
        await side.mark("b")
        # Barge-in: the caller starts speaking over the answer.
        await side.until(
            lambda m: (
                m["event"] == "media" and audio.rms(base64.b64decode(m["media"]["payload"])) > 1000
            )
        )
        await side.send({"event": "clear", "streamSid": side.stream_sid})
        await side.play(after_clear)
        await side.mark("c")
        await side.drain()

    tiny.stream = handler
    script = CallerScript(
        steps=[
            InterruptAgent(after_ms=300, say_ms=200),
            Hold(until=app_got_echo(tiny, "c")),
            HangUp(),
        ]
    )
    result = await call(standin, url, script)

    assert result.script_timeouts == []
    assert result.marks_echoed == ["a", "b", "c"]
    assert result.played_after_clear == []
    # The audio clock stood still from the caller's first word to the clear: exactly the
    # 300 ms before it were heard, the rest of the answer was dropped.
    assert result.cleared_audio_ms == 1700
    assert result.played_audio_ms == 300 + 200
    # What was heard: the start of the long answer, then only the post-clear audio.
    heard = result.heard_audio
    assert heard == long_answer[: 300 * 8] + after_clear
    # "a" and "b" are echoed at the clear, before anything queued after it has played.
    received = tiny.streams[0].received
    clear_echoes = [i for i, m in enumerate(received) if m["event"] == "mark"]
    assert len(clear_echoes) == 3
    assert clear_echoes[1] == clear_echoes[0] + 1


async def test_invalid_app_messages_are_recorded_and_ignored(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml()

    async def handler(side: StreamSide) -> None:
        await side.open()
        sid = side.stream_sid
        await side.send(
            {"event": "media", "streamSid": "MZ" + "0" * 32, "media": {"payload": "/w=="}}
        )
        await side.send({"event": "media", "streamSid": sid, "media": {"payload": "not base64!"}})
        await side.send({"event": "media", "streamSid": sid})
        await side.send({"event": "mark", "streamSid": sid, "mark": {}})
        await side.send({"event": "speak", "streamSid": sid})
        await side.ws.send_bytes(b"\xff" * 160)
        await side.mark("valid")
        await side.drain()

    tiny.stream = handler
    script = CallerScript(steps=[Hold(until=app_got_echo(tiny, "valid")), HangUp()])
    result = await call(standin, url, script)

    assert result.script_timeouts == []
    assert len(result.protocol_errors) == 6
    assert "wrong or missing streamSid" in result.protocol_errors[0]
    assert "base64" in result.protocol_errors[1]
    assert "unknown event 'speak'" in result.protocol_errors[4]
    assert "binary" in result.protocol_errors[5]
    assert result.marks_echoed == ["valid"]
    assert result.played_audio_ms == 0


async def test_digits_and_a_caller_hangup(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml()
    tiny.stream = lambda side: side.drain()

    result = await call(
        standin,
        url,
        CallerScript(steps=[Pause(40), PressDigit("5"), HangUp()]),
        duplicate_status_callback=True,
    )

    received = tiny.streams[0].received
    dtmf = [m for m in received if m["event"] == "dtmf"]
    assert dtmf == [
        {
            "event": "dtmf",
            "sequenceNumber": dtmf[0]["sequenceNumber"],
            "streamSid": received[1]["streamSid"],
            "dtmf": {"track": "inbound_track", "digit": "5"},
        }
    ]
    sequence = [int(m["sequenceNumber"]) for m in received if "sequenceNumber" in m]
    assert sequence == list(range(1, len(sequence) + 1))
    assert result.ended_by == "caller"
    statuses = tiny.hits_to("/twilio/status")
    assert len(statuses) == 2 and all(h.params["CallSid"] == result.call_sid for h in statuses)


# -- the REST API ---------------------------------------------------------------------


async def test_rest_update_with_twiml_moves_a_streaming_call(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml(after="<Say>not reached</Say>")
    client = rest_client(standin)
    transfer = (
        "<Response><Say>Connecting you to the on-call tech.</Say>"
        "<Dial>+14155550111</Dial></Response>"
    )

    async def handler(side: StreamSide) -> None:
        start = await side.open()
        call_sid = start["start"]["callSid"]
        await asyncio.to_thread(client.calls(call_sid).update, twiml=transfer)
        await side.drain()

    tiny.stream = handler
    result = await call(standin, url, CallerScript(steps=[Hold()]))

    side = tiny.streams[0]
    assert side.received[-1]["event"] == "stop" and side.closed_by_caller
    assert result.stream_closed_by == "rest_update"
    assert result.said == ["Connecting you to the on-call tech."]
    assert result.dialed == ["+14155550111"]
    assert result.ended_by == "twiml_end"
    assert standin.call_updates == [{"CallSid": result.call_sid, "params": {"Twiml": transfer}}]
    # The call is over now: Twilio refuses to redirect it.
    with pytest.raises(TwilioRestException) as refused:
        await asyncio.to_thread(client.calls(result.call_sid).update, twiml=transfer)
    assert (refused.value.status, refused.value.code) == (400, 21220)


async def test_rest_update_with_url_fetches_new_twiml(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes |= {
        "/twilio/voice": lambda p: connect_twiml(),
        "/twilio/wrap-up": lambda p: "<Response><Say>Thanks, bye.</Say><Hangup/></Response>",
    }
    client = rest_client(standin)

    async def handler(side: StreamSide) -> None:
        start = await side.open()
        await asyncio.to_thread(
            client.calls(start["start"]["callSid"]).update, url=PUBLIC + "/twilio/wrap-up"
        )
        await side.drain()

    tiny.stream = handler
    result = await call(standin, url, CallerScript(steps=[Hold()]))

    wrap_up = tiny.hits_to("/twilio/wrap-up")
    assert len(wrap_up) == 1 and wrap_up[0].signature_ok
    assert wrap_up[0].params["CallStatus"] == "in-progress"
    assert result.said == ["Thanks, bye."]
    assert (result.stream_closed_by, result.ended_by) == ("rest_update", "app_hangup")


async def test_rest_status_completed_hangs_up(
    standin: TwilioStandin, served: tuple[TinyApp, str]
) -> None:
    tiny, url = served
    tiny.routes["/twilio/voice"] = lambda p: connect_twiml(after="<Say>not reached</Say>")
    client = rest_client(standin)
    fetched: list[str | None] = []

    async def handler(side: StreamSide) -> None:
        start = await side.open()
        instance = await asyncio.to_thread(
            client.calls(start["start"]["callSid"]).update, status="completed"
        )
        fetched.append(instance.status)
        await side.drain()

    tiny.stream = handler
    result = await call(standin, url, CallerScript(steps=[Hold()]))

    assert fetched == ["completed"]
    assert tiny.streams[0].received[-1]["event"] == "stop"
    assert (result.stream_closed_by, result.ended_by) == ("rest_update", "app_hangup")
    assert result.said == []
    assert result.status_callbacks == [200]


async def test_rest_refuses_bad_credentials_and_unknown_calls(standin: TwilioStandin) -> None:
    wrong = rest_client(standin, token="not-the-token")
    with pytest.raises(TwilioRestException) as unauthorized:
        await asyncio.to_thread(wrong.calls("CA" + "1" * 32).update, status="completed")
    assert (unauthorized.value.status, unauthorized.value.code) == (401, 20003)

    right = rest_client(standin)
    with pytest.raises(TwilioRestException) as missing:
        await asyncio.to_thread(right.calls("CA" + "1" * 32).update, status="completed")
    assert (missing.value.status, missing.value.code) == (404, 20404)
    assert [status for _, _, status in standin.rest_requests] == [401, 404]


async def test_messages_are_created_and_validated(standin: TwilioStandin) -> None:
    client = rest_client(standin)

    message = await asyncio.to_thread(
        client.messages.create, to="+14155550123", from_="+14155559999", body="New lead: Jane"
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid or "")
    assert message.status == "queued"
    assert [(m["To"], m["From"], m["Body"], m["sid"]) for m in standin.messages] == [
        ("+14155550123", "+14155559999", "New lead: Jane", message.sid)
    ]
    bad = {
        21211: {"to": "415-555-0123", "from_": "+14155559999", "body": "x"},
        21617: {"to": "+14155550123", "from_": "+14155559999", "body": "x" * 1601},
        21602: {"to": "+14155550123", "from_": "+14155559999", "body": ""},
        21603: {"to": "+14155550123", "body": "x"},
    }
    for code, kwargs in bad.items():
        with pytest.raises(TwilioRestException) as refused:
            await asyncio.to_thread(client.messages.create, **kwargs)
        assert (refused.value.status, refused.value.code) == (400, code)
    assert len(standin.messages) == 1


# -- the pure core --------------------------------------------------------------------


def test_playback_marks_and_clear() -> None:
    playback = Playback()
    assert playback.add_mark("now") == ["now"]
    playback.add_audio(b"\x00" * 200)
    assert playback.add_mark("m1") == []
    playback.add_audio(b"\x01" * 100)
    assert playback.add_mark("m2") == []
    first = playback.advance(160)
    assert (first.audio, first.marks) == (b"\x00" * 160, ())
    second = playback.advance(160)
    assert (second.audio, second.marks) == (b"\x00" * 40 + b"\x01" * 100, ("m1", "m2"))
    playback.add_audio(b"\x02" * 400)
    playback.add_mark("m3")
    assert playback.clear() == (400, ["m3"])
    assert playback.advance(160).audio == b""


def test_app_messages_are_parsed_strictly() -> None:
    sid = "MZ" + "a" * 32
    payload = base64.b64encode(b"\xff" * 160).decode()
    media = json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})
    assert parse_app_message(media, sid) == AppMedia(b"\xff" * 160)
    mark = json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "x"}})
    assert parse_app_message(mark, sid) == AppMark("x")
    assert parse_app_message(json.dumps({"event": "clear", "streamSid": sid}), sid) == AppClear()
    assert isinstance(parse_app_message(json.dumps({"event": "clear"}), sid), ProtocolViolation)
    assert isinstance(parse_app_message("[]", sid), ProtocolViolation)


def test_caller_script_runs_on_audio_time_and_events() -> None:
    """The caller's steps, one 20 ms tick at a time: listening ends on quiet audio, the
    interruption waits for the agent to be mid-sentence and stops the clock for the
    app's clear, and holding on ends on the test's event, not on a duration."""
    texted: list[str] = []
    voice = CallerVoice(
        [
            ListenUntilAgentDone(quiet_ms=60),
            InterruptAgent(after_ms=40, say_ms=40),
            Hold(until=lambda: texted),
            HangUp(),
        ]
    )
    quiet = {"agent_playing": False, "playing_run_ms": 0, "now": 0.0}
    assert all(voice.tick(**quiet).frame == SILENT_FRAME for _ in range(10))  # nothing heard yet
    for run_ms in (20, 40):
        voice.tick(agent_playing=True, playing_run_ms=run_ms, now=0.0)
    # A pause while the model is still answering is not the end of the answer ...
    for _ in range(10):
        assert voice.tick(**quiet, agent_busy=True).frame == SILENT_FRAME
    first_word = voice.tick(agent_playing=True, playing_run_ms=60, now=0.0, agent_queued=True)
    assert first_word.frame == SILENT_FRAME and first_word.await_clear_s is None  # still listening
    # ... 60 ms of quiet once it has finished is.
    assert [voice.tick(**quiet).frame for _ in range(3)] == [SILENT_FRAME] * 3
    # Long enough, but nothing queued behind this tick: the agent is finishing, not talking.
    ending = voice.tick(agent_playing=True, playing_run_ms=40, now=0.0, agent_queued=False)
    assert ending.frame == SILENT_FRAME
    first = voice.tick(agent_playing=True, playing_run_ms=60, now=0.0, agent_queued=True)
    assert audio.rms(first.frame) > 1000 and first.await_clear_s == 15
    second = voice.tick(agent_playing=True, playing_run_ms=80, now=0.0, agent_queued=True)
    assert audio.rms(second.frame) > 1000 and second.utterance_ended
    assert second.await_clear_s is None
    held = [voice.tick(**{**quiet, "now": float(t)}) for t in range(10)]
    assert not any(t.hang_up or t.timed_out for t in held)
    texted.append("SM1")
    assert voice.tick(**quiet).hang_up and voice.exhausted

    patient = CallerVoice([Hold(timeout_s=5), HangUp()])
    assert patient.tick(**quiet).timed_out is None
    gave_up = patient.tick(**{**quiet, "now": 6.0})
    assert gave_up.timed_out is not None and "Hold" in gave_up.timed_out and gave_up.hang_up
