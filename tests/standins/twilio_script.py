"""What the stand-in caller does (`CallerScript`) and what it observed (`CallResult`).

Steps run in order while a Media Stream is open; media frames flow every 20 ms of audio
time whatever the step (silence unless the caller speaks). Steps left over when a stream
ends carry over to the next stream of the same call. Outside streams (``<Gather>``,
``<Dial>``) the caller answers from ``speech`` and ``dial_outcome`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Say:
    """The caller speaks (a tone) for ``ms``."""

    ms: int = 900


@dataclass(frozen=True, slots=True)
class Pause:
    """The caller stays silent for ``ms`` (silence frames keep flowing)."""

    ms: int


@dataclass(frozen=True, slots=True)
class ListenUntilAgentDone:
    """Wait until agent audio has started playing and then nothing has played for
    ``quiet_ms`` (audio time) — counted only while the model is not still answering, when
    the test told the stand-in how to know (`TwilioStandin.agent_busy`). Gives up after
    ``timeout_s`` of wall time, recording the timeout in `CallResult.script_timeouts`."""

    quiet_ms: int = 700
    timeout_s: float = 15


@dataclass(frozen=True, slots=True)
class InterruptAgent:
    """Wait until agent audio has been playing for ``after_ms`` without a gap and more of
    it is still queued (the agent is mid-sentence), then speak over it for ``say_ms``.
    Gives up after ``timeout_s`` of wall time (recorded).

    With ``until_cleared`` (the default), the stream's audio clock stands still right after
    the caller's first frame of speech — nothing plays, no frame is sent — until the app's
    ``clear`` arrives: the interruption lands on the audio queued at that moment, however
    long the app and the machine take to react (a bounded wait of ``timeout_s``, recorded
    when it runs out). Without it, audio keeps playing while the app reacts, as on a real
    line, and what is left to clear depends on the machine's speed."""

    after_ms: int = 300
    say_ms: int = 900
    timeout_s: float = 15
    until_cleared: bool = True


@dataclass(frozen=True, slots=True)
class Hold:
    """The caller stays on the line, silent, until ``until()`` is true (checked every tick)
    or, without ``until``, until the app ends or moves the stream. Either is an event the
    test waits for, not a length of time: ``timeout_s`` of wall time only bounds a broken
    app, and running out is recorded in `CallResult.script_timeouts` (then the step ends)."""

    until: Callable[[], object] | None = None
    timeout_s: float = 20


@dataclass(frozen=True, slots=True)
class PressDigit:
    """The caller presses a key: a ``dtmf`` message on the stream."""

    digit: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """The caller hangs up: ``stop`` on the stream, socket closed, status callback."""


Step = Say | Pause | Hold | ListenUntilAgentDone | InterruptAgent | PressDigit | HangUp
DialOutcome = Literal["completed", "no-answer", "busy", "failed", "voicemail"]
"""What happens on a ``<Dial>``ed line: ``completed`` a person answers (and, when the leg is
screened, presses ``office_digits``), ``voicemail`` a machine answers (it hears the
screening prompt and presses nothing)."""


@dataclass(slots=True)
class CallerScript:
    """The caller's behaviour for one call.

    ``speech`` answers successive ``<Gather>``s: a non-empty entry becomes SpeechResult
    (or Digits for a DTMF-only Gather when it is all keypad characters; ``"dtmf:2"`` presses
    keys at a Gather that also listens for them), an empty entry is no input (timeout).
    When ``speech`` runs out at a ``<Gather>``, the caller has nothing more to say and
    hangs up.
    """

    steps: list[Step] = field(default_factory=list)
    speech: list[str] = field(default_factory=list)
    dial_outcome: DialOutcome = "no-answer"
    office_digits: str = "1"
    stir_verstat: str | None = None
    """The STIR/SHAKEN result Twilio reports for the call (``StirVerstat``), e.g.
    "TN-Validation-Passed-A" or "TN-Validation-Failed"; None: not verified (absent)."""


StreamCloser = Literal["", "caller", "app", "rest_update"]
CallEnder = Literal["", "caller", "app_hangup", "twiml_end", "application_error"]


@dataclass(slots=True)
class CallResult:
    """Everything the caller observed during one call, filled in as the call runs."""

    call_sid: str
    twiml: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    played_audio_ms: int = 0
    first_audio_ms: int | None = None  # audio time from stream start to the first agent audio heard
    cleared_audio_ms: int = 0
    received: list[dict[str, object]] = field(default_factory=list)
    sent: list[dict[str, object]] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    played_after_clear: list[dict[str, int]] = field(default_factory=list)
    stream_closed_by: StreamCloser = ""
    ended_by: CallEnder = ""
    status_callbacks: list[int] = field(default_factory=list)
    webhook_statuses: list[int] = field(default_factory=list)
    # Beyond the brief's interface:
    webhook_urls: list[str] = field(default_factory=list)
    """Public URL of every webhook request, in order (method-prefixed, e.g. "POST https://…")."""
    heard_audio: bytes = b""
    """The agent audio that actually played to the caller, μ-law."""
    protocol_errors: list[str] = field(default_factory=list)
    """App → Twilio stream messages Twilio would ignore (wrong streamSid, bad base64, …)."""
    errors: list[str] = field(default_factory=list)
    """Call-level failures Twilio reports in its debugger (bad TwiML, stream handshake…)."""
    script_timeouts: list[str] = field(default_factory=list)
    dialed: list[str] = field(default_factory=list)
    screening_heard: list[str] = field(default_factory=list)
    """What the dialled party heard from a ``<Number url>`` screening document."""
    bridged_to: list[str] = field(default_factory=list)
    """Numbers the caller was really connected to (answered and, if screened, accepted)."""
    gather_languages: list[str] = field(default_factory=list)
    """The speech-recognition language of every <Gather> the caller answered."""
    voices: list[str] = field(default_factory=list)
    """The voice of every <Say> the caller heard."""
    streams: int = 0
    gave_up: bool = False
    """The script ran out and the app kept the line open too long: the caller hung up."""
    turn_latencies_ms: list[int] = field(default_factory=list)
    """Audio ms from the end of each caller utterance to the next agent audio played."""
    duration_s: int = 0
