"""The service's websocket server protocol: uvicorn's ``websockets-sansio`` with the Media
Stream's 50-a-second frames read and written without ``websockets``' general machinery.

``WEBSOCKET_OPTIONS`` is what ``receptionist serve`` (and every test and tool that runs the
service) gives uvicorn as ``ws``. It is uvicorn's own ``WebSocketsSansIOProtocol`` —
``websockets`` does the opening handshake, pings, pongs, fragmented messages, the closing
handshake and every error — with three changes on the hot path:

- **Reading.** After the handshake, incoming bytes are cut into whole frames here
  (``telephony.ws_framing``). A masked, unfragmented text or binary frame without reserved
  bits, while the connection is open and no fragmented message is in progress, is unmasked
  and queued for the app directly; its text is decoded as strictly as uvicorn does. Every
  other frame is handed to ``websockets`` whole, so its parser always starts on a frame
  boundary and answers exactly as it would have. A text frame that is not UTF-8 goes to
  ``websockets`` too (uvicorn closes with 1007). A frame declared longer than
  ``max_size`` or than the ``SPLIT_LIMIT`` this module buffers turns the splitting off for
  the rest of the connection: from there every byte goes to ``websockets`` as it comes,
  as in plain uvicorn. Frames a client sends before the app has answered the handshake
  wait, with reading paused, until it has.
- **Writing.** ``websocket.send`` while the connection is open writes one unmasked frame
  built here; anything else goes through uvicorn's ``send``.
- **The receive queue** is a deque with a loop-created future per wait instead of an
  ``asyncio.Queue``: on Python 3.11 every ``Queue.get`` that waits asks
  ``asyncio.get_running_loop()``, which makes a ``getpid`` system call, once per caller
  frame.

If the installed ``websockets`` lacks a part this relies on (``current_size``,
``max_message_size``, ``reader``), the protocol behaves as plain uvicorn.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from telephony.ws_framing import INCOMPLETE, OP_BINARY, OP_TEXT, server_frame
from telephony.ws_framing import next_frame as _next_frame

SPLIT_LIMIT = 1 << 16
"""The largest frame this protocol buffers itself (Twilio's are under 1 KiB, and the bridge
refuses messages over 64 Ki characters); a larger one is left to ``websockets`` with the
rest of its connection."""

_REQUEST_END = b"\r\n\r\n"
_PARTS = ("current_size", "max_message_size", "reader", "state", "extensions")


class ReceiveQueue:
    """What uvicorn's protocol needs of its receive queue (``put_nowait``, ``empty``,
    ``get``), without ``asyncio.Queue``'s running-loop lookup per wait."""

    __slots__ = ("_items", "_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: deque[ASGIReceiveEvent] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop = loop

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self._items.append(item)
        if self._waiters:
            self._wake_next()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if (
                    self._items and not waiter.cancelled()
                ):  # pragma: no cover - woken, then cancelled
                    self._wake_next()
                raise
        return self._items.popleft()

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class FastFramesProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with the hot-path frames handled here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue(self.loop)  # type: ignore[assignment]
        conn: Any = self.conn
        self._splitting: bool | None = None  # None: the request is still being read
        if not all(hasattr(conn, name) for name in _PARTS):
            self._splitting = False
        self._tail = b""  # the end of what came so far, to find the request's end across reads
        self._pending = bytearray()  # the start of a frame that is not all here yet
        self._needed = 0  # how many bytes that frame takes, once its header is known
        self._early = bytearray()  # frames that came before the handshake was answered
        limit = getattr(conn, "max_message_size", None)
        fragment = getattr(conn, "max_fragment_size", None)
        for bound in (fragment, SPLIT_LIMIT):
            if bound is not None and (limit is None or bound < limit):
                limit = bound
        self._limit: int = SPLIT_LIMIT if limit is None else limit

    # -- reading ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._splitting is None:
            data = self._past_request(data)
            if not data:
                return
        if self._splitting:
            self._split(data)
        else:
            super().data_received(data)

    def _past_request(self, data: bytes) -> bytes:
        """Feed ``websockets`` the opening handshake up to its blank line, and return what
        follows it (frames), which are then split here."""
        seen = self._tail + data
        at = seen.find(_REQUEST_END)
        if at < 0:
            self._tail = seen[-3:]
            super().data_received(data)
            return b""
        end = at + len(_REQUEST_END) - len(self._tail)
        self._tail = b""
        super().data_received(data[:end])
        conn: Any = self.conn
        # A refused or malformed handshake: uvicorn has answered it and closed the
        # connection; whatever the client sent after it is dropped, as the closed
        # connection would.
        self._splitting = conn.handshake_exc is None and not self.close_sent
        return data[end:] if self._splitting else b""

    def _split(self, data: bytes) -> None:
        if not self.handshake_complete:
            self._hold(data)
            return
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._needed:  # still short of the frame begun earlier
                return
            buffer = bytes(pending)
            self._pending = bytearray()
        else:
            buffer = data
        start = 0
        size = len(buffer)
        conn: Any = self.conn
        while start < size:
            found = _next_frame(buffer, start, self._limit)
            if isinstance(found, int):
                if found == INCOMPLETE:
                    self._needed = 0
                    break
                self._stop_splitting(buffer[start:])  # TOO_LONG
                return
            end, opcode, payload = found
            if end > size:
                self._needed = end - start
                break
            if (
                payload is None
                or self.close_sent
                or conn.current_size is not None
                or conn.state is not State.OPEN
                or conn.extensions
                or not self._deliver(opcode, payload)
            ):
                super().data_received(buffer[start:end])  # a whole frame: websockets' to answer
                if conn.state is State.CLOSING or conn.state is State.CLOSED:
                    self._stop_splitting(buffer[end:])  # closing or failed: the rest is its too
                    return
            start = end
        if start < size:
            self._pending = bytearray(buffer[start:])

    def _hold(self, data: bytes) -> None:
        """Frames sent before the app has answered the handshake (a client must wait for
        the 101; a hostile one may not) are kept, and reading stops, until it has: then
        they are read as if they had come after it, or dropped with a refused
        connection."""
        self._early += data
        self.transport.pause_reading()

    def _release_early(self) -> None:
        """After the app's answer to the handshake: held frames are read if it accepted;
        if it refused (a close or an HTTP response), they stay unread until the
        connection closes, with reading still paused."""
        if not (self._early and self._splitting and self.conn.state is State.OPEN):
            return
        early, self._early = bytes(self._early), bytearray()
        if self.close_sent or self.transport.is_closing():
            return
        if not self.read_paused:
            self.transport.resume_reading()
        self._split(early)

    def _stop_splitting(self, rest: bytes) -> None:
        self._splitting = False
        self._pending = bytearray()
        if rest and not self.transport.is_closing():  # closed: a closed socket reads no more
            super().data_received(rest)

    def _deliver(self, opcode: int, payload: bytes) -> bool:
        """Queue one whole message for the app, as uvicorn's ``send_receive_event_to_app``
        does; False for text that is not UTF-8 (``websockets``' frame to answer)."""
        if opcode == OP_TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                return False
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": payload})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        return True

    # -- writing ---------------------------------------------------------------------

    async def send(self, message: ASGISendEvent) -> None:
        if (
            message["type"] == "websocket.send"
            and self.handshake_complete
            and not self.close_sent
            and self.initial_response is None
            and self.writable.is_set()
            and not self.disconnected
            and self.conn.state is State.OPEN
            and not self.conn.extensions
        ):
            data = message.get("bytes")
            if data is not None:
                self.transport.write(server_frame(OP_BINARY, data))
                return
            text = message.get("text")
            if text is not None:
                self.transport.write(server_frame(OP_TEXT, text.encode()))
                return
        await super().send(message)
        if self._early:
            self._release_early()


WEBSOCKET_OPTIONS: dict[str, Any] = {"ws": FastFramesProtocol, "ws_per_message_deflate": False}
"""The websocket options of every uvicorn server of this service (``uvicorn.Config(**…)``).

Per-message compression is declined (RFC 7692 lets a server decline an offer): a Media
Stream frame is ~300 bytes of base64 audio that deflates by a quarter at best, for a zlib
context per connection and a compression and decompression per frame."""
