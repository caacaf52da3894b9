"""The service's websocket protocol (``telephony.ws_server``) against uvicorn's own.

Differential tests: the same frames are fed to uvicorn's ``WebSocketsSansIOProtocol`` and
to ``FastFramesProtocol`` over a recording transport; the app must receive the same
messages and the client the same bytes (and the same close), whatever the frames — valid,
fragmented, control, oversized, unmasked, not UTF-8, pipelined with the handshake — and
however the reads cut them for ``FastFramesProtocol``.

The reference is uvicorn fed one frame per read. (Fed several frames in one read, uvicorn
drops the messages it parsed before a protocol error in that read, because it hands them
over only after the whole read parsed cleanly; ``FastFramesProtocol`` delivers them, as
uvicorn does when they come in reads of their own. Every other outcome is the same
however uvicorn's reads are cut, which ``test_uvicorn_itself_...`` shows.)

Then the framing helpers against ``websockets``' own parser, and the hot path taken where
it should be.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from telephony import ws_server
from telephony.ws_framing import (
    INCOMPLETE,
    OP_BINARY,
    OP_TEXT,
    TOO_LONG,
    MaskKeys,
    NextFrame,
    client_frame,
    next_frame,
    server_frame,
)
from telephony.ws_server import FastFramesProtocol, ReceiveQueue
from tests.conftest import StartApp, wait_for
from tests.standins.openai_realtime import RealtimeStandin
from tests.standins.twilio import TwilioStandin
from tests.test_conversation_e2e import openai_settings, twilio_settings
from tests.test_e2e_call import JOHN_EXTRACTION, JOHN_TURNS, run_john_call

MAX_SIZE = 4096

HANDSHAKE = (
    b"GET /twilio/stream HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def raw_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length16: bool = False,
    length64: bool = False,
) -> bytes:
    """Any frame, valid or not, as a client could put it on the wire."""
    head1 = (0x80 if fin else 0) | rsv << 4 | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if length64 or n >= 65536:
        header = struct.pack("!BBQ", head1, bit | 127, n)
    elif length16 or n >= 126:
        header = struct.pack("!BBH", head1, bit | 126, n)
    else:
        header = bytes((head1, bit | n))
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def media(n: int) -> bytes:
    audio = base64.b64encode(bytes(range(n % 256)) * 2).decode()
    return ('{"event":"media","media":{"payload":"' + audio + '"}}').encode()


class Transport(asyncio.Transport):
    """Records what the protocol writes and does to the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.paused = False
        self.backlog: list[bytes] = []  # what the client sent while reading was paused
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        """Like a real transport: what came while paused is read on a later loop turn."""
        self.paused = False
        asyncio.get_running_loop().call_soon(self.read_backlog)

    def read_backlog(self) -> None:
        while self.backlog and not self.paused and not self.closed:
            assert self.protocol is not None
            self.protocol.data_received(self.backlog.pop(0))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5555)}.get(name, default)


