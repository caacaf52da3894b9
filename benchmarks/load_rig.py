"""The load rig: many simulated Twilio calls and a lean OpenAI Realtime stand-in, one loop.

Everything here runs in the generator process, pinned to the core the server is not on. It
is built to stay cheap per frame so that one core drives hundreds of calls:

- one 20 ms ticker for all calls (not a task per call): each tick sends every call's next
  caller frame, echoes the marks whose audio has "played", and sends every active model
  response's next audio delta;
- caller frames are pre-built per call (silence and speech, each carrying the call's tag in
  its first three μ-law bytes); only the sequence number, chunk and timestamp are spliced in;
- the Realtime stand-in answers on a raw ``asyncio.Protocol``: its VAD is energy-based like
  the tests' stand-in, with the RMS of each distinct frame memoized, and its audio deltas are
  pre-built (256 tagged 20 ms frames, so the caller side can tell which delta it hears).

Measured, for the frames of the measurement window only: caller→model and model→caller
added latency per frame (send time in this process to receive time in this process, same
monotonic clock), barge-in reaction (the stand-in's ``speech_started`` → Twilio ``clear``),
first greeting audio, and the ticker's own lateness — the generator reports when *it* fell
behind, so a saturated generator never passes for a slow server.
"""

from __future__ import annotations

import array
import asyncio
import audioop  # noqa: F401 - imported for its C RMS; deprecated in 3.11, still present
import base64
import collections
import contextlib
import math
import os
import random
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from twilio.request_validator import RequestValidator

from agent.audio import pcm16_to_mulaw
from benchmarks.load_wire import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    accept_key,
    client_frame,
    header,
    server_frame,
    split_head,
)
from tests.standins.openai_chat import answer_chat_completion

FRAME_S = 0.020
FRAME_BYTES = 160
VAD_LEVEL = 2000.0  # the tests' stand-in: threshold 0.5 x 4000 linear RMS
VAD_SILENCE_FRAMES = 25  # 500 ms of silence ends an utterance
REPLY_FRAMES = 120  # 2.4 s of agent audio per reply
BURST_FRAMES = 10  # sent at once when a reply starts (the model runs ahead), then real time
LATE_S = 0.020  # a frame delayed by more than one frame period is late

# The caller's voice, in 20 ms frames, repeated with a random phase per call: listen while
# the greeting plays, speak, let the agent answer, barge in 1 s into the answer, listen.
CYCLE = [(False, 150), (True, 60), (False, 75), (True, 40), (False, 125)]
SCRIPT = bytes(b for speech, frames in CYCLE for b in [speech] * frames)


def tone(samples: int, frequency: float, amplitude: int = 8000, rate: int = 8000) -> bytes:
    pcm = (int(amplitude * math.sin(2 * math.pi * frequency * i / rate)) for i in range(samples))
    return pcm16_to_mulaw(array.array("h", pcm))


SPEECH = tone(FRAME_BYTES, 440.0)
AGENT = tone(FRAME_BYTES, 330.0, 6000)


def call_tag(index: int) -> bytes:
    """Three near-silent μ-law bytes (exponent 0) that identify a call: 15 bits."""
    return bytes(0x70 | (index >> s & 0x0F) | ((index >> (s + 4) & 1) << 7) for s in (0, 5, 10))


def rms(b64: str) -> float:
    import audioop as _a

    data = base64.b64decode(b64)
    return float(_a.rms(_a.ulaw2lin(data, 2), 2)) if data else 0.0


