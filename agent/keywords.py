"""The deterministic extractor: what plain pattern matching can tell from the caller's words.

It runs over every call's caller turns. With a model it is the safety net (an emergency a
model under-rated is still raised; see ``summary_builder``); with no model it is the whole
extractor. It only ever sees what the *caller* said — the receptionist asking "is this an
emergency?" must not make the call one.

Negation is handled per clause: a term preceded, within a few words of the same clause, by
"not", "no", "n't", "never", "without" (or Spanish "no", "sin", "ni", "nunca") does not
count, so "it's not an emergency" and "there's no leak" raise nothing while "no, it's
flooding" does. Sentences that tell the system what to do with the record ("mark this as
urgent", "set my rating to Hot") are dropped before matching: urgency comes from the
situation described, never from an instruction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from agent.caller_intents import (
    detect_language,
    read_callback,
    read_existing_customer,
    read_new_project,
)
from agent.details import CallerDetails
from agent.names import is_name_refusal, read_name
from agent.urgency import UrgencyReading, read_urgency

__all__ = [
    "KeywordFindings",
    "details_from_keywords",
    "find_keywords",
    "is_name_refusal",
    "spoken_digits",
]


@dataclass(frozen=True, slots=True)
class KeywordFindings:
    """What the keyword rules found in the caller's turns."""

    urgency: int | None
    is_emergency: bool
    matched_terms: tuple[str, ...]
    reading: UrgencyReading
    callback_requested: bool | None  # False: the caller said not to call back
    callback_window: str | None
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    need_guess: str | None
    name_guess: tuple[str | None, str | None]
    existing_customer: bool | None = None
    new_project: bool = False
    language: str | None = None


