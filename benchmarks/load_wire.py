"""Lean RFC 6455 framing and HTTP/1.1 heads for the load generator.

The load generator must drive hundreds of calls from one core, so it does not use a
websocket library: frames are built from pre-built bytes and parsed with a few slices.
Only what the rig needs is here: unfragmented text frames, ping/pong, close. Client frames
are masked with the all-zero key (a valid mask: XOR with zero is the identity), which spares
the generator the masking cost; the servers under test unmask as usual.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from websockets.speedups import apply_mask  # the C masking routine websockets itself uses

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
_ZERO_MASK = b"\x00\x00\x00\x00"


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def _head(opcode: int, length: int, mask_bit: int) -> bytes:
    if length < 126:
        return bytes((0x80 | opcode, mask_bit | length))
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, length)


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """A masked (zero key) frame, as a client must send."""
    return _head(opcode, len(payload), 0x80) + _ZERO_MASK + payload


def server_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """An unmasked frame, as a server sends."""
    return _head(opcode, len(payload), 0) + payload


class FrameReader:
    """Incremental frame parser: ``feed(data)`` returns complete ``(opcode, payload)``s."""

    __slots__ = ("_buf", "fragmented")

    def __init__(self) -> None:
        self._buf = b""
        self.fragmented = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, bytes]] = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            mask = b""
            if b1 & 0x80:
                mask = buf[pos + head : pos + head + 4]
                head += 4
            end = pos + head + length
            if end > size:
                break
            payload = buf[pos + head : end]
            if mask and mask != _ZERO_MASK:
                payload = apply_mask(payload, mask)
            if not b0 & 0x80:
                self.fragmented += 1  # neither server under test fragments; counted, not joined
            out.append((b0 & 0x0F, payload))
            pos = end
        self._buf = buf[pos:] if pos < size else b""
        return out


def split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """``(head, rest)`` once an HTTP head is complete, else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    return data[: end + 4], data[end + 4 :]


def header(head: bytes, name: bytes) -> bytes | None:
    """One header's value from an HTTP head (case-insensitive name)."""
    wanted = name.lower() + b":"
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(wanted):
            return line[len(wanted) :].strip()
    return None