class Run:
    """One connection to one protocol class, with an app that accepts and records."""

    def __init__(
        self,
        protocol_class: type[WebSocketsSansIOProtocol],
        loop: asyncio.AbstractEventLoop,
        *,
        echo: bool = False,
        refuse: bool = False,
    ) -> None:
        self.received: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.loop = loop

        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "websocket.connect"
            if refuse:  # as the stream endpoint does with a forged signature
                await send({"type": "websocket.close", "code": 1008})
                self.received.append(dict(await receive()))
                return
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                self.received.append(dict(message))
                if message["type"] == "websocket.disconnect":
                    return
                if echo and message.get("text") == "echo":
                    await send({"type": "websocket.send", "text": "echoed ✓"})
                    await send({"type": "websocket.send", "bytes": b"\x00" * 300})

        config = Config(
            app,
            ws_max_size=MAX_SIZE,
            ws_ping_interval=None,
            ws_per_message_deflate=False,
            lifespan="off",
        )
        config.load()
        self.protocol = protocol_class(config, ServerState(), {}, _loop=loop)
        self.transport = Transport()
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)

    def feed(self, data: bytes, *, settle: bool = True) -> None:
        """One read; what uvicorn raises (it has bugs for frames that come before the
        handshake's answer) is part of the outcome."""
        if self.transport.paused or self.transport.backlog:
            self.transport.backlog.append(data)
        elif not self.transport.closed:
            try:
                self.protocol.data_received(data)
            except Exception as exc:
                self.errors.append(type(exc).__name__)
        if settle:
            self.settle()

    def finish(self) -> None:
        """Let the app take what was read, then drop the connection."""
        self.settle()
        self.protocol.connection_lost(None)
        self.settle()

    def settle(self) -> None:
        for _ in range(5 + 3 * len(self.transport.backlog)):
            self.loop.run_until_complete(asyncio.sleep(0))

    def outcome(self) -> tuple[Any, ...]:
        """What the app received; what the client got — the handshake answer, the app's
        frames and the control frames (pongs, close) as two sequences, since a pong for a
        ping read with other frames goes out before the app's answers to them; whether
        the connection was closed; what uvicorn raised."""
        written = bytes(self.transport.written)
        head, _, frames = written.partition(b"\r\n\r\n")
        data, control = [], []
        while frames:
            opcode, length = frames[0] & 0x0F, frames[1] & 0x7F
            start = 2
            if length == 126:
                length, start = struct.unpack("!H", frames[2:4])[0], 4
            elif length == 127:
                length, start = struct.unpack("!Q", frames[2:10])[0], 10
            frame = (frames[0], frames[start : start + length])
            (control if opcode >= 0x8 else data).append(frame)
            frames = frames[start + length :]
        return self.received, head, data, control, self.transport.closed, self.errors


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        yield data[start:cut]
        start = cut
    yield data[start:]


def both(
    handshake: bytes,
    frames: list[bytes],
    cuts: list[int],
    *,
    pipelined: bool = False,
    echo: bool = False,
) -> tuple[tuple[Any, ...], tuple[Any, ...], FastFramesProtocol]:
    """(uvicorn fed one frame per read, FastFramesProtocol fed the stream cut at ``cuts``,
    the FastFramesProtocol). ``pipelined``: FastFramesProtocol gets the handshake and the
    frames in one stream, before the app has accepted; it reads them once it has, so the
    reference is the same."""
    loop = asyncio.new_event_loop()
    try:
        settle = not pipelined
        stock = Run(WebSocketsSansIOProtocol, loop, echo=echo)
        stock.feed(handshake)
        for frame in frames:
            stock.feed(frame)
        stock.finish()
        fast = Run(FastFramesProtocol, loop, echo=echo)
        stream = b"".join(frames)
        if pipelined:
            stream = handshake + stream
        else:
            fast.feed(handshake)
        for piece in chunks(stream, cuts):
            if piece:
                fast.feed(piece, settle=settle)
        fast.finish()
        assert isinstance(fast.protocol, FastFramesProtocol)
        return stock.outcome(), fast.outcome(), fast.protocol
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


_VALID: list[bytes | list[bytes]] = [
    raw_frame(OP_TEXT, media(1)),
    raw_frame(OP_TEXT, media(90)),  # a 16-bit length
    raw_frame(OP_TEXT, "héllo ✓".encode()),
    raw_frame(OP_BINARY, b"\x00\xff" * 40),
    raw_frame(OP_TEXT, b"echo"),
    raw_frame(OP_TEXT, b"short", length16=True),  # a longer length form than needed
    raw_frame(OP_TEXT, b""),
    raw_frame(Opcode.PING, b"ping"),
    raw_frame(Opcode.PONG, b"unsolicited"),
    [
        raw_frame(OP_TEXT, b'{"event":"par', fin=False),
        raw_frame(Opcode.PING, b"in between"),
        raw_frame(Opcode.CONT, b'tial"}', fin=True),
    ],
]
_HOSTILE: list[bytes | list[bytes]] = [
    raw_frame(OP_TEXT, b"\xff\xfe not utf-8"),
    raw_frame(OP_TEXT, media(3), mask=False),
    raw_frame(OP_TEXT, media(4), rsv=4),
    raw_frame(0x3, b"reserved opcode"),
    raw_frame(OP_TEXT, b"x" * (MAX_SIZE + 1)),
    raw_frame(OP_TEXT, b"x" * 70000),
    raw_frame(OP_TEXT, b"small", length64=True),
    raw_frame(Opcode.CONT, b"no message to continue"),
    [raw_frame(OP_TEXT, b"one", fin=False), raw_frame(OP_TEXT, b"two")],
    raw_frame(Opcode.PING, b"p" * 130),  # a control frame over 125 bytes
    raw_frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"bye"),
    raw_frame(Opcode.CLOSE, struct.pack("!H", 999)),
]


