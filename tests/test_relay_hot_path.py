"""The relay's hot path does only what it must, and still does all of it.

- Twilio's base64 reaches the model as Twilio sent it, and the model's reaches Twilio as
  the model sent it (literal JSON, the sans-I/O cores);
- the transcript is saved only when it changed, in a thread, never older over newer;
- no database call runs on the event loop — during a Realtime call, and during a scripted
  intake call (the webhooks);
- the link to the model bypasses the SDK's per-send wrapper only when the SDK has nothing
  queued, is not reconnecting and was not closed;
- batched caller audio (``REALTIME_AUDIO_BATCH_FRAMES``) keeps barge-in, truncation and the
  transcript working end to end.

Performance itself is measured in ``benchmarks/load.py``, never asserted here.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError
from websockets.exceptions import ConnectionClosed

from agent.realtime_core import Conversation, PlayAudio, SessionConfig, caller_audio_message
from crm.store import ProgressSnapshot
from telephony import finalize
from telephony.bridge import BridgeContext, CallBridge
from telephony.media_streams import AudioReceived, MediaStreamProtocol
from telephony.progress import ProgressWriter
from telephony.realtime_link import RealtimeLink
from tests.conftest import BUSINESS_NUMBER, CALLER, ON_CALL_PHONE, RunningApp, StartApp, wait_for
from tests.standins.openai_realtime import RealtimeStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp
from tests.test_conversation_e2e import businesses_file, place_call, twilio_settings
from tests.test_e2e_call import JOHN_EXTRACTION, JOHN_TURNS, run_john_call
from tests.test_escalation import BURST_PIPE_SPEECH

SID = "MZ" + "1" * 32
CALL_SID = "CA" + "2" * 32
START = json.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "start": {"streamSid": SID, "callSid": CALL_SID, "customParameters": {}},
        "streamSid": SID,
    }
)

# -- base64 passed through (cores, literal JSON) ---------------------------------------------


def test_caller_audio_goes_to_the_model_as_twilio_sent_it() -> None:
    payload = base64.b64encode(bytes(range(160))).decode()
    frame = (
        '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2",'
        f'"timestamp":"20","payload":"{payload}"}},"streamSid":"{SID}"}}'
    )
    protocol = MediaStreamProtocol()
    protocol.receive(START)
    (event,) = protocol.receive(frame)
    assert event == AudioReceived(bytes(range(160)), 20)
    assert isinstance(event, AudioReceived) and event.base64 == payload
    message = caller_audio_message(event.base64)
    assert message == '{"type":"input_audio_buffer.append","audio":"' + payload + '"}'
    assert json.loads(message) == {"type": "input_audio_buffer.append", "audio": payload}


def test_invalid_base64_never_reaches_the_model() -> None:
    protocol = MediaStreamProtocol()
    protocol.receive(START)
    frame = json.dumps({"event": "media", "streamSid": SID, "media": {"payload": 'AA"}'}})
    (event,) = protocol.receive(frame)
    assert not isinstance(event, AudioReceived)


def test_model_audio_goes_to_twilio_as_the_model_sent_it() -> None:
    conversation = Conversation(SessionConfig(instructions="x"))
    delta = base64.b64encode(b"\x7f" * 160).decode()
    event = {"type": "response.output_audio.delta", "item_id": "item_a", "delta": delta}
    (play,) = conversation.server_event(event, 1.0)
    assert play == PlayAudio(b"\x7f" * 160, "item_a:20")
    assert isinstance(play, PlayAudio) and play.base64 == delta
    protocol = MediaStreamProtocol()
    protocol.receive(START)
    frame = protocol.media_base64(play.base64)
    assert (
        frame == '{"event":"media","streamSid":"' + SID + '","media":{"payload":"' + delta + '"}}'
    )
    assert frame == protocol.media(play.audio)


def test_revision_moves_only_when_the_transcript_or_details_change() -> None:
    conversation = Conversation(SessionConfig(instructions="x"))
    delta = base64.b64encode(b"\x7f" * 800).decode()
    start = conversation.revision
    conversation.server_event(
        {"type": "response.output_audio.delta", "item_id": "a", "delta": delta}, 1.0
    )
    conversation.mark_echoed("a:20")
    assert conversation.revision == start  # audio and marks: nothing to save
    conversation.server_event(
        {"type": "response.output_audio_transcript.delta", "item_id": "a", "delta": "Hello"}, 1.1
    )
    after_text = conversation.revision
    assert after_text > start
    conversation.server_event(
        {"type": "input_audio_buffer.speech_started", "item_id": "c1", "audio_start_ms": 900}, 1.2
    )
    after_barge_in = conversation.revision
    assert after_barge_in > after_text  # the agent's turn was cut: what was heard changed
    conversation.server_event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "c1",
            "transcript": "My sink leaks",
        },
        1.5,
    )
    assert conversation.revision > after_barge_in


# -- progress saves --------------------------------------------------------------------------


class RecordingStore:
    """Stands in for ``crm.store.Store`` in a bridge unit test: records every save."""

    def __init__(self) -> None:
        self.saves: list[tuple[str, int, bool]] = []
        self.loop_thread = threading.current_thread()

    def save_progress_many(self, snapshots: Sequence[ProgressSnapshot]) -> None:
        on_loop = threading.current_thread() is self.loop_thread
        self.saves.extend((s.call_sid, len(s.transcript), on_loop) for s in snapshots)


def recording_bridge(store: RecordingStore, *, interval: float = 2.0) -> CallBridge:
    """A bridge with a conversation and no sockets, saving to ``store``."""
    context = BridgeContext(
        store=store,  # type: ignore[arg-type]
        progress=ProgressWriter(store),
        connect_realtime=None,
        admit_stream=_refuse,
        instructions_for=lambda business: "",
        greeting_audio_for=lambda business: None,
        hang_up=None,
        escalate=_refuse,
        can_alert=False,
        transfer=None,
        finalize=_never,
        live_calls=set(),
        progress_interval=interval,
    )
    bridge = CallBridge(_never, _never, context)
    bridge.call_sid = CALL_SID
    bridge.conversation = Conversation(SessionConfig(instructions="x"))
    return bridge


def save_failures() -> float:
    return REGISTRY.get_sample_value("receptionist_progress_save_failures_total") or 0.0


CALLER_SAID = {
    "type": "conversation.item.input_audio_transcription.completed",
    "item_id": "c1",
    "transcript": "My sink leaks",
}


async def test_progress_is_saved_only_when_it_changed_and_off_the_event_loop() -> None:
    store = RecordingStore()
    bridge = recording_bridge(store)
    assert bridge.conversation is not None
    assert await bridge._save_progress()
    assert not await bridge._save_progress()
    assert len(store.saves) == 1  # nothing changed since the first save
    bridge.conversation.server_event(CALLER_SAID, 1.0)
    await asyncio.gather(bridge._save_progress(), bridge._save_progress())
    assert store.saves == [(CALL_SID, 0, False), (CALL_SID, 1, False)]


async def test_a_failed_routine_save_is_retried_and_the_call_goes_on() -> None:
    """The database fails the first routine save (locked, say): the periodic saver logs
    and counts it, keeps running, and the next tick writes the same transcript."""

    class FailingOnce(RecordingStore):
        def save_progress_many(self, snapshots: Sequence[ProgressSnapshot]) -> None:
            self.attempts = getattr(self, "attempts", 0) + 1
            if self.attempts == 1:
                raise OperationalError("UPDATE calls", {}, Exception("database is locked"))
            super().save_progress_many(snapshots)

    store = FailingOnce()
    bridge = recording_bridge(store, interval=0.001)
    assert bridge.conversation is not None
    bridge.conversation.server_event(CALLER_SAID, 1.0)
    failures = save_failures()
    saver = asyncio.create_task(bridge._save_progress_periodically())
    await wait_for(lambda: bool(store.saves) or saver.done())
    assert not saver.done()  # still saving: the failure did not end the call
    saver.cancel()
    assert store.attempts == 2
    assert store.saves == [(CALL_SID, 1, False)]
    assert save_failures() == failures + 1


async def _never(*args: object) -> None:
    raise AssertionError("not expected in this test")


def _refuse(*args: object) -> Any:
    raise AssertionError("not expected in this test")


# -- no database call on the event loop ------------------------------------------------------

STORE_METHODS = (
    "begin_call",
    "get_call",
    "set_mode",
    "save_progress",
    "save_progress_many",
    "save_intake",
    "close_unsummarized",
    "mark_ended_by_agent",
    "active_calls",
    "finalize",
    # the emergency path (telephony.escalation)
    "record_emergency",
    "unsent_alerts",
    "claim_alert",
    "alert_sent",
    "alert_failed",
    "claim_outbound",
    "claim_transfer",
)


def watch_functions(
    target: Any, names: Sequence[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str]]:
    """Wrap ``target``'s functions or methods: (names called, names called on the event
    loop thread)."""
    loop_thread = threading.current_thread()
    called: list[str] = []
    on_loop: list[str] = []
    for name in names:
        function: Callable[..., Any] = getattr(target, name)

        def wrapper(*args: Any, _name: str = name, _f: Any = function, **kwargs: Any) -> Any:
            called.append(_name)
            if threading.current_thread() is loop_thread:
                on_loop.append(_name)
            return _f(*args, **kwargs)

        monkeypatch.setattr(target, name, wrapper)
    return called, on_loop


# What a call's end costs in CPU (reading the caller's words: 10-16 ms for a 40-turn call on
# the benchmark machine) runs in threads, so it never stops the other live calls' audio.
CPU_AT_CALL_END = ("build_summary", "screen_call")


async def test_a_realtime_call_makes_no_database_call_on_the_event_loop(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ai: RealtimeStandin = await make_realtime_standin(turns=JOHN_TURNS, extraction=JOHN_EXTRACTION)
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    called, on_loop = watch_functions(app.services.store, STORE_METHODS, monkeypatch)
    built, built_on_loop = watch_functions(finalize, CPU_AT_CALL_END, monkeypatch)
    result = await run_john_call(app, twilio_standin)
    await wait_for(lambda: app.services.store.get_summary(result.call_sid) is not None)
    assert {"begin_call", "get_call", "save_progress_many", "finalize"} <= set(called)
    assert on_loop == []
    assert set(built) == set(CPU_AT_CALL_END)
    assert built_on_loop == []


async def test_scripted_intake_webhooks_make_no_database_call_on_the_event_loop(
    start_app: StartApp, twilio_standin: TwilioStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    app: RunningApp = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
    )
    called, on_loop = watch_functions(app.services.store, STORE_METHODS, monkeypatch)
    built, built_on_loop = watch_functions(finalize, CPU_AT_CALL_END, monkeypatch)
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=app.settings.public_base_url,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=CallerScript(
            steps=[HangUp()],
            speech=["This is Dana Reyes", "The water heater is leaking", "this number", "today"],
        ),
    )
    await wait_for(lambda: app.services.store.get_summary(result.call_sid) is not None)
    assert {"begin_call", "save_intake", "save_progress", "get_call", "finalize"} <= set(called)
    assert on_loop == []
    assert set(built) == set(CPU_AT_CALL_END)
    assert built_on_loop == []


async def test_an_emergency_in_the_intake_makes_no_database_call_on_the_event_loop(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst pipe in the scripted intake with warm transfer on: the alert is recorded,
    claimed, sent and marked, the transfer claimed within the emergency budget — all of it
    in worker threads — and the on-call phone is texted once and the caller transferred."""
    app: RunningApp = await start_app(
        businesses_file=businesses_file(tmp_path, "warm_transfer = true\n"),
        **twilio_settings(twilio_standin),
    )
    called, on_loop = watch_functions(app.services.store, STORE_METHODS, monkeypatch)
    result = await place_call(twilio_standin, app, CallerScript(speech=list(BURST_PIPE_SPEECH)))
    assert [m["To"] for m in twilio_standin.messages] == [ON_CALL_PHONE]
    assert result.dialed == [ON_CALL_PHONE]
    expected = {"record_emergency", "claim_alert", "alert_sent", "claim_outbound"}
    assert expected | {"claim_transfer"} <= set(called)
    assert on_loop == []