def percentile(values: list[float] | array.array[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


@dataclass
class Stats:
    """What the rig measures during the window (seconds; reported as ms)."""

    c2m: array.array[float] = field(default_factory=lambda: array.array("d"))
    m2c: array.array[float] = field(default_factory=lambda: array.array("d"))
    barge: array.array[float] = field(default_factory=lambda: array.array("d"))
    first_audio: array.array[float] = field(default_factory=lambda: array.array("d"))
    crm: array.array[float] = field(default_factory=lambda: array.array("d"))
    tick_late: array.array[float] = field(default_factory=lambda: array.array("d"))
    tick_work: array.array[float] = field(default_factory=lambda: array.array("d"))
    barge_missed: int = 0
    c2m_lost: int = 0
    model_errors: int = 0
    calls_failed: int = 0
    unknown_client_events: collections.Counter[str] = field(default_factory=collections.Counter)


# ---------------------------------------------------------------------------- calls


@dataclass(eq=False)
class Call:
    index: int
    call_sid: str
    caller: str
    phase: int
    tag: str  # the first four base64 characters of this call's frames
    frame_prefix: bytes = b""
    frame_suffix: tuple[bytes, bytes] = (b"", b"")
    conn: CallerConnection | None = None
    ticks: int = 0
    seq: int = 2
    sent: collections.deque[float] = field(default_factory=collections.deque)
    delta_sent: dict[str, float] = field(default_factory=dict)
    play_end: float = 0.0
    marks: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    barge_at: float | None = None
    started_at: float | None = None
    first_audio: float | None = None
    hung_up_at: float | None = None
    stream_sid: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class CallerConnection(asyncio.Protocol):
    """Twilio's side of one Media Stream."""

    def __init__(self, rig: Rig, call: Call, request: bytes, start_frames: list[bytes]):
        self.rig = rig
        self.call = call
        self.request = request
        self.start_frames = start_frames
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.open = False
        self.reader = FrameReader()
        self.upgraded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.upgraded.done():
            self.upgraded.set_result(False)
        self.call.done.set()

    def data_received(self, data: bytes) -> None:
        if not self.open:
            parts = split_head(self.head + data)
            if parts is None:
                self.head += data
                return
            head, data = parts
            if not head.startswith(b"HTTP/1.1 101"):
                if not self.upgraded.done():
                    self.upgraded.set_result(False)
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
            assert self.transport is not None
            self.transport.write(b"".join(self.start_frames))
            self.call.started_at = time.monotonic()
            if not self.upgraded.done():
                self.upgraded.set_result(True)
            if not data:
                return
        now = time.monotonic()
        for opcode, payload in self.reader.feed(data):
            if opcode == TEXT:
                self._on_message(payload, now)
            elif opcode == PING and self.transport is not None:
                self.transport.write(client_frame(payload, PONG))
            elif opcode == CLOSE and self.transport is not None:
                with contextlib.suppress(Exception):
                    self.transport.write(client_frame(payload[:2], CLOSE))
                self.transport.close()
                self.open = False

    def _on_message(self, payload: bytes, now: float) -> None:
        message = orjson.loads(payload)
        kind = message.get("event")
        call = self.call
        rig = self.rig
        if kind == "media":
            audio: str = message["media"]["payload"]
            sent = call.delta_sent.pop(audio[:4], None)
            if sent is not None and rig.measuring:
                rig.stats.m2c.append(now - sent)
            if call.first_audio is None and call.started_at is not None:
                call.first_audio = now - call.started_at
                if rig.measuring:
                    rig.stats.first_audio.append(call.first_audio)
            frames = (len(audio) * 3 // 4) / FRAME_BYTES
            call.play_end = max(call.play_end, now) + frames * FRAME_S
        elif kind == "mark":
            name = orjson.dumps(message["mark"]["name"])
            call.marks.append((call.play_end, name))
        elif kind == "clear":
            if call.barge_at is not None:
                if rig.measuring:
                    rig.stats.barge.append(now - call.barge_at)
                call.barge_at = None
            call.play_end = now
            call.delta_sent.clear()
            while call.marks:
                self.echo_mark(call.marks.popleft()[1])

    def echo_mark(self, name: bytes) -> None:
        call = self.call
        call.seq += 1
        body = b'{"event":"mark","sequenceNumber":"%d","streamSid":"%s","mark":{"name":%s}}' % (
            call.seq,
            call.stream_sid.encode(),
            name,
        )
        if self.transport is not None and self.open:
            self.transport.write(client_frame(body))

    def tick(self, now: float) -> None:
        call = self.call
        if not self.open or self.transport is None:
            return
        marks = call.marks
        while marks and marks[0][0] <= now:
            self.echo_mark(marks.popleft()[1])
        tick = call.ticks
        call.ticks = tick + 1
        call.seq += 1
        speech = SCRIPT[(call.phase + tick) % len(SCRIPT)]
        body = b"%s%d%s%d%s%d%s" % (
            b'{"event":"media","sequenceNumber":"',
            call.seq,
            b'","media":{"track":"inbound","chunk":"',
            tick + 1,
            b'","timestamp":"',
            tick * 20,
            call.frame_suffix[speech],
        )
        self.transport.write(client_frame(body))
        call.sent.append(now)

    def hang_up(self) -> None:
        call = self.call
        if self.transport is None or not self.open:
            return
        call.seq += 1
        stop = orjson.dumps(
            {
                "event": "stop",
                "sequenceNumber": str(call.seq),
                "streamSid": call.stream_sid,
                "stop": {"accountSid": self.rig.account_sid, "callSid": call.call_sid},
            }
        )
        self.transport.write(client_frame(stop) + client_frame(b"\x03\xe8", CLOSE))
        call.hung_up_at = time.monotonic()


# ------------------------------------------------------------------ Realtime stand-in


@dataclass(eq=False)
class Response:
    response_id: str
    item_id: str
    frames_left: int
    prefix: bytes
    started: bool = False


class ModelConnection(asyncio.Protocol):
    """One connection to the lean Realtime stand-in (HTTP or websocket)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.websocket = False
        self.reader = FrameReader()
        self.call: Call | None = None
        self.in_speech = False
        self.silent = 0
        self.position_ms = 0
        self.utterance = 0
        self.response: Response | None = None
        self.responses = 0
        self.events = 0

    # -- HTTP ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.rig.model_sessions.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.websocket:
            self._frames(data)
            return
        self.buffer += data
        while not self.websocket:
            parts = split_head(self.buffer)
            if parts is None:
                return
            head, rest = parts
            if header(head, b"upgrade") is not None:
                self.buffer = b""
                self._upgrade(head)
                if rest:
                    self._frames(rest)
                return
            length = int(header(head, b"content-length") or 0)
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            self._http(head, body)

    def _reply(self, status: str, body: bytes, content_type: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status.encode(), content_type, len(body), body)
        )

    def _http(self, head: bytes, body: bytes) -> None:
        path = head.split(b" ", 2)[1]
        if header(head, b"authorization") != b"Bearer " + self.rig.api_key.encode():
            self._reply("401 Unauthorized", b'{"error":{"message":"bad key"}}', b"application/json")
        elif path.startswith(b"/v1/audio/speech"):
            self._reply("200 OK", self.rig.greeting_pcm, b"application/octet-stream")
        elif path.startswith(b"/v1/chat/completions"):
            status, payload = answer_chat_completion(orjson.loads(body), self.rig.extraction)
            reason = "200 OK" if status == 200 else f"{status} Error"
            self._reply(reason, orjson.dumps(payload), b"application/json")
        else:
            self._reply("404 Not Found", b'{"error":{"message":"not found"}}', b"application/json")

    def _upgrade(self, head: bytes) -> None:
        assert self.transport is not None
        if header(head, b"authorization") != b"Bearer " + self.rig.api_key.encode():
            self._reply("401 Unauthorized", b'{"error":{"message":"bad key"}}', b"application/json")
            self.transport.close()
            return
        key = header(head, b"sec-websocket-key") or b""
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )
        self.websocket = True
        self.rig.model_sessions.add(self)
        self.send(
            {
                "type": "session.created",
                "event_id": "event_0",
                "session": {"type": "realtime", "object": "realtime.session", "id": "sess_1"},
            }
        )

    # -- websocket ----------------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        if self.transport is not None:
            self.transport.write(server_frame(orjson.dumps(event)))

    def _frames(self, data: bytes) -> None:
        now = time.monotonic()
        for opcode, payload in self.reader.feed(data):
            if opcode == TEXT:
                self._event(payload, now)
            elif opcode == PING and self.transport is not None:
                self.transport.write(server_frame(payload, PONG))
            elif opcode == CLOSE and self.transport is not None:
                with contextlib.suppress(Exception):
                    self.transport.write(server_frame(payload[:2], CLOSE))
                self.transport.close()

    def _event(self, payload: bytes, now: float) -> None:
        event = orjson.loads(payload)
        kind = event.get("type")
        self.events += 1
        if kind == "input_audio_buffer.append":
            self._audio(event["audio"], now)
        elif kind == "session.update":
            self.send(
                {"type": "session.updated", "event_id": "event_1", "session": event["session"]}
            )
        elif kind == "conversation.item.truncate":
            self.send(
                {
                    "type": "conversation.item.truncated",
                    "event_id": "event_t",
                    "item_id": event["item_id"],
                    "content_index": 0,
                    "audio_end_ms": event["audio_end_ms"],
                }
            )
        elif kind == "conversation.item.create":
            self.send(
                {"type": "conversation.item.added", "event_id": "event_a", "item": event["item"]}
            )
        elif kind == "response.create":
            if self.response is not None:
                self.send(
                    {
                        "type": "error",
                        "event_id": "event_e",
                        "error": {
                            "type": "invalid_request_error",
                            "code": "conversation_already_has_active_response",
                            "message": "Conversation already has an active response.",
                        },
                    }
                )
            else:
                self._respond()
        else:
            self.rig.stats.unknown_client_events[str(kind)] += 1

    def _audio(self, audio: str, now: float) -> None:
        rig = self.rig
        call = self.call
        if call is None:
            call = self.call = rig.calls_by_tag.get(audio[:4])
        frames = max(1, (len(audio) * 3 // 4) // FRAME_BYTES)
        if call is not None:
            sent = call.sent
            for _ in range(frames):
                if not sent:
                    rig.stats.c2m_lost += 1
                    break
                at = sent.popleft()
                if rig.measuring:
                    rig.stats.c2m.append(now - at)
        loud = rig.loudness.get(audio)
        if loud is None:
            loud = rig.loudness[audio] = rms(audio) >= VAD_LEVEL
        self.position_ms += frames * 20
        if loud:
            self.silent = 0
            if not self.in_speech:
                self._speech_started(now)
        elif self.in_speech:
            self.silent += frames
            if self.silent >= VAD_SILENCE_FRAMES:
                self._speech_stopped()

    def _speech_started(self, now: float) -> None:
        self.in_speech = True
        self.utterance += 1
        self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "event_id": "event_s",
                "audio_start_ms": max(0, self.position_ms - 300),
                "item_id": f"item_u{self.utterance}",
            }
        )
        call = self.call
        if call is not None and call.play_end > now + 0.06:
            call.barge_at = time.monotonic()  # a clear is due: the caller has audio queued
            self.rig.barge_expected.append(call)
        if self.response is not None:
            response, self.response = self.response, None
            self.send(  # sent for a cancelled response too (OpenAI's event reference)
                {
                    "type": "response.output_audio.done",
                    "event_id": "event_ac",
                    "response_id": response.response_id,
                    "item_id": response.item_id,
                    "output_index": 0,
                    "content_index": 0,
                }
            )
            self.send(
                {
                    "type": "response.done",
                    "event_id": "event_c",
                    "response": {
                        "object": "realtime.response",
                        "id": response.response_id,
                        "status": "cancelled",
                        "status_details": {"type": "cancelled", "reason": "turn_detected"},
                        "output": [],
                    },
                }
            )

    def _speech_stopped(self) -> None:
        self.in_speech = False
        self.silent = 0
        item = f"item_u{self.utterance}"
        for event in (
            {
                "type": "input_audio_buffer.speech_stopped",
                "event_id": "event_p",
                "audio_end_ms": self.position_ms,
                "item_id": item,
            },
            {"type": "input_audio_buffer.committed", "event_id": "event_m", "item_id": item},
        ):
            self.send(event)
        if self.response is None:
            self._respond()
        self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "event_id": "event_x",
                "item_id": item,
                "content_index": 0,
                "transcript": "My kitchen sink is leaking under the cabinet.",
            }
        )

    def _respond(self) -> None:
        self.responses += 1
        response_id = f"resp_{self.responses}"
        item_id = f"item_r{self.responses}"
        self.send(
            {
                "type": "response.created",
                "event_id": "event_r",
                "response": {
                    "object": "realtime.response",
                    "id": response_id,
                    "status": "in_progress",
                },
            }
        )
        prefix = (
            b'{"type":"response.output_audio.delta","event_id":"event_d","response_id":"%s",'
            b'"item_id":"%s","output_index":0,"content_index":0,"delta":"'
            % (response_id.encode(), item_id.encode())
        )
        self.response = Response(response_id, item_id, REPLY_FRAMES, prefix)

    def tick(self, now: float) -> None:
        response = self.response
        if response is None or self.transport is None:
            return
        rig = self.rig
        if not response.started:
            response.started = True
            self.send(
                {
                    "type": "response.output_audio_transcript.delta",
                    "event_id": "event_td",
                    "response_id": response.response_id,
                    "item_id": response.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": "Sorry to hear that. ",
                }
            )
        count = BURST_FRAMES if response.frames_left == REPLY_FRAMES else 1
        for _ in range(min(count, response.frames_left)):
            tag = rig.next_delta
            rig.next_delta = (tag + 1) % len(rig.deltas)
            self.transport.write(server_frame(response.prefix + rig.deltas[tag] + b'"}'))
            if self.call is not None:
                self.call.delta_sent[rig.delta_tags[tag]] = now
            response.frames_left -= 1
        if response.frames_left <= 0:
            self.response = None
            ids = {"response_id": response.response_id, "item_id": response.item_id}
            self.send(
                {
                    "type": "response.output_audio.done",
                    "event_id": "event_ad",
                    **ids,
                    "output_index": 0,
                    "content_index": 0,
                }
            )
            self.send(
                {
                    "type": "response.output_audio_transcript.done",
                    "event_id": "event_tt",
                    **ids,
                    "output_index": 0,
                    "content_index": 0,
                    "transcript": "Sorry to hear that. Someone will call you back tonight.",
                }
            )
            self.send(
                {
                    "type": "response.done",
                    "event_id": "event_rd",
                    "response": {
                        "object": "realtime.response",
                        "id": response.response_id,
                        "status": "completed",
                        "output": [],
                    },
                }
            )


# ------------------------------------------------------------------------------ rig


class Rig:
    """The generator: a Realtime stand-in server plus N simulated callers, one ticker."""

    def __init__(
        self,
        *,
        app_port: int,
        public_base_url: str,
        auth_token: str,
        business_number: str,
        extraction: dict[str, Any] | None,
        api_key: str = "sk-bench",
        seed: int = 13,
    ) -> None:
        self.app_port = app_port
        self.public_base_url = public_base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.business_number = business_number
        self.extraction = extraction
        self.api_key = api_key
        self.account_sid = "AC" + "b" * 32
        self.random = random.Random(seed)
        self.run_id = os.urandom(4).hex()  # CallSids unique across the steps of a sitting
        self.caller_base = int.from_bytes(os.urandom(3), "big") * 100
        self.stats = Stats()
        self.measuring = False
        self.calls: list[Call] = []
        self.calls_by_tag: dict[str, Call] = {}
        self.model_sessions: set[ModelConnection] = set()
        self.loudness: dict[str, bool] = {}
        self.barge_expected: list[Call] = []
        self.next_index = 1
        self.next_delta = 0
        self.deltas: list[bytes] = []
        self.delta_tags: list[str] = []
        for tag in range(256):
            frame = bytes((tag, 0x5A, 0xA5)) + AGENT[3:]
            b64 = base64.b64encode(frame)
            self.deltas.append(b64)
            self.delta_tags.append(b64[:4].decode())
        samples = array.array(
            "h",
            (int(6000 * math.sin(2 * math.pi * 330 * i / 24000)) for i in range(24000 * 3 // 2)),
        )
        self.greeting_pcm = samples.tobytes()  # 1.5 s for the speech endpoint (pcm 24 kHz)
        self.model_server: asyncio.Server | None = None
        self.model_port = 0
        self.http: httpx.AsyncClient | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.model_server = await loop.create_server(
            lambda: ModelConnection(self), "127.0.0.1", 0, backlog=1024
        )
        self.model_port = self.model_server.sockets[0].getsockname()[1]
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.app_port}",
            timeout=30,
            limits=httpx.Limits(max_connections=64),
        )
        self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for call in self.calls:
            if call.conn is not None and call.conn.transport is not None:
                call.conn.transport.abort()
        if self.http is not None:
            await self.http.aclose()
        if self.model_server is not None:
            self.model_server.close()
            for session in list(self.model_sessions):
                if session.transport is not None:
                    session.transport.abort()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.model_port}/v1"

    # -- the ticker ---------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        deadline = time.monotonic()
        stats = self.stats
        while True:
            deadline += FRAME_S
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            if now - deadline > 0.2:  # far behind: skip ahead instead of bursting frames
                deadline = now
            for call in self.calls:
                if call.conn is not None:
                    call.conn.tick(now)
            for session in list(self.model_sessions):
                session.tick(now)
            if self.barge_expected:
                for call in self.barge_expected[:]:
                    if call.barge_at is None:
                        self.barge_expected.remove(call)
                    elif now - call.barge_at > 1.0:
                        call.barge_at = None
                        self.barge_expected.remove(call)
                        if self.measuring:
                            stats.barge_missed += 1
            if self.measuring:
                stats.tick_late.append(now - deadline)
                stats.tick_work.append(time.monotonic() - now)

    # -- calls --------------------------------------------------------------------------

    def _sign(self, url: str, params: dict[str, str]) -> str:
        return str(self.validator.compute_signature(url, params))

    async def place_call(self) -> Call | None:
        """Webhook, upgrade, ``connected`` + ``start``: a call that is streaming."""
        assert self.http is not None
        index = self.next_index
        self.next_index += 1
        call_sid = "CA" + self.run_id + f"{index:024x}"
        caller = f"+1415{(self.caller_base + index) % 10_000_000:07d}"  # a new caller each time
        tag_bytes = call_tag(index)
        silence = base64.b64encode(tag_bytes + b"\xff" * (FRAME_BYTES - 3))
        speech = base64.b64encode(tag_bytes + SPEECH[3:])
        call = Call(
            index=index,
            call_sid=call_sid,
            caller=caller,
            phase=self.random.randrange(len(SCRIPT)),
            tag=silence[:4].decode(),
        )
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": caller,
            "To": self.business_number,
        }
        url = self.public_base_url + "/twilio/voice"
        try:
            answer = await self.http.post(
                "/twilio/voice",
                data=params,
                headers={"X-Twilio-Signature": self._sign(url, params)},
            )
            stream_url, parameters = _stream_of(answer.text)
        except (httpx.HTTPError, ValueError):
            self.stats.calls_failed += 1
            return None
        stream_sid = "MZ" + self.run_id + f"{index:024x}"
        call.stream_sid = stream_sid
        suffix = b'"},"streamSid":"' + stream_sid.encode() + b'"}'
        call.frame_suffix = (
            b'","payload":"' + silence + suffix,
            b'","payload":"' + speech + suffix,
        )
        self.calls_by_tag[call.tag] = call
        connected = orjson.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = orjson.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": stream_sid,
                    "callSid": call_sid,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
                "streamSid": stream_sid,
            }
        )
        path = "/" + stream_url.split("/", 3)[3]
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.app_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nX-Twilio-Signature: {self._sign(stream_url, {})}\r\n"
            "User-Agent: Twilio.TmeWs/1.0\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        conn = CallerConnection(self, call, request, [client_frame(connected), client_frame(start)])
        try:
            await loop.create_connection(lambda: conn, "127.0.0.1", self.app_port)
            upgraded = await asyncio.wait_for(conn.upgraded, 30)
        except (OSError, TimeoutError):
            upgraded = False
        if not upgraded:
            self.stats.calls_failed += 1
            return None
        call.conn = conn
        self.calls.append(call)
        return call

    async def hang_up(self, call: Call) -> float | None:
        """``stop`` and close, then Twilio's status callback; returns the hang-up time."""
        assert self.http is not None
        if call.conn is None:
            return None
        call.conn.hang_up()
        hung_up = call.hung_up_at
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.done.wait(), 10)
        if call in self.calls:
            self.calls.remove(call)
        self.calls_by_tag.pop(call.tag, None)
        params = {
            "AccountSid": self.account_sid,
            "CallSid": call.call_sid,
            "CallStatus": "completed",
            "CallDuration": str(call.ticks // 50),
            "From": call.caller,
            "To": self.business_number,
        }
        url = self.public_base_url + "/twilio/status"
        with contextlib.suppress(httpx.HTTPError):
            await self.http.post(
                "/twilio/status",
                data=params,
                headers={"X-Twilio-Signature": self._sign(url, params)},
            )
        return hung_up


def _stream_of(document: str) -> tuple[str, dict[str, str]]:
    """The ``<Stream url>`` and its ``<Parameter>``s from a TwiML answer."""
    root = ET.fromstring(document)
    stream = root.find("./Connect/Stream")
    if stream is None:
        raise ValueError("the answer has no <Connect><Stream>")
    parameters = {
        p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter") if p.get("name")
    }
    return stream.get("url", ""), parameters
