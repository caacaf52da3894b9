"""What Twilio's ``From`` says about a caller: a phone number, or something that is not one.

Twilio passes the caller ID as it got it: an E.164 number, but also ``anonymous`` /
``restricted`` / ``unknown`` (or the keypad spellings of those, such as ``+266696687``)
when the caller ID is withheld, ``sip:alice@example.com`` for SIP trunks and
``client:identity`` for the Voice SDK — of any length. Only a valid phone number is ever
used as a number (stored as ``caller_phone``, searched in the CRM, texted); everything
else is kept as Twilio sent it (bounded) for staff, and the call is recorded as having no
caller ID.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import phonenumbers

__all__ = ["MAX_RAW_CALLER_ID", "CallerId", "CallerIdKind", "read_caller_id"]

MAX_RAW_CALLER_ID = 255
"""The longest ``From`` value kept as Twilio sent it (a longer one is cut, never refused)."""

_WITHHELD_WORDS = frozenset(
    {"anonymous", "restricted", "unknown", "unavailable", "private", "blocked", "withheld"}
)
# Keypad spellings Twilio uses for withheld caller IDs: ANONYMOUS, RESTRICTED, UNKNOWN,
# UNAVAILABLE. None is a valid number, so they would be refused anyway; naming them lets
# the record say "withheld" rather than "not a phone number".
_WITHHELD_NUMBERS = frozenset({"+266696687", "+7378742833", "+86282452253", "+8656696"})


class CallerIdKind(enum.Enum):
    NUMBER = "number"
    WITHHELD = "withheld"
    SIP = "sip"
    CLIENT = "client"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class CallerId:
    """``kind`` and, for a real number only, ``e164``; ``raw`` is ``From`` (bounded)."""

    kind: CallerIdKind
    raw: str
    e164: str | None = None

    @property
    def has_number(self) -> bool:
        return self.e164 is not None

    def describe(self) -> str:
        """How staff should read it: the number, or why there is none (no raw values)."""
        if self.e164 is not None:
            return self.e164
        return {
            CallerIdKind.WITHHELD: "caller ID withheld",
            CallerIdKind.SIP: "SIP caller (no phone number)",
            CallerIdKind.CLIENT: "app caller (no phone number)",
        }.get(self.kind, "no usable caller ID")


def read_caller_id(raw: str | None) -> CallerId:
    """Classify Twilio's ``From``; only a valid E.164 number gets ``e164``."""
    text = " ".join((raw or "").split())[:MAX_RAW_CALLER_ID]
    lowered = text.lower()
    if not text or lowered in _WITHHELD_WORDS or text in _WITHHELD_NUMBERS:
        return CallerId(CallerIdKind.WITHHELD, text)
    if lowered.startswith(("sip:", "sips:")):
        return CallerId(CallerIdKind.SIP, text)
    if lowered.startswith("client:"):
        return CallerId(CallerIdKind.CLIENT, text)
    if not text.startswith("+"):
        return CallerId(CallerIdKind.OTHER, text)
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return CallerId(CallerIdKind.OTHER, text)
    if not phonenumbers.is_valid_number(parsed):
        return CallerId(CallerIdKind.OTHER, text)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return CallerId(CallerIdKind.NUMBER, text, e164)
