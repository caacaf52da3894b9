"""Small readers of what a caller wants, beside urgency (``agent.urgency``) and names
(``agent.names``): a callback (or "no need to call me back"), being an existing customer,
wanting new work, the language they speak, a service address, a business name, a question
the business's FAQ answers, and the short English line for the CRM's ``need``.

All pure functions over text; English and Spanish.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from agent.urgency import UrgencyReading

__all__ = [
    "answer_from_faq",
    "detect_language",
    "is_commercial",
    "need_line",
    "read_address",
    "read_callback",
    "read_company",
    "read_existing_customer",
    "read_new_project",
    "short_line",
]

NEED_MAX_CHARS = 80


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def _norm(text: str) -> str:
    return " ".join(text.replace("’", "'").split())


# --- callback ------------------------------------------------------------------------------

_CALLBACK_DECLINED = _rx(
    r"\bno need (?:to|for you to|for anyone to) (?:call|ring|phone)\b",
    r"\b(?:don'?t|do not|doesn'?t|no need to) (?:need to |have to |bother to )?(?:call|ring)"
    r" (?:me|us)?\s?back\b",
    r"\b(?:you |y'all )?(?:don'?t|do not) (?:need|have) to call\b",
    r"\bno call ?backs? (?:needed|necessary|required)?\b|\bno callback\b",
    r"\b(?:i'?ll|i will|we'?ll|we will|i can) (?:just )?call (?:you |y'all |back |again )"
    r"(?:back |again )?\b",
    r"\b(?:i'?ll|i will) (?:just )?(?:try|call) (?:again|back) (?:tomorrow|later|in the morning"
    r"|monday|during (?:business|office) hours)\b",
    r"\bnot necessary to call\b|\bplease don'?t call\b|\bdon'?t call me\b",
    r"\bjust (?:leaving|wanted to leave) a message\b|\bjust letting you know\b",
    r"\bno (?:necesito|hace falta|es necesario) que me (?:llamen|llame|devuelvan)\b",
    r"\b(?:yo )?(?:les|los) (?:llamo|vuelvo a llamar)\b|\bno me llamen\b",
)
_CALLBACK_REQUESTED = _rx(
    r"\bcall (?:me|us) back\b|\bcall back\b|\bcallback\b|\bgive (?:me|us) a (?:call|ring)\b",
    r"\b(?:have|get|can|could|please have) (?:someone|somebody|a tech\w*|him|her|them|you)"
    r" (?:to )?call\b",
    r"\bcall me\b(?! back)|\breach (?:me|us)\b|\bget back to (?:me|us)\b",
    r"\breturn (?:my|the) call\b",
    r"\bcontact me\b|\bll[aá]m(?:e|en)me\b|\bllamarme\b|\bme (?:pueden|puede|podr[ií]an) llamar\b",
    r"\bque me llamen\b|\bdevolver(?:me)? la llamada\b",
)


def read_callback(text: str) -> bool | None:
    """``False`` when the caller says not to call back, ``True`` when they ask for a call,
    ``None`` when they say neither."""
    text = _norm(text)
    if _CALLBACK_DECLINED.search(text):
        return False
    for match in _CALLBACK_REQUESTED.finditer(text):
        before = text[max(0, match.start() - 30) : match.start()].lower()
        if not re.search(r"\b(?:don'?t|not|no|never|nobody)\b[\w\s']*$", before):
            return True
    return None


# --- customer and project ------------------------------------------------------------------

_EXISTING = _rx(
    r"\b(?:already|existing|current|long-?time|repeat|regular|returning) (?:a )?customers?\b",
    r"\b(?:i'?m|i am|we'?re|we are|been) (?:a |your )?(?:customers?|clients?)\b",
    r"\b(?:i'?ve|we'?ve|i have|we have) (?:used|called) (?:you|y'all)\b",
    r"\byou (?:guys |all |folks )?(?:installed|serviced|did|put in|replaced|fixed|came out"
    r"|were (?:out )?here|worked on|repaired)\b",
    r"\bused (?:you|y'all)(?: guys)? before\b|\b(?:last|previous) time you\b",
    r"\byou have (?:my|our) (?:info|information|account|file)\b",
    r"\bya soy cliente\b|\bsomos clientes\b|\bsoy cliente\b|\bustedes (?:instalaron|vinieron"
    r"|arreglaron|hicieron)\b",
)
_NOT_EXISTING = _rx(
    r"\b(?:not|never been) (?:a |your )?customers?\b|\bnew customer\b|\bfirst time (?:calling"
    r"|customer|using)\b|\bnever used (?:you|y'all)\b|\bno soy cliente\b|\bcliente nuevo\b",
)
_NEW_WORK = _rx(
    r"\binstall\w*\b|\breplac\w*\b|\bremodel\w*\b|\brenovat\w*\b|\baddition\b|\bupgrad\w*\b",
    r"\badded\b|\bswap\w*\b|\bswitch\w* (?:\w+ ){0,4}(?:to|for)\b|\bconvert\w*\b",
    r"\bquotes?\b|\bestimates?\b|\bbids?\b|\bnew (?!customer)(?:\w+ )?(?:water heater|furnace"
    r"|ac|a/c|unit|system|bathroom|kitchen|panel|toilet|faucet|boiler|heat pump|line|outlets?"
    r"|circuit|fixtures?|project)\b|\bproject\b|\badd (?:a|an|another|some)\b|\bput in (?:a|an)\b",
    r"\binstalar\b|\breemplazar\b|\bcambiar (?:el|la)\b|\bproyecto\b|\bcotizaci[oó]n\b",
    r"\bpresupuesto\b|\bremodel\w*\b|\bnuev[oa]\b",
)


def read_existing_customer(text: str) -> bool | None:
    """``True`` for "I'm already a customer", ``False`` for "first time calling"."""
    text = _norm(text)
    if _NOT_EXISTING.search(text):
        return False
    if _EXISTING.search(text):
        return True
    return None


def read_new_project(text: str) -> bool:
    """Whether the caller wants new work (install, replace, remodel, a quote)."""
    text = _norm(text)
    for match in _NEW_WORK.finditer(text):
        before = text[max(0, match.start() - 25) : match.start()].lower()
        if re.search(r"\b(?:don'?t|not|no|never)\b[\w\s']*$", before):
            continue
        # "the AC you installed", "it was replaced": earlier work, not new work
        if match.group(0).lower().endswith("ed") and re.search(
            r"\b(?:you|guys|they|was|were|been|had|we|previously|already)\s+$", before
        ):
            continue
        return True
    return False


# --- language ------------------------------------------------------------------------------

_ES_WORDS = frozenset(
    [
        "hola",
        "el",
        "la",
        "los",
        "las",
        "de",
        "del",
        "que",
        "y",
        "es",
        "mi",
        "tengo",
        "se",
        "por",
        "para",
        "con",
        "una",
        "un",
        "está",
        "esta",
        "hay",
        "necesito",
        "quiero",
        "llamo",
        "agua",
        "buenas",
        "gracias",
        "sí",
        "usted",
        "ustedes",
        "casa",
        "no",
        "tenemos",
        "calefacción",
        "español",
        "favor",
        "señor",
        "señora",
        "soy",
        "me",
        "nombre",
        "aire",
        "calentador",
        "fuga",
        "cocina",
        "baño",
        "sótano",
        "mañana",
    ]
)
_EN_WORDS = frozenset(
    [
        "the",
        "and",
        "is",
        "my",
        "i",
        "it",
        "to",
        "a",
        "of",
        "in",
        "have",
        "need",
        "with",
        "this",
        "that",
        "you",
        "we",
        "there",
        "for",
        "on",
        "at",
        "water",
        "please",
        "hi",
        "hello",
        "yes",
        "name",
        "my",
        "i'm",
        "it's",
        "our",
        "house",
        "heat",
        "leak",
    ]
)
_SPANISH_CHOICE = _rx(r"\bespa[nñ]ol\b|\bspanish\b|\ben espa[nñ]ol\b|\bhablo espa[nñ]ol\b")


def detect_language(text: str, *, digits: str | None = None) -> str | None:
    """``"es"`` when the caller chooses or speaks Spanish, ``"en"`` for English, else None."""
    if digits and digits.strip().startswith("2"):
        return "es"
    norm = _norm(text).lower()
    if not norm:
        return None
    if _SPANISH_CHOICE.search(norm) and not re.search(r"\bno (?:hablo )?espa[nñ]ol\b", norm):
        return "es"
    words = re.findall(r"[\wáéíóúñü']+", norm)
    es = sum(w in _ES_WORDS for w in words) + sum(any(c in "áéíóúñ¿¡" for c in w) for w in words)
    en = sum(w in _EN_WORDS for w in words)
    if es >= 2 and es > en:
        return "es"
    if en >= 1 and en >= es:
        return "en"
    return None


# --- address and company -------------------------------------------------------------------

_ADDRESS_LEAD = re.compile(
    r"^(?:(?:yes|yeah|sure|ok(?:ay)?|um+|uh+|so)\W+)*(?:it'?s|it is|the address is|address is"
    r"|my address is|we'?re at|i'?m at|we are at|i am at|the house is at|that'?s|at|es|mi"
    r" direcci[oó]n es|la direcci[oó]n es|estamos en|en)\s+",
    re.IGNORECASE,
)
_STREET_WORDS = re.compile(
    r"\b(?:street|st|avenue|ave|road|rd|drive|dr|lane|ln|court|ct|way|boulevard|blvd|place|pl"
    r"|circle|cir|terrace|highway|hwy|parkway|pkwy|trail|square|loop|pike|route|unit|apt"
    r"|apartment|suite|calle|avenida|camino|carretera)\b",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "uno": "1", "dos": "2",
    "tres": "3", "cuatro": "4", "cinco": "5", "seis": "6", "siete": "7", "ocho": "8",
    "nueve": "9", "cero": "0",
}  # fmt: skip


def read_address(text: str) -> str | None:
    """A service address from an answer ("it's 12 Oak Street, apartment 3" → "12 Oak Street,
    apartment 3"); ``None`` when the answer is not an address."""
    body = _ADDRESS_LEAD.sub("", _norm(text)).strip(" .")
    tokens = body.split()
    digits: list[str] = []
    while tokens and tokens[0].lower().strip(",") in _NUMBER_WORDS:
        digits.append(_NUMBER_WORDS[tokens.pop(0).lower().strip(",")])
    if digits:
        body = "".join(digits) + (" " + " ".join(tokens) if tokens else "")
    has_number = bool(re.search(r"\d", body))
    if not (has_number and (_STREET_WORDS.search(body) or len(body.split()) >= 2)):
        return None
    if len(body) > 200:
        return None
    return body[:1].upper() + body[1:]


_COMMERCIAL = _rx(
    r"\b(?:restaurant|office|store|shop|warehouse|our building|the building|tenants?|property"
    r" manag\w*|properties|our business|my business|the business|company|commercial|church"
    r"|school|clinic|hotel|apartment complex|units|facility|salon|cafe|bakery|gym|llc|inc)\b",
    r"\b(?:restaurante|oficina|tienda|negocio|empresa|edificio|inquilinos)\b",
)


def is_commercial(text: str) -> bool:
    """The caller speaks for a business or a building (so a company name is worth asking)."""
    return bool(_COMMERCIAL.search(_norm(text)))


def read_company(text: str) -> str | None:
    """A business name from an answer to "what's the name of the business?"."""
    body = re.sub(
        r"^(?:(?:yes|yeah|sure|ok(?:ay)?|um+|uh+|so)\W+)*(?:it'?s|it is|we'?re|we are|the"
        r" (?:business|company) is|it'?s called|es|se llama|somos)\s+",
        "",
        _norm(text),
        flags=re.I,
    ).strip(" .")
    words = body.split()
    if not 1 <= len(words) <= 8 or not re.search(r"[^\W\d_]", body):
        return None
    return " ".join(w if any(c.isupper() for c in w) else w.capitalize() for w in words)[:255]


# --- FAQ -----------------------------------------------------------------------------------

_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "do",
        "does",
        "did",
        "you",
        "your",
        "yours",
        "guys",
        "is",
        "are",
        "am",
        "i",
        "we",
        "my",
        "our",
        "to",
        "of",
        "in",
        "on",
        "for",
        "and",
        "or",
        "can",
        "could",
        "would",
        "will",
        "be",
        "it",
        "that",
        "this",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "there",
        "any",
        "some",
        "have",
        "has",
        "with",
        "me",
        "us",
        "just",
        "wondering",
        "question",
        "ask",
        "asking",
        "know",
        "want",
        "like",
        "get",
        "about",
        "if",
        "also",
        "y'all",
        "hi",
        "hello",
        "um",
        "uh",
        "so",
        "ok",
        "okay",
        "please",
        "thanks",
        "need",
    ]
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ers", "er", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _content(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in _STOP}


