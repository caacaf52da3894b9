"""Audio conversions for the phone line, pure functions.

Twilio Media Streams and the Realtime API's ``audio/pcmu`` carry G.711 μ-law at 8 kHz.
OpenAI's speech endpoint returns ``pcm``: 16-bit little-endian mono at 24 kHz. The greeting
is rendered once per business, so this runs off the audio hot path.
"""

from __future__ import annotations

import array
import sys

PCMU_BYTES_PER_MS = 8
_BIAS = 0x84
_CLIP = 32635


def _mulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def pcm16_to_mulaw(samples: array.array[int]) -> bytes:
    """16-bit linear samples to μ-law bytes."""
    return bytes(_mulaw(s) for s in samples)


def pcm24k_to_mulaw8k(pcm: bytes) -> bytes:
    """OpenAI ``pcm`` (24 kHz s16le mono) to Twilio μ-law 8 kHz.

    Each output sample is the mean of three input samples: a boxcar low-pass before the
    decimation, enough to keep speech intelligible on an 8 kHz line without aliasing hiss.
    """
    usable = len(pcm) - len(pcm) % 2
    samples = array.array("h")
    samples.frombytes(pcm[:usable])
    if sys.byteorder != "little":
        samples.byteswap()
    out = array.array("h", (sum(samples[i : i + 3]) // 3 for i in range(0, len(samples) - 2, 3)))
    return pcm16_to_mulaw(out)


def chunks(audio: bytes, ms: int) -> list[bytes]:
    """Split μ-law audio into pieces of ``ms`` milliseconds (the last may be shorter)."""
    size = ms * PCMU_BYTES_PER_MS
    return [audio[i : i + size] for i in range(0, len(audio), size)]
