"""The businesses file: which Twilio number belongs to which business, and how it works.

The file is TOML, one ``[[business]]`` table per Twilio number (see
``examples/businesses.toml``). Loading is strict: an unknown key, a bad timezone, a number
that is not a phone number, unreadable opening hours or a number used twice stop the
service at start with ``<path>:<line>: <reason>``, rather than misrouting calls later.

Opening hours map day specs to time ranges, in the business's own timezone::

    opening_hours = { "mon-fri" = "08:00-17:00", "sat" = "09:00-12:00" }

A day that is absent (or mapped to ``""`` / ``"closed"``) is closed; an empty table means
the line is always after-hours. Ranges may be listed (``"08:00-12:00, 13:00-17:00"``) and
``24:00`` ends a day; a range may not cross midnight (write it as two days' ranges).
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prompts import render

__all__ = [
    "DEFAULT_GREETING",
    "Business",
    "BusinessDirectory",
    "BusinessFileError",
    "default_business",
    "load_businesses",
    "normalize_number",
    "receptionist_instructions",
]

DEFAULT_GREETING = "Thanks for calling {name}. This is the after-hours line; how can I help?"

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES = {
    "daily": _DAYS,
    "everyday": _DAYS,
    "weekdays": _DAYS[:5],
    "weekends": _DAYS[5:],
}
_CLOSED_VALUES = frozenset({"", "closed"})
_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class BusinessFileError(Exception):
    """The businesses file cannot be used. ``str()`` is ``<path>:<line>: <reason>``."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = Path(path)
        self.line = line
        self.reason = reason


