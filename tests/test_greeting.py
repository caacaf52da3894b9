"""The instant greeting: rendered once per business through the speech endpoint, played the
moment the stream starts (before the Realtime session connects), and known to the model."""

from __future__ import annotations

import array
import math

from agent.audio import chunks, pcm24k_to_mulaw8k
from agent.realtime_core import ClearPlayback, Conversation, PlayAudio, SendToModel, SessionConfig
from tests.conftest import BUSINESS_NUMBER, CALLER, PUBLIC_BASE_URL, StartApp, wait_for
from tests.standins.audio import rms
from tests.standins.openai_realtime import RealtimeStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp, Hold, ListenUntilAgentDone

GREETING = "Thanks for calling Bay Plumbing and Air. How can I help?"


def test_pcm_24k_becomes_mulaw_8k_of_the_same_length_and_loudness() -> None:
    pcm = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * 220 * i / 24000)) for i in range(24000))
    )
    audio = pcm24k_to_mulaw8k(pcm.tobytes())
    assert len(audio) == 8000  # one second at 8 kHz, one byte a sample
    assert 5000 < rms(audio) < 6000  # a 8000-amplitude sine has an RMS of ~5657
    assert [len(c) for c in chunks(audio, 200)] == [1600] * 5


def test_greeting_plays_before_the_session_is_configured_and_the_model_is_told() -> None:
    conv = Conversation(SessionConfig(instructions="Be brief.", greeting=GREETING))
    actions = conv.start(b"\x7f" * 4000)  # 500 ms
    plays = [a for a in actions if isinstance(a, PlayAudio)]
    assert [p.mark for p in plays] == ["greeting:200", "greeting:400", "greeting:500"]
    assert actions[: len(plays)] == plays
    events = [a.event for a in actions if isinstance(a, SendToModel)]
    assert [e["type"] for e in events] == ["session.update", "conversation.item.create"]
    assert events[1]["item"]["content"] == [{"type": "output_text", "text": GREETING}]


def test_barge_in_on_the_greeting_clears_without_truncating_a_model_item() -> None:
    conv = Conversation(SessionConfig(instructions="Be brief.", greeting=GREETING))
    conv.start(b"\x7f" * 8000)
    conv.mark_echoed("greeting:200")
    actions = conv.server_event(
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 300, "item_id": "u1"}, 0.3
    )
    assert actions == [ClearPlayback()]
    (turn,) = conv.transcript()
    assert turn.speaker == "agent" and turn.interrupted
    assert turn.text == "Thanks for calling"  # 200 of 1000 ms heard: the first fifth, rounded up


async def test_caller_hears_the_greeting_even_when_the_model_cannot_be_reached(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    """The greeting does not wait for the model: with the Realtime API refusing connections,
    the caller still hears it, then the scripted intake's apology."""
    ai: RealtimeStandin = await make_realtime_standin()
    ai.refuse_connections = True
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    greetings = app.services.greetings
    assert greetings is not None
    await wait_for(lambda: greetings.get(GREETING) is not None)
    assert ai.speech_requests[0]["response_format"] == "pcm"
    # The caller stays on the line until the app moves the call to the intake.
    script = CallerScript(steps=[Hold(), HangUp()], speech=["Dana Reyes"])
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
        speed=4,
    )
    assert result.script_timeouts == []
    assert result.played_audio_ms > 500
    assert result.said and "sorry" in result.said[0].lower()


async def test_with_the_model_connected_it_does_not_greet_a_second_time(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    ai: RealtimeStandin = await make_realtime_standin()
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    greetings = app.services.greetings
    assert greetings is not None
    await wait_for(lambda: greetings.get(GREETING) is not None)
    script = CallerScript(steps=[ListenUntilAgentDone(), HangUp()])
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
        speed=4,
    )
    rendered_ms = len(greetings.get(GREETING) or b"") // 8
    assert result.played_audio_ms == rendered_ms
    session = ai.sessions[0]
    assert session.violations == []
    kinds = [e["type"] for e in session.client_events]
    assert "response.create" not in kinds
    created = [e for e in session.client_events if e["type"] == "conversation.item.create"]
    assert created[0]["item"]["content"][0]["text"] == GREETING
