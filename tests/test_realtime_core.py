"""The Realtime conversation core replayed with literal Realtime events (no sockets)."""

from __future__ import annotations

import base64
import json

from agent.realtime_core import (
    ClearPlayback,
    Conversation,
    HangUp,
    MarkPlayback,
    PlayAudio,
    RunTool,
    SendToModel,
    SessionConfig,
    ToolRefused,
)
from agent.tools import FlagEmergency


def delta(item: str, ms: int) -> dict[str, object]:
    audio = base64.b64encode(b"\x7f" * (ms * 8)).decode()
    return {
        "type": "response.output_audio.delta",
        "event_id": "ev",
        "response_id": "resp_1",
        "item_id": item,
        "output_index": 0,
        "content_index": 0,
        "delta": audio,
    }


def conversation() -> Conversation:
    return Conversation(SessionConfig(instructions="Be brief.", greeting="Hello!"))


def test_start_configures_pcmu_vad_transcription_and_greets() -> None:
    actions = conversation().start()
    update = actions[0]
    assert isinstance(update, SendToModel)
    session = update.event["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["input"]["transcription"]["model"]
    assert isinstance(actions[1], SendToModel)
    assert actions[1].event["type"] == "response.create"


def test_every_chunk_is_followed_by_a_mark_with_cumulative_ms() -> None:
    conv = conversation()
    first = conv.server_event(delta("item_a", 100), 0.0)
    second = conv.server_event(delta("item_a", 60), 0.1)
    assert first == [PlayAudio(b"\x7f" * 800, "item_a:100")]
    assert second == [PlayAudio(b"\x7f" * 480, "item_a:160")]


def audio_done(item: str) -> dict[str, object]:
    return {
        "type": "response.output_audio.done",
        "event_id": "ev",
        "response_id": "resp_1",
        "item_id": item,
        "output_index": 0,
        "content_index": 0,
    }


def test_small_deltas_in_a_response_are_marked_every_100_ms_and_at_the_end() -> None:
    conv = conversation()
    conv.server_event({"type": "response.created", "response": {"id": "resp_1"}}, 0)
    marks = [a.mark for i in range(12) for a in conv.server_event(delta("item_a", 20), i / 50)]
    assert [m for m in marks if m] == ["item_a:100", "item_a:200"]
    assert conv.server_event(audio_done("item_a"), 0.3) == [MarkPlayback("item_a:240")]
    # Nothing left unmarked: response.done adds no second mark.
    assert conv.server_event({"type": "response.done"}, 0.4) == []
    conv.mark_echoed("item_a:200")
    assert conv.audio_still_playing()
    conv.mark_echoed("item_a:240")
    assert not conv.audio_still_playing()


def test_response_done_marks_audio_whose_audio_done_never_came() -> None:
    conv = conversation()
    conv.server_event({"type": "response.created"}, 0)
    conv.server_event(delta("item_a", 40), 0)
    conv.server_event(delta("item_b", 20), 0)
    assert conv.server_event({"type": "response.done"}, 0.1) == [
        MarkPlayback("item_a:40"),
        MarkPlayback("item_b:20"),
    ]


def test_a_delta_after_the_response_ended_is_marked_at_once() -> None:
    conv = conversation()
    conv.server_event({"type": "response.created"}, 0)
    conv.server_event(delta("item_a", 100), 0)
    conv.server_event({"type": "response.done"}, 0.1)
    assert conv.server_event(delta("item_a", 20), 0.2) == [PlayAudio(b"\x7f" * 160, "item_a:120")]


def test_barge_in_between_marks_truncates_to_the_last_mark_heard() -> None:
    conv = conversation()
    conv.server_event({"type": "response.created"}, 0)
    for i in range(7):  # 140 ms sent, marked at 100 only
        conv.server_event(delta("item_a", 20), i / 50)
    conv.mark_echoed("item_a:100")
    actions = conv.server_event(
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 900, "item_id": "u"}, 1
    )
    assert actions[0] == ClearPlayback()
    truncate = actions[1]
    assert isinstance(truncate, SendToModel)
    assert truncate.event["audio_end_ms"] == 100
    # The cancelled item's end is never marked (its audio was dropped by the clear).
    assert conv.server_event(audio_done("item_a"), 1.1) == []
    assert not conv.audio_still_playing()


