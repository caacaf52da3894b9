"""The Twilio side of a bidirectional Media Stream, without I/O (sans-I/O core).

- `parse_app_message` validates what the app sends (media / mark / clear), as Twilio's
  "WebSocket Messages" doc defines them; anything else is a `ProtocolViolation` that Twilio
  would ignore.
- `Playback` is Twilio's outbound buffer: audio plays at 8 bytes per ms, a mark is echoed
  once all audio queued before it has played, ``clear`` drops the buffer and echoes every
  pending mark at once.
- `CallerVoice` runs the caller's script one 20 ms tick at a time; wall time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from dataclasses import dataclass, field

from tests.standins import audio
from tests.standins.twilio_script import (
    HangUp,
    Hold,
    ListenUntilAgentDone,
    Pause,
    PressDigit,
    Say,
    Step,
)

FRAME_MS = audio.FRAME_MS
SILENT_FRAME = audio.silence(FRAME_MS)


# -- messages from the app ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppMedia:
    payload: bytes


@dataclass(frozen=True, slots=True)
class AppMark:
    name: str


@dataclass(frozen=True, slots=True)
class AppClear:
    pass


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    reason: str


AppMessage = AppMedia | AppMark | AppClear


def parse_app_message(raw: str | bytes, stream_sid: str) -> AppMessage | ProtocolViolation:
    """Validate one websocket message from the app against the documented shapes."""
    if isinstance(raw, bytes):
        return ProtocolViolation("binary frame (Twilio expects JSON text frames)")
    try:
        message = json.loads(raw)
    except ValueError:
        return ProtocolViolation("not JSON")
    if not isinstance(message, dict):
        return ProtocolViolation("not a JSON object")
    event = message.get("event")
    if event not in {"media", "mark", "clear"}:
        return ProtocolViolation(f"unknown event {event!r}")
    if message.get("streamSid") != stream_sid:
        return ProtocolViolation(
            f"{event}: wrong or missing streamSid {message.get('streamSid')!r}"
        )
    if event == "clear":
        return AppClear()
    if event == "mark":
        mark = message.get("mark")
        if not isinstance(mark, dict) or not isinstance(mark.get("name"), str) or not mark["name"]:
            return ProtocolViolation("mark: missing mark.name")
        return AppMark(mark["name"])
    media = message.get("media")
    if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
        return ProtocolViolation("media: missing media.payload")
    try:
        payload = base64.b64decode(media["payload"], validate=True)
    except (binascii.Error, ValueError):
        return ProtocolViolation("media: payload is not valid base64")
    if not payload:
        return ProtocolViolation("media: empty payload")
    return AppMedia(payload)


# -- playback -------------------------------------------------------------------------


@dataclass(slots=True)
class _QueuedAudio:
    data: bytes
    epoch: int


@dataclass(frozen=True, slots=True)
class PlayedTick:
    audio: bytes
    marks: tuple[str, ...]
    stale_epochs: tuple[int, ...]
    """Epochs of audio played although a clear came after it was queued (must be empty)."""


class Playback:
    """Twilio's outbound audio buffer for one stream."""

    def __init__(self) -> None:
        self._queue: deque[_QueuedAudio | str] = deque()
        self._epoch = 0  # how many clears so far; audio is tagged with the epoch it joined

    @property
    def queued_bytes(self) -> int:
        return sum(len(item.data) for item in self._queue if isinstance(item, _QueuedAudio))

    def add_audio(self, data: bytes) -> None:
        self._queue.append(_QueuedAudio(data, self._epoch))

    def add_mark(self, name: str) -> list[str]:
        """Queue a mark; returns it at once when no audio is ahead of it."""
        if not self._queue:
            return [name]
        self._queue.append(name)
        return []

    def clear(self) -> tuple[int, list[str]]:
        """Drop everything queued: (bytes discarded, marks to echo now)."""
        dropped = self.queued_bytes
        marks = [item for item in self._queue if isinstance(item, str)]
        self._queue.clear()
        self._epoch += 1
        return dropped, marks

    def advance(self, nbytes: int) -> PlayedTick:
        """Play up to ``nbytes`` of audio; echo the marks that are now due."""
        played = bytearray()
        stale: list[int] = []
        marks: list[str] = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, str):
                marks.append(head)
                self._queue.popleft()
                continue
            if len(played) >= nbytes:
                break
            take = head.data[: nbytes - len(played)]
            played += take
            if head.epoch != self._epoch:
                stale.append(head.epoch)
            head.data = head.data[len(take) :]
            if not head.data:
                self._queue.popleft()
        return PlayedTick(bytes(played), tuple(marks), tuple(stale))