def _terms(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


_CLAUSE_SPLIT_RE = re.compile(r"[.;:!?,]|\bbut\b|\bpero\b|\balthough\b|\bhowever\b", re.I)
_WORD_RE = re.compile(r"[\w']+")
# Instructions to the system about the record, not descriptions of the situation.
_INSTRUCTION_RE = re.compile(
    r"\b(?:mark|set|flag|put|make|change|rate|label|tag|list|record|update|classify|log"
    r"|escalate|upgrade|bump)\s+"
    r"(?:(?:this|it|me|us|my|the|our|lead|call|request|ticket|record|rating|status|priority"
    r"|urgency|level|down|up)\s+){0,3}"
    r"(?:(?:as|to|be)\s+(?:an?\s+)?)?"
    r"(?:urgent|emergency|hot|high(?: priority)?|top priority|priority|[1-5]|five)\b"
    r"|\b(?:m[aá]rca(?:lo|la|me)?|p[oó]n(?:lo|la|me)?|cambia(?:lo|la)?)\s+(?:\w+\s+){0,3}"
    r"(?:urgente|emergencia|prioridad \w+)\b",
    re.IGNORECASE,
)
_SENTENCE_RE = re.compile(r"[^.!?]+[.!?]*")

_CALLBACK_TERMS = _terms(
    r"\bcall (?:me|us) back\b",
    r"\bcall back\b",
    r"\bcallback\b",
    r"\bgive (?:me|us) a (?:call|ring)\b",
    r"\breach (?:me|us)\b",
    r"\b(?:have|get|can|could|please have) (?:someone|somebody|a tech\w*|him|her|them|you)"
    r" (?:to )?call\b",
    r"\bcall me\b",
    r"\bget back to (?:me|us)\b",
    r"\breturn (?:my|the) call\b",
    r"\bcontact me\b",
    r"\bll[aá]m(?:e|en)?me\b",
    r"\bllamarme\b",
    r"\bme (?:pueden|puede|podr[ií]an|podr[ií]a) llamar\b",
    r"\bque me llamen\b",
    r"\bdevolver(?:me)? la llamada\b",
    r"\bdevu[eé]lva(?:n)?me la llamada\b",
)
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec"
)
_MESES = "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre"
_WINDOW_RE = re.compile(
    r"(?:\b(?:on|el|this|next|coming|este|el pr[oó]ximo)\s+)?"
    r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"lunes|martes|mi[eé]rcoles|jueves|viernes|s[aá]bado|domingo)\b"
    r"|\b(?:on )?(?:" + _MONTHS + r")\.? (?:the )?\d{1,2}(?:st|nd|rd|th)?\b"
    r"|\b(?:on )?(?:the )?\d{1,2}(?:st|nd|rd|th)? of (?:" + _MONTHS + r")\b"
    r"|\b(?:el )?\d{1,2} de (?:" + _MESES + r")\b"
    r"|\b(?:the )?day after tomorrow\b|\bpasado ma[nñ]ana\b"
    r"|\btomorrow\b|\btoday\b|\btonight\b"
    r"|\b(?:this|in the|early in the|late in the) (?:morning|afternoon|evening)\b"
    r"|\b(?:morning|afternoon|evening)\b"
    r"|\b(?:after|before|by|around|at|after about)\s+\d{1,2}(?::\d{2})?(?!\d)"
    r"(?:\s*(?:a\.?m\.?|p\.?m\.?))?"
    r"|\b(?:after|before|by|around)\s+(?:noon|lunch|work|dinner)\b"
    r"|\b(?:next|this) week(?:end)?\b|\bweekend\b"
    r"|\bin (?:\d+|a|one|two|three|a couple(?: of)?|a few) (?:days?|hours?)\b"
    r"|\bas soon as (?:possible|you can)\b|\basap\b|\bright away\b|\bany ?time\b"
    r"|\bma[nñ]ana\b|\bhoy\b|\besta (?:ma[nñ]ana|tarde|noche)\b"
    r"|\b(?:por|en) la (?:ma[nñ]ana|tarde|noche)\b"
    r"|\b(?:despu[eé]s de|antes de) las \d{1,2}\b|\ba las \d{1,2}\b"
    r"|\bla (?:pr[oó]xima|siguiente) semana\b|\blo antes posible\b|\bcuanto antes\b",
    re.IGNORECASE,
)
_WINDOW_GAP_RE = re.compile(r"^[\s,]*(?:\b(?:and|or|y|o|at|a|around|maybe)\b[\s,]*)*$", re.I)
_EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_SPOKEN_EMAIL_RE = re.compile(
    r"\b([a-z0-9][\w.-]*) at ([a-z0-9-]+(?: dot [a-z0-9-]+)*) dot "
    r"(com|net|org|edu|gov|us|io|co|info|biz|me)\b",
    re.I,
)
_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "cero": "0",
    "one": "1",
    "uno": "1",
    "two": "2",
    "dos": "2",
    "three": "3",
    "tres": "3",
    "four": "4",
    "cuatro": "4",
    "five": "5",
    "cinco": "5",
    "six": "6",
    "seis": "6",
    "seven": "7",
    "siete": "7",
    "eight": "8",
    "ocho": "8",
    "nine": "9",
    "nueve": "9",
}
_DIGIT_RUN_RE = re.compile(
    r"(?:\b(?:" + "|".join(_DIGIT_WORDS) + r"|\d+)\b[\s,.-]*){7,}",
    re.IGNORECASE,
)
_NAME_STOP = frozenset(
    {
        "not",
        "none",
        "nobody",
        "anonymous",
        "unimportant",
        "secret",
        "and",
        "i",
        "i'm",
        "im",
        "calling",
        "from",
        "the",
        "my",
        "here",
        "y",
        "de",
        "soy",
        "with",
        "about",
        "speaking",
        "again",
        "me",
        "is",
        "a",
        "an",
    }
)
_NAME_PATTERNS = (
    (re.compile(r"\bmy name(?: is|'s)\s+([\w'-]+(?:\s+[\w'-]+){0,2})", re.I), False),
    (re.compile(r"\b(?:me llamo|mi nombre es)\s+([\w'-]+(?:\s+[\w'-]+){0,2})", re.I), False),
    (
        re.compile(
            r"\b(?:[Tt]his is|[Ii]t's|[Ii]t is|[Ss]oy)\s+([A-ZÁÉÍÓÚÑ][\w'-]*(?:\s+[A-Z][\w'-]*)?)"
        ),
        True,
    ),
)
_GREETING_RE = re.compile(
    r"^(?:(?:hi|hello|hey|hola|good (?:morning|afternoon|evening)|buenas(?: noches| tardes)?|"
    r"buenos d[ií]as|yes|yeah|yep|s[ií]|ok(?:ay)?|um+|uh+|so|well)\b[\s,.!]*)+",
    re.I,
)
_CONTACT_SENTENCE_RE = re.compile(
    r"@|\be-?mail\b|\bcorreo\b|\bnumber\b|\bn[uú]mero\b|\bcall (?:me|us)\b|\bll[aá]m", re.I
)
_NAME_SENTENCE_RE = re.compile(
    r"^\s*(?:my name is|my name's|this is|me llamo|mi nombre es|soy|it's)\b", re.I
)


def _without_instructions(text: str) -> str:
    return _INSTRUCTION_RE.sub(" ", text)


def spoken_digits(text: str) -> list[str]:
    """Runs of seven or more spoken digits ("four one five, five five five…") as digit strings."""
    runs = []
    for match in _DIGIT_RUN_RE.finditer(text):
        digits = "".join(
            _DIGIT_WORDS.get(token.lower(), token)
            for token in re.findall(r"[A-Za-z]+|\d+", match.group(0))
        )
        if digits.isdigit() and len(digits) >= 7:
            runs.append(digits)
    return runs