# -- the link to the model -------------------------------------------------------------------


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bool]] = []

    async def send(self, data: bytes, text: bool = False) -> None:
        self.sent.append((data, text))

    async def recv(self, decode: bool = True) -> bytes:
        return b'{"type":"x"}'


class FakeSdkConnection:
    """The shape of openai's AsyncRealtimeConnection that RealtimeLink relies on."""

    def __init__(self) -> None:
        self._connection = FakeSocket()
        self._send_queue: list[str] = []
        self._is_reconnecting = False
        self._intentionally_closed = False
        self.via_sdk: list[bytes | str] = []

    async def send_raw(self, data: bytes | str) -> None:
        self.via_sdk.append(data)

    async def recv_bytes(self) -> bytes:
        return b'{"type":"via-sdk"}'

    async def close(self, *, code: int = 1000, reason: str = "") -> None:
        return None


async def test_the_link_writes_directly_only_when_the_sdk_has_nothing_to_guarantee() -> None:
    sdk = FakeSdkConnection()
    link = RealtimeLink(sdk)
    await link.send_raw('{"type":"a"}')
    assert sdk._connection.sent == [(b'{"type":"a"}', True)]  # a text frame, not binary
    sdk._send_queue.append("queued earlier")
    await link.send_raw(b'{"type":"b"}')
    sdk._send_queue.clear()
    sdk._is_reconnecting = True
    await link.send_raw('{"type":"c"}')
    assert await link.recv_bytes() == b'{"type":"via-sdk"}'
    sdk._is_reconnecting = False
    sdk._intentionally_closed = True
    await link.send_raw('{"type":"d"}')
    assert sdk.via_sdk == ['{"type":"b"}', '{"type":"c"}', '{"type":"d"}']
    assert len(sdk._connection.sent) == 1