# -- the caller -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerTick:
    frame: bytes
    digit: str | None = None
    hang_up: bool = False
    timed_out: str | None = None
    utterance_ended: bool = False
    await_clear_s: float | None = None
    """Stop the audio clock after this frame until the app's ``clear`` arrives (waiting at
    most this many wall seconds)."""


@dataclass(slots=True)
class _StepState:
    step: Step
    started_at: float
    frames: deque[bytes] = field(default_factory=deque)
    speaking: bool = False
    heard_agent: bool = False
    quiet_ms: int = 0
    pause_left_ms: int = 0


class CallerVoice:
    """Runs the caller's steps; one `tick` per 20 ms of audio time."""

    def __init__(self, steps: list[Step]) -> None:
        self._steps: deque[Step] = deque(steps)
        self._current: _StepState | None = None

    @property
    def exhausted(self) -> bool:
        return self._current is None and not self._steps

    def abandon_step(self) -> None:
        """The stream ended under the current step: it is dropped, the rest carry over."""
        self._current = None

    def tick(
        self,
        *,
        agent_playing: bool,
        playing_run_ms: int,
        now: float,
        agent_queued: bool = False,
        agent_busy: bool = False,
    ) -> CallerTick:
        """What the caller sends this tick, given what it heard during the tick, whether
        more agent audio is queued behind it, and whether the model is still answering
        (see `TwilioStandin.agent_busy`)."""
        timed_out: str | None = None
        while True:
            state = self._current
            if state is None:
                if not self._steps:
                    return CallerTick(SILENT_FRAME, timed_out=timed_out)
                state = self._current = _StepState(self._steps.popleft(), started_at=now)
                if isinstance(state.step, Pause):
                    state.pause_left_ms = state.step.ms
            step = state.step
            if isinstance(step, HangUp):
                self._current = None
                return CallerTick(SILENT_FRAME, hang_up=True, timed_out=timed_out)
            if isinstance(step, PressDigit):
                self._current = None
                return CallerTick(SILENT_FRAME, digit=step.digit, timed_out=timed_out)
            if isinstance(step, Pause):
                if state.pause_left_ms <= 0:
                    self._current = None
                    continue
                state.pause_left_ms -= FRAME_MS
                if state.pause_left_ms <= 0:
                    self._current = None
                return CallerTick(SILENT_FRAME, timed_out=timed_out)
            if isinstance(step, Hold):
                if step.until is not None and step.until():
                    self._current = None
                    continue
                if now - state.started_at > step.timeout_s:
                    timed_out = f"{step!r}: still holding after timeout_s"
                    self._current = None
                    continue
                return CallerTick(SILENT_FRAME, timed_out=timed_out)
            if isinstance(step, Say):
                if not state.speaking:
                    state.speaking = True
                    state.frames = deque(audio.frames(audio.tone(step.ms)))
                return self._speak(state, timed_out)
            if isinstance(step, ListenUntilAgentDone):
                if agent_playing:
                    state.heard_agent = True
                    state.quiet_ms = 0
                elif state.heard_agent:
                    # A pause while the model is still answering is not the end of it.
                    state.quiet_ms = 0 if agent_busy else state.quiet_ms + FRAME_MS
                if state.heard_agent and state.quiet_ms >= step.quiet_ms:
                    self._current = None
                    continue
                if now - state.started_at > step.timeout_s:
                    timed_out = f"{step!r}: agent audio never started and ended"
                    self._current = None
                    continue
                return CallerTick(SILENT_FRAME, timed_out=timed_out)
            # InterruptAgent
            if state.speaking:
                return self._speak(state, timed_out)
            if agent_playing and agent_queued and playing_run_ms >= step.after_ms:
                state.speaking = True
                state.frames = deque(audio.frames(audio.tone(step.say_ms)))
                first = self._speak(state, timed_out)
                if not step.until_cleared:
                    return first
                return CallerTick(
                    first.frame,
                    timed_out=first.timed_out,
                    utterance_ended=first.utterance_ended,
                    await_clear_s=step.timeout_s,
                )
            if now - state.started_at > step.timeout_s:
                timed_out = f"{step!r}: agent audio never played for after_ms"
                self._current = None
                continue
            return CallerTick(SILENT_FRAME, timed_out=timed_out)

    def _speak(self, state: _StepState, timed_out: str | None) -> CallerTick:
        frame = state.frames.popleft() if state.frames else SILENT_FRAME
        ended = not state.frames
        if ended:
            self._current = None
        return CallerTick(frame, timed_out=timed_out, utterance_ended=ended)
