"""The context-aware urgency reader: how urgent a caller's *situation* is, from their words.

One reader serves the scripted intake, the deterministic extractor and the merge with the
model's extraction (``summary_builder``). It reads English and Spanish, sentence by sentence
and clause by clause, and a term only counts when it describes the caller's situation now:

- **negation** — "it's not flooding", "no gas smell", "sin fuga" (per clause, a few words
  back; "not sure if I smell gas" is a hedge, not a negation);
- **compound nouns** that name a thing — "emergency generator", "flood lights",
  "smoke detector install", "gas stove", "fire pit", "spark plug", "urgent care";
- **past or resolved events** — "we had a flood last year", "there was a fire in 2019",
  "the leak is fixed now"; a later clause with "now"/"again"/"still" is present again;
- **hypotheticals and prevention** — "if a pipe ever bursts", "in case of a gas leak",
  "worried it could catch fire", "to prevent flooding";
- **reported speech** from outside the household — "my neighbor said her basement
  flooded", "the inspector told me there might be a gas leak";
- **capability questions** — "do you handle gas leaks?", "are you open today?".

Life-safety situations are recognised however they are phrased: gas, carbon monoxide,
fire/smoke/sparks/burning smell, active flooding, no heat in freezing weather (or with
vulnerable people), no cooling in dangerous heat with vulnerable people. They are always
urgency 5, even after "it's not an emergency, but…".

The scale (DESIGN.md): 5 emergency now, 4 urgent today, 3 this week, 2 flexible or a quote,
1 a general inquiry; ``None`` when the words do not say.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["UrgencyReading", "read_urgency"]

Hazard = str  # "gas", "carbon_monoxide", "fire", "flooding", "no_heat_freezing", "heat_danger"


@dataclass(frozen=True, slots=True)
class UrgencyReading:
    """What the caller's words say about urgency.

    ``life_safety`` names the *present* life-safety situations heard (empty when none);
    ``urgency`` is ``None`` when nothing in the words bears on urgency.
    """

    urgency: int | None
    is_emergency: bool
    life_safety: tuple[Hazard, ...]
    matched: tuple[str, ...]
    declined_urgency: bool  # the caller said it is not urgent / can wait
    inquiry: bool  # a general question only

    @property
    def present_danger(self) -> bool:
        return bool(self.life_safety)


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# --- life-safety situations ----------------------------------------------------------------

# A few words between two terms, none of them a negation ("water is not rising").
_GAP = (
    r"(?: (?!(?:not|no|never|nothing|isn'?t|wasn'?t|aren'?t|don'?t|doesn'?t|didn'?t|won'?t)\b)"
    r"[\w']+){0,4}"
)


_GAS = _rx(
    r"\b(?:smell|reek|stink)(?:s|ing|ed)? (?:of |like )?(?:natural |propane )?gas\b"
    r"(?! (?:stove|bill|meter\b))",
    r"\b(?:natural |propane )?gas (?:smell|odou?r|leak)\w*\b",
    r"\bleak(?:ing|s)? (?:natural |propane )?gas\b",
    r"\bpropane (?:smell|leak|odou?r)\b|\bsmell\w* (?:of |like )?propane\b",
    r"\brotten eggs?\b",
    r"\b(?:sulfur|sulphur) smell\b|\bsmells? like (?:sulfur|sulphur)\b",
    r"\bhiss\w* (?:\w+ ){0,5}(?:gas|meter|stove|gas line)\b",
    r"\b(?:huele|olor|oler) a gas\b",
    r"\bfuga de gas\b",
    # either order, a few words apart: "an odor of gas", "gas ... you can smell it"
    r"\b(?:smell\w*|odou?rs?|stink\w*|reek\w*|whiff|fumes)\b" + _GAP + r" (?:natural gas|gas"
    r"|propane)\b(?! (?:stoves?|bills?|meters?|lines? installed|fireplaces?|grills?))",
    r"\b(?:natural gas|propane|gas)\b" + _GAP + r" (?:smell\w*|odou?rs?|stink\w*|reek\w*)\b",
    r"\bse (?:est[aá] )?(?:sale|saliendo) el gas\b",
)
_CO = _rx(
    r"\bcarbon monoxide\b(?! (?:detectors?|alarms?|sensors?|testing|test|check)\b"
    r"(?! (?:is |are |keeps |started |has been |just )?(?:going off|sounding|beeping|blaring"
    r"|alarming|went off)))",
    r"\b(?:co|c\.o\.|carbon monoxide|monoxide) (?:alarm|detector|sensor)s? (?:\w+ ){0,3}"
    r"(?:going off|went off|sounding|blaring|alarming|beeping nonstop|keeps beeping)\b",
    r"\b(?:co|carbon monoxide|monoxide) (?:alarm|detector|sensor)s? (?:[\w']+ ){0,6}(?:won'?t stop"
    r" (?:beeping|going off|sounding)|\d+ ?ppm|reads? \d+)",
    r"\b\d{2,4} ?ppm\b",
    r"\bmon[oó]xido de carbono\b",
    r"\balarma de (?:mon[oó]xido|co|gas) (?:est[aá] )?(?:sonando|suena)\b",
)
_CO_SYMPTOMS = _rx(r"\b(?:headaches?|dizzy|dizziness|nause\w*|light-?headed|mareado\w*)\b")
_CO_SOURCES = _rx(r"\b(?:furnace|boiler|heater|fumes|exhaust|generator|calentador|caldera)\b")
_FIRE = _rx(
    r"\b(?:there'?s|there is|we have|i have|got) (?:a )?fire\b",
    r"\bon fire\b|\bcaught fire\b|\bcatching fire\b|\bin flames\b",
    r"\bflames?\b(?! (?:sensors?|rods?|retardant)\b)",
    r"\bsmoke\b(?! (?:detectors?|alarms?|tests?|testing|free|shop)\b)(?!r)"
    r"(?! (?:and|&|or|/) (?:carbon monoxide|co|heat) (?:detectors?|alarms?))",
    r"\bsmoke (?:detector|alarm)s? (?:\w+ ){0,2}(?:going off|went off|sounding|blaring)\b",
    r"\bsmok(?:ing|es)\b(?! (?:area|section))",
    r"\bspark(?:s|ing|ed)?\b(?! plugs?\b)",
    r"\barcing\b",
    r"\bburning (?:smell|odou?r|plastic|rubber)\b",
    r"\bsmell(?:s|ing)? (?:of |like )?(?:something )?(?:is )?(?:burning|burnt|burned)\b",
    r"\b(?:electrical|burnt|burned) smell\b",
    r"\b(?:smell\w*|odou?rs?)\b" + _GAP + r" (?:burning|burnt|burned|scorched)\b",
    r"\b(?:outlet|plug|switch|panel|breaker|cord|wall)s? (?:is |are |feels |feel )?(?:really |very"
    r" |super )?hot\b(?! water)",
    r"\b(?:melted|melting|scorched|charred|blackened) (?:outlets?|wires?|wiring|plugs?|panel"
    r"|breakers?|switch\w*|cords?)\b",
    r"\b(?:outlet|panel|breaker|switch|wire|wires|wiring|cord|plug)s? (?:is |are )?(?:melting"
    r"|melted|hot to the touch|scorched)\b",
    r"\blive wires? (?:\w+ ){0,3}(?:spark\w*|arcing|in the water|hanging)\b",
    r"\bfuego\b|\bincendio\b|\bllamas\b",
    r"(?<!detector de )(?<!detectores de )(?<!alarma de )\bhumo\b",
    r"\bchispa(?:s|zos)?\b|\bchisporrote\w*\b",
    r"\b(?:huele|olor) a quemado\b|\bse est[aá] quemando\b",
)
_FLOOD = _rx(
    r"\bflood(?:ing|ed|s)?\b(?! (?:lights?|insurance|zones?|plains?|damage|sensors?|alarms?"
    r"|vents?|gates?|warnings?|watch|clean-?up|restoration|risk|maps?|barriers?)\b)",
    r"\bwater (?:is |was )?(?:just |still )?(?:pouring|gushing|spraying|shooting|flowing"
    r"|rushing|coming (?:in|through|down|up|out)|everywhere|rising|up to"
    r"|going everywhere|over my ankles)\b",
    r"\bwater every ?where\b",
    r"\b(?:inches|inch|feet|foot) of water\b|\bankle[- ]deep\b",
    r"\b(?:burst|busted|bursted|broken|exploded|split|ruptured) (?:water )?(?:pipes?|mains?"
    r"|supply lines?|water lines?|hoses?)\b",
    r"\b(?:pipe|line|hose)s? (?:\w+ ){0,2}(?:snapped|cracked open|came apart|broke off|popped"
    r" off|came off|blew off)\b",
    r"\bwater\b" + _GAP + r" (?:pouring|gushing|spraying|everywhere|rising|filling up"
    r"|flooding)\b",
    r"\b(?:is|are) (?:completely |totally )?under water\b",
    r"\b(?:pipe|main|water line|supply line|hose)s? (?:has |have |just |totally )?(?:burst"
    r"|busted|bursted|exploded|broke|split|ruptured|blew)\b",
    r"\b(?:can'?t|cannot|can not|won'?t) (?:stop|shut|turn) (?:off )?(?:the )?water\b",
    r"\b(?:pipe|line|hose)s? (?:\w+ ){1,4}(?:burst|blew|busted|exploded|ruptured)\b",
    r"\bceiling (?:is )?(?:caving|collapsing|falling|coming down)\b",
    r"\bwater heater (?:just )?(?:burst|exploded|blew)\b",
    r"\binund(?:a|ando|ado|ada|aci[oó]n|ó|o)\b",
    r"\bse (?:rompi[oó]|revent[oó]) (?:la|una) (?:tuber[ií]a|pipa|manguera)\b",
    r"\btuber[ií]a (?:rota|reventada)\b",
    r"\bagua por todas partes\b|\bsale mucha agua\b|\bse est[aá] llenando de agua\b",
)
_HEAT_FAILURE = _rx(
    r"\bno heat\b(?!er)|\bno heating\b",
    r"\b(?:don'?t|do not|doesn'?t) have (?:any )?heat\b",
    r"\bwithout (?:any )?heat\b",
    r"\b(?<!water )(?:furnace|boiler|heater|heating|heat pump|heat)\b(?: \w+){0,3} (?:died"
    r"|is out|went out|stopped working|quit|broke|is broken|not working|isn'?t working"
    r"|won'?t (?:turn on|start|come on|kick on|fire up|ignite|light)|is dead|went dead"
    r"|blowing cold|only blows cold|is off|packed in|gave out|gone out|crapped out|shut off"
    r"|shuts off|has been out|has been off|has been down|been out)\b",
    r"\bheats? (?:is )?out\b",
    r"\bno (?:hot|warm) air\b|\b(?:isn'?t|not|won'?t) heating\b|\bwon'?t heat\b",
    r"\b(?:house|home|apartment|place) is (?:freezing|ice cold|an icebox)\b",
    r"\bsin calefacci[oó]n\b|\bno (?:hay|tengo|tenemos) calefacci[oó]n\b",
    r"\b(?:calefacci[oó]n|calefactor|caldera|horno|calentador de aire) no (?:funciona|prende"
    r"|enciende|sirve)\b",
)
_FREEZING = _rx(
    r"\bfreezing\b|\bfrozen\b|\bfreeze\b(?! dried)",
    r"\bbelow (?:zero|freezing)\b|\bsingle digits\b|\bsub-?zero\b",
    r"\bsnow\w*\b|\bice storm\b|\bblizzard\b|\bpolar vortex\b|\bwind ?chill\b",
    r"\b(?:bitter(?:ly)?|so|really|very|extremely|brutally|ice) cold\b|\bminus \w+\b",
    r"\bin the teens\b|\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven"
    r"|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty"
    r"|twenty-\w+|thirty) degrees\b",
    r"\bcongel\w*\b|\bhace (?:mucho )?fr[ií]o\b|\bhelad\w*\b|\bbajo cero\b|\bnev\w*\b",
)
_COOLING_FAILURE = _rx(
    r"\bno (?:ac|a/c|a\.c\.|air conditioning|air|cooling|cold air)\b",
    r"\b(?:ac|a/c|a\.c\.|air conditioner|air conditioning|air|cooling|central air|heat pump"
    r"|swamp cooler|cooler)\b"
    r"(?: \w+){0,3} (?:died|is out|stopped working|quit|broke|is broken|not working|isn'?t"
    r" working|not cooling|isn'?t cooling|won'?t (?:turn on|start|come on|cool)|blowing"
    r" (?:hot|warm) air|is dead|went out|gone out|packed in|gave out)\b",
    r"\b(?:aire acondicionado|el aire|el clima|a/c)\b(?: \w+){0,2} no (?:funciona|enfr[ií]a"
    r"|sirve|prende)\b",
    r"\bsin aire(?: acondicionado)?\b",
)
_HOT = _rx(
    r"\bheat ?wave\b|\bheat (?:advisory|warning)\b",
    r"\b(?:so|really|very|extremely|unbearably|dangerously|brutally) hot\b",
    r"\bsweltering\b|\bboiling in here\b|\bhot as blazes\b|\ba hundred and \w+\b",
    r"\b(?:9\d|1[0-2]\d) (?:out|outside|inside|in here|in the house)\b",
    r"\bhace (?:mucho )?calor\b|\bmucho calor\b",
)
_VULNERABLE = _rx(
    r"\belderly\b|\bsenior\b|\bgrand(?:ma|pa|mother|father|parents?)\b|\bnan\b|\bnana\b",
    r"\b(?:[6-9]\d|1[01]\d)[- ]years?[- ]old\b",
    r"\b(?:my|our) (?:mom|mother|dad|father|husband|wife|partner|grand\w+|aunt|uncle|tenant"
    r"|neighbou?r|roommate) is (?:[7-9]\d|1[01]\d)\b(?! degrees)",
    r"\bnewborn\b|\binfant\b|\bbab(?:y|ies)\b|\btoddler\b|\bpregnant\b",
    r"\bdisabled\b|\bdisability\b|\boxygen\b|\bmedical (?:condition|equipment)\b",
    r"\bheart (?:condition|problems?)\b|\bdialysis\b|\bbedridden\b|\bhospice\b|\bcopd\b",
    r"\banci(?:ano|ana)s?\b|\babuel\w*\b|\bbeb[eé]s?\b|\breci[eé]n nacido\b|\bembarazada\b",
    r"\bpersonas? mayor(?:es)?\b",
)
_DEGREES_RE = re.compile(r"\b(-?\d{1,3}) ?(?:degrees|°|grados)\b", re.IGNORECASE)

# --- other urgency signals -----------------------------------------------------------------

_EMERGENCY_CLAIM = _rx(
    r"\bemergenc(?:y|ies)\b(?! (?:[\w-]+ )?(?:generators?|lights?|lighting|exits?|kits?|funds?"
    r"|brakes?|systems?|equipment|sensors?|alarms?"
    r"|rooms?|contacts?|shut-?offs?|shutoff valves?|valves?|plans?|numbers?|lines?|fees?"
    r"|rates?|pric\w+|charges?|surcharges?|costs?|pay|call-?out (?:fee|charge)|services?"
    r"|preparedness|supplies|radios?|backup|release|stop)\b)",
    r"(?<!generador de )(?<!luces de )(?<!salida de )(?<!tarifa de )\bemergencia\b",
)
_URGENT = _rx(
    r"\burgent(?:ly)?\b(?! care\b)",
    r"\burgente\b",
    r"\bno (?:hot )?water\b|\bno tenemos agua\b|\bno (?:hay|tengo) agua(?: caliente)?\b",
    r"\bwater heater (?:\w+ ){0,2}(?:not working|isn'?t working|died|broke|is out|stopped"
    r" working|leaking|is leaking)\b",
    r"\b(?:ceiling|roof|water heater|pipe|pipes|tank|supply line)s? (?:\w+ ){0,2}leak\w*\b",
    r"\bleak\w* (?:\w+ ){0,3}(?:ceiling|roof|pipe|from the|through the|under the|everywhere)\b",
    r"\bwater (?:is )?leaking\b|\bleaking water\b|\bactive leak\b",
    r"\boverflowing\b(?! (?:drain|tube|pipe))",
    r"\b(?:is|are) backing up\b|\bonly (?:\w+ )?(?:toilet|bathroom)\b(?: \w+){0,4} won'?t flush\b",
    r"\b(?:toilet|sink|tub|drain|sewer|sewage)s? (?:\w+ ){0,2}(?:overflow\w*|backing up|backed"
    r" up|coming up)\b",
    r"\bsewage (?:\w+ ){0,3}(?:floor|basement|everywhere|coming)\b|\bsewer back-?up\b",
    r"\bonly (?:toilet|bathroom) (?:is |isn'?t )?(?:\w+ )?(?:clogged|working|broken)\b",
    r"\b(?:no|lost) (?:power|electricity)\b|\b(?:power|electricity) (?:is |went )?out\b",
    r"\bexposed wires?\b|\bpipes? (?:are |is )?frozen\b|\bfrozen pipes?\b",
    r"\bfuga de agua\b|\bgoteras?\b|\bno hay agua caliente\b",
    r"\b(?:ceiling|roof)\b (?:\w+ ){0,2}drip\w*|\bdripping water\b|\bhurry\b(?<!no hurry)",
)
# Asking for someone today: counts in a question or a polite "if you could" too.
_URGENT_TIME = _rx(
    r"\basap\b|\ba\.s\.a\.p\b",
    r"\bas soon as (?:possible|you can|someone can)\b",
    r"\bright away\b|\bimmediately\b|\bcan'?t wait\b",
    r"(?<!calling )(?<!called )(?<!open )\btoday\b|\btonight\b|\bthis evening\b",
    r"\b(?:need|send|come|get) (?:\w+ ){0,3}(?:right )?now\b",
    r"\blo antes posible\b|\bcuanto antes\b|\bde inmediato\b|\bahora mismo\b|\bhoy\b",
    r"\besta noche\b",
)
_SERVICE_REQUEST = _rx(
    r"\b(?:i|we) (?:\w+ )?(?:need|want|would like|'d like|wanna|wanted)\b",
    r"\b(?:need|want) (?:a|an|someone|somebody|to|the|my|our|it)\b",
    r"\blooking for (?:a|an|someone|somebody)\b",
    r"\b(?:can|could|would) (?:you|someone|somebody|y'all|ya)(?: guys)? (?:come|look|check"
    r"|fix|install|replace|give|service|quote|send|take a look|do it|run|put|move|help)\b",
    r"\bnecesito\b|\bquiero\b|\bquisiera\b|\bpueden venir\b",
)
_QUOTE_QUESTION = _rx(
    r"\bhow much (?:would|will|does|do|to|for|is it to|it costs?)\b",
    r"\bwhat (?:would|will|does) it cost\b",
    r"\bcu[aá]nto (?:cuesta|cobran|costar[ií]a)\b",
)
_THIS_WEEK = _rx(
    r"\bthis week\b|\bwithin (?:a|the|this) week\b|\bbefore the weekend\b",
    r"\b(?:in )?(?:a|the next) (?:few|couple(?: of)?) days\b|\bin a day or two\b",
    r"\btomorrow\b|\bsoon(?:ish)?\b|\bby (?:monday|tuesday|wednesday|thursday|friday)\b",
    r"\besta semana\b|\bpronto\b|\ben unos d[ií]as\b|\b(?<!la )(?<!por la )ma[nñ]ana\b",
)
_FLEXIBLE = _rx(
    r"\bno rush\b|\bno hurry\b|\bnot in a (?:big )?hurry\b|\bwhenever\b|\bflexible\b",
    r"\bany ?time\b|\b(?:it|that|this) can wait\b|\bcan wait\b|\bnext (?:week|month)\b",
    r"\bin a (?:few|couple(?: of)?) weeks\b|\bsometime\b|\bno big deal\b",
    r"\bquotes?\b|\bestimates?\b|\bbids?\b|\bpric(?:e|es|ing)\b|\bhow much\b|\bcost\b",
    r"\binstall\w*\b|\breplac\w*\b|\bupgrad\w*\b|\bremodel\w*\b|\brenovat\w*\b",
    r"\bthinking (?:about|of)\b|\bplanning\b|\blooking (?:to|into)\b|\bmaintenance\b",
    r"\btune[- ]?up\b|\binspection\b|\bannual service\b|\bnew (?:\w+ )?(?:water heater|furnace"
    r"|ac|system|unit|bathroom|kitchen|panel|toilet|faucet)\b",
    r"\bno es urgente\b|\bno hay prisa\b|\bsin prisa\b|\bcuando (?:puedan|pueda)\b",
    r"\bcotizaci[oó]n\b|\bpresupuesto\b|\bestimado\b|\bprecio\b|\bcu[aá]nto cuesta\b",
    r"\binstalar\b|\breemplazar\b|\bpuede esperar\b",
)
_DECLINE = _rx(
    r"\bnot (?:really |that |super )?urgent\b|\bnot an emergency\b|\bno emergency\b",
    r"\bnothing urgent\b|\bisn'?t (?:an )?(?:urgent|emergency)\b|\bno rush\b|\bno hurry\b",
    r"\b(?:it|that|this) can wait\b|\bcan wait\b|\bwhenever\b|\bnot in a (?:big )?hurry\b",
    r"\bno es (?:urgente|una emergencia)\b|\bno hay prisa\b|\bsin prisa\b|\bpuede esperar\b",
)
_INFO = _rx(
    r"\bjust (?:have )?(?:a )?(?:quick )?(?:question|wondering|asking|curious|checking)\b",
    r"\b(?:just|only) (?:looking for |want(?:ed|ing)? )?(?:some )?info(?:rmation)?\b",
    r"\bonly (?:have )?a question\b|\b(?:general|quick) question\b|\binformation only\b",
    r"\bi (?:was|am|'m) wondering\b|\bi wanted to (?:ask|know)\b",
    r"\bsolo (?:tengo )?una pregunta\b|\bquer[ií]a (?:saber|preguntar)\b|\binformaci[oó]n\b",
    r"\b(?:i|we) (?:have|had|got) (?:a|one|some|another) (?:quick )?questions?\b",
    r"\bjust had a question\b|\bwhat should (?:i|we) do\b|\bwho (?:do|should) (?:i|we) call\b",
    r"\b(?:your|the) (?:\w+ ){0,2}(?:fee|trip charge)s?\b|\bcharge for (?:a |the )?(?:visit"
    r"|service call|estimate)s?\b|\bcobran por (?:la )?visita\b",
    r"\bhow late\b|\bare (?:you|y'all)(?: guys)? open\b|\bwhat (?:are )?your hours\b",
    r"\buna pregunta\b",
)
# Clauses that ask about the business, not describe a situation.
_CAPABILITY_QUESTION = re.compile(
    r"^\s*(?:(?:and|so|also|um|uh|hi|hello|yeah|ok|okay)\W+)*(?:do|does|are|is|what|what's"
    r"|whats|how|when|which|have|who)\b(?: \w+){0,3}? ?(?:you|your|y'all"
    r"|ya|there|they|it cost|the (?:fee|price|cost)|guys)\b"
    r"|^\s*(?:ustedes|hacen|tienen|cu[aá]nto|cu[aá]l|qu[eé])\b",
    re.IGNORECASE,
)
# ...also when the question comes mid-clause: "if a pipe bursts do you come out at night"
_ASKS_ABOUT_US = re.compile(
    r"\b(?:do|does|are) (?:you|y'all)(?: guys)? (?:come|do|handle|service|offer|work|have"
    r"|charge|install|cover)\b",
    re.IGNORECASE,
)
_CAPABILITY_VERB = re.compile(
    r"^\s*(?:(?:and|so|also|um|uh|hi|hello)\W+)*(?:can|could|will|would) (?:you|y'all|ya)"
    r"(?: guys)? (?:handle|service|work on|deal with)\b(?: \w+){0,2} (?:an?|any)\b",
    re.IGNORECASE,
)

# --- context -------------------------------------------------------------------------------

_NEGATORS = frozenset(
    {"not", "no", "never", "without", "nothing", "none", "nobody", "neither", "nor", "hardly"}
    | {"nunca", "sin", "ni", "tampoco", "nada"}
)
_NOT_NEGATING_AFTER = frozenset({"sure", "know", "certain", "clue", "idea", "kidding", "joke"})
_SCOPE_BREAKS = frozenset(
    {"and", "so", "because", "since", "then", "which", "but", "now", "y", "porque", "entonces"}
    | {"pero", "que", "ahora", "cause", "'cause", "plus", "also"}
)
_NEGATION_WINDOW = 5
_LOOKBACK_CHARS = 150  # context read before a term: a few words, so a scan stays linear
_WORD_RE = re.compile(r"[\w']+")
_SENTENCE_RE = re.compile(r"[^.!?\n]+[.!?]*")
_CLAUSE_SPLIT_RE = re.compile(
    r"[,;:]|\s[-–—]\s|\b(?:but|pero|although|though|however|except|and now|and then"
    r"|this time|right now|y ahora|ahora|y"
    r"|and(?! (?:carbon monoxide|co|heat|smoke) (?:detectors?|alarms?)))\b",
    re.IGNORECASE,
)
_PAST = _rx(
    r"\blast (?:year|month|spring|summer|fall|autumn|winter|time|christmas|january|february"
    r"|march|april|may|june|july|august|september|october|november|december)\b",
    r"\b(?:\d+|a|one|two|three|four|five|six|several|a few|a couple(?: of)?) (?:days|weeks"
    r"|months|years|winters|summers|springs|falls) ago\b",
    r"\byears? (?:ago|back)\b|\bback in\b|\bin (?:19|20)\d\d\b|\bprevious owners?\b",
    r"\bused to\b|\bonce before\b|\bwhen we (?:moved|bought)\b|\ba while (?:ago|back)\b",
    r"\b(?:had|was|were) (?:a |an |some )?(?:\w+ ){0,2}(?:flood|fire|leak|gas leak|smoke"
    r"|sparks?)\b",
    r"\bafter the (?:flood|fire|storm|leak)\b|\bsince the (?:flood|fire|storm|leak)\b",
    r"\bel a[nñ]o pasado\b|\bhace (?:\w+ )?(?:a[nñ]os|meses|semanas)\b|\btuvimos\b|\bhubo\b",
)
_PRESENT_AGAIN = _rx(
    r"\bnow\b|\bagain\b|\bstill\b|\bright now\b|\bcurrently\b|\bahora\b|\botra vez\b|\btodav[ií]a\b"
)
_RESOLVED = _rx(
    r"\b(?:is|was|got|been|has been|are|were|all) (?:\w+ )?(?:fixed|repaired|resolved|taken care"
    r" of|cleaned up|dried out|handled|under control)\b",
    r"\b(?:fixed|repaired|resolved) (?:it|that|the)\b|\btook care of (?:it|that)\b",
    r"\b(?:put|putting) (?:it|the fire) out\b|\bfire (?:is|was) out\b|\bwent out on its own\b",
    r"\b(?:it|leak|water|flooding|the smell|smell|sparking|smoke) (?:(?:has|is|finally|already"
    r"|completely) )*(?:stopped|cleared|gone)\b(?! working)",
    r"\b(?:everything|all) (?:is |'s )?(?:fine|ok|okay|good) now\b|\bis (?:fine|ok|okay) now\b",
    r"\bya (?:lo )?(?:arreglaron|arreglamos|se arregl[oó])\b|\bya est[aá] (?:bien|arreglado)\b",
)
_WATER_SHUT_OFF = _rx(
    r"\b(?:shut|turned|switched|closed) (?:\w+ )?(?:off )?(?:the )?(?:water|main|valve)"
    r"(?: off)?\b",
    r"\bcerr(?:e|é|amos) (?:la llave|el agua)\b|\b(?:water|main) is (?:\w+ )?off\b",
)
_HYPOTHETICAL_START = re.compile(
    r"^\s*(?:(?:and|but|so|just|even|only|like|um|uh)\W+)*(?:if|what if|in case|just in case|in"
    r" the event|suppose|supposing|should (?:there|it|a|the|my)|god forbid|si|en caso de)\b",
    re.IGNORECASE,
)
_HYPOTHETICAL_BEFORE = _rx(
    r"\b(?:might|could|may|would|will|gonna|going to|about to)\b(?! (?:like|love|appreciate"
    r"|you|be (?:great|nice|good|fine|awesome)))(?: \w+){0,3}$",
    r"\b(?:prevent\w*|avoid\w*|in case of|risk of|chance of|prepared for|ready for|protect"
    r"\w* (?:against|from)|worried about|afraid of|scared of|concerned about|ever)\b(?: \w+)"
    r"{0,3}$",
    r"\bbefore (?:it|they|the|a|any|we)\b(?: \w+){0,3}$",
    r"\bpara (?:evitar|prevenir)\b(?: \w+){0,3}$|\bpodr[ií]a\b(?: \w+){0,3}$",
)
_REPORTING = _rx(
    r"\b(?:said|says|told (?:me|us)|telling (?:me|us)|mentioned|heard|warned|read|saw (?:on|in)"
    r"|on the news|according to|me dijo|dijo que|dicen que|dice que)\b"
)
_HOUSEHOLD = _rx(
    r"\b(?:my|our) (?:wife|husband|son|daughter|kids?|tenants?|roommate|mom|mother|dad|father"
    r"|partner|girlfriend|boyfriend|family|nanny|babysitter)\b|\bmi (?:esposa|esposo|hij[oa]"
    r"|mam[aá]|pap[aá])\b"
)
_MODAL = _rx(r"\b(?:might|could|may|possibl\w*|probably|risk|puede que|podr[ií]a)\b")
_CALLBACK_TIME_RE = re.compile(
    r"\bcall (?:me|us)\b|\bcall back\b|\bcallback\b|\breach (?:me|us)\b|\bgive (?:me|us) a call\b"
    r"|\bll[aá]m(?:e|en)(?:me|nos)\b|\bllamarme\b|\bme (?:pueden|puede) llamar\b",
    re.IGNORECASE,
)
_GONE_AFTER = re.compile(
    r"^\W*(?:[\w']+ ){0,2}(?:is |are |has |have )?(?:not there|gone|no longer|went away"
    r"|stopped|cleared|died down|under control|se fue|ya no)\b(?! working)",
    re.IGNORECASE,
)
_CONTINUES_RE = re.compile(r"^\s*(?:and|or|y|o)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Clause:
    text: str
    sentence: str
    offset_in_sentence: int
    past_segment: bool
    resolved: bool
    water_shut_off: bool
    question: bool
    capability_verb: bool
    hypothetical: bool
    about_callback: bool  # "call me back tomorrow": when to call, not how urgent


def _negated(clause: str, start: int) -> bool:
    words: list[str] = _WORD_RE.findall(clause[max(0, start - _LOOKBACK_CHARS) : start].lower())
    breaks = [i for i, word in enumerate(words) if word in _SCOPE_BREAKS]
    if breaks:
        words = words[breaks[-1] + 1 :]
    words = words[-_NEGATION_WINDOW:]
    after = _WORD_RE.findall(clause[start : start + 40].lower())
    for i, word in enumerate(words):
        if word in _NEGATORS or word.endswith("n't") or word in {"cannot", "dont", "isnt"}:
            following = words[i + 1 : i + 3] if i + 1 < len(words) else after[:2]
            if any(w in _NOT_NEGATING_AFTER for w in following):
                continue
            return True
    return False


_CONTRACTION_S_RE = re.compile(r"\b(?!let)(\w+)'s\b", re.IGNORECASE)


def _normal(text: str) -> str:
    """Straight apostrophes, one space, and "'s" read as "is" ("heat's out" → "heat is out")."""
    text = " ".join(text.replace("\u2019", "'").replace("\u2018", "'").split())
    text = re.sub(r"[¿¡]", "", text)
    text = re.sub(r"\b(\w+)'s (been|got|gotten)\b", r"\1 has \2", text, flags=re.IGNORECASE)
    return _CONTRACTION_S_RE.sub(r"\1 is", text)


def _clauses(texts: Iterable[str]) -> list[_Clause]:
    """Clauses in order, each knowing whether its sentence is past/resolved/a question."""
    out: list[_Clause] = []
    for text in texts:
        for sentence in _SENTENCE_RE.findall(_normal(text)):
            question = sentence.rstrip().endswith("?")
            resolved_from = _resolution_clause(sentence)
            shut = _WATER_SHUT_OFF.search(sentence)
            shut_off = shut is not None and not _negated(sentence, shut.start())
            past = False
            hypothetical = False
            pieces = _split_keep_offsets(sentence)
            for piece, offset in pieces:
                # a resolution covers the clauses before it and its own ("a pipe burst but a
                # plumber fixed it"), not the ones after ("the fire is out but there's smoke")
                if not piece.strip():
                    continue
                # A past marker rules its clause and the clauses it introduces, until a
                # clause says "now", "again" or "still".
                if _PRESENT_AGAIN.search(piece) and not _PAST.search(piece):
                    past = False
                if _PAST.search(piece):
                    past = True
                # "if a pipe bursts and floods the basement": the "and" clause stays an "if"
                if _HYPOTHETICAL_START.match(piece):
                    hypothetical = True
                elif not _CONTINUES_RE.match(piece):
                    hypothetical = False
                out.append(
                    _Clause(
                        text=piece,
                        sentence=sentence,
                        offset_in_sentence=offset,
                        past_segment=past,
                        resolved=resolved_from is not None and offset <= resolved_from,
                        water_shut_off=shut_off,
                        question=question
                        or bool(_CAPABILITY_QUESTION.match(piece) or _ASKS_ABOUT_US.search(piece)),
                        capability_verb=bool(_CAPABILITY_VERB.match(piece)),
                        hypothetical=hypothetical,
                        about_callback=bool(_CALLBACK_TIME_RE.search(piece)),
                    )
                )
    return out


def _resolution_clause(sentence: str) -> int | None:
    """Offset (in ``sentence``) of the last clause saying the problem is fixed or over."""
    last = None
    for piece, offset in _split_keep_offsets(sentence):
        match = _RESOLVED.search(piece)
        if match is not None and not _negated(piece, match.start()):
            last = offset
    return last


def _split_keep_offsets(sentence: str) -> list[tuple[str, int]]:
    """Clauses of ``sentence`` with their offsets; a connective word stays with its clause."""
    pieces: list[tuple[str, int]] = []
    last = 0
    for match in _CLAUSE_SPLIT_RE.finditer(sentence):
        pieces.append((sentence[last : match.start()], last))
        last = (
            match.end()
            if match.group(0).strip() in {",", ";", ":", "-", "–", "—"}
            else (match.start())
        )
    pieces.append((sentence[last:], last))
    return [(piece, offset) for piece, offset in pieces if piece.strip()]


def _hypothetical(clause: _Clause, start: int) -> bool:
    # "worried it's a gas leak" is a hedge about now; "worried it could..." is not
    before = clause.text[max(0, start - _LOOKBACK_CHARS) : start].rstrip()
    return clause.hypothetical or bool(_HYPOTHETICAL_BEFORE.search(before))


def _reported(clause: _Clause, start: int) -> bool:
    end = clause.offset_in_sentence + start
    sentence_before = clause.sentence[max(0, end - 2 * _LOOKBACK_CHARS) : end]
    reports = list(_REPORTING.finditer(sentence_before))
    if not reports:
        return False
    report = reports[-1]
    teller = sentence_before[max(0, report.start() - 40) : report.start()]
    # "my wife just told me she smells gas" is a present situation at home
    return not (_HOUSEHOLD.search(teller) and not _MODAL.search(clause.text))


def _present_matches(
    clauses: Sequence[_Clause],
    pattern: re.Pattern[str],
    *,
    allow_past: bool = False,
    allow_question: bool = False,
    allow_hypothetical: bool = False,
    hazard: bool = False,
) -> list[tuple[int, str]]:
    """(clause index, matched text) for matches describing the caller's situation now.

    ``hazard``: also drop a danger said to be over right after it ("the gas smell is gone").
    """
    found: list[tuple[int, str]] = []
    for index, clause in enumerate(clauses):
        for match in pattern.finditer(clause.text):
            if _negated(clause.text, match.start()):
                continue
            if hazard and _GONE_AFTER.match(clause.text[match.end() : match.end() + 60]):
                continue
            if not allow_past and (clause.past_segment or clause.resolved):
                continue
            if not allow_question and (clause.question or clause.capability_verb):
                continue
            if not allow_hypothetical and (
                _hypothetical(clause, match.start()) or _reported(clause, match.start())
            ):
                continue
            found.append((index, match.group(0).lower()))
    return found


def _degrees(clauses: Sequence[_Clause]) -> list[int]:
    values = []
    for clause in clauses:
        for match in _DEGREES_RE.finditer(clause.text):
            try:
                values.append(int(match.group(1)))
            except ValueError:
                continue
    return values


_REFERS_BACK = re.compile(r"\b(?:it|that|this|everything|all of it|lo|eso)\b", re.IGNORECASE)


def _resolved_later(
    clauses: Sequence[_Clause], resolved: Sequence[int], index: int, matched: str
) -> bool:
    """A later sentence says *it* is fixed or stopped ("A plumber already fixed it.") — or
    names the same thing ("the gas is fixed"); "the faucet is fixed" leaves a gas smell."""
    sentence = clauses[index].sentence
    words = set(_WORD_RE.findall(matched.lower()))
    for later in resolved[bisect.bisect_right(resolved, index) :]:
        clause = clauses[later]
        if clause.sentence == sentence:
            continue
        said = set(_WORD_RE.findall(clause.text.lower()))
        if _REFERS_BACK.search(clause.text) or words & said - {"the", "a", "is", "of"}:
            return True
    return False


def read_urgency(texts: Sequence[str]) -> UrgencyReading:
    """Read urgency from the caller's words (only the caller's; see the module docstring)."""
    clauses = _clauses(texts)
    resolved = [i for i, clause in enumerate(clauses) if clause.resolved]
    matched: list[str] = []
    hazards: list[Hazard] = []

    def danger(pattern: re.Pattern[str]) -> list[tuple[int, str]]:
        return present(pattern, hazard=True)

    def present(pattern: re.Pattern[str], **kw: bool) -> list[tuple[int, str]]:
        hits = [(i, m) for i, m in _present_matches(clauses, pattern, **kw)]
        if kw.get("allow_past"):
            return hits
        return [(i, m) for i, m in hits if not _resolved_later(clauses, resolved, i, m)]

    for name, pattern in (("gas", _GAS), ("carbon_monoxide", _CO), ("fire", _FIRE)):
        hits = danger(pattern)
        if hits:
            hazards.append(name)
            matched.extend(m for _, m in hits)

    symptoms = present(_CO_SYMPTOMS)
    if symptoms and present(_CO_SOURCES, allow_question=True) and "carbon_monoxide" not in hazards:
        hazards.append("carbon_monoxide")
        matched.extend(m for _, m in symptoms)

    flood_hits = danger(_FLOOD)
    urgent_hits = present(_URGENT)
    if flood_hits:
        # "I shut the main off": the water is contained — urgent today, no longer active
        shut = any(clause.water_shut_off for clause in clauses)
        matched.extend(m for _, m in flood_hits)
        if shut:
            urgent_hits.extend(flood_hits)
        else:
            hazards.append("flooding")

    degrees = _degrees(clauses)
    freezing = bool(present(_FREEZING, allow_past=True, allow_hypothetical=True)) or any(
        d <= 35 for d in degrees
    )
    vulnerable = bool(present(_VULNERABLE, allow_past=True, allow_question=True))
    heat_failure = present(_HEAT_FAILURE)
    if heat_failure:
        matched.extend(m for _, m in heat_failure)
        if freezing or vulnerable:
            hazards.append("no_heat_freezing")
        else:
            urgent_hits.extend(heat_failure)
    cooling_failure = present(_COOLING_FAILURE)
    if cooling_failure:
        matched.extend(m for _, m in cooling_failure)
        hot = bool(present(_HOT, allow_past=True, allow_hypothetical=True)) or any(
            d >= 90 for d in degrees
        )
        if hot and vulnerable:
            hazards.append("heat_danger")
        else:
            urgent_hits.extend(cooling_failure)

    declined = bool(present(_DECLINE, allow_question=True, allow_past=True))
    claims = [] if declined else present(_EMERGENCY_CLAIM)
    timing = [c.about_callback for c in clauses]
    urgent_hits += [
        (i, m)
        for i, m in present(_URGENT_TIME, allow_question=True, allow_hypothetical=True)
        if not timing[i]
    ]
    week = [
        (i, m)
        for i, m in present(
            _THIS_WEEK, allow_question=True, allow_past=True, allow_hypothetical=True
        )
        if not timing[i]
    ]
    flexible = present(_FLEXIBLE, allow_past=True) + present(_QUOTE_QUESTION, allow_question=True)
    info_clauses = {i for i, _ in present(_INFO, allow_question=True, allow_past=True)}
    flexible = [(i, m) for i, m in flexible if i not in info_clauses]
    requests = [
        (i, m)
        for i, m in present(_SERVICE_REQUEST, allow_past=True, allow_hypothetical=True)
        if i not in info_clauses
    ]
    questions = [c for c in clauses if c.question or c.capability_verb]

    matched.extend(m for _, m in claims + urgent_hits)
    urgency: int | None
    if hazards or claims:
        urgency = 5
    elif urgent_hits and not declined:
        urgency = 4
    elif info_clauses and not requests:
        urgency = 1
    elif week:
        urgency = 3
    elif flexible or declined or requests:
        urgency = 2
    elif questions:
        urgency = 1
    else:
        urgency = None
    return UrgencyReading(
        urgency=urgency,
        is_emergency=urgency == 5,
        life_safety=tuple(dict.fromkeys(hazards)),
        matched=tuple(dict.fromkeys(matched)),
        declined_urgency=declined,
        inquiry=urgency == 1,
    )
