"""Spam screening: is this call a robocall, a blocked number or a silent line?

Pure functions, called twice per call: ``screen_inbound`` at Twilio's "a call comes in"
webhook (the business's blocklist and Twilio's ``StirVerstat`` — the STIR/SHAKEN result
Twilio adds for calls it could verify), and ``screen_finished`` when the call is finalized
(what the caller said, or did not say, and how long they stayed).

Verdicts: ``clean``; ``suspect`` (a signal, not enough alone — the call is handled like
any other and the reason is recorded); ``spam`` (recorded locally and shown on the staff
pages; not written to the CRM as a Lead unless the business sets ``spam_to_crm``).

- a blocklisted number → spam (the call is refused with ``<Reject>``);
- STIR/SHAKEN failed (``TN-Validation-Failed…``) → suspect; with no speech at all → spam;
- machine-like speech (robocall scripts: "press one", "extended warranty", "final
  notice", "your Google listing"…) → spam;
- a silent line that stayed on through our questions → spam;
- an instant hang-up with no speech → suspect only (a person who hung up is a missed
  call, not spam — unless STIR/SHAKEN also failed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers

__all__ = ["Screening", "looks_like_robocall", "screen_finished", "screen_inbound"]

Verdict = Literal["clean", "suspect", "spam"]

INSTANT_HANG_UP_SECONDS = 5
SILENT_LINE_PROMPTS = 2  # our questions the caller stayed silent through
SILENT_LINE_SECONDS = 30  # a Media Stream call with no speech for this long

_ROBOCALL_STRONG = re.compile(
    r"\bpress (?:one|1|two|2|nine|9)\b|\bextended (?:car |auto |vehicle )?warranty\b"
    r"|\bvehicle'?s? (?:factory )?warranty\b|\b(?:google|business) listing\b"
    r"|\bthis is (?:a|an) (?:recorded|automated|pre-?recorded) (?:message|call)\b"
    r"|\bto be removed from (?:our|the|this) (?:list|calling list)\b"
    r"|\bsocial security (?:number )?(?:has been|is) (?:suspended|compromised)\b"
    r"|\boprima (?:el )?(?:uno|1|dos|2)\b|\bmensaje grabado\b",
    re.IGNORECASE,
)
_ROBOCALL_WEAK = re.compile(
    r"\bfinal notice\b|\bcongratulations\b|\byou(?:'ve| have) been (?:selected|approved)\b"
    r"|\blower your (?:interest )?rate\b|\bcredit card (?:debt|interest)\b|\bstudent loans?\b"
    r"|\bmedicare\b|\birs\b|\bdo not hang up\b|\blimited time\b|\bact now\b"
    r"|\bthis call is to inform you\b|\bexpir(?:es|ing|ed)\b|\bfree (?:trip|cruise|quote today)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Screening:
    """A call's spam classification and why."""

    verdict: Verdict = "clean"
    reasons: tuple[str, ...] = ()
    stir_verstat: str | None = None

    @property
    def is_spam(self) -> bool:
        return self.verdict == "spam"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "stir_verstat": self.stir_verstat,
        }

    @classmethod
    def from_json(cls, data: object) -> Screening:
        """Read back ``to_json()``; anything unreadable is a clean screening."""
        if not isinstance(data, dict):
            return cls()
        verdict = data.get("verdict")
        reasons = data.get("reasons")
        stir = data.get("stir_verstat")
        return cls(
            verdict=verdict if verdict in ("clean", "suspect", "spam") else "clean",
            reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
            stir_verstat=str(stir) if isinstance(stir, str) else None,
        )


def _e164(number: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _escalate(current: Screening, verdict: Verdict, reason: str) -> Screening:
    order = {"clean": 0, "suspect": 1, "spam": 2}
    best: Verdict = verdict if order[verdict] > order[current.verdict] else current.verdict
    return Screening(best, (*current.reasons, reason), current.stir_verstat)


def screen_inbound(
    *,
    caller: str,
    stir_verstat: str | None,
    blocklist: Iterable[str],
    region: str = "US",
) -> Screening:
    """The screening at the "a call comes in" webhook."""
    result = Screening(stir_verstat=stir_verstat or None)
    caller_e164 = _e164(caller, region)
    blocked = {_e164(n, region) for n in blocklist} - {None}
    if caller_e164 is not None and caller_e164 in blocked:
        result = _escalate(result, "spam", "blocklisted number")
    if stir_verstat and stir_verstat.startswith("TN-Validation-Failed"):
        result = _escalate(result, "suspect", f"STIR/SHAKEN: {stir_verstat}")
    return result


def looks_like_robocall(caller_texts: Sequence[str]) -> bool:
    """Machine-like speech: a robocall script, not a person (so an "emergency notice"
    robocall never wakes the on-call technician)."""
    words = " ".join(t for t in caller_texts if t.strip())
    return bool(_ROBOCALL_STRONG.search(words)) or len(_ROBOCALL_WEAK.findall(words)) >= 2


def screen_finished(
    inbound: Screening,
    *,
    caller_texts: Sequence[str],
    agent_turns: int,
    duration_seconds: int,
) -> Screening:
    """The screening when the call is over: ``inbound`` plus what happened on the line.

    ``agent_turns``: how many times the receptionist spoke (greeting and questions).
    """
    result = inbound
    words = " ".join(t for t in caller_texts if t.strip())
    if looks_like_robocall(caller_texts):
        result = _escalate(result, "spam", "machine-like speech")
    if words:
        return result
    if inbound.verdict == "suspect":
        return _escalate(result, "spam", "no speech on a call that failed STIR/SHAKEN")
    if agent_turns >= SILENT_LINE_PROMPTS + 1 or (
        duration_seconds >= SILENT_LINE_SECONDS and agent_turns >= 1
    ):
        return _escalate(result, "spam", "silent line")
    if duration_seconds <= INSTANT_HANG_UP_SECONDS:
        return _escalate(result, "suspect", "instant hang-up")
    return result
