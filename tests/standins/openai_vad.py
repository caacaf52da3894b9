"""Server VAD for the Realtime stand-in: speech detected by the energy of μ-law audio.

Pure: fed audio bytes, returns speech start/stop events. All times are AUDIO time (ms of
audio appended since the session started), never wall time, like the real server's
``audio_start_ms`` / ``audio_end_ms``.

The real VAD is a model whose ``threshold`` (0..1) is not an energy level; we map it to a
linear RMS level (0.5 → 2000 of 32767, about -24 dBFS) so that tones from
``tests/standins/audio.py`` are speech at any threshold and digital silence never is.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.standins import audio

WINDOW_MS = 10
_WINDOW_BYTES = WINDOW_MS * audio.BYTES_PER_MS
RMS_PER_THRESHOLD = 4000.0


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int
    """Onset minus ``prefix_padding_ms`` (not before the current buffer's start)."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int
    """Where the silence that ended speech reached ``silence_duration_ms``."""


VadEvent = SpeechStarted | SpeechStopped


class EnergyVad:
    """Energy-based turn detection over a running μ-law stream."""

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
    ) -> None:
        self.threshold = threshold
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.position_ms = 0
        self.buffer_start_ms = 0
        self.in_speech = False
        self._silent_ms = 0
        self._pending = b""

    def configure(
        self, *, threshold: float, prefix_padding_ms: int, silence_duration_ms: int
    ) -> None:
        """Apply new turn-detection settings without losing the audio clock."""
        self.threshold = threshold
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms

    def feed(self, data: bytes) -> list[VadEvent]:
        """Consume appended audio; return the speech events it causes, in order."""
        self._pending += data
        events: list[VadEvent] = []
        level = self.threshold * RMS_PER_THRESHOLD
        while len(self._pending) >= _WINDOW_BYTES:
            window, self._pending = self._pending[:_WINDOW_BYTES], self._pending[_WINDOW_BYTES:]
            start = self.position_ms
            self.position_ms += WINDOW_MS
            loud = audio.rms(window) >= level
            if not self.in_speech:
                if loud:
                    self.in_speech = True
                    self._silent_ms = 0
                    onset = max(self.buffer_start_ms, start - self.prefix_padding_ms)
                    events.append(SpeechStarted(audio_start_ms=onset))
                continue
            self._silent_ms = 0 if loud else self._silent_ms + WINDOW_MS
            if self._silent_ms >= self.silence_duration_ms:
                self.in_speech = False
                self._silent_ms = 0
                events.append(SpeechStopped(audio_end_ms=self.position_ms))
        return events

    def reset_buffer(self) -> None:
        """The input buffer was committed or cleared: speech state starts over from here."""
        self.buffer_start_ms = self.position_ms
        self.in_speech = False
        self._silent_ms = 0
