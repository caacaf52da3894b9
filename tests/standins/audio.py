"""G.711 μ-law audio for the stand-ins: what Twilio Media Streams and the Realtime API's
``audio/pcmu`` format carry (8 kHz, 8-bit, 1 byte per sample, so 8 bytes per ms).

Speech is simulated by a tone with a soft envelope; silence is the μ-law code for zero
(0xFF). The Realtime stand-in tells speech from silence by the energy of the frames.
"""

from __future__ import annotations

import math

SAMPLE_RATE = 8000
BYTES_PER_MS = SAMPLE_RATE // 1000
FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS  # 160 bytes: one Twilio media frame
SILENCE_BYTE = 0xFF

_BIAS = 0x84
_CLIP = 32635


def _encode_sample(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _decode_byte(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    sample = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -sample if sign else sample


_DECODE_TABLE = [_decode_byte(b) for b in range(256)]


def encode(samples: list[int]) -> bytes:
    """16-bit linear PCM samples to μ-law bytes."""
    return bytes(_encode_sample(s) for s in samples)


def decode(data: bytes) -> list[int]:
    """μ-law bytes to 16-bit linear PCM samples."""
    return [_DECODE_TABLE[b] for b in data]


def silence(ms: int) -> bytes:
    return bytes([SILENCE_BYTE]) * (ms * BYTES_PER_MS)


def tone(ms: int, *, frequency: float = 220.0, amplitude: int = 8000) -> bytes:
    """A speech-like tone with 10 ms fades, loud enough for any energy detector."""
    n = ms * BYTES_PER_MS
    fade = min(80, n // 2)
    samples = []
    for i in range(n):
        envelope = min(1.0, i / fade, (n - i) / fade) if fade else 1.0
        samples.append(
            int(amplitude * envelope * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE))
        )
    return encode(samples)


def rms(data: bytes) -> float:
    """Root-mean-square energy of μ-law audio in linear units (0 for digital silence)."""
    if not data:
        return 0.0
    total = sum(_DECODE_TABLE[b] ** 2 for b in data)
    return math.sqrt(total / len(data))


def frames(data: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Split audio into Twilio-sized frames, padding the last one with silence."""
    out = []
    for start in range(0, len(data), frame_bytes):
        chunk = data[start : start + frame_bytes]
        if len(chunk) < frame_bytes:
            chunk += bytes([SILENCE_BYTE]) * (frame_bytes - len(chunk))
        out.append(chunk)
    return out


def duration_ms(data: bytes) -> int:
    return len(data) // BYTES_PER_MS
