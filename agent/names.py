"""Reading a caller's name from what they said, the way a receptionist would hear it.

Handles titles ("Dr. Linda Chen" → Linda / Chen), particles ("Mary Anne van der Berg" →
Mary Anne / van der Berg), hyphens and apostrophes ("Jean-Luc O'Brien"), "X here",
"this is X from Y" (Y becomes the company when it sounds like one), Spanish lead-ins
("me llamo…", "soy…") and two Spanish surnames, and a name answer that carries more:
"Linda Chen, I'm already a customer and my furnace is out" keeps both — the name, and the
rest of the sentence (``NameReading.rest``) for the intake to read as the need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NameReading", "is_name_refusal", "read_name"]


@dataclass(frozen=True, slots=True)
class NameReading:
    first: str | None
    last: str | None
    company: str | None
    rest: str  # what the caller said after the name ("" when nothing)

    @property
    def found(self) -> bool:
        return bool(self.first or self.last)


_NAME_REFUSAL_RE = re.compile(
    r"^\W*(no|nope|none|no thanks|no thank you|n/?a|anonymous|pass|skip( it)?)\W*$"
    r"|\b(rather not|prefer not|not important|doesn'?t matter|won'?t say|not saying|"
    r"no name|don'?t want to (say|give)|prefiero no|no quiero dar|no importa|an[oó]nimo)\b",
    re.IGNORECASE,
)


def is_name_refusal(text: str) -> bool:
    """The caller declines to give a name ("I'd rather not say", "no", "prefiero no decirlo")."""
    return bool(_NAME_REFUSAL_RE.search(text.strip()))


_GREETING_RE = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|howdy|hola|good (?:morning|afternoon|evening|night)|buenas"
    r"(?: noches| tardes)?|buenos d[ií]as|yes|yeah|yep|sure|ok(?:ay)?|oh|um+|uh+|er+|so|well"
    r"|s[ií]|claro|there|yes ma'am|yes sir|of course|sorry|oops|perd[oó]n|disculpe)\b[\s,.!-]*)+",
    re.IGNORECASE,
)
_LEAD_IN_RE = re.compile(
    r"^(?:my name is|my name's|name is|name's|the name is|the name's|this is|it's|it is|i'm"
    r"|i am|you(?:'re| are) (?:speaking|talking) (?:with|to)|(?:his|her|their) name is"
    r"|me llamo|mi nombre es|soy|habla|le habla|con|es)\s+",
    re.IGNORECASE,
)
_TITLES = frozenset(
    {"dr", "doctor", "mr", "mrs", "ms", "miss", "mx", "rev", "reverend", "pastor", "father"}
    | {"sr", "sra", "srta", "señor", "señora", "señorita", "don", "doña", "prof", "professor"}
)
_PARTICLES = frozenset(
    {"van", "von", "der", "den", "de", "del", "della", "la", "le", "da", "di", "du", "dos"}
    | {"das", "st", "bin", "ibn", "al", "el", "ter", "ten", "y", "mac"}
)
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
# Words that end a name: "Linda Chen here", "Bob from Acme", "Ana, I'm a customer".
_STOPPERS = frozenset(
    {"here", "speaking", "calling", "from", "with", "at", "and", "i", "i'm", "im", "my", "we"}
    | {"we're", "our", "the", "is", "a", "an", "about", "regarding", "because", "so", "um"}
    | {"uh", "again", "already", "customer", "over", "just", "also", "but", "it's", "its"}
    | {"this", "that", "yes", "no", "please", "thanks", "thank", "you", "for", "to", "on"}
    | {"in", "of", "who", "hi", "hello", "y", "soy", "desde", "aquí", "aqui", "llamando"}
    | {"necesito", "tengo", "mi", "and", "phone", "number", "calling", "call", "need", "have"}
    | {"was", "want", "wanted", "like", "would", "can", "could", "there", "there's", "it"}
)
# Words that are never a name on their own (an answer that is really the need).
_NOT_NAMES = frozenset(
    {"sorry", "what", "huh", "pardon", "repeat", "hold", "wait", "hang", "emergency", "help"}
    | {"water", "heat", "gas", "leak", "furnace", "pipe", "toilet", "basement", "flooding"}
    | {"smell", "fire", "smoke", "broken", "question", "quote", "estimate", "tomorrow"}
    | {"today", "tonight", "morning", "afternoon", "evening", "nobody", "someone", "none"}
    | {"yes", "no", "okay", "sure", "fine", "good", "great", "hello", "hi", "spanish"}
    | {"español", "english", "inglés", "ingles", "speak", "representative", "operator"}
)
_COMPANY_WORDS = re.compile(
    r"\b(?:llc|inc|corp|corporation|co|company|management|properties|property|realty|realtors"
    r"|restaurant|cafe|café|bakery|deli|grill|pizza|pizzeria|diner|bar|brewery|hotel|motel|inn"
    r"|apartments?|condos?|hoa|association|church|school|academy|clinic|dental|medical"
    r"|salon|spa|gym|fitness|studio|store|shop|market|grocery|pharmacy|office|offices|group"
    r"|services|builders|construction|contracting|homes|plumbing|electric|bank|daycare|center"
    r"|centre|holdings|partners|enterprises|associates|ventures|llp|firm|agency|foods)\b",
    re.IGNORECASE,
)
_COMPANY_INTRO_RE = re.compile(
    r"\b(?:from|with|at|over at|calling from|calling for|on behalf of|de parte de|de la|del)\s+"
    r"(?:the\s+)?([^,.;!?]+)",
    re.IGNORECASE,
)
# Outside an answer to "may I have your name?", only lead-ins that announce a name count
# ("it's Tuesday", "I'm really cold" are not names).
_STRICT_LEAD_RE = re.compile(
    r"^(?:my name is|my name's|name's|the name's|this is|you(?:'re| are) speaking with"
    r"|me llamo|mi nombre es|soy|le habla)\s",
    re.IGNORECASE,
)
_NAME_TOKEN_RE = re.compile(r"^[^\W\d_]+(?:['’-][^\W\d_]+)*\.?$", re.UNICODE)


def _cap(word: str) -> str:
    """Capitalise a name part the way it is written: "o'brien" → "O'Brien"."""
    if any(c.isupper() for c in word):
        return word
    parts = re.split(r"(['’-])", word)
    return "".join(p[:1].upper() + p[1:] if p not in {"'", "’", "-"} else p for p in parts)


def _company_from(text: str) -> str | None:
    match = _COMPANY_INTRO_RE.search(text)
    if match is None:
        return None
    candidate = re.split(
        r"\s+(?:and|y|we|i|i'm|my|our|the)\s+|\s+(?:calling|about|because)\b",
        match.group(1).strip(),
        maxsplit=1,
        flags=re.I,
    )[0].strip()
    words = candidate.split()
    if not 1 <= len(words) <= 6 or not _COMPANY_WORDS.search(candidate):
        return None
    return " ".join(_cap(w) for w in words)[:255]


def read_name(text: str, *, spanish: bool = False, bare_allowed: bool = True) -> NameReading:
    """The caller's name (and company, and whatever else they said) from ``text``.

    ``bare_allowed``: the text answers "may I have your name?", so "Linda Chen" with no
    lead-in is a name; elsewhere a lead-in ("my name is", "this is", "X here") is needed.
    """
    raw = " ".join(text.replace("’", "'").split())
    body = _GREETING_RE.sub("", raw).strip()
    lead = _LEAD_IN_RE.match(body)
    if lead and not bare_allowed and not _STRICT_LEAD_RE.match(lead.group(0)):
        lead = None
    had_lead = lead is not None
    if lead and re.match(r"(?:me llamo|mi nombre es|soy|habla|le habla)\b", lead.group(0), re.I):
        spanish = True
    if lead:
        body = body[lead.end() :]
    tokens = _tokens(body)
    words: list[str] = []
    consumed = 0
    for token in tokens:
        low = token.lower().rstrip(".")
        if token in {",", ".", ";", "!", "?"}:
            if words:
                break
            consumed += 1
            continue
        if not words and low in _TITLES:
            consumed += 1
            continue
        if low in _STOPPERS and not (words and low in _PARTICLES):
            break
        if not _NAME_TOKEN_RE.match(token) or low in _NOT_NAMES:
            break
        words.append(token if low == "st" else token.rstrip("."))
        consumed += 1
        if len(words) >= 5:
            break
    # particles trailing at the end are not a name ("Ana de" → "Ana")
    while words and words[-1].lower() in _PARTICLES:
        words.pop()
    tail_here = re.match(r"^\s*(?:here|speaking|calling|aqu[ií])\b", _after(body, words))
    plausible = bool(words) and (had_lead or bare_allowed or tail_here is not None)
    if not plausible or len(words) > 5:
        return NameReading(None, None, _company_from(raw), raw if not words else "")
    rest = _after(body, words)
    rest = re.sub(r"^\s*(?:here|speaking|aqu[ií])\b[\s,.!-]*", "", rest, flags=re.I)
    company = _company_from(rest)
    rest = re.sub(r"^[\s,.;!-]+", "", rest)
    first, last = _split(words, spanish=spanish)
    return NameReading(first, last, company, rest)


def _tokens(body: str) -> list[str]:
    """Whitespace-separated chunks, a trailing , . ; ! ? split off as its own token. A chunk
    with anything else in it ("{!OwnerId}", "Robert');") is kept whole, so it is no name."""
    tokens: list[str] = []
    for chunk in body.split():
        match = re.fullmatch(r"(.*?)([,;!?]+|(?<![A-Z])\.+|(?<=[A-Z])\.{2,})?", chunk, re.S)
        word, tail = (match.group(1), match.group(2)) if match else (chunk, None)
        if chunk.lower() in {"st.", "dr.", "mr.", "mrs.", "ms.", "jr.", "sr."}:
            word, tail = chunk, None
        if word:
            tokens.append(word)
        if tail:
            tokens.append(tail[0])
    return tokens


def _after(body: str, words: list[str]) -> str:
    """The text after the last name word."""
    if not words:
        return body
    index = 0
    for word in words:
        found = body.find(word, index)
        if found < 0:
            return ""
        index = found + len(word)
    if index < len(body) and body[index] == ".":
        index += 1
    return body[index:]


def _split(words: list[str], *, spanish: bool) -> tuple[str | None, str | None]:
    parts = [_cap(w) if w.lower().rstrip(".") not in _PARTICLES else w for w in words]
    suffix = ""
    if len(parts) > 2 and parts[-1].lower().rstrip(".") in _SUFFIXES:
        suffix = " " + parts.pop().rstrip(".")
    if len(parts) == 1:
        return parts[0], None
    # The last name starts at the first particle after the first word.
    for i, word in enumerate(parts[1:], start=1):
        if word.lower().rstrip(".") in _PARTICLES:
            return " ".join(parts[:i]), " ".join(parts[i:]) + suffix
    if spanish and len(parts) == 4:
        return " ".join(parts[:2]), " ".join(parts[2:]) + suffix
    return " ".join(parts[:-1]), parts[-1] + suffix
