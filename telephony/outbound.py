"""What the service may send on a caller's behalf, to whom, and how often — pure rules.

A caller chooses some of what the service sends (a callback number, words a model
repeats), so every outbound text or call goes through three checks here:

- **Where**: ``sms_destination`` — the caller ID, or else the callback number the caller
  gave, and only a number ``phonenumbers`` calls fixed-line or mobile *in the business's
  own country* (never premium-rate, shared-cost, toll-free, satellite or another country:
  a "+7 912…" callback number for a US business is never texted). The business's own
  configured phones (on-call, office) are trusted as configured.
- **What**: caller words never reach a caller-bound body. ``confirmation_body`` is built
  from a fixed vocabulary ("today", "tomorrow", "on Monday", a date); the emergency alert
  to the business's own on-call phone (``emergency_alert_body``) does carry caller facts,
  each field bounded, links and e-mail addresses removed, the whole at most one SMS
  segment set (``ALERT_MAX_CHARS``).
- **How often**: ``OutboundLimiter`` — rolling one-hour windows per destination number and
  per business: caller-facing texts on one budget, the emergency alerts and warm
  transfers to the business's own on-call phone on their own, higher one (so neither can
  starve the other), one emergency alert / one transfer / one confirmation per call, and
  the owner's notices about alerts (budget used up: once a window; an alert given up:
  once a call), counted in the database (``outbound_sends``) so every process and node
  shares them. Time is passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

from crm.store import Store

__all__ = [
    "ALERT_MAX_CHARS",
    "OutboundKind",
    "OutboundLimiter",
    "OutboundLimits",
    "confirmation_body",
    "emergency_alert_body",
    "sms_destination",
    "staff_callback_number",
    "strip_links",
    "when_phrase",
]

_DESTINATION_LABEL = b"receptionist outbound destination v1"

ALERT_MAX_CHARS = 320
"""Two GSM segments: enough for name, number, address and need, not for a letter."""

_ALLOWED_TYPES = frozenset(
    {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def _textable(raw: str | None, region: str) -> str | None:
    """``raw`` as E.164 if it is a valid fixed-line/mobile number of ``region``."""
    if not raw or not any(c.isdigit() for c in raw):
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.region_code_for_number(number) != region:
        return None
    if phonenumbers.number_type(number) not in _ALLOWED_TYPES:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sms_destination(
    caller_phone: str | None, callback_phone: str | None, region: str
) -> str | None:
    """Where a text to this caller may go: the callback number they asked for, else their
    caller ID — each only if it is a fixed-line or mobile number in ``region`` (the
    business's country. A call without such a caller ID (withheld, SIP, client, another
    country) gets no text at all: nothing vouches for a number it dictates. ``None``: no
    text."""
    caller_id = _textable(caller_phone, region)
    if caller_id is None:
        return None
    return _textable(callback_phone, region) or caller_id


def staff_callback_number(
    caller_phone: str | None, callback_phone: str | None, region: str
) -> str | None:
    """The number to print in an alert to the business's own on-call phone: the callback
    number or caller ID when it is a fixed-line/mobile number of ``region``; ``None``
    otherwise (staff find what the caller said in the CRM record, not in a text)."""
    return _textable(callback_phone, region) or _textable(caller_phone, region)


# -- bodies ----------------------------------------------------------------------------

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def when_phrase(due: dt.date | None, today: dt.date | None, *, urgent: bool = False) -> str:
    """The callback time in our own words: "today", "tomorrow", "on Friday", "on March 3",
    or "as soon as possible" — never the caller's."""
    if urgent or due is None or today is None:
        return "as soon as possible"
    if due <= today:
        return "today"
    days = (due - today).days
    if days == 1:
        return "tomorrow"
    if days < 7:
        return f"on {_WEEKDAYS[due.weekday()]}"
    return f"on {_MONTHS[due.month - 1]} {due.day}"


def confirmation_body(business_name: str, when: str) -> str:
    """The text a caller gets after the call: the business (configured) and ``when``
    (from ``when_phrase``). Nothing the caller said."""
    return f"{business_name} got your request and will call you back {when}."


_URL_RE = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://\S+)"  # scheme://anything
    r"|(?:\b(?:javascript|vbscript|data|mailto|sms|tel|intent):\S+)"
    r"|(?:\bwww\.\S+)"
    r"|(?:\S+@\S+\.\S+)"  # e-mail addresses
    r"|(?:\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\b(?:[/:?#]\S*)?)",  # bare domains
    re.IGNORECASE,
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f]")


