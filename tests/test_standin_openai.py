"""The OpenAI stand-in, driven by the openai library's own client over real sockets."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pydantic
import pytest
import websockets
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from tests.standins import audio
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.plugin_openai import MakeRealtimeStandin

MODEL = "gpt-realtime"
PCMU_SESSION: dict[str, Any] = {
    "type": "realtime",
    "instructions": "You are the after-hours receptionist.",
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-transcribe"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
    },
    "tools": [
        {
            "type": "function",
            "name": "flag_emergency",
            "description": "The caller has an emergency.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "required": ["reason"],
            },
        }
    ],
}


@asynccontextmanager
async def realtime(
    standin: RealtimeStandin, *, session: dict[str, Any] | None = PCMU_SESSION
) -> AsyncIterator[AsyncRealtimeConnection]:
    client = AsyncOpenAI(api_key=standin.api_key, base_url=standin.base_url)
    async with client.realtime.connect(model=MODEL) as connection:
        created = await connection.recv()
        assert created.type == "session.created"
        if session is not None:
            await connection.session.update(session=session)  # type: ignore[arg-type]
            assert (await connection.recv()).type == "session.updated"
        yield connection


async def events_until(
    connection: AsyncRealtimeConnection, event_type: str, *, count: int = 1
) -> list[Any]:
    """Every server event up to and including the ``count``-th one of ``event_type``."""
    seen: list[Any] = []
    async with asyncio.timeout(10):
        while count:
            event = await connection.recv()
            seen.append(event)
            if event.type == event_type:
                count -= 1
    return seen


async def say(connection: AsyncRealtimeConnection, pcmu: bytes) -> None:
    """Append audio as Twilio-sized 20 ms frames, as the bridge does."""
    for frame in audio.frames(pcmu):
        await connection.input_audio_buffer.append(audio=base64.b64encode(frame).decode())


def of_type(events: list[Any], event_type: str) -> list[Any]:
    return [e for e in events if e.type == event_type]


def dominant_frequency_is_reply_tone(pcmu: bytes) -> bool:
    """The reply tone (440 Hz) crosses zero twice as often as the caller's (220 Hz)."""
    samples = audio.decode(pcmu)
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    hertz = crossings / 2 / (len(samples) / audio.SAMPLE_RATE)
    return 400 < hertz < 480