def test_barge_in_clears_and_truncates_to_what_was_heard() -> None:
    conv = conversation()
    for _ in range(5):
        conv.server_event(delta("item_a", 100), 0.0)
    assert conv.mark_echoed("item_a:100") == []
    assert conv.mark_echoed("item_a:200") == []
    actions = conv.server_event(
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 2100, "item_id": "user_1"},
        2.1,
    )
    assert actions == [
        ClearPlayback(),
        SendToModel(
            {
                "type": "conversation.item.truncate",
                "item_id": "item_a",
                "content_index": 0,
                "audio_end_ms": 200,
            }
        ),
    ]
    # Twilio echoes the discarded marks after a clear: they are not "heard" audio.
    conv.mark_echoed("item_a:300")
    conv.mark_echoed("item_a:500")
    # Late deltas of the cancelled response are not played.
    assert conv.server_event(delta("item_a", 100), 2.2) == []
    conv.server_event(
        {
            "type": "response.output_audio_transcript.done",
            "item_id": "item_a",
            "transcript": "one two three four five six seven eight nine ten",
        },
        2.3,
    )
    conv.server_event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "user_1",
            "content_index": 0,
            "transcript": "Sorry to interrupt",
        },
        2.5,
    )
    turns = conv.transcript()
    assert [(t.speaker, t.text, t.interrupted) for t in turns] == [
        ("agent", "one two three four", True),
        ("caller", "Sorry to interrupt", False),
    ]
    assert turns[1].start == 2.1


def test_no_truncate_when_everything_was_heard() -> None:
    conv = conversation()
    conv.server_event(delta("item_a", 100), 0.0)
    conv.mark_echoed("item_a:100")
    assert (
        conv.server_event(
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 900, "item_id": "u"}, 1
        )
        == []
    )


def test_truncate_never_exceeds_audio_sent() -> None:
    conv = conversation()
    conv.server_event(delta("item_a", 100), 0.0)
    conv.mark_echoed("item_a:999999")  # a forged or stale mark cannot push past what was sent
    conv.server_event(delta("item_a", 100), 0.1)
    actions = conv.server_event(
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u"}, 1
    )
    truncate = actions[1]
    assert isinstance(truncate, SendToModel)
    assert truncate.event["audio_end_ms"] == 100


def test_tool_call_is_answered_then_a_response_is_created_after_the_current_one() -> None:
    conv = conversation()
    conv.server_event({"type": "response.created", "response": {"id": "resp_1"}}, 0)
    args = {"reason": "basement flooding", "service_address": "12 Elm St"}
    actions = conv.server_event(
        {
            "type": "response.function_call_arguments.done",
            "call_id": "call_1",
            "name": "flag_emergency",
            "arguments": json.dumps(args),
            "item_id": "fc_1",
            "output_index": 0,
            "response_id": "resp_1",
            "event_id": "e",
        },
        1.0,
    )
    assert isinstance(actions[0], RunTool)
    assert isinstance(actions[0].request, FlagEmergency)
    output = actions[1]
    assert isinstance(output, SendToModel)
    assert output.event["item"]["type"] == "function_call_output"
    assert output.event["item"]["call_id"] == "call_1"
    assert len(actions) == 2  # no response.create while a response is active
    assert conv.server_event({"type": "response.done", "response": {"id": "resp_1"}}, 1.1) == [
        SendToModel({"type": "response.create"})
    ]
    assert conv.details.is_emergency is True
    assert conv.details.urgency == 5
    assert conv.details.service_address == "12 Elm St"


def test_bad_tool_arguments_get_an_error_output_not_a_crash() -> None:
    conv = conversation()
    actions = conv.server_event(
        {
            "type": "response.function_call_arguments.done",
            "call_id": "c",
            "name": "drop_tables",
            "arguments": "{",
        },
        1.0,
    )
    (refused, output, create) = actions
    assert refused == ToolRefused("c", "drop_tables", refused.reason)
    assert "drop_tables" in refused.reason
    assert isinstance(output, SendToModel)
    assert json.loads(output.event["item"]["output"])["ok"] is False
    assert create == SendToModel({"type": "response.create"})


def test_end_call_hangs_up_only_after_the_goodbye_has_played() -> None:
    conv = conversation()
    conv.server_event({"type": "response.created"}, 0)
    conv.server_event(
        {
            "type": "response.function_call_arguments.done",
            "call_id": "c",
            "name": "end_call",
            "arguments": '{"reason": "done"}',
        },
        0,
    )
    conv.server_event({"type": "response.done"}, 0)
    conv.server_event({"type": "response.created"}, 0)
    conv.server_event(delta("bye", 200), 0)
    assert conv.server_event({"type": "response.done"}, 0) == []
    assert conv.mark_echoed("bye:200") == [HangUp("end_call")]