def normalize_number(number: str, *, region: str | None = None) -> str:
    """``number`` as E.164. Raises ``ValueError`` when it is not a valid phone number.

    Without ``region`` the number must be written internationally (``+1 415 555 0100``).
    """
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{number!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{number!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _parse_day_spec(spec: str) -> tuple[str, ...]:
    """``"mon-fri"``, ``"sat"``, ``"mon,wed"``, ``"weekdays"`` → the days it covers."""
    days: list[str] = []
    for part in spec.lower().replace(" ", "").split(","):
        if part in _DAY_ALIASES:
            days.extend(_DAY_ALIASES[part])
        elif "-" in part:
            first, _, last = part.partition("-")
            if first not in _DAYS or last not in _DAYS:
                raise ValueError(f"unknown day range {spec!r} (use mon, tue, ... sun)")
            start, end = _DAYS.index(first), _DAYS.index(last)
            if end < start:
                raise ValueError(f"day range {spec!r} runs backwards")
            days.extend(_DAYS[start : end + 1])
        elif part in _DAYS:
            days.append(part)
        else:
            raise ValueError(f"unknown day {spec!r} (use mon, tue, ... sun)")
    return tuple(days)


def _parse_ranges(value: str) -> tuple[tuple[int, int], ...]:
    """``"08:00-12:00, 13:00-17:00"`` → minute ranges ``((480, 720), (780, 1020))``."""
    if value.strip().lower() in _CLOSED_VALUES:
        return ()
    ranges: list[tuple[int, int]] = []
    for part in value.split(","):
        match = _RANGE_RE.match(part)
        if match is None:
            raise ValueError(f"opening hours {value!r} are not like '08:00-17:00'")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise ValueError(f"opening hours {value!r} contain an impossible time")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(
                f"opening hours {value!r} end before they start (split ranges at midnight)"
            )
        ranges.append((start, end))
    return tuple(sorted(ranges))


def _check_day_spec(spec: str) -> str:
    _parse_day_spec(spec)
    return spec


def _check_hours(value: str) -> str:
    _parse_ranges(value)
    return value


# Checked one entry at a time so an error's location names the offending day spec.
DaySpec = Annotated[str, AfterValidator(_check_day_spec)]
HoursSpec = Annotated[str, AfterValidator(_check_hours)]


class Business(BaseModel):
    """One ``[[business]]`` entry: a Twilio number and the business behind it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: str
    name: str = Field(min_length=1, max_length=255)
    timezone: str
    opening_hours: dict[DaySpec, HoursSpec] = Field(default_factory=dict)
    services: list[str] = Field(default_factory=list)
    service_area: str = ""
    on_call_phone: str | None = None
    # During opening hours the call rings this line first; the receptionist answers when
    # nobody picks up within ring_timeout_seconds. Absent: the receptionist always answers.
    office_phone: str | None = None
    greeting: str = DEFAULT_GREETING
    lead_source: str = Field(default="Phone Call - AI Receptionist", min_length=1, max_length=255)
    emergency_lead_source: str = Field(
        default="Phone Call - Emergency", min_length=1, max_length=255
    )
    company_name: str | None = None
    warm_transfer: bool = False
    sms_to_caller: bool = False
    # A caller who hangs up before leaving details gets one text to their caller ID.
    missed_call_text_back: bool = False
    # Twilio <Dial timeout> accepts 5..600 seconds.
    ring_timeout_seconds: int = Field(default=20, ge=5, le=600)
    salesforce_fields: dict[str, dict[str, str]] = Field(default_factory=dict)
    # The owner: an after-call summary (and an alert when a CRM delivery fails for good)
    # by SMS to owner_phone and/or e-mail to owner_email (needs the SMTP_* settings).
    owner_phone: str | None = None
    owner_email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$"
    )
    owner_summaries: bool = True
    # This business's own Salesforce org: the credentials come from SALESFORCE_<NAME>_*
    # environment variables (never from this file). Absent: the service-wide CRM.
    salesforce_connection: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{0,39}$")
    # Approved answers to common questions (question → answer), for the model and the
    # scripted intake; anything not here is "the team will confirm when they call back".
    faq: dict[str, Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=dict
    )
    # Spam screening: numbers whose calls are refused; whether screened spam still goes to
    # the CRM (as a call Task, never a Lead) — off by default.
    blocklist: list[str] = Field(default_factory=list)
    spam_to_crm: bool = False

    @field_validator("number", "on_call_phone", "office_phone", "owner_phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return normalize_number(value)

    @field_validator("blocklist")
    @classmethod
    def _blocklist_e164(cls, value: list[str]) -> list[str]:
        return [normalize_number(number, region="US") for number in value]

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name like America/Chicago)"
            ) from None
        return value

    @field_validator("opening_hours")
    @classmethod
    def _readable_hours(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for spec in value:
            for day in _parse_day_spec(spec):
                if day in seen:
                    raise ValueError(f"{day} is listed twice (in {seen[day]!r} and {spec!r})")
                seen[day] = spec
        return value

    @model_validator(mode="after")
    def _fill_greeting(self) -> Business:
        if "{name}" in self.greeting:
            # frozen model: set through object.__setattr__ during validation only
            object.__setattr__(self, "greeting", self.greeting.replace("{name}", self.name))
        if self.warm_transfer and self.on_call_phone is None:
            raise ValueError("warm_transfer needs an on_call_phone")
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The business's timezone."""
        return ZoneInfo(self.timezone)

    @property
    def region(self) -> str:
        """The phone region of the business number (``"US"``), for reading local numbers."""
        parsed = phonenumbers.parse(self.number, None)
        return phonenumbers.region_code_for_number(parsed) or "US"

    def weekly_hours(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """Open minute ranges per day (``"mon"``..``"sun"``); closed days are absent."""
        week: dict[str, tuple[tuple[int, int], ...]] = {}
        for spec, hours in self.opening_hours.items():
            ranges = _parse_ranges(hours)
            if ranges:
                for day in _parse_day_spec(spec):
                    week[day] = ranges
        return week

    def is_open(self, at: dt.datetime) -> bool:
        """Whether the business is open at ``at`` (tz-aware), in the business's local time."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("is_open needs a timezone-aware datetime")
        local = at.astimezone(self.tz)
        ranges = self.weekly_hours().get(_DAYS[local.weekday()], ())
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in ranges)

    def hours_description(self) -> str:
        """Opening hours in words, for the receptionist's instructions."""
        week = self.weekly_hours()
        if not week:
            return "No regular office hours are listed; treat every call as after-hours."
        parts = []
        for day in _DAYS:
            ranges = week.get(day)
            text = ", ".join(f"{_hhmm(s)}-{_hhmm(e)}" for s, e in ranges) if ranges else "closed"
            parts.append(f"{day.capitalize()} {text}")
        return "; ".join(parts) + f" ({self.timezone})."


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def receptionist_instructions(business: Business, *, now: dt.datetime) -> str:
    """The Realtime agent's instructions (``prompts/receptionist.md``) for ``business``."""
    local = now.astimezone(business.tz)
    if business.warm_transfer:
        on_call = "after you flag an emergency, the call is connected to the on-call technician."
    elif business.on_call_phone:
        on_call = "after you flag an emergency, the on-call technician is alerted to call back."
    else:
        on_call = "after you flag an emergency, it goes to the top of the team's callback list."
    return render(
        "receptionist",
        business_name=business.name,
        services=", ".join(business.services) or "general home services",
        service_area=business.service_area or "not specified",
        hours=business.hours_description(),
        today=f"{local:%A, %B} {local.day}, {local.year}",
        now=local.strftime("%H:%M %Z"),
        on_call=on_call,
        greeting=business.greeting,
        faq="\n".join(f'  - "{q}" → "{a}"' for q, a in business.faq.items()) or "  (none)",
    )


def default_business() -> Business:
    """The built-in business used when no businesses file is configured."""
    return Business(
        number="+15005550006",
        name="Demo Home Services",
        timezone="America/New_York",
        services=["plumbing", "heating", "air conditioning", "electrical"],
        service_area="the greater metro area",
    )


class BusinessDirectory:
    """The loaded businesses, looked up by the Twilio number a call came in on."""

    def __init__(self, businesses: Iterable[Business]) -> None:
        self.businesses: list[Business] = list(businesses)
        self._by_number: dict[str, Business] = {}
        for business in self.businesses:
            if business.number in self._by_number:
                raise ValueError(f"number {business.number} is used by two businesses")
            self._by_number[business.number] = business

    def by_number(self, number: str) -> Business | None:
        """The business answering ``number`` (any common format; normalised to E.164 first)."""
        # A number without a country code is read in each configured business's region.
        regions: list[str | None] = [None, *dict.fromkeys(b.region for b in self.businesses)]
        for region in regions:
            try:
                key = normalize_number(number.strip(), region=region)
            except ValueError:
                continue
            if key in self._by_number:
                return self._by_number[key]
        return None

    def default(self) -> Business | None:
        """The only business when exactly one is configured; ``None`` otherwise."""
        return self.businesses[0] if len(self.businesses) == 1 else None

    def __len__(self) -> int:
        return len(self.businesses)


# --- loading -------------------------------------------------------------------------------

_ENTRY_HEADER_RE = re.compile(r"^\s*\[\[\s*business\s*\]\]")
_TOML_LINE_RE = re.compile(r"at line (\d+)")


class _SourceLines:
    """Finds the line of an entry or key in the raw TOML text (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.entry_starts = [i for i, line in enumerate(self.lines) if _ENTRY_HEADER_RE.match(line)]

    def entry_line(self, index: int) -> int:
        if index < len(self.entry_starts):
            return self.entry_starts[index] + 1
        return 1

    def key_line(self, index: int | None, path: Sequence[str | int]) -> int:
        """Best line for ``path`` (e.g. ``("opening_hours", "mon-fri")``) inside entry ``index``."""
        if index is None:
            lo, hi = 0, self.entry_starts[0] if self.entry_starts else len(self.lines)
            fallback = 1
        else:
            lo = self.entry_starts[index] if index < len(self.entry_starts) else 0
            hi = (
                self.entry_starts[index + 1]
                if index + 1 < len(self.entry_starts)
                else len(self.lines)
            )
            fallback = lo + 1
        found = fallback
        for key in path:
            if not isinstance(key, str):
                break
            escaped = re.escape(key)
            pattern = re.compile(
                rf"(^|[\s{{,.\[])(\"{escaped}\"|'{escaped}'|{escaped})\s*(=|\])",
            )
            for i in range(max(lo, found - 1), hi):
                if pattern.search(self.lines[i]):
                    found = i + 1
                    break
            else:
                break
        return found


def _reason(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc!r}"
    if kind == "missing":
        return f"missing required key {loc!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


def load_businesses(path: Path | None) -> BusinessDirectory:
    """Load the businesses file; ``None`` gives the one built-in demo business.

    Raises ``BusinessFileError`` (``<path>:<line>: <reason>``) for anything unusable.
    """
    if path is None:
        return BusinessDirectory([default_business()])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BusinessFileError(path, 0, f"cannot read the file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE_RE.search(str(exc))
        line = int(match.group(1)) if match else max(1, len(text.splitlines()))
        raise BusinessFileError(path, line, f"not valid TOML: {exc}") from None

    source = _SourceLines(text)
    for key in data:
        if key != "business":
            line = source.key_line(None, [key])
            raise BusinessFileError(path, line, f"unknown key {key!r} (expected [[business]])")
    entries = data.get("business")
    if not isinstance(entries, list) or not entries:
        raise BusinessFileError(path, 1, "no [[business]] entries")

    businesses: list[Business] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        try:
            business = Business.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [part for part in first["loc"]]
            line = source.key_line(index, loc) if loc else source.entry_line(index)
            raise BusinessFileError(path, line, _reason(dict(first))) from None
        if business.number in seen:
            line = source.key_line(index, ["number"])
            first_line = seen[business.number]
            raise BusinessFileError(
                path, line, f"number {business.number} is already used on line {first_line}"
            )
        seen[business.number] = source.entry_line(index)
        businesses.append(business)
    return BusinessDirectory(businesses)