class CountingQueue(list[str]):
    """A send queue that counts how often the link asks whether it holds anything."""

    asked = 0

    def __bool__(self) -> bool:
        self.asked += 1
        return len(self) > 0


async def test_without_a_reconnect_handler_the_link_asks_the_sdk_queue_only_once() -> None:
    """The SDK queues only while reconnecting or behind queued messages; with no reconnect
    handler it never reconnects, so an empty queue at the start stays empty."""
    sdk = FakeSdkConnection()
    queue = sdk._send_queue = CountingQueue()
    sdk._on_reconnecting = None  # type: ignore[attr-defined]
    link = RealtimeLink(sdk)
    for n in range(5):
        await link.send_raw(f'{{"type":"{n}"}}')
    assert queue.asked == 1 and len(sdk._connection.sent) == 5 and sdk.via_sdk == []
    sdk._intentionally_closed = True  # still checked per message
    await link.send_raw('{"type":"after close"}')
    assert sdk.via_sdk == ['{"type":"after close"}']

    reconnecting = FakeSdkConnection()
    queue = reconnecting._send_queue = CountingQueue()
    reconnecting._on_reconnecting = lambda event: None  # type: ignore[attr-defined]
    link = RealtimeLink(reconnecting)
    for n in range(5):
        await link.send_raw(f'{{"type":"{n}"}}')
    assert queue.asked == 5 and len(reconnecting._connection.sent) == 5  # asked per message