async def test_session_update_round_trip(realtime_standin: RealtimeStandin) -> None:
    client = AsyncOpenAI(api_key=realtime_standin.api_key, base_url=realtime_standin.base_url)
    async with client.realtime.connect(model=MODEL) as connection:
        created = await connection.recv()
        await connection.session.update(session=PCMU_SESSION)  # type: ignore[arg-type]
        updated = await connection.recv()

    assert created.type == "session.created"
    defaults = created.session.model_dump()
    assert defaults["model"] == MODEL
    assert defaults["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert updated.type == "session.updated"
    session = updated.session.model_dump()
    assert session["audio"]["input"]["format"]["type"] == "audio/pcmu"
    assert session["audio"]["output"]["format"]["type"] == "audio/pcmu"
    detection = session["audio"]["input"]["turn_detection"]
    assert (detection["silence_duration_ms"], detection["prefix_padding_ms"]) == (500, 300)
    assert session["tools"][0]["name"] == "flag_emergency"
    log = realtime_standin.sessions[0]
    assert log.model == MODEL
    assert log.session_config["instructions"] == "You are the after-hours receptionist."
    assert log.violations == []


async def test_energy_vad_turn_is_transcribed_and_answered_in_audio(
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    standin = await make_realtime_standin(
        greeting=None,
        turns=[ScriptedTurn("My basement is flooding", reply="I am sorry, help is on the way.")],
    )
    async with realtime(standin) as connection:
        # 1 s of line silence is no speech; then 800 ms of "speech" and 600 ms of silence.
        await say(connection, audio.silence(1000) + audio.tone(800) + audio.silence(600))
        events = await events_until(connection, "response.done")

    types = [e.type for e in events]
    started, stopped = (
        of_type(events, "input_audio_buffer.speech_started"),
        of_type(events, "input_audio_buffer.speech_stopped"),
    )
    assert len(started) == len(stopped) == 1
    assert started[0].audio_start_ms == 1000 - 300  # onset minus prefix_padding_ms
    assert stopped[0].audio_end_ms == 1800 + 500  # end of speech plus silence_duration_ms
    assert started[0].item_id == stopped[0].item_id
    assert types.index("input_audio_buffer.committed") < types.index("response.created")
    transcription = of_type(events, "conversation.item.input_audio_transcription.completed")
    assert transcription[0].transcript == "My basement is flooding"
    assert transcription[0].item_id == started[0].item_id
    spoken = b"".join(
        base64.b64decode(e.delta) for e in of_type(events, "response.output_audio.delta")
    )
    assert audio.duration_ms(spoken) == 1500
    assert dominant_frequency_is_reply_tone(spoken)
    deltas = "".join(e.delta for e in of_type(events, "response.output_audio_transcript.delta"))
    done = of_type(events, "response.output_audio_transcript.done")[0]
    assert deltas == done.transcript == "I am sorry, help is on the way."
    assert events[-1].response.status == "completed"
    log = standin.sessions[0]
    assert log.audio_received_ms == 2400
    assert log.turns_answered == 1
    assert log.violations == []


async def test_tool_call_round_trip(make_realtime_standin: MakeRealtimeStandin) -> None:
    standin = await make_realtime_standin(
        greeting=None,
        turns=[
            ScriptedTurn(
                "Water is pouring through the ceiling",
                reply="I have flagged this as an emergency.",
                tool_calls=[ToolCall("flag_emergency", {"reason": "water leak"})],
            )
        ],
    )
    async with realtime(standin) as connection:
        await say(connection, audio.tone(600) + audio.silence(600))
        first = await events_until(connection, "response.done")
        call = of_type(first, "response.function_call_arguments.done")[0]
        assert (call.name, json.loads(call.arguments)) == (
            "flag_emergency",
            {"reason": "water leak"},
        )
        assert of_type(first, "response.output_audio.delta") == []
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": '{"ok": true}'}
        )
        await connection.response.create()
        second = await events_until(connection, "response.done")

    transcript = of_type(second, "response.output_audio_transcript.done")[0].transcript
    assert transcript == "I have flagged this as an emergency."
    log = standin.sessions[0]
    assert log.function_outputs == [
        {"call_id": call.call_id, "output": '{"ok": true}', "name": "flag_emergency"}
    ]
    assert log.turns_answered == 1
    assert log.violations == [] and log.script_problems == []


async def test_a_scripted_tool_the_session_does_not_declare_is_a_script_problem(
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    standin = await make_realtime_standin(
        greeting=None,
        turns=[ScriptedTurn("Hello", tool_calls=[ToolCall("book_visit", {})])],
    )
    async with realtime(standin) as connection:
        await say(connection, audio.tone(400) + audio.silence(600))
        await events_until(connection, "response.done")

    (problem,) = standin.sessions[0].script_problems
    assert problem.startswith("scripted tool call 'book_visit' is not a tool of the session")


async def test_barge_in_cancels_the_response_and_truncate_cuts_the_transcript(
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    # The greeting holds after its first 100 ms chunk, so it is certainly in progress,
    # with exactly 100 ms sent, when the caller talks over it.
    standin = await make_realtime_standin(
        greeting="Thanks for calling Acme Plumbing, how can I help you tonight?",
        greeting_ms=3000,
    )
    standin.audio_hold_ms = 100
    async with realtime(standin) as connection:
        await connection.response.create()
        opening = await events_until(connection, "response.output_audio.delta")
        item_id = opening[-1].item_id
        await say(connection, audio.tone(200))
        barge_in = await events_until(connection, "response.done")
        await connection.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=60
        )
        truncated = await events_until(connection, "conversation.item.truncated")

    assert barge_in[0].type == "input_audio_buffer.speech_started"
    done = barge_in[-1].response
    assert done.status == "cancelled"
    assert done.status_details is not None
    assert done.status_details.reason == "turn_detected"
    item_done = of_type(barge_in, "response.output_item.done")[0].item
    assert item_done.status == "incomplete"
    assert (truncated[-1].item_id, truncated[-1].audio_end_ms) == (item_id, 60)
    log = standin.sessions[0]
    assert log.truncates[0]["audio_sent_ms"] == 100
    assert log.truncates[0]["accepted"] is True
    held = next(i for i in log.items if i["id"] == item_id)
    # 60 ms of a 3000 ms greeting: not one whole word was heard.
    assert held["content"][0]["transcript"] == ""
    assert log.violations == []


async def test_truncate_past_the_audio_sent_is_rejected(
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    standin = await make_realtime_standin(greeting="Hello there.", greeting_ms=500)
    async with realtime(standin) as connection:
        await connection.response.create()
        greeting = await events_until(connection, "response.done")
        item_id = of_type(greeting, "response.output_item.done")[0].item.id
        await connection.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=800, event_id="evt_truncate_1"
        )
        error = (await events_until(connection, "error"))[-1]

    assert error.error.type == "invalid_request_error"
    assert error.error.message == "Audio content of 500ms is already shorter than 800ms"
    assert error.error.event_id == "evt_truncate_1"
    log = standin.sessions[0]
    assert log.truncates[0]["audio_sent_ms"] == 500
    assert log.violations == [
        "conversation.item.truncate: Audio content of 500ms is already shorter than 800ms"
    ]


async def test_unknown_events_and_parameters_are_rejected(
    realtime_standin: RealtimeStandin,
) -> None:
    async with realtime(realtime_standin) as connection:
        await connection.send_raw(json.dumps({"type": "response.audio.delta", "event_id": "e1"}))
        unknown_event = (await events_until(connection, "error"))[-1]
        await connection.send_raw(
            json.dumps(
                {
                    "type": "session.update",
                    "event_id": "e2",
                    "session": {"type": "realtime", "input_audio_format": "g711_ulaw"},
                }
            )
        )
        unknown_parameter = (await events_until(connection, "error"))[-1]
        await connection.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "@@"}))
        bad_audio = (await events_until(connection, "error"))[-1]

    assert unknown_event.error.code == "invalid_value"
    assert unknown_event.error.param == "type"
    assert unknown_event.error.event_id == "e1"
    assert unknown_parameter.error.code == "unknown_parameter"
    assert unknown_parameter.error.message == "Unknown parameter: 'session.input_audio_format'."
    assert unknown_parameter.error.param == "session.input_audio_format"
    assert bad_audio.error.param == "audio"
    assert len(realtime_standin.sessions[0].violations) == 3