def strip_links(text: str) -> str:
    """``text`` with URLs, bare domains and e-mail addresses replaced by "[link removed]",
    compatibility characters folded (NFKC), control and bidi characters removed,
    whitespace collapsed."""
    # NFKC first: fullwidth letters and dots ("ｅｖｉｌ．ｃｏｍ") become the ASCII a phone
    # would still turn into a link.
    text = _CONTROL_RE.sub(" ", unicodedata.normalize("NFKC", text))
    text = _URL_RE.sub("[link removed]", text)
    return " ".join(text.split())


def _field(text: str | None, limit: int) -> str:
    cleaned = strip_links(text or "")
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


def emergency_alert_body(
    *,
    business_name: str,
    caller_name: str | None,
    number: str | None,
    address: str | None,
    need: str | None,
) -> str:
    """The on-call alert: bounded fields, no links, at most ``ALERT_MAX_CHARS``."""
    body = (
        f"EMERGENCY call for {_field(business_name, 60)}: "
        f"{_field(caller_name, 60) or 'caller (name not given)'}, "
        f"{number or 'callback number: see the CRM record'}, "
        f"{_field(address, 100) or 'address not given'}. "
        f"{_field(need, 100) or 'Emergency reported'}"
    )
    return body[:ALERT_MAX_CHARS]


# -- rate limits -----------------------------------------------------------------------


class OutboundKind(enum.Enum):
    """What is sent, and so which budget it counts against (each kind counted apart)."""

    SMS = "sms"
    """A text to a caller (confirmation, missed-call text-back): the caller-facing limits."""
    ALERT = "alert"
    """The emergency text to the business's own on-call phone: the emergency budget."""
    TRANSFER = "transfer"
    """A warm transfer of a live emergency call to the on-call phone: the emergency budget."""
    ALERTS_HELD = "held"
    """The owner told that the emergency budget is used up: once per business per window."""
    ALERT_FAILED = "failed"
    """The owner told that an alert gave up: once per call (within the emergency budget)."""


_ONCE_PER_CALL_COUNTED_ONCE = frozenset({OutboundKind.ALERT, OutboundKind.TRANSFER})
"""Kinds whose repeats for one call (a retried alert) pass without being counted again."""


@dataclass(frozen=True, slots=True)
class OutboundLimits:
    """Sends allowed per rolling ``window_seconds`` (an hour). Caller-facing texts
    (``sms_*``) and what goes to the business itself (``emergency_per_business``: on-call
    alerts, and warm transfers, counted apart) never share a budget, so a flood of texts
    to callers cannot hold back an emergency alert, nor the other way round."""

    sms_per_number: int = 10
    sms_per_business: int = 60
    emergency_per_business: int = 120
    window_seconds: float = 3600.0

    def budget(self, kind: OutboundKind) -> tuple[int, int]:
        """(per destination number, per business) for ``kind`` within the window."""
        if kind is OutboundKind.SMS:
            return self.sms_per_number, self.sms_per_business
        if kind is OutboundKind.ALERTS_HELD:
            return 1, 1
        # The on-call phone is the business's own: one budget, per number and business.
        return self.emergency_per_business, self.emergency_per_business


class OutboundLimiter:
    """The limits, counted in the database's ``outbound_sends`` table, so they hold across
    every process and node on that database and across restarts. Numbers are stored only
    as keyed hashes (``destination_key``)."""

    def __init__(self, store: Store, limits: OutboundLimits, *, secret: str) -> None:
        self.store = store
        self.limits = limits
        self._key = hmac.new(secret.encode(), _DESTINATION_LABEL, hashlib.sha256).digest()

    def destination_key(self, number: str) -> str:
        return hmac.new(self._key, number.encode(), hashlib.sha256).hexdigest()

    def acquire(
        self,
        kind: OutboundKind,
        *,
        business: str,
        destination: str,
        now: dt.datetime,
        call_sid: str | None = None,
        purpose: str = "",
    ) -> str | None:
        """Record one send and return ``None``, or return why it is refused (nothing
        recorded). With ``call_sid``, at most one send of ``purpose`` per call — except
        that an alert or transfer already counted for the call passes again uncounted
        (its retries are the same alert, and the call's own claim keeps it to one)."""
        per_number, per_business = self.limits.budget(kind)
        return self.store.claim_outbound(
            kind=kind.value,
            business=business,
            destination_key=self.destination_key(destination),
            purpose=purpose or kind.value,
            call_sid=call_sid,
            now=now,
            window=dt.timedelta(seconds=self.limits.window_seconds),
            per_number=per_number,
            per_business=per_business,
            repeat_ok=kind in _ONCE_PER_CALL_COUNTED_ONCE,
        )