def answer_from_faq(question: str, faq: Mapping[str, str]) -> str | None:
    """The business's approved answer to ``question``, when one of its FAQ entries matches
    well enough (most of the entry's content words were said); ``None`` otherwise."""
    asked = _content(question)
    best: tuple[float, str] | None = None
    for entry, answer in faq.items():
        words = _content(entry)
        if not words:
            continue
        overlap = len(asked & words)
        score = overlap / len(words)
        if overlap >= 1 and score >= 0.5 and (best is None or score > best[0]):
            best = (score, answer)
    return best[1] if best else None


# --- the need line -------------------------------------------------------------------------

_FILLER_RE = re.compile(
    r"^(?:(?:hi|hello|hey|yeah|yes|um+|uh+|so|well|ok(?:ay)?|basically|sorry|like|and|oh"
    r"|hola|bueno|pues|mira)\b[\s,.!-]*)+",
    re.IGNORECASE,
)
_LEAD_RE = re.compile(
    r"^(?:i'?m calling (?:because|about|since|to|for)|i am calling (?:because|about|to)"
    r"|calling (?:because|about)|the reason i'?m calling is|i was wondering if|i wanted to"
    r"|i'?d like to|i would like to|i need (?:someone|somebody) to|i think|i believe"
    r"|(?:i|we) (?:just )?(?:want|need|would like|'d like)(?= (?:a|an|the|some|my|our|to)\b)"
    r"|we'?ve got|i'?ve got|we have|i have|there'?s|there is|it'?s that|it looks like)\s+",
    re.IGNORECASE,
)
_CLAUSE_END_RE = re.compile(r"[.;!?]|,\s|\s(?:and|but|so|because)\s", re.IGNORECASE)
_TOPICS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(r"gas"), "Gas smell"),
    (_rx(r"mon[oó]xido|monoxide"), "Carbon monoxide alarm"),
    (_rx(r"humo|smoke"), "Smoke"),
    (_rx(r"chispa|spark|quemado|burning"), "Sparking / burning smell"),
    (_rx(r"tuber[ií]a|pipa|pipe"), "Burst pipe"),
    (_rx(r"inund|flood"), "Flooding"),
    (_rx(r"calefacci[oó]n|caldera|calefactor|heat"), "No heat"),
    (_rx(r"aire|clima|\bac\b"), "AC not cooling"),
    (_rx(r"agua caliente|calentador|water heater"), "Water heater / no hot water"),
    (_rx(r"fuga|gotera|leak"), "Water leak"),
    (_rx(r"inodoro|baño|toilet"), "Toilet problem"),
    (_rx(r"drenaje|desag[uü]e|tapad|drain|clog"), "Clogged drain"),
    (_rx(r"enchufe|electric|luz|luces|breaker|panel"), "Electrical problem"),
    (_rx(r"cotizaci[oó]n|presupuesto|precio|quote|estimate"), "Quote request"),
    (_rx(r"instalar|install"), "Installation"),
    (_rx(r"pregunta|informaci[oó]n|question"), "General question"),
)
_PLACES: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(r"s[oó]tano|basement"), "basement"),
    (_rx(r"cocina|kitchen"), "kitchen"),
    (_rx(r"\bba[nñ]o\b|bathroom"), "bathroom"),
    (_rx(r"[aá]tico|attic"), "attic"),
    (_rx(r"garaje|garage"), "garage"),
    (_rx(r"lavander[ií]a|laundry"), "laundry room"),
    (_rx(r"techo|ceiling"), "ceiling"),
)


