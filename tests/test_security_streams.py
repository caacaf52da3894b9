"""Replayed and forged Media Stream ``start`` messages (issue 10, attack 2), over the real
websocket with a correctly signed upgrade — the upgrade signature is the same for every
call, so it proves nothing about the call; the per-call token in the ``<Parameter>`` does.

What a user would notice if these failed: another business's on-call phone texted about
a call it never had, or one captured call replayed into a pile of paid Realtime sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import websockets
from twilio.request_validator import RequestValidator

from tests.conftest import (
    BUSINESS_NUMBER,
    BUSINESSES_TOML,
    CALLER,
    PUBLIC_BASE_URL,
    RunningApp,
    StartApp,
    wait_for,
)
from tests.standins.openai_realtime import RealtimeStandin
from tests.standins.twilio import TwilioStandin
from tests.stream_helpers import stream_parameters

OTHER_NUMBER = "+14155558888"
OTHER_ON_CALL = "+14155550222"
TWO_BUSINESSES = (
    BUSINESSES_TOML
    + f"""
[[business]]
number = "{OTHER_NUMBER}"
name = "Other Roofing"
timezone = "America/Los_Angeles"
services = ["roofing"]
on_call_phone = "{OTHER_ON_CALL}"
greeting = "Other Roofing, how can I help?"
"""
)
STREAM_URL = "wss://receptionist.example.com/twilio/stream"


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 3, 20, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


async def setup(
    start_app: StartApp,
    twilio: TwilioStandin,
    make_realtime_standin: Callable[..., Any],
    tmp_path: Path,
    clock: Clock | None = None,
) -> tuple[RunningApp, RealtimeStandin]:
    ai: RealtimeStandin = await make_realtime_standin(turns=[], greeting="Hello there.")
    path = tmp_path / "two-businesses.toml"
    path.write_text(TWO_BUSINESSES)
    app = await start_app(
        businesses_file=path,
        clock=clock or Clock(),
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_api_base_url=twilio.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    return app, ai


async def answer(app: RunningApp, twilio: TwilioStandin, call_sid: str) -> dict[str, str]:
    """The signed voice webhook for a new call; the stream's parameters Twilio would echo."""
    params = {
        "CallSid": call_sid,
        "AccountSid": twilio.account_sid,
        "From": CALLER,
        "To": BUSINESS_NUMBER,
        "CallStatus": "ringing",
    }
    signature = RequestValidator(twilio.auth_token).compute_signature(
        PUBLIC_BASE_URL + "/twilio/voice", params
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(
            app.url + "/twilio/voice", data=params, headers={"X-Twilio-Signature": signature}
        )
    assert "<Stream" in response.text
    return stream_parameters(response.text)


def start_frame(twilio: TwilioStandin, call_sid: str, parameters: dict[str, str]) -> str:
    stream_sid = "MZ" + uuid.uuid4().hex
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": twilio.account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def upgrade_headers(twilio: TwilioStandin) -> dict[str, str]:
    signature = RequestValidator(twilio.auth_token).compute_signature(STREAM_URL, {})
    return {"X-Twilio-Signature": signature}


async def refused(app: RunningApp, twilio: TwilioStandin, frame: str) -> bool:
    """Open a signed stream, send ``frame``: True when the service closes it with 1008
    without sending any audio."""
    ws_url = app.url.replace("http://", "ws://") + "/twilio/stream"
    async with websockets.connect(ws_url, additional_headers=upgrade_headers(twilio)) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(frame)
        got_audio = False
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    got_audio |= json.loads(await ws.recv()).get("event") == "media"
    return ws.close_code == 1008 and not got_audio


async def run_call(app: RunningApp, twilio: TwilioStandin, call_sid: str, frame: str) -> None:
    """A genuine stream: start, hear some greeting, stop; the call is finalized."""
    ws_url = app.url.replace("http://", "ws://") + "/twilio/stream"
    async with websockets.connect(ws_url, additional_headers=upgrade_headers(twilio)) as ws:
        await ws.send(frame)
        stream_sid = json.loads(frame)["streamSid"]
        async with asyncio.timeout(10):
            while json.loads(await ws.recv()).get("event") != "media":
                pass
        stop = {"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid}}
        await ws.send(json.dumps(stop))
    await wait_for(lambda: app.services.store.get_summary(call_sid) is not None)


async def test_replayed_starts_of_a_finished_call_open_no_session_and_send_nothing(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The reported attack: a captured ``start`` replayed 150 times after the call ended,
    as it was and naming the other business. Every replay is closed with 1008 before any
    Realtime session opens; no text goes anywhere."""
    app, ai = await setup(start_app, twilio_standin, make_realtime_standin, tmp_path)
    call_sid = "CA" + uuid.uuid4().hex
    parameters = await answer(app, twilio_standin, call_sid)
    assert parameters["token"].startswith("v1.")
    await run_call(app, twilio_standin, call_sid, start_frame(twilio_standin, call_sid, parameters))
    sessions = len(ai.sessions)
    assert sessions == 1

    other = {**parameters, "business_number": OTHER_NUMBER}
    for i in range(150):
        forged = other if i % 2 else parameters
        assert await refused(app, twilio_standin, start_frame(twilio_standin, call_sid, forged))
    assert len(ai.sessions) == sessions
    assert twilio_standin.messages == [] and twilio_standin.call_updates == []
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(app.url + "/metrics")).text
    assert "receptionist_media_streams_refused_total" in metrics


async def test_a_start_without_a_valid_token_for_this_call_is_refused(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """A live call's stream cannot be opened with no token, a tampered one, another call's
    token, the token moved to another call, or once it has expired; a second stream for a
    call that is already streaming is refused too."""
    clock = Clock()
    app, ai = await setup(start_app, twilio_standin, make_realtime_standin, tmp_path, clock)
    call_a, call_b = "CA" + uuid.uuid4().hex, "CA" + uuid.uuid4().hex
    params_a = await answer(app, twilio_standin, call_a)
    params_b = await answer(app, twilio_standin, call_b)
    token = params_a["token"]
    forgeries = [
        {k: v for k, v in params_a.items() if k != "token"},
        {**params_a, "token": token[:-2] + ("AA" if not token.endswith("AA") else "BB")},
        {**params_a, "token": params_b["token"]},
        {**params_a, "token": "v1.99999999999.x"},
        {**params_a, "token": "garbage"},
    ]
    for parameters in forgeries:
        assert await refused(app, twilio_standin, start_frame(twilio_standin, call_a, parameters))
    # A start naming call B with call A's parameters (token bound to A's CallSid).
    assert await refused(app, twilio_standin, start_frame(twilio_standin, call_b, params_a))
    assert ai.sessions == []

    # One live stream per call: while A streams, a second start for A is refused.
    ws_url = app.url.replace("http://", "ws://") + "/twilio/stream"
    first = start_frame(twilio_standin, call_a, params_a)
    async with websockets.connect(ws_url, additional_headers=upgrade_headers(twilio_standin)) as ws:
        await ws.send(first)
        async with asyncio.timeout(10):
            while json.loads(await ws.recv()).get("event") != "media":
                pass
        assert await refused(app, twilio_standin, start_frame(twilio_standin, call_a, params_a))
        stream_sid = json.loads(first)["streamSid"]
        await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
    assert len(ai.sessions) == 1

    # Call B's token expires STREAM_TOKEN_TTL_SECONDS (300 s) after the TwiML was issued.
    clock.now += dt.timedelta(seconds=301)
    assert await refused(app, twilio_standin, start_frame(twilio_standin, call_b, params_b))
    assert len(ai.sessions) == 1


async def test_a_replay_to_another_node_while_the_call_streams_is_refused(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """Two service processes on one database (two nodes behind a load balancer): the
    genuine stream runs on the first; the same ``start`` replayed to the second — valid
    token, live call — is refused, because a call's one stream is claimed in the database."""
    node_a, ai_a = await setup(start_app, twilio_standin, make_realtime_standin, tmp_path)
    node_b, ai_b = await setup(start_app, twilio_standin, make_realtime_standin, tmp_path)
    assert node_a.settings.database_url == node_b.settings.database_url
    call_sid = "CA" + uuid.uuid4().hex
    parameters = await answer(node_a, twilio_standin, call_sid)
    frame = start_frame(twilio_standin, call_sid, parameters)
    ws_url = node_a.url.replace("http://", "ws://") + "/twilio/stream"
    async with websockets.connect(ws_url, additional_headers=upgrade_headers(twilio_standin)) as ws:
        await ws.send(frame)
        async with asyncio.timeout(10):
            while json.loads(await ws.recv()).get("event") != "media":
                pass
        assert await refused(node_b, twilio_standin, frame)
        assert await refused(node_a, twilio_standin, frame)
        stream_sid = json.loads(frame)["streamSid"]
        await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
    assert len(ai_a.sessions) == 1 and ai_b.sessions == []
    await wait_for(lambda: node_a.services.store.get_summary(call_sid) is not None)
