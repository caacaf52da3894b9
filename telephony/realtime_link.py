"""The bridge's link to one OpenAI Realtime connection, without the SDK's per-message cost.

The openai SDK's ``send_raw`` runs a send-queue admission check (a lock, a task lookup)
for every message so that it can replay messages across its own reconnects. The bridge
never asks the SDK to reconnect (a dropped session hands the call to the scripted intake),
so on the 50-per-second audio path that check only costs CPU. ``RealtimeLink`` writes to
the SDK's underlying websocket directly while the SDK has nothing queued, is not
reconnecting and was not closed, and goes through ``send_raw`` otherwise — so if a future
SDK queues or reconnects, its guarantees still hold. If the SDK's internals are not what
this module expects, every call goes through the public methods.
"""

from __future__ import annotations

from typing import Any, Protocol

from websockets.protocol import CLIENT, State

from telephony.ws_framing import OP_TEXT, MaskKeys, client_frame


class SdkRealtimeConnection(Protocol):
    """What the openai SDK's ``AsyncRealtimeConnection`` offers publicly."""

    async def send_raw(self, data: bytes | str) -> None: ...
    async def recv_bytes(self) -> bytes: ...
    async def close(self, *, code: int = 1000, reason: str = "") -> None: ...


_SOCKET_PARTS = ("protocol", "paused", "transport")
_PROTOCOL_PARTS = ("state", "side", "extensions", "writes")
_FRAGMENT_WAITERS = ("send_in_progress", "fragmented_send_waiter")
"""What ``websockets`` calls the future set while a fragmented message is being sent:
``send_in_progress`` since 16.0, ``fragmented_send_waiter`` before."""


class DirectFrames:
    """Text frames written on a ``websockets`` client connection's transport directly.

    This is what ``websockets``' own ``send`` does when the connection is open, not paused
    by flow control, not mid-fragment and has nothing of its own waiting to be written:
    one masked text frame (``telephony.ws_framing``, with a masking key from a pool
    instead of a system call per frame), with no async-context-manager round trip.
    ``write`` returns False for anything else (and on any error): the caller then takes
    the full ``send``, which waits for the write buffer or raises ``ConnectionClosed``."""

    __slots__ = ("_keys", "_waiter")

    def __init__(self, fragment_waiter: str) -> None:
        self._waiter = fragment_waiter
        self._keys = MaskKeys()

    @classmethod
    def for_socket(cls, socket: Any) -> DirectFrames | None:
        """A writer for this connection, or None if the installed ``websockets`` lacks a
        part this relies on, or the connection is not a client's without extensions
        (negotiated at the handshake, so fixed from here on)."""
        waiter = next((name for name in _FRAGMENT_WAITERS if hasattr(socket, name)), None)
        protocol: Any = getattr(socket, "protocol", None)
        if (
            waiter is None
            or not all(hasattr(socket, name) for name in _SOCKET_PARTS)
            or not all(hasattr(protocol, name) for name in _PROTOCOL_PARTS)
            or protocol.side is not CLIENT
            or protocol.extensions
        ):
            return None
        return cls(waiter)

    def write(self, socket: Any, payload: bytes) -> bool:
        protocol = socket.protocol
        if (
            protocol.state is not State.OPEN
            or protocol.writes
            or socket.paused
            or getattr(socket, self._waiter) is not None
            or socket.transport.is_closing()
        ):
            return False
        try:
            socket.transport.write(client_frame(OP_TEXT, payload, self._keys.take()))
        except Exception:
            return False
        return True


class RealtimeLink:
    """``send_raw`` / ``recv_bytes`` / ``close`` over an SDK connection, fast when it is safe."""

    def __init__(self, connection: SdkRealtimeConnection) -> None:
        self.connection = connection
        sdk: Any = connection
        self._direct = all(
            hasattr(sdk, name)
            for name in ("_connection", "_send_queue", "_is_reconnecting", "_intentionally_closed")
        )
        socket = getattr(sdk, "_connection", None)
        self._writer = DirectFrames.for_socket(socket) if self._direct else None
        # The SDK queues a message only while it reconnects or behind messages already
        # queued. Without a reconnect handler (the bridge never gives one) it never
        # reconnects, so a queue that is empty now (``enter`` flushed it) stays empty, and
        # asking it per message (a lock each time) would only cost CPU.
        self._queue_stays_empty = (
            self._direct
            and getattr(sdk, "_on_reconnecting", True) is None
            and not sdk._is_reconnecting
            and not sdk._send_queue
        )

    def _socket(self) -> Any | None:
        """The SDK's websocket, when writing to it directly bypasses nothing."""
        if not self._direct:
            return None
        sdk: Any = self.connection
        if sdk._is_reconnecting or sdk._intentionally_closed:
            return None
        if not self._queue_stays_empty and sdk._send_queue:
            return None
        return sdk._connection

    async def send_raw(self, data: bytes | str) -> None:
        """Send one client event; ``bytes`` must be UTF-8 JSON (sent as a text frame)."""
        socket = self._socket()
        if socket is None:
            await self.connection.send_raw(data if isinstance(data, str) else data.decode())
            return
        payload = data.encode() if isinstance(data, str) else data
        if self._writer is not None and self._writer.write(socket, payload):
            return
        await socket.send(payload, text=True)

    @property
    def writes_frames(self) -> bool:
        """Whether audio is framed and written here (the installed ``websockets`` has the
        parts this module expects), not through ``websockets``' own ``send``."""
        return self._writer is not None

    async def recv_bytes(self) -> bytes:
        """The next server event, raw."""
        if self._direct:
            sdk: Any = self.connection
            if not sdk._is_reconnecting:
                message: bytes = await sdk._connection.recv(decode=False)
                return message
        return await self.connection.recv_bytes()

    async def close(self, *, code: int = 1000, reason: str = "") -> None:
        await self.connection.close(code=code, reason=reason)
