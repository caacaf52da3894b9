"""Build the final ``CallSummary`` from what every source learned about the call.

Sources, later ones winning field by field:

1. the post-call model extraction (``None`` when no model was reachable or it failed);
2. what the call learned live — the ``record_caller_details`` / ``request_callback`` /
   ``flag_emergency`` tool calls, or the scripted intake's answers;
3. the deterministic extractor over the *caller's* turns (``agent.keywords``), which fills
   the gaps.

Urgency follows DESIGN.md's merge rule: when the model or the live call set an urgency, it
stands — unless the caller's own words describe a **present life-safety situation** (gas,
carbon monoxide, fire/smoke/sparks, active flooding, no heat in freezing weather, dangerous
heat with vulnerable people) that it missed, which makes the call urgency 5. Without
either, the context-aware reader (``agent.urgency``) decides. A keyword in a compound noun,
a past event, a negation, a hypothetical or reported speech therefore never overrides a
model that had it right.

Then the contract's invariants: an emergency is urgency 5 (and urgency 5 is an emergency);
``caller_phone`` and ``callback_phone`` are E.164 where they parse; ``need`` is one short
line (≤ 80 characters) and never empty; a callback the caller declined stays declined;
``callback_due`` comes from the caller's window in the business's timezone. Rating is not
stored: ``CallSummary.rating`` derives it from urgency, so nothing the caller says ("set my
rating to Hot") can choose it.
"""

from __future__ import annotations

import datetime as dt
import re

import phonenumbers

from agent.business import Business
from agent.callbacks import callback_due
from agent.caller_intents import need_line, short_line
from agent.details import CallerDetails
from agent.keywords import details_from_keywords, find_keywords
from agent.summary import CallSummary, TranscriptTurn
from agent.urgency import UrgencyReading

__all__ = ["build_summary", "is_missed_call", "merged_urgency", "to_e164"]

DEFAULT_URGENCY = 2
MISSED_NEED = "Missed call"

_DETAILS_FALLBACK_CHARS = 1000


def to_e164(number: str | None, *, region: str) -> str | None:
    """``number`` as E.164 when it is a valid phone number, else ``None``."""
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _fallback_details(caller_texts: list[str]) -> str:
    text = " ".join(t.strip() for t in caller_texts if t.strip())
    if len(text) <= _DETAILS_FALLBACK_CHARS:
        return text
    return text[: _DETAILS_FALLBACK_CHARS - 3].rstrip() + "..."


def merged_urgency(learned: CallerDetails, reading: UrgencyReading) -> tuple[int, bool]:
    """(urgency, is_emergency) by DESIGN.md's rule (see the module docstring)."""
    if learned.urgency is not None or learned.is_emergency is not None:
        urgency = 5 if learned.is_emergency else (learned.urgency or DEFAULT_URGENCY)
        if reading.present_danger:
            urgency = 5  # the caller described a present danger the model missed
        return urgency, urgency == 5
    urgency = reading.urgency if reading.urgency is not None else DEFAULT_URGENCY
    return urgency, urgency == 5


def _without_repetition(need: str, details: str) -> str:
    """``details`` without the sentences that only repeat the need (the rest unchanged)."""
    key = " ".join(need.lower().strip(" .…").split())
    kept = []
    for sentence in re.split(r"(?<=[.!?])\s+", details.strip()):
        words = " ".join(sentence.lower().strip(" .!?").split())
        if words and (words == key or (len(key) > 12 and words in key)):
            continue
        kept.append(sentence)
    return " ".join(kept)


def is_missed_call(
    details: CallerDetails,
    need_guess: str | None,
    *,
    is_emergency: bool,
    caller_id: str | None = None,
    region: str = "US",
) -> bool:
    """DESIGN.md: a call that ended before the caller gave anything usable — no name and
    no need (nor an address, email, company, callback time or other number to call, nor
    an emergency). The caller ID as "callback number" does not count: the scripted intake
    fills it in for a silent caller."""
    other_number = (
        details.callback_phone
        and (to_e164(details.callback_phone, region=region) or details.callback_phone) != caller_id
    )
    usable = (
        details.first_name,
        details.last_name,
        details.need,
        need_guess,
        details.service_address,
        details.email,
        details.company,
        details.callback_window,
        other_number,
    )
    return not is_emergency and not any(usable)


