"""WebSocket framing for the one frame shape the relay moves 50 times a second, sans I/O.

``websockets`` frames and parses every message through a general machinery — a
generator-based parser, a ``Frame`` object, extensions, a fresh ``getrandom`` system call
for each client mask — that costs several microseconds a frame. The audio path only ever
carries one shape: a single unfragmented text frame of a few hundred bytes, with no
extension. This module builds and reads exactly that shape (RFC 6455 §5.2) and says
"not mine" for anything else, which the caller then hands to ``websockets`` whole, so
``websockets`` stays the authority on every other frame, every error and the closing
handshake.

- ``server_frame`` / ``client_frame``: one FIN data frame, unmasked (server to client) or
  masked (client to server) with a key from a ``MaskKeys`` pool.
- ``next_frame``: where the next complete frame in a buffer ends, and its payload when it
  is a masked FIN text or binary frame without reserved bits (the caller's fast path).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

OP_TEXT = 0x1
OP_BINARY = 0x2

_FIN = 0x80
_MASK_BIT = 0x80
_LEN16 = struct.Struct("!BBH")
_LEN16_MASKED = struct.Struct("!BBH4s")


class MaskKeys:
    """Client masking keys (RFC 6455 §5.3: a fresh, unpredictable 32-bit key per frame)
    drawn from one ``os.urandom`` read of ``pool`` bytes, instead of one system call per
    frame. Each key is used once; the pool is never reused, only replaced."""

    __slots__ = ("_next", "_pool", "_size")

    def __init__(self, pool: int = 4096) -> None:
        if pool < 4 or pool % 4:
            raise ValueError("pool must be a positive multiple of 4 bytes")
        self._size = pool
        self._pool = os.urandom(pool)
        self._next = 0

    def take(self) -> bytes:
        at = self._next
        if at >= self._size:
            self._pool = os.urandom(self._size)
            at = 0
        self._next = at + 4
        return self._pool[at : at + 4]


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked data frame (a server's ``send``)."""
    length = len(payload)
    if length < 126:
        return bytes((_FIN | opcode, length)) + payload
    if length < 65536:
        return _LEN16.pack(_FIN | opcode, 126, length) + payload
    return struct.pack("!BBQ", _FIN | opcode, 127, length) + payload


def client_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One unfragmented data frame masked with ``key`` (a client's ``send``)."""
    length = len(payload)
    masked = apply_mask(payload, key)
    if length < 126:
        return bytes((_FIN | opcode, _MASK_BIT | length)) + key + masked
    if length < 65536:
        return _LEN16_MASKED.pack(_FIN | opcode, _MASK_BIT | 126, length, key) + masked
    return struct.pack("!BBQ4s", _FIN | opcode, _MASK_BIT | 127, length, key) + masked


class NextFrame(NamedTuple):
    """The next frame in a buffer: it ends at ``end``; ``payload`` (unmasked) and
    ``opcode`` are set only for a masked FIN text or binary frame with no reserved bits.
    (A named tuple, not a dataclass: one is made per caller frame.)"""

    end: int
    opcode: int = 0
    payload: bytes | None = None


INCOMPLETE = -1
"""``next_frame``'s answer when the buffer does not yet hold a whole frame header."""

TOO_LONG = -2
"""``next_frame``'s answer for a frame declared longer than the limit: the caller stops
splitting and lets ``websockets`` answer it."""


def next_frame(buffer: bytes, start: int, limit: int) -> NextFrame | int:
    """The frame beginning at ``start``, if ``buffer`` holds all of it.

    Returns ``INCOMPLETE`` if even its header is not all there, ``TOO_LONG`` if it
    declares more than ``limit`` payload bytes, the ``NextFrame``
    with ``end > len(buffer)`` when only its payload is missing, and otherwise the whole
    frame, with its payload when it is the fast shape."""
    available = len(buffer) - start
    if available < 2:
        return INCOMPLETE
    head1 = buffer[start]
    head2 = buffer[start + 1]
    length = head2 & 0x7F
    header = 2
    if length == 126:
        if available < 4:
            return INCOMPLETE
        length = (buffer[start + 2] << 8) | buffer[start + 3]
        header = 4
    elif length == 127:
        if available < 10:
            return INCOMPLETE
        length = int.from_bytes(buffer[start + 2 : start + 10], "big")
        header = 10
    if length > limit:
        return TOO_LONG
    masked = head2 & _MASK_BIT
    if masked:
        header += 4
    end = start + header + length
    if end > len(buffer):
        return NextFrame(end)
    opcode = head1 & 0x0F
    if (head1 & 0xF0) != _FIN or not masked or (opcode != OP_TEXT and opcode != OP_BINARY):
        return NextFrame(end)  # a control frame, a fragment, reserved bits, no mask: not ours
    key = buffer[start + header - 4 : start + header]
    return NextFrame(end, opcode, apply_mask(buffer[start + header : end], key))
