"""When a callback is due: the caller's words ("tomorrow morning", "el lunes") → a date.

The date is the *local* calendar day, in the business's timezone, on which staff should
call back. It is computed on calendar dates, never by adding hours, so the nights the
clocks change give the same answer as any other night.

Rules, in the order they are tried (English and Spanish):

- nothing said, "ASAP", "now", "today", "tonight", "this afternoon" → today;
- the night-owl rule: a caller phoning before 04:00 local time has not slept yet, so
  "tomorrow" (and "tomorrow morning", "mañana") means the day that has just begun — the
  same calendar day — and "the day after tomorrow" means the day after that;
- "tomorrow" / "mañana" → the next day; "the day after tomorrow" / "pasado mañana" → +2;
- "in 3 days", "in a couple of days", "en dos días" → +N;
- "next week" / "la próxima semana" → the coming Monday;
- "this weekend" → the coming Saturday (today on a weekend);
- an explicit date: "June 12th", "the 12th of June", "12 de junio", "3/10" → that date
  (next year's when this year's has passed; never more than a year ahead);
- a weekday: "this Monday" → today if today is Monday, else the coming Monday; "Monday"
  and "next Monday" → the first Monday *after* today (before 04:00, today counts: the
  caller's "Monday" is the day about to start);
- a time of day with no day ("in the morning", "after 5", "this evening") → today if that
  time is still ahead, otherwise tomorrow;
- anything else → today.

Where words are ambiguous ("next Friday" may mean this week's or next week's), the
earlier date wins: a callback that comes due early costs a glance, one that comes due late
can lose the job.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from zoneinfo import ZoneInfo

__all__ = ["NIGHT_OWL_HOUR", "callback_due"]

NIGHT_OWL_HOUR = 4
"""Before this local hour, "tomorrow" means the calendar day that has just begun."""

_WEEKDAYS = {
    "monday": 0,
    "mon": 0,
    "lunes": 0,
    "tuesday": 1,
    "tues": 1,
    "martes": 1,
    "wednesday": 2,
    "wed": 2,
    "miercoles": 2,
    "thursday": 3,
    "thurs": 3,
    "jueves": 3,
    "friday": 4,
    "fri": 4,
    "viernes": 4,
    "saturday": 5,
    "sat": 5,
    "sabado": 5,
    "sunday": 6,
    "sun": 6,
    "domingo": 6,
}
_NUMBERS = {
    "a": 1,
    "one": 1,
    "un": 1,
    "uno": 1,
    "two": 2,
    "dos": 2,
    "couple": 2,
    "a couple": 2,
    "a couple of": 2,
    "three": 3,
    "tres": 3,
    "few": 3,
    "a few": 3,
    "four": 4,
    "cuatro": 4,
    "five": 5,
    "cinco": 5,
    "six": 6,
    "seis": 6,
    "seven": 7,
    "siete": 7,
}

_TODAY_RE = re.compile(
    r"\b(asap|a\.s\.a\.p|as soon as|right away|right now|now|today|tonight|immediately|"
    r"this (morning|afternoon|evening)|hoy|esta (manana|tarde|noche)|ahora|"
    r"lo antes posible|cuanto antes|de inmediato|enseguida)\b"
)
_DAY_AFTER_RE = re.compile(r"\b(day after tomorrow|pasado manana)\b")
# "mañana" is "tomorrow", but "la mañana" / "por la mañana" is "the morning".
_TOMORROW_RE = re.compile(r"\b(tomorrow|tmrw|tmr)\b|(?<!la )(?<!esta )\bmanana\b")
_IN_DAYS_RE = re.compile(
    r"\b(?:in|en|within)\s+(\d+|a couple(?: of)?|a few|couple|few|[a-z]+)\s+(?:days?|dias?)\b"
)
_NEXT_WEEK_RE = re.compile(
    r"\b(next week|la (proxima|siguiente) semana|la semana que viene|"
    r"la semana proxima)\b"
)
_WEEKEND_RE = re.compile(r"\b(weekend|fin de semana)\b")
_WEEKDAY_RE = re.compile(
    r"\b(?:(this|next|coming|este|el proximo|el otro)\s+)?(" + "|".join(_WEEKDAYS) + r")\b"
)
_CLOCK_RE = re.compile(
    r"\b(?:after|before|by|at|around|about|from|despues de las|antes de las|a las)\s+"
    r"(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?"
)
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan", "enero"),
            ("february", "feb", "febrero"),
            ("march", "mar", "marzo"),
            ("april", "apr", "abril"),
            ("may", "mayo"),
            ("june", "jun", "junio"),
            ("july", "jul", "julio"),
            ("august", "aug", "agosto"),
            ("september", "sept", "sep", "septiembre", "setiembre"),
            ("october", "oct", "octubre"),
            ("november", "nov", "noviembre"),
            ("december", "dec", "diciembre"),
        ),
        start=1,
    )
    for name in names
}
_MONTH_ALT = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE_RES = (
    # "June 12th", "june the 12th"
    (re.compile(rf"\b({_MONTH_ALT})\.?\s+(?:the\s+)?{_ORDINAL}\b"), 1, 2),
    # "the 12th of June", "12 de junio", "12 june"
    (re.compile(rf"\b{_ORDINAL}\s+(?:of\s+|de\s+)?({_MONTH_ALT})\b"), 2, 1),
)
_NUMERIC_DATE_RE = re.compile(r"\b(\d{1,2})/(\d{1,2})\b")
_NOON_RE = re.compile(r"\b(noon|lunch|lunchtime|mediodia)\b")
_PART_OF_DAY = (
    (re.compile(r"\b(morning|la manana|madrugada)\b"), 12),
    (re.compile(r"\b(afternoon|la tarde)\b"), 17),
    (re.compile(r"\b(evening|night|la noche)\b"), 24),
)


def _fold(text: str) -> str:
    """Lower case, accents removed, spaces collapsed: "Mañana" → "manana"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split())