async def test_the_link_bypasses_send_raw_on_the_real_sdk_connection(
    make_realtime_standin: Any,
) -> None:
    """Against the installed openai SDK (not a fake): the link recognises its connection, so
    audio skips ``send_raw``, and the stand-in receives it as a text frame all the same."""
    from openai import AsyncOpenAI

    ai: RealtimeStandin = await make_realtime_standin()
    client = AsyncOpenAI(api_key=ai.api_key, base_url=ai.base_url, max_retries=0)
    connection = await client.realtime.connect(model="gpt-realtime").enter()
    through_sdk: list[bytes | str] = []
    sdk_send_raw = connection.send_raw

    async def counting_send_raw(data: bytes | str) -> None:
        through_sdk.append(data)
        await sdk_send_raw(data)

    connection.send_raw = counting_send_raw  # type: ignore[method-assign]
    socket: Any = connection._connection
    through_websockets: list[bytes | str] = []
    websockets_send = socket.send

    async def counting_send(message: bytes | str, text: bool | None = None) -> None:
        through_websockets.append(message)
        await websockets_send(message, text=text)

    socket.send = counting_send
    framed_by_websockets: list[bytes] = []
    websockets_send_text = socket.protocol.send_text

    def counting_send_text(data: bytes, fin: bool = True) -> None:
        framed_by_websockets.append(data)
        websockets_send_text(data, fin)

    socket.protocol.send_text = counting_send_text
    link = RealtimeLink(connection)
    try:
        frames = [bytes([n]) * 160 for n in range(40)]  # each masked with a key of its own
        for audio in frames:
            await link.send_raw(caller_audio_message(base64.b64encode(audio).decode()))
        await wait_for(lambda: bool(ai.sessions) and len(ai.sessions[0].client_events) >= 40)
        events = ai.sessions[0].client_events
        assert [base64.b64decode(e["audio"]) for e in events] == frames  # masked correctly
        assert through_sdk == []
        # Framed and written by the link itself, not by websockets' send: the installed
        # websockets still has the parts the link reads (a rename would turn this off).
        assert link.writes_frames and through_websockets == [] and framed_by_websockets == []
        await link.close()
        with pytest.raises(ConnectionClosed):  # closed: the SDK's own path, and its error
            await link.send_raw('{"type":"response.create"}')
        assert through_sdk == ['{"type":"response.create"}']
    finally:
        await client.close()