def _missed_call(
    *,
    call_sid: str,
    business: Business,
    caller_phone: str,
    known: bool,
    transcript: list[TranscriptTurn],
    caller_texts: list[str],
    now: dt.datetime,
    duration_seconds: int,
    extraction: str,
    known_details: str | None = None,
) -> CallSummary:
    """A missed call: Cold (urgency 1), a callback due today when the number is known."""
    today = now.astimezone(business.tz).date()
    said = _fallback_details(caller_texts)
    lines = ["The caller hung up before leaving their name or what they needed."]
    if not known:
        lines.append("The number was withheld, so no callback is possible.")
    if said:
        lines.append(f"They said: {said}")
    if known_details:  # e.g. the voicemail recording's link, from the capture ledger
        lines.append(known_details)
    return CallSummary.model_validate(
        {
            "call_sid": call_sid,
            "business": business.name,
            "caller_phone": caller_phone,
            "need": MISSED_NEED,
            "details": " ".join(lines),
            "urgency": 1,
            "callback_requested": known,
            "callback_window": "today" if known else None,
            "callback_due": today if known else None,
            "call_date": today,
            "transcript": list(transcript),
            "duration_seconds": max(0, duration_seconds),
            "extraction": extraction,
            "missed_call": True,
        }
    )


def build_summary(
    *,
    call_sid: str,
    business: Business,
    caller_phone: str,
    transcript: list[TranscriptTurn],
    tool_details: CallerDetails,
    model_details: CallerDetails | None,
    now: dt.datetime,
    duration_seconds: int,
) -> CallSummary:
    """Merge every source into the summary handed to the CRM (see the module docstring)."""
    region = business.region
    caller_texts = [turn.text for turn in transcript if turn.speaker == "caller"]
    findings = find_keywords(caller_texts, region=region)

    learned = (model_details or CallerDetails()).merged_with(tool_details)
    merged = details_from_keywords(findings).merged_with(learned)

    urgency, is_emergency = merged_urgency(learned, findings.reading)

    caller_e164 = to_e164(caller_phone, region=region)
    callback_phone = to_e164(merged.callback_phone, region=region) or merged.callback_phone
    window = merged.callback_window
    declined = merged.callback_requested is False
    callback_requested = bool(merged.callback_requested) or (window is not None and not declined)
    if is_missed_call(
        merged,
        findings.need_guess,
        is_emergency=is_emergency,
        caller_id=caller_e164,
        region=region,
    ):
        return _missed_call(
            call_sid=call_sid,
            business=business,
            caller_phone=caller_e164 or "",  # only a number is a caller ID
            known=caller_e164 is not None,
            transcript=transcript,
            caller_texts=caller_texts,
            now=now,
            duration_seconds=duration_seconds,
            extraction="model" if model_details is not None else "deterministic",
            known_details=merged.details,
        )
    language = merged.language or findings.language or "en"
    need_text = merged.need or findings.need_guess
    if learned.need is None and need_text and not language.startswith("en"):
        # the caller's own words in another language: staff get an English line
        need_text = need_line(" ".join(caller_texts), language=language)
    need = short_line(need_text or f"Call from {caller_e164 or 'an unknown number'}")
    details = _without_repetition(need, merged.details or _fallback_details(caller_texts))

    return CallSummary(
        call_sid=call_sid,
        business=business.name,
        # only a number is a caller ID here; "anonymous", sip:/client: identities → ""
        caller_phone=caller_e164 or "",
        first_name=merged.first_name,
        last_name=merged.last_name,
        company=merged.company,
        email=merged.email,
        service_address=merged.service_address,
        callback_phone=callback_phone,
        need=need,
        details=details,
        urgency=urgency,
        is_emergency=is_emergency,
        callback_requested=callback_requested,
        callback_window=window,
        callback_due=(
            callback_due(window, now=now, tz=business.tz) if callback_requested else None
        ),
        call_date=now.astimezone(business.tz).date(),
        existing_customer=merged.existing_customer,
        new_project=bool(merged.new_project),
        language=language,
        transcript=list(transcript),
        duration_seconds=max(0, duration_seconds),
        extraction="model" if model_details is not None else "deterministic",
    )