def _days_until(today: dt.date, weekday: int) -> int:
    """Days from ``today`` to the next ``weekday`` strictly after today (1..7)."""
    return (weekday - today.weekday() - 1) % 7 + 1


def _clock_minutes(match: re.Match[str]) -> int:
    hour = int(match.group(1))
    minute = int(match.group(2) or 0)
    suffix = (match.group(3) or "").replace(".", "")
    if suffix == "pm" and hour < 12:
        hour += 12
    elif suffix == "am" and hour == 12:
        hour = 0
    elif not suffix and 1 <= hour <= 6:
        # "after 5" said to a contractor means the afternoon, not 5 a.m.
        hour += 12
    return min(hour, 24) * 60 + min(minute, 59)


def _explicit_date(text: str, today: dt.date) -> dt.date | None:
    """A calendar date named in ``text`` (this year's, or next year's once it has passed)."""
    month = day = None
    for pattern, month_group, day_group in _DATE_RES:
        if match := pattern.search(text):
            month, day = _MONTHS[match.group(month_group)], int(match.group(day_group))
            break
    else:
        if match := _NUMERIC_DATE_RE.search(text):  # US order: month/day
            month, day = int(match.group(1)), int(match.group(2))
    if month is None or day is None:
        return None
    for year in (today.year, today.year + 1):
        try:
            date = dt.date(year, month, day)
        except ValueError:
            return None
        if date >= today:
            return date
    return None


def callback_due(window: str | None, *, now: dt.datetime, tz: ZoneInfo) -> dt.date:
    """The local date a callback is due for the caller's ``window``, asked at ``now``.

    ``now`` must be timezone-aware (any zone); ``window`` is read in ``tz``. See the module
    docstring for the rules.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("callback_due needs a timezone-aware now")
    local = now.astimezone(tz)
    today = local.date()
    night_owl = local.hour < NIGHT_OWL_HOUR
    # the caller's "today" when they have not slept yet is the day that just ended
    callers_today = today - dt.timedelta(days=1) if night_owl else today
    text = _fold(window or "")
    if not text:
        return today

    if (date := _explicit_date(text, callers_today)) is not None:
        return date
    if _DAY_AFTER_RE.search(text):
        return callers_today + dt.timedelta(days=2)
    if _TOMORROW_RE.search(text):
        return callers_today + dt.timedelta(days=1)
    if match := _IN_DAYS_RE.search(text):
        raw = match.group(1)
        count = int(raw) if raw.isdigit() else _NUMBERS.get(raw)
        if count is not None:
            return today + dt.timedelta(days=min(count, 60))
    if _NEXT_WEEK_RE.search(text):
        return today + dt.timedelta(days=_days_until(today, 0))
    if match := _WEEKDAY_RE.search(text):
        qualifier, name = match.group(1), match.group(2)
        weekday = _WEEKDAYS[name]
        if weekday == today.weekday() and (qualifier in ("this", "este") or night_owl):
            return today
        return today + dt.timedelta(days=_days_until(today, weekday))
    if _WEEKEND_RE.search(text):
        if today.weekday() >= 5:
            return today
        return today + dt.timedelta(days=_days_until(today, 5))
    if _TODAY_RE.search(text):
        return today

    minute_now = local.hour * 60 + local.minute
    deadline: int | None = None
    if match := _CLOCK_RE.search(text):
        deadline = _clock_minutes(match)
    elif _NOON_RE.search(text):
        deadline = 12 * 60
    else:
        for pattern, end_hour in _PART_OF_DAY:
            if pattern.search(text):
                deadline = end_hour * 60
                break
    if deadline is not None and minute_now >= deadline:
        return today + dt.timedelta(days=1)
    return today