async def test_the_link_uses_only_public_methods_on_an_unknown_sdk() -> None:
    class PublicOnly:
        def __init__(self) -> None:
            self.sent: list[bytes | str] = []

        async def send_raw(self, data: bytes | str) -> None:
            self.sent.append(data)

        async def recv_bytes(self) -> bytes:
            return b"{}"

        async def close(self, *, code: int = 1000, reason: str = "") -> None:
            return None

    sdk = PublicOnly()
    link = RealtimeLink(sdk)
    await link.send_raw(b'{"type":"a"}')
    assert sdk.sent == ['{"type":"a"}']
    assert await link.recv_bytes() == b"{}"


# -- batched caller audio --------------------------------------------------------------------


async def test_batched_caller_audio_keeps_barge_in_and_the_transcript(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin: Any
) -> None:
    ai: RealtimeStandin = await make_realtime_standin(turns=JOHN_TURNS, extraction=JOHN_EXTRACTION)
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
        realtime_audio_batch_frames=2,
    )
    result = await run_john_call(app, twilio_standin)
    assert result.cleared_audio_ms > 0 and result.played_after_clear == []
    session = ai.sessions[0]
    assert session.violations == []
    appends = [e for e in session.client_events if e.get("type") == "input_audio_buffer.append"]
    assert appends and {len(base64.b64decode(e["audio"])) for e in appends} == {320}
    assert len(session.truncates) == 1
    await wait_for(lambda: app.services.store.get_summary(result.call_sid) is not None)
    summary = app.services.store.get_summary(result.call_sid)
    assert summary is not None and (summary.first_name, summary.last_name) == ("John", "Smith")
    assert any(t.interrupted for t in summary.transcript if t.speaker == "agent")


# -- marks every 100 ms of model audio --------------------------------------------------------


async def test_small_model_deltas_are_marked_every_100_ms_and_at_the_end_of_each_answer(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin: Any
) -> None:
    """The model sends 20 ms deltas: one mark per 100 ms of audio goes to Twilio, plus one
    after each answer's last audio (``response.output_audio.done``), so the caller's
    barge-in still truncates to a mark Twilio echoed and the last answer is known played."""
    turns = [dataclasses.replace(turn) for turn in JOHN_TURNS]
    turns[1].reply_ms = 1530  # ends between two marks: only the end-of-answer mark covers it
    ai: RealtimeStandin = await make_realtime_standin(
        turns=turns, extraction=JOHN_EXTRACTION, chunk_ms=20
    )
    twilio_standin.agent_busy = ai.responding
    app = await start_app(
        openai_api_key=ai.api_key, openai_base_url=ai.base_url, **twilio_settings(twilio_standin)
    )
    result = await run_john_call(app, twilio_standin)
    assert result.script_timeouts == []
    assert result.cleared_audio_ms > 0 and result.played_after_clear == []
    session = ai.sessions[0]
    assert session.violations == []

    def echoed(item_id: str) -> list[int]:
        return [
            int(name.rpartition(":")[2])
            for name in result.marks_echoed
            if name.rpartition(":")[0] == item_id
        ]

    (truncate,) = session.truncates
    assert truncate["audio_end_ms"] in set(echoed(truncate["item_id"])) | {0}
    assert truncate["audio_end_ms"] % 100 == 0
    last_answer = result.marks_echoed[-1].rpartition(":")[0]
    assert echoed(last_answer) == [*range(100, 1501, 100), 1530]
    # Every 20 ms delta reached the caller; a mark followed only every fifth, and the end.
    media = [m for m in result.received if m.get("event") == "media"]
    marks = [m for m in result.received if m.get("event") == "mark"]
    assert len(marks) * 4 < len(media)