def short_line(text: str, limit: int = NEED_MAX_CHARS) -> str:
    """``text`` on one line within ``limit`` characters, cut at a word boundary."""
    line = " ".join(text.split()).strip(" .,;")
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;-")
    return cut + "…"


def need_line(text: str, reading: UrgencyReading | None = None, *, language: str = "en") -> str:
    """A short English line for the CRM's ``need`` (≤ 80 characters).

    English: the caller's own first clause about the problem, without greetings and
    lead-ins ("Pipe burst in the basement"). Other languages: an English topic label and
    place ("Flooding (basement) - caller spoke Spanish"), since staff read the CRM in
    English; the caller's words stay in ``details`` and the transcript.
    """
    norm = _norm(text)
    if not language.startswith("en"):
        topic = next((label for pattern, label in _TOPICS if pattern.search(norm)), None)
        place = next((name for pattern, name in _PLACES if pattern.search(norm)), None)
        label = topic or "Service request"
        if place:
            label += f" ({place})"
        name = {"es": "Spanish"}.get(language[:2], language)
        return short_line(f"{label} - caller spoke {name}")
    body = norm
    for _ in range(3):
        stripped = _LEAD_RE.sub("", _FILLER_RE.sub("", body)).strip()
        if stripped == body:
            break
        body = stripped
    clause = _CLAUSE_END_RE.split(body, maxsplit=1)[0].strip()
    if len(clause.split()) < 3:
        clause = body
    clause = re.sub(r"^(?:a|an|the|my|our)\s+", "", clause, flags=re.I)
    if not clause:
        return short_line(norm) or "Call"
    return short_line(clause[:1].upper() + clause[1:])


def joined(texts: Sequence[str]) -> str:
    return " ".join(t.strip() for t in texts if t.strip())