VALID = [f if isinstance(f, list) else [f] for f in _VALID]
HOSTILE = [f if isinstance(f, list) else [f] for f in _HOSTILE]
ALL = VALID + HOSTILE


@pytest.mark.parametrize("frames", ALL, ids=range(len(ALL)))
def test_each_frame_is_answered_as_uvicorn_answers_it(frames: list[bytes]) -> None:
    stream = [raw_frame(OP_TEXT, media(7)), *frames, raw_frame(OP_TEXT, media(8))]
    size = sum(map(len, stream))
    for cuts in ([], [1], [size // 2], list(range(0, size, 3))):
        stock, fast, _ = both(HANDSHAKE, stream, cuts)
        assert fast == stock


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    picks=st.lists(st.integers(0, len(ALL) - 1), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=10),
    pipelined=st.booleans(),
)
def test_any_stream_any_cut_gives_what_uvicorn_gives(
    picks: list[int], cuts: list[int], pipelined: bool
) -> None:
    """Random sequences of frames, cut at random places; sometimes pipelined with the
    handshake in one read (a client may not, but a hostile one can)."""
    frames = [frame for i in picks for frame in ALL[i]]
    stock, fast, _ = both(HANDSHAKE, frames, cuts, pipelined=pipelined)
    assert fast == stock


def test_uvicorn_itself_only_differs_by_the_messages_before_an_error_in_one_read() -> None:
    """Why the reference reads frame by frame: uvicorn fed the same frames in one read
    loses the message before the error, and only that."""
    frames = [raw_frame(OP_TEXT, b"before"), raw_frame(OP_TEXT, b"unmasked", mask=False)]
    loop = asyncio.new_event_loop()
    try:
        whole, by_frame = Run(WebSocketsSansIOProtocol, loop), Run(WebSocketsSansIOProtocol, loop)
        for run in (whole, by_frame):
            run.feed(HANDSHAKE)
        whole.feed(b"".join(frames))
        for frame in frames:
            by_frame.feed(frame)
        assert by_frame.received[0] == {"type": "websocket.receive", "text": "before"}
        assert whole.received == by_frame.received[1:]
        assert whole.transport.written == by_frame.transport.written
    finally:
        loop.close()


def test_the_audio_frames_take_the_fast_path_and_arrive_whole() -> None:
    """Ordinary caller frames never reach websockets' parser, even cut one byte at a time."""
    stream = b"".join(raw_frame(OP_TEXT, media(n)) for n in range(20))
    loop = asyncio.new_event_loop()
    try:
        run = Run(FastFramesProtocol, loop)
        run.feed(HANDSHAKE)
        parsed: list[bytes] = []
        conn: Any = run.protocol.conn
        original = conn.receive_data

        def counting(data: bytes) -> None:
            parsed.append(data)
            original(data)

        conn.receive_data = counting
        for i in range(len(stream)):
            run.feed(stream[i : i + 1])
        assert parsed == []
        assert [m["text"].encode() for m in run.received] == [media(n) for n in range(20)]
        run.feed(raw_frame(Opcode.PING, b"still websockets'"))
        assert len(parsed) == 1
        assert run.transport.written.endswith(b"\x8a\x11still websockets'")  # its pong
    finally:
        loop.close()


def test_the_apps_answers_go_out_as_uvicorn_writes_them() -> None:
    """The app's ``websocket.send`` (text and bytes) through the fast write path: the same
    bytes on the wire as uvicorn's own. (The differential tests above use an app that
    never answers, since when an answer goes out depends on how the reads were cut.)"""
    frames = [
        raw_frame(OP_TEXT, b"echo"),
        raw_frame(Opcode.PING, b"p"),
        raw_frame(OP_TEXT, b"echo"),
    ]
    stock, fast, _ = both(
        HANDSHAKE, frames, [len(frames[0]), len(frames[0]) + len(frames[1])], echo=True
    )
    assert fast == stock
    assert [payload for _, payload in fast[2]] == ["echoed ✓".encode(), b"\x00" * 300] * 2


def test_a_refused_handshake_drops_what_follows_it() -> None:
    """A request websockets refuses (no Upgrade header): uvicorn answers it and closes;
    frames pipelined after it are not delivered, exactly as in plain uvicorn."""
    bad = HANDSHAKE.replace(b"Upgrade: websocket\r\n", b"")
    stock, fast, _ = both(bad, [raw_frame(OP_TEXT, b"sneaky")], [], pipelined=True)
    assert fast == stock
    assert b"426" in fast[1] or b"400" in fast[1]
    assert fast[0] == [] and fast[4] is True and fast[5] == []


def test_frames_sent_before_a_refusal_are_never_read() -> None:
    """The app refuses the upgrade (a forged signature): frames the client sent before
    the answer never reach it, and nothing but the refusal is written. (Plain uvicorn
    parses them at once: it writes the ping's pong before its 403, and hands the text to
    the app's next ``receive``, after the refusal.)"""
    loop = asyncio.new_event_loop()
    try:
        outcomes = []
        for protocol_class in (WebSocketsSansIOProtocol, FastFramesProtocol):
            run = Run(protocol_class, loop, refuse=True)
            run.feed(HANDSHAKE + raw_frame(OP_TEXT, b"sneaky") + raw_frame(Opcode.PING, b"p"))
            run.finish()
            outcomes.append(run.outcome())
        stock, fast = outcomes
        assert fast[0] == [{"type": "websocket.disconnect", "code": 1006}]
        assert fast[1].startswith(b"HTTP/1.1 403") and fast[2] == fast[3] == []
        assert fast[4] is True
        assert stock[0][0] == {"type": "websocket.receive", "text": "sneaky"}
        assert stock[1].startswith(b"\x8a\x01p" + fast[1]) and stock[4] is True
    finally:
        loop.close()


def test_a_frame_larger_than_the_split_limit_is_left_to_websockets() -> None:
    stock, fast, protocol = both(HANDSHAKE, [raw_frame(OP_TEXT, b"x" * 70000)], [1000, 5000])
    assert fast == stock
    assert protocol._splitting is False


def test_sends_are_the_bytes_websockets_would_write() -> None:
    for opcode, payload in [(OP_TEXT, b"x" * n) for n in (0, 1, 125, 126, 300, 65535, 65536)] + [
        (OP_BINARY, b"\x00\xff" * 200)
    ]:
        server = ServerProtocol(state=State.OPEN)
        server.send_frame(Frame(Opcode(opcode), payload))
        assert server_frame(opcode, payload) == b"".join(server.data_to_send())


def test_client_frames_parse_in_websockets_as_sent() -> None:
    keys = MaskKeys(pool=8)
    seen = set()
    for n in (0, 1, 125, 126, 300, 65535, 65536):
        payload = os.urandom(n)
        key = keys.take()
        seen.add(key)
        server = ServerProtocol(state=State.OPEN, max_size=None)
        server.receive_data(client_frame(OP_BINARY, payload, key))
        [event] = server.events_received()
        assert isinstance(event, Frame) and event.data == payload and event.fin
        assert server.parser_exc is None
    assert len(seen) == 7  # a new key each frame, past the 2-key pool's refills


def test_next_frame_reads_what_websockets_writes() -> None:
    client = ClientProtocol(parse_uri("ws://example.com/"), state=State.OPEN)
    client.send_text(media(90))  # 16-bit length
    wire = b"".join(client.data_to_send())
    found = next_frame(wire, 0, MAX_SIZE)
    assert found == NextFrame(len(wire), OP_TEXT, media(90))
    assert next_frame(wire[:1], 0, MAX_SIZE) == INCOMPLETE
    assert next_frame(wire[:3], 0, MAX_SIZE) == INCOMPLETE  # 16-bit length not all there
    partial = next_frame(wire[:-1], 0, MAX_SIZE)
    assert isinstance(partial, NextFrame) and partial.end == len(wire) and partial.payload is None
    assert next_frame(wire, 0, 10) == TOO_LONG
    long = raw_frame(OP_BINARY, b"abc", length64=True)
    assert next_frame(long[:9], 0, MAX_SIZE) == INCOMPLETE
    assert next_frame(long, 0, MAX_SIZE) == NextFrame(len(long), OP_BINARY, b"abc")
    client.send_ping(b"x")
    ping = b"".join(client.data_to_send())
    assert next_frame(ping, 0, MAX_SIZE) == NextFrame(len(ping))  # not the fast shape


def test_mask_pool_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        MaskKeys(pool=6)


async def test_the_receive_queue_wakes_its_waiters_in_order_and_survives_cancellation() -> None:
    queue = ReceiveQueue(asyncio.get_running_loop())
    first = asyncio.create_task(queue.get())
    cancelled = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    queue.put_nowait({"type": "websocket.receive", "text": "1"})
    queue.put_nowait({"type": "websocket.receive", "text": "2"})
    assert (await first)["text"] == "1"
    assert (await second)["text"] == "2"
    assert cancelled.cancelled() and queue.empty() and queue.qsize() == 0


def test_the_service_runs_this_protocol_without_compression() -> None:
    options = ws_server.WEBSOCKET_OPTIONS
    assert options == {"ws": FastFramesProtocol, "ws_per_message_deflate": False}


def test_random_cuts_are_reproducible() -> None:
    """One long mixed stream at 200 seeded random cuttings (deterministic: a fixed seed)."""
    rng = random.Random(1307)
    frames = [frame for entry in VALID for frame in entry]
    stream = [*frames, raw_frame(OP_TEXT, b"\xff"), *frames]
    size = sum(map(len, stream))
    for _ in range(200):
        cuts = [rng.randrange(size) for _ in range(rng.randrange(1, 8))]
        stock, fast, _ = both(HANDSHAKE, stream, cuts)
        assert fast == stock


async def test_a_real_call_moves_its_frames_on_the_fast_path_both_ways(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The running service, a Realtime call through the stand-ins: the Twilio stand-in's
    websockets client offers per-message compression, the service declines it, and every
    text frame either way is read and written here, none by websockets' parser or
    serializer (a compressed or otherwise unusual stream would show up as those)."""
    fast_reads: list[int] = []
    slow_texts: list[int] = []
    slow_sends: list[str] = []
    deliver = FastFramesProtocol._deliver
    handle_text = WebSocketsSansIOProtocol.handle_text
    stock_send = WebSocketsSansIOProtocol.send

    def counting_deliver(self: FastFramesProtocol, opcode: int, payload: bytes) -> bool:
        fast_reads.append(len(payload))
        return deliver(self, opcode, payload)

    # (The Realtime stand-in in this process runs plain uvicorn: only the service counts.)
    def counting_handle_text(self: WebSocketsSansIOProtocol, event: Frame) -> None:
        if isinstance(self, FastFramesProtocol):
            slow_texts.append(len(event.data))
        handle_text(self, event)

    async def counting_send(self: WebSocketsSansIOProtocol, message: Any) -> None:
        # A send after the caller hung up rightly takes uvicorn's path (ClientDisconnected).
        if isinstance(self, FastFramesProtocol) and not self.disconnected:
            slow_sends.append(message["type"])
        await stock_send(self, message)

    monkeypatch.setattr(FastFramesProtocol, "_deliver", counting_deliver)
    monkeypatch.setattr(WebSocketsSansIOProtocol, "handle_text", counting_handle_text)
    monkeypatch.setattr(WebSocketsSansIOProtocol, "send", counting_send)
    ai: RealtimeStandin = await make_realtime_standin(turns=JOHN_TURNS, extraction=JOHN_EXTRACTION)
    app = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    result = await run_john_call(app, twilio_standin)
    await wait_for(lambda: app.services.store.get_summary(result.call_sid) is not None)
    assert len(fast_reads) > 100  # connected, start, 50 media frames a second, marks, stop
    assert slow_texts == []
    # Only the handshake answer and the close (when the caller has not hung up first) go
    # through uvicorn's own send; every frame of the call was written here.
    assert slow_sends[0] == "websocket.accept"
    assert set(slow_sends) <= {"websocket.accept", "websocket.close"}
