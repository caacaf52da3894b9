"""Bad input through the real endpoints: forged signatures, unknown numbers, malformed
frames, and the Realtime API refusing or dropping — nobody meets dead air, nothing is lost."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from twilio.request_validator import RequestValidator

from tests.conftest import BUSINESS_NUMBER, CALLER, PUBLIC_BASE_URL, StartApp, wait_for
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp, Hold, ListenUntilAgentDone, Say
from tests.stream_helpers import stream_parameters

TOKEN = "test-auth-token"


def signed(url: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def voice_params(call_sid: str = "CA" + "a" * 32, to: str = BUSINESS_NUMBER) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "b" * 32,
        "From": CALLER,
        "To": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        signed(PUBLIC_BASE_URL + "/twilio/voice", voice_params(), token="someone-elses-token"),
        signed("https://attacker.example.com/twilio/voice", voice_params()),
    ],
    ids=["missing", "garbage", "wrong-token", "wrong-url"],
)
async def test_forged_webhook_is_refused_and_records_nothing(start_app: StartApp, headers) -> None:  # type: ignore[no-untyped-def]
    app = await start_app(twilio_auth_token=TOKEN)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            app.url + "/twilio/voice", data=voice_params(), headers=headers
        )
    assert response.status_code == 403
    assert app.services.store.get_call("CA" + "a" * 32) is None


async def test_tampered_parameters_are_refused(start_app: StartApp) -> None:
    app = await start_app(twilio_auth_token=TOKEN)
    params = voice_params()
    headers = signed(PUBLIC_BASE_URL + "/twilio/voice", params)
    params["From"] = "+19995550000"
    async with httpx.AsyncClient() as client:
        response = await client.post(app.url + "/twilio/voice", data=params, headers=headers)
    assert response.status_code == 403


async def test_without_an_auth_token_webhooks_are_refused_not_trusted(start_app: StartApp) -> None:
    app = await start_app()
    async with httpx.AsyncClient() as client:
        response = await client.post(app.url + "/twilio/voice", data=voice_params())
    assert response.status_code == 503
    assert "TWILIO_AUTH_TOKEN" in response.json()["detail"]


async def test_unknown_number_gets_a_polite_message(start_app: StartApp) -> None:
    app = await start_app(twilio_auth_token=TOKEN)
    params = voice_params(to="+12125550000")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            app.url + "/twilio/voice",
            data=params,
            headers=signed(PUBLIC_BASE_URL + "/twilio/voice", params),
        )
    assert response.status_code == 200
    assert "<Say" in response.text and "not set up" in response.text and "<Hangup" in response.text


async def test_forged_stream_upgrade_is_refused(start_app: StartApp) -> None:
    app = await start_app(twilio_auth_token=TOKEN)
    ws_url = app.url.replace("http://", "ws://") + "/twilio/stream"
    forged = signed("wss://receptionist.example.com/twilio/stream", {}, token="wrong")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(ws_url, additional_headers=forged):
            pass
    assert refused.value.response.status_code == 403


async def test_malformed_frames_are_ignored_and_the_call_goes_on(
    start_app: StartApp, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    ai: RealtimeStandin = await make_realtime_standin(turns=[], greeting="Hello there.")
    app = await start_app(
        twilio_auth_token=TOKEN, openai_api_key=ai.api_key, openai_base_url=ai.base_url
    )
    call_sid = "CA" + "c" * 32
    params = voice_params(call_sid)
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            app.url + "/twilio/voice",
            data=params,
            headers=signed(PUBLIC_BASE_URL + "/twilio/voice", params),
        )
    assert "<Stream" in answer.text
    stream_sid = "MZ" + "d" * 32
    headers = signed("wss://receptionist.example.com/twilio/stream", {})
    ws_url = app.url.replace("http://", "ws://") + "/twilio/stream"
    async with websockets.connect(ws_url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "accountSid": "AC" + "b" * 32,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": stream_parameters(answer.text),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await ws.send(
            json.dumps(
                {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": stream_sid}
            )
        )
        for bad in [
            b"\x00\x01 binary frame",  # Twilio sends text frames only: counted and ignored
            "{nope",
            '{"event": "teleport"}',
            json.dumps({"event": "media", "streamSid": stream_sid}),
            "x" * 100_000,
        ]:
            await ws.send(bad)
        # The call is still alive: the greeting audio keeps coming to us.
        got_media = False
        async with asyncio.timeout(10):
            while not got_media:
                message = json.loads(await ws.recv())
                got_media = message.get("event") == "media"
        await ws.send(
            json.dumps(
                {
                    "event": "stop",
                    "sequenceNumber": "9",
                    "streamSid": stream_sid,
                    "stop": {"callSid": call_sid},
                }
            )
        )
    store = app.services.store
    await wait_for(lambda: store.get_summary(call_sid) is not None)
    assert ai.sessions[0].violations == []
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(app.url + "/metrics")).text
    (binary,) = [
        line
        for line in metrics.splitlines()
        if line.startswith("receptionist_stream_binary_frames_total ")
    ]
    assert float(binary.split()[1]) >= 1


async def test_realtime_refused_at_start_caller_hears_apology_and_call_is_recorded(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    ai: RealtimeStandin = await make_realtime_standin()
    ai.refuse_connections = True
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    # The caller stays on the line until the app moves the call (not for a set time).
    script = CallerScript(
        steps=[Hold(), HangUp()],
        speech=["Dana Reyes", "my water heater is leaking", "this number", "tomorrow afternoon"],
    )
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
        speed=8,
    )
    assert result.script_timeouts == []  # the app moved the call while the caller held on
    assert result.said, (
        "the caller must hear something, not dead air",
        result.twiml,
        result.stream_closed_by,
        result.ended_by,
        result.errors,
    )
    assert "sorry" in result.said[0].lower()
    store = app.services.store
    await wait_for(
        lambda: (job := store.outbox_job(result.call_sid)) is not None and job.state == "delivered"
    )
    summary = store.get_summary(result.call_sid)
    assert summary is not None
    assert summary.caller_phone == CALLER
    assert summary.first_name == "Dana"


async def test_realtime_drop_mid_call_hands_over_to_the_intake_keeping_what_was_said(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    turns = [
        ScriptedTurn(
            "Hi, this is Sam Park and my furnace is making a banging noise.",
            reply="Thanks Sam, I've noted the banging furnace.",
            reply_ms=800,
            tool_calls=[
                ToolCall(
                    "record_caller_details",
                    {
                        "first_name": "Sam",
                        "last_name": "Park",
                        "need": "Furnace making banging noise",
                    },
                )
            ],
        )
    ]
    ai: RealtimeStandin = await make_realtime_standin(turns=turns, extraction=None)
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    ai.drop_after_turns = 1
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    script = CallerScript(
        # After speaking, the caller stays on the line until the app hands the call over.
        steps=[ListenUntilAgentDone(), Say(ms=1000), Hold(), HangUp()],
        speech=["no rush, this week is fine", "22 Elm Street", "this number", "weekday mornings"],
    )
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
        speed=4,
    )
    assert result.script_timeouts == []
    assert result.said, "the intake took over the live call"
    store = app.services.store
    await wait_for(lambda: store.get_summary(result.call_sid) is not None)
    summary = store.get_summary(result.call_sid)
    assert summary is not None
    assert (summary.first_name, summary.last_name) == ("Sam", "Park")
    assert "furnace" in summary.need.lower()
    texts = " ".join(t.text for t in summary.transcript)
    assert "banging" in texts  # what was said before the drop is kept
    assert summary.callback_requested
    # The extraction model answered 500: the deterministic extractor filled in, and says so.
    assert summary.extraction == "deterministic"


async def test_a_call_longer_than_the_limit_is_ended_and_still_recorded(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    """MAX_CALL_SECONDS bounds a call (and every per-call buffer with it): past it the stream
    is closed, the call is finalized, and Twilio's next request is told to hang up."""
    ai: RealtimeStandin = await make_realtime_standin()
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    app.services.settings.max_call_seconds = 2  # the setting's floor is 30 s; too slow here
    script = CallerScript(steps=[Hold(), HangUp()])  # until the app ends the stream
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
    )
    assert result.script_timeouts == []
    assert result.stream_closed_by == "app"
    assert result.said == []  # no intake after the limit: the follow-up TwiML hangs up
    assert app.services.store.get_summary(result.call_sid) is not None