def _phones(texts: Sequence[str], region: str) -> tuple[str, ...]:
    found: list[str] = []
    candidates = list(texts) + [run for text in texts for run in spoken_digits(text)]
    for text in candidates:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            if phonenumbers.is_valid_number(match.number):
                e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                if e164 not in found:
                    found.append(e164)
    return tuple(found)


def _emails(texts: Sequence[str]) -> tuple[str, ...]:
    found: list[str] = []
    for text in texts:
        written = [m.group(0).lower() for m in _EMAIL_RE.finditer(text)]
        spoken = [
            f"{m.group(1)}@{m.group(2).replace(' dot ', '.')}.{m.group(3)}".lower()
            for m in _SPOKEN_EMAIL_RE.finditer(text)
        ]
        for email in written + spoken:
            if email not in found:
                found.append(email)
    return tuple(found)


def _name_guess(texts: Sequence[str]) -> tuple[str | None, str | None]:
    for text in texts:
        if is_name_refusal(text):
            continue
        for sentence in _SENTENCE_RE.findall(text):
            reading = read_name(sentence.strip(), bare_allowed=False)
            if reading.found:
                return reading.first, reading.last
    return None, None


def _need_guess(texts: Sequence[str]) -> str | None:
    for text in texts:
        for sentence in _SENTENCE_RE.findall(text):
            cleaned = _GREETING_RE.sub("", sentence.strip()).strip()
            if _NAME_SENTENCE_RE.match(cleaned):
                # "This is Maria and my basement is flooding": keep what follows the name.
                _, sep, rest = cleaned.partition(" and ")
                cleaned = rest.strip() if sep else ""
            if contact := _CONTACT_SENTENCE_RE.search(cleaned):
                # "Gas smell in the basement, call me back at ..." → the part before
                cleaned = re.sub(
                    r"(?:[\s,;-]|\b(?:and|so|please|can you|could you|my|y|por favor)\b)*$",
                    "",
                    cleaned[: contact.start()],
                    flags=re.I,
                )
            if len(_WORD_RE.findall(cleaned)) >= 3:
                line = cleaned.rstrip(" .,!")
                line = line[0].upper() + line[1:]
                return line if len(line) <= 120 else line[:117].rstrip() + "..."
    return None


def _callback_window(texts: Sequence[str]) -> str | None:
    """The caller's own words for when to call, from the callback sentence or what follows."""
    sentences: list[str] = [s for text in texts for s in _SENTENCE_RE.findall(text)]
    start = next(
        (i for i, s in enumerate(sentences) if any(p.search(s) for p in _CALLBACK_TERMS)), None
    )
    if start is None:
        return None
    for sentence in sentences[start:]:
        matches = list(_WINDOW_RE.finditer(sentence))
        if not matches:
            continue
        first = last = matches[0]
        for match in matches[1:]:
            if _WINDOW_GAP_RE.match(sentence[last.end() : match.start()]):
                last = match
            else:
                break
        return sentence[first.start() : last.end()].strip()
    return None


def _callback(texts: Sequence[str]) -> bool | None:
    """The caller's last word on a callback: asked for (True), declined (False) or neither."""
    said: bool | None = None
    for text in texts:
        for sentence in _SENTENCE_RE.findall(text):
            found = read_callback(sentence)
            if found is not None:
                said = found
    return said


def find_keywords(caller_texts: Sequence[str], *, region: str = "US") -> KeywordFindings:
    """Run the rules over the caller's turns (only the caller's)."""
    cleaned = [_without_instructions(text) for text in caller_texts]
    reading = read_urgency(cleaned)
    callback = _callback(cleaned)
    whole = " ".join(cleaned)
    language = detect_language(whole)
    return KeywordFindings(
        urgency=reading.urgency,
        is_emergency=reading.is_emergency,
        matched_terms=reading.matched,
        reading=reading,
        callback_requested=callback,
        callback_window=_callback_window(caller_texts) if callback else None,
        phones=_phones(caller_texts, region),
        emails=_emails(caller_texts),
        need_guess=_need_guess(cleaned),
        name_guess=_name_guess(caller_texts),
        existing_customer=read_existing_customer(whole),
        new_project=read_new_project(whole),
        language=language,
    )


def details_from_keywords(findings: KeywordFindings) -> CallerDetails:
    """The findings as ``CallerDetails``; only what was found is set (the rest stays ``None``)."""
    first, last = findings.name_guess
    return CallerDetails(
        first_name=first[:80] if first else None,
        last_name=last[:80] if last else None,
        email=findings.emails[0] if findings.emails else None,
        callback_phone=findings.phones[0] if findings.phones else None,
        need=findings.need_guess,
        urgency=findings.urgency,
        is_emergency=True if findings.is_emergency else None,
        callback_requested=findings.callback_requested,
        callback_window=findings.callback_window[:255] if findings.callback_window else None,
        existing_customer=findings.existing_customer,
        new_project=True if findings.new_project else None,
    )