async def test_response_create_during_a_response_and_unknown_call_ids_are_rejected(
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    standin = await make_realtime_standin(greeting_ms=3000)
    standin.audio_hold_ms = 100  # the greeting is still in progress at the second create
    async with realtime(standin) as connection:
        await connection.response.create()
        await events_until(connection, "response.output_audio.delta")
        await connection.response.create()
        busy = (await events_until(connection, "error"))[-1]
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_nope", "output": "{}"}
        )
        unknown_call = (await events_until(connection, "error"))[-1]

    assert busy.error.code == "conversation_already_has_active_response"
    assert unknown_call.error.param == "item.call_id"
    assert len(standin.sessions[0].violations) == 2


@pytest.mark.parametrize(
    ("refuse", "api_key", "status"), [(True, "sk-standin", 503), (False, "sk-wrong-key", 401)]
)
async def test_refused_connections(
    realtime_standin: RealtimeStandin, refuse: bool, api_key: str, status: int
) -> None:
    realtime_standin.refuse_connections = refuse
    client = AsyncOpenAI(api_key=api_key, base_url=realtime_standin.base_url)
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with client.realtime.connect(model=MODEL):
            pass
    assert refused.value.response.status_code == status
    assert realtime_standin.sessions == []


async def test_drop_after_turns_cuts_the_connection_without_a_close_frame(
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    standin = await make_realtime_standin(
        greeting=None,
        turns=[
            ScriptedTurn("I need a plumber", reply="Sure."),
            ScriptedTurn("Tomorrow morning", reply="Noted."),
        ],
    )
    standin.drop_after_turns = 1
    async with realtime(standin) as connection:
        await say(connection, audio.tone(400) + audio.silence(600))
        await events_until(connection, "response.done")
        with pytest.raises(websockets.ConnectionClosedError) as dropped:
            await events_until(connection, "response.done")
    assert dropped.value.rcvd is None  # no close frame: the TCP connection just went away
    await standin.wait_until(lambda: standin.sessions[0].closed)

    async with realtime(standin) as connection:  # the app reconnects; the script carries on
        await say(connection, audio.tone(400) + audio.silence(600))
        events = await events_until(connection, "response.done")
    transcript = of_type(events, "conversation.item.input_audio_transcription.completed")
    assert transcript[0].transcript == "Tomorrow morning"
    assert [s.dropped for s in standin.sessions] == [True, False]


class Intake(pydantic.BaseModel):
    first_name: str | None
    need: str
    urgency: int


async def test_chat_completions_structured_output(realtime_standin: RealtimeStandin) -> None:
    realtime_standin.extraction = {"first_name": "Dana", "need": "Burst pipe", "urgency": 5}
    client = AsyncOpenAI(
        api_key=realtime_standin.api_key, base_url=realtime_standin.base_url, max_retries=0
    )
    completion = await client.chat.completions.parse(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": "Extract the intake."}],
        response_format=Intake,
    )

    assert completion.choices[0].message.parsed == Intake(
        first_name="Dana", need="Burst pipe", urgency=5
    )
    request = realtime_standin.extraction_requests[0]
    assert request["response_format"]["json_schema"]["strict"] is True
    assert realtime_standin.script_problems == []


async def test_chat_completions_errors(realtime_standin: RealtimeStandin) -> None:
    def client(api_key: str = realtime_standin.api_key) -> AsyncOpenAI:
        return AsyncOpenAI(api_key=api_key, base_url=realtime_standin.base_url, max_retries=0)

    async def parse(openai_client: AsyncOpenAI) -> object:
        return await openai_client.chat.completions.parse(
            model="gpt-4.1-mini",
            messages=[{"role": "user", "content": "Extract the intake."}],
            response_format=Intake,
        )

    with pytest.raises(openai.AuthenticationError):
        await parse(client("sk-wrong-key"))
    with pytest.raises(openai.InternalServerError):  # extraction=None: the model failed
        await parse(client())
    realtime_standin.extraction = {"need": "x", "urgency": 1, "first_name": None, "pets": 2}
    with pytest.raises(openai.BadRequestError):  # the schema has no 'pets'
        await parse(client())
    realtime_standin.extraction_fails = True
    with pytest.raises(openai.InternalServerError) as failed:
        await parse(client())
    assert failed.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }


async def test_manual_turns_without_server_vad(make_realtime_standin: MakeRealtimeStandin) -> None:
    standin = await make_realtime_standin(
        greeting=None, turns=[ScriptedTurn("Is anyone there?", reply="Yes, I am here.")]
    )
    # Only the fields present are updated: the transcription set by PCMU_SESSION stays on.
    manual = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    async with realtime(standin) as connection:
        await connection.session.update(session=manual)  # type: ignore[arg-type]
        await events_until(connection, "session.updated")
        await say(connection, audio.silence(40))
        await connection.input_audio_buffer.commit()
        too_short = (await events_until(connection, "error"))[-1]
        await connection.input_audio_buffer.clear()
        await events_until(connection, "input_audio_buffer.cleared")
        await say(connection, audio.tone(600) + audio.silence(600))
        await connection.input_audio_buffer.commit()
        committed = await events_until(
            connection, "conversation.item.input_audio_transcription.completed"
        )
        await connection.response.cancel()
        not_active = (await events_until(connection, "error"))[-1]
        await connection.response.create()
        reply = await events_until(connection, "response.done")
        user_item = of_type(committed, "input_audio_buffer.committed")[0].item_id
        await connection.conversation.item.delete(item_id=user_item)
        deleted = (await events_until(connection, "conversation.item.deleted"))[-1]

    assert too_short.error.code == "input_audio_buffer_commit_empty"
    assert of_type(committed, "input_audio_buffer.speech_started") == []
    assert of_type(committed, "response.created") == []  # no turn detection: no auto response
    assert committed[-1].transcript == "Is anyone there?"
    assert not_active.error.code == "response_cancel_not_active"
    assert of_type(reply, "response.output_audio_transcript.done")[0].transcript == (
        "Yes, I am here."
    )
    assert deleted.item_id == user_item
    log = standin.sessions[0]
    assert user_item not in [item["id"] for item in log.items]
    assert len(log.violations) == 2
