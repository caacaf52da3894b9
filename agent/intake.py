"""The scripted intake: the receptionist without a voice model, one ``<Gather>`` per question.

Used when no OpenAI key is configured, when the model cannot be reached, and to finish a
call whose voice conversation dropped (``resumed=True`` with what was already ``known``).
It is a pure state machine: the telephony shell speaks ``current()`` inside a
``<Gather>`` (``current().language`` and ``.voice`` say how), feeds Twilio's
``SpeechResult``/``Confidence``/``Digits`` to ``answer()`` with the seconds since the call
began, and keeps ``to_json()`` between webhooks. The steps, in order::

    NAME → NEED → URGENCY → ADDRESS → COMPANY → CALLBACK_NUMBER → CALLBACK_TIME → DONE

A step whose answer is already known is skipped: an emergency described in NEED answers
URGENCY; a general question needs no address; COMPANY is asked only when the caller speaks
for a business; "no need to call me back" skips the callback steps (not for an emergency).
Every answer is read for more than its question — a name answer that also carries the need
keeps both, and a need given instead of a name is kept while the name is asked once more.

The first question offers Spanish ("oprima dos o diga español"); pressing 2, saying
"español", or answering in Spanish switches every later line, hint and voice to Spanish
(``<Gather language="es-US">``). The summary's ``need`` stays an English line for staff.

The moment a present danger is heard (gas, carbon monoxide, fire, flooding, no heat in
freezing weather, dangerous heat) its safety line is said before anything else, once.
Silence or an unreadable answer is asked once more, then the intake moves on: a caller
who cannot be understood still gets a callback. ``answer()`` after DONE, ``goodbye()``
before it and ``current()`` once done raise ``IntakeStateError``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from string import Template
from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, ValidationError

from agent.business import DEFAULT_GREETING, Business
from agent.caller_intents import (
    answer_from_faq,
    detect_language,
    is_commercial,
    need_line,
    read_address,
    read_callback,
    read_company,
    read_existing_customer,
    read_new_project,
)
from agent.details import CallerDetails
from agent.keywords import find_keywords
from agent.names import is_name_refusal, read_name
from agent.urgency import read_urgency
from prompts import intake_script

__all__ = [
    "LOW_CONFIDENCE",
    "Intake",
    "IntakePrompt",
    "IntakeStateError",
    "IntakeStep",
    "urgency_from_words",
]

LOW_CONFIDENCE = 0.3
"""Below this Twilio ``Confidence`` an answer is asked again (kept if the retry is silent)."""

WORDS_PER_SECOND = 2.6
"""Speaking rate used to place turns in time between two webhooks."""


class IntakeStep(enum.Enum):
    NAME = "name"
    NEED = "need"
    URGENCY = "urgency"
    ADDRESS = "address"
    COMPANY = "company"
    CALLBACK_NUMBER = "callback_number"
    CALLBACK_TIME = "callback_time"
    DONE = "done"


_NEXT: dict[IntakeStep, IntakeStep] = {
    IntakeStep.NAME: IntakeStep.NEED,
    IntakeStep.NEED: IntakeStep.URGENCY,
    IntakeStep.URGENCY: IntakeStep.ADDRESS,
    IntakeStep.ADDRESS: IntakeStep.COMPANY,
    IntakeStep.COMPANY: IntakeStep.CALLBACK_NUMBER,
    IntakeStep.CALLBACK_NUMBER: IntakeStep.CALLBACK_TIME,
    IntakeStep.CALLBACK_TIME: IntakeStep.DONE,
}


class IntakeStateError(Exception):
    """The intake was driven out of order (answering after DONE, goodbye before it...)."""


@dataclass(frozen=True, slots=True)
class IntakePrompt:
    """What to say inside the ``<Gather>`` for ``step``.

    ``hints`` are Twilio speech hints, ``language`` the ``<Gather language>``, ``voice`` the
    ``<Say voice>``; ``keys`` is true when a key press is also listened for (the Spanish
    choice on the first question).
    """

    step: IntakeStep
    say: str
    hints: str
    language: str = "en-US"
    voice: str = "Polly.Joanna"
    keys: bool = False


class _State(BaseModel):
    """The intake as kept between webhooks (``to_json``)."""

    model_config = ConfigDict(extra="forbid")

    business_number: str
    caller_phone: str
    step: IntakeStep
    say: str
    language: str = "en"
    language_chosen: bool = False
    attempts: int = 0
    tentative: str | None = None
    resumed: bool = False
    greeted: bool = False
    name_refused: bool = False
    name_retried: bool = False
    safety_said: list[str] = []
    say_next: str = ""
    safety_now: str = ""  # the safety line(s) leading the current prompt
    safety_pending: str = ""
    commercial: bool = False
    details: dict[str, Any]
    turns: list[tuple[str, str, float]]
    last_at: float = 0.0
    goodbye: str | None = None


_YES_RE = re.compile(
    r"^\W*(?:yes|yeah|yep|yup|sure|correct|right|that's right|that is right|that's fine|"
    r"that works|this (?:number|one)|same (?:number|one)|this is fine|s[ií]|claro|correcto|"
    r"este (?:n[uú]mero|mismo)|ese mismo|est[aá] bien)\b",
    re.I,
)
_ASKS_RE = re.compile(
    r"\?|\b(?:how much|what (?:do|does|would|is|are)|do you|are you|can you tell)\b", re.I
)
_SERVICE_WORDS_RE = re.compile(
    r"\b(?:furnace|heater|heat|boiler|pipes?|toilet|sink|drain|faucet|shower|tub|ac|a/c|air"
    r"|thermostat|outlets?|panel|breaker|wiring|lights?|roof|leak\w*|water|sewer|disposal"
    r"|dishwasher|calentador|tuber[ií]a|inodoro|fregadero|aire|enchufe)\b",
    re.IGNORECASE,
)
_EMERGENCY_WORD_RE = re.compile(r"^\W*(?:emergency|emergencia)\W*$", re.I)


def _last_four(phone: str | None) -> str | None:
    digits = "".join(c for c in phone or "" if c.isdigit())
    return digits[-4:] if len(digits) >= 4 else None


def _usable_caller_id(caller_phone: str) -> str | None:
    """The caller ID as E.164 when it is a real number (not blocked/anonymous)."""
    try:
        parsed = phonenumbers.parse(caller_phone, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def urgency_from_words(text: str) -> int | None:
    """Urgency 1..5 from an answer to "how urgent is it?"; ``None`` when the words don't say."""
    if _EMERGENCY_WORD_RE.match(text):
        return 5
    return read_urgency([text]).urgency


def _seconds_to_say(text: str) -> float:
    return len(text.split()) / WORDS_PER_SECOND


class Intake:
    """The scripted intake for one call (see the module docstring for the flow)."""

    def __init__(
        self,
        business: Business,
        caller_phone: str,
        *,
        known: CallerDetails | None = None,
        resumed: bool = False,
        at: float = 0.0,
    ) -> None:
        self._business = business
        self._script = intake_script()
        known_values = known.learned() if known is not None else {}
        language = str(known_values.get("language") or "en")
        self._state = _State(
            business_number=business.number,
            caller_phone=caller_phone,
            step=IntakeStep.NAME,
            say="",
            language="es" if language.startswith("es") else "en",
            language_chosen=resumed,
            resumed=resumed,
            details=known_values,
            turns=[],
            last_at=max(0.0, at),
        )
        first = IntakeStep.NAME
        if self._answered(first):
            first = self._following(first)
        self._enter(first)

    # --- public API ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether every step is answered (or given up on) and the goodbye is due."""
        return self._state.step is IntakeStep.DONE

    @property
    def step(self) -> IntakeStep:
        """The step now being asked (``DONE`` at the end)."""
        return self._state.step

    @property
    def language(self) -> str:
        """``"en"`` or ``"es"``: the language the intake speaks now."""
        return self._state.language

    @property
    def voice(self) -> str:
        return str(self._lang()["voice"])

    @property
    def gather_language(self) -> str:
        return str(self._lang()["language"])

    @property
    def urgency(self) -> int | None:
        """The urgency learned so far (5 is an emergency: the on-call alert's cue)."""
        value = self._state.details.get("urgency")
        return int(value) if value is not None else None

    @property
    def is_emergency(self) -> bool:
        return bool(self._state.details.get("is_emergency"))

    @property
    def safety_line_now(self) -> str:
        """The safety line(s) the current prompt starts with ("" when none)."""
        return self._state.safety_now

    def current(self) -> IntakePrompt:
        """What to say inside the ``<Gather>`` now."""
        if self.done:
            raise IntakeStateError("the intake is done; say goodbye() instead")
        state = self._state
        hints = str(self._step_script(state.step).get("hints", ""))
        offer_keys = not state.language_chosen and state.step is IntakeStep.NAME
        return IntakePrompt(
            state.step, state.say, hints, self.gather_language, self.voice, keys=offer_keys
        )

    def answer(
        self,
        speech: str | None,
        *,
        confidence: float | None = None,
        digits: str | None = None,
        at: float | None = None,
    ) -> None:
        """Record the caller's answer to the current step and move on (or ask once more).

        ``at``: seconds since the call began when the answer arrived (Twilio's webhook).
        """
        if self.done:
            raise IntakeStateError("the intake is done; no question is waiting for an answer")
        state = self._state
        now = max(state.last_at, at if at is not None else state.last_at)
        text = " ".join((speech or "").split())
        if text:
            self._add_caller_turn(text, now)
        state.last_at = now
        if self._maybe_switch_language(text, digits):
            return
        first_try = state.attempts == 0
        if not text:
            if first_try:
                self._retry()
                return
            if state.tentative is not None:
                self._record(state.step, state.tentative)
            self._give_up()
            return
        if first_try and confidence is not None and confidence < LOW_CONFIDENCE:
            state.tentative = text
            self._retry()
            return
        self._read_everything(text)
        if self._record(state.step, text):
            self._advance()
        elif state.step is IntakeStep.NAME and self._answered(IntakeStep.NEED):
            # The caller told us the need instead of a name: keep it, ask the name once more.
            if state.name_retried:
                self._give_up()
            else:
                state.name_retried = True
                self._retry()
        elif first_try:
            self._retry()
        else:
            self._give_up()

    def goodbye(self) -> str:
        """The closing words, once the intake is done."""
        if not self.done or self._state.goodbye is None:
            raise IntakeStateError("the intake is not done yet")
        return self._state.goodbye

    def details(self) -> CallerDetails:
        """Everything the intake (and any earlier conversation) learned."""
        values = dict(self._state.details)
        values["language"] = self._state.language
        if values.get("is_emergency"):
            values["callback_requested"] = True
            values.setdefault("callback_window", "as soon as possible")
        return CallerDetails.model_validate(values)

    def turns(self) -> list[tuple[str, str, float]]:
        """``(speaker, text, start)`` in order — ``"agent"`` prompts and ``"caller"`` answers,
        ``start`` in seconds since the call began."""
        return list(self._state.turns)

    def to_json(self) -> str:
        """The intake's state, to keep between webhooks."""
        return self._state.model_dump_json()

    @classmethod
    def from_json(cls, data: str, business: Business) -> Intake:
        """An intake restored from ``to_json()``; it must belong to ``business``."""
        try:
            state = _State.model_validate_json(data)
            CallerDetails.model_validate(state.details)
        except ValidationError:
            raise IntakeStateError("stored intake state is not readable") from None
        if state.business_number != business.number:
            raise IntakeStateError("stored intake state belongs to another business")
        intake = cls.__new__(cls)
        intake._business = business
        intake._script = intake_script()
        intake._state = state
        return intake

    # --- transitions -----------------------------------------------------------------------

    def _following(self, step: IntakeStep) -> IntakeStep:
        nxt = _NEXT[step]
        while nxt is not IntakeStep.DONE and self._answered(nxt):
            nxt = _NEXT[nxt]
        return nxt

    def _advance(self) -> None:
        if self._state.step is IntakeStep.DONE:
            raise IntakeStateError("cannot advance past DONE")
        self._enter(self._following(self._state.step))

    def _give_up(self) -> None:
        """Move on without a readable answer (asked twice): a callback still needs a number."""
        values = self._state.details
        step = self._state.step
        if step is IntakeStep.NAME:
            self._state.name_refused = True
        if step is IntakeStep.URGENCY and values.get("urgency") is None:
            values["urgency"] = read_urgency([values.get("details") or ""]).urgency or 2
        if step is IntakeStep.CALLBACK_NUMBER and not values.get("callback_phone"):
            caller_id = _usable_caller_id(self._state.caller_phone)
            if caller_id is not None:
                values["callback_phone"] = caller_id
                values["callback_requested"] = True
        self._advance()

    def _enter(self, step: IntakeStep) -> None:
        state = self._state
        state.step = step
        state.attempts = 0
        state.tentative = None
        if step is IntakeStep.DONE:
            state.say = ""
            state.goodbye = self._with_preface(self._goodbye_text())
            self._add_agent_turn(state.goodbye)
            return
        state.say = self._with_preface(self._question(step, retry=False))
        self._add_agent_turn(state.say)

    def _retry(self) -> None:
        state = self._state
        state.attempts += 1
        state.say = self._with_preface(self._question(state.step, retry=True))
        self._add_agent_turn(state.say)

    def _end_of_last_turn(self) -> float:
        if not self._state.turns:
            return 0.0
        _, text, start = self._state.turns[-1]
        return start + _seconds_to_say(text)

    def _add_agent_turn(self, text: str) -> None:
        """We speak when the webhook arrives, and never before the caller finished."""
        start = max(self._state.last_at, self._end_of_last_turn())
        self._state.turns.append(("agent", text, round(start, 1)))

    def _add_caller_turn(self, text: str, arrived: float) -> None:
        """The caller began speaking after our last line ended and had finished (plus the
        ~1 s of silence Twilio waits for) when the webhook ``arrived``."""
        start = max(arrived - _seconds_to_say(text) - 1.0, self._end_of_last_turn())
        self._state.turns.append(("caller", text, round(max(0.0, start), 1)))

    # --- wording ---------------------------------------------------------------------------

    def _lang(self) -> dict[str, Any]:
        section: dict[str, Any] = self._script[self._state.language]
        return section

    def _step_script(self, step: IntakeStep) -> dict[str, Any]:
        steps: dict[str, Any] = self._lang()["steps"]
        return dict(steps[step.value])

    def _opening(self) -> str:
        """The one greeting: the business's own, or the script's; then the Spanish offer."""
        state = self._state
        opening = self._lang()["opening"]
        if state.resumed:
            return str(opening["resumed"])
        business = self._business
        default = DEFAULT_GREETING.replace("{name}", business.name)
        if business.greeting != default and state.language == "en":
            text = business.greeting
        else:
            text = Template(str(opening["say"])).substitute(business_name=business.name)
        offer = str(opening.get("spanish_offer", ""))
        return f"{text} {offer}".strip() if not state.language_chosen else text

    def _with_preface(self, text: str) -> str:
        """Greeting (once), then any safety line or answer due, then ``text``."""
        state = self._state
        state.safety_now = state.safety_pending
        state.safety_pending = ""
        parts: list[str] = []
        if not state.greeted:
            state.greeted = True
            parts.append(self._opening())
        if state.say_next:
            parts.append(state.say_next)
            state.say_next = ""
        parts.append(text)
        return " ".join(p for p in parts if p)

    def _say_next(self, line: str) -> None:
        self._state.say_next = f"{self._state.say_next} {line}".strip()

    def _question(self, step: IntakeStep, *, retry: bool) -> str:
        script = self._step_script(step)
        key = "retry" if retry else "say"
        last_four = _last_four(_usable_caller_id(self._state.caller_phone))
        if step is IntakeStep.CALLBACK_NUMBER and not retry and last_four is None:
            key = "say_no_caller_id"
        return Template(str(script[key])).substitute(last_four=last_four or "")

    def _goodbye_text(self) -> str:
        values = self._state.details
        goodbye: dict[str, str] = self._lang()["goodbye"]
        first = values.get("first_name")
        thanks = f"{goodbye['thanks']}, {first}" if first else goodbye["thanks"]
        last_four = _last_four(values.get("callback_phone"))
        if values.get("is_emergency"):
            key = "emergency"
        elif values.get("callback_requested") is False:
            key = "no_callback"
        elif last_four is not None:
            key = "normal"
        else:
            key = "no_number"
        return Template(goodbye[key]).substitute(thanks=thanks, last_four=last_four or "")

    # --- reading ---------------------------------------------------------------------------

    def _maybe_switch_language(self, text: str, digits: str | None) -> bool:
        """Switch to Spanish on "2", "español", or Spanish speech; ``True`` when the answer
        was only the choice (the question is asked again, in Spanish)."""
        state = self._state
        if state.language == "es" or state.language_chosen:
            if text or digits:
                state.language_chosen = True
            return False
        chosen = detect_language(text, digits=digits)
        if chosen != "es":
            if text and chosen == "en":
                state.language_chosen = True
            return False
        state.language = "es"
        state.language_chosen = True
        only_choice = bool(digits) or bool(
            re.fullmatch(
                r"\W*(?:en )?(?:espa[nñ]ol|spanish)\W*(?:por favor|please)?\W*", text, re.I
            )
        )
        if only_choice:
            chosen_line = str(self._lang()["opening"].get("chosen", ""))
            state.attempts = 0
            state.say = f"{chosen_line} {self._question(state.step, retry=False)}".strip()
            self._add_agent_turn(state.say)
        return only_choice

    def _read_everything(self, text: str) -> None:
        """What any answer says beyond its question: danger, callback, customer, project."""
        values = self._state.details
        reading = read_urgency([text])
        if reading.present_danger:
            values["urgency"] = 5
            values["is_emergency"] = True
            for hazard in reading.life_safety:
                if hazard not in self._state.safety_said:
                    self._state.safety_said.append(hazard)
                    line = str(self._lang()["safety"][hazard])
                    self._say_next(line)
                    self._state.safety_pending = f"{self._state.safety_pending} {line}".strip()
        callback = read_callback(text)
        if callback is not None and self._state.step is not IntakeStep.CALLBACK_TIME:
            values["callback_requested"] = callback
        existing = read_existing_customer(text)
        if existing is not None:
            values["existing_customer"] = existing
        if read_new_project(text) and self._state.step in (IntakeStep.NAME, IntakeStep.NEED):
            values["new_project"] = True
        if is_commercial(text):
            self._state.commercial = True

    def _answered(self, step: IntakeStep) -> bool:
        state = self._state
        values = state.details
        declined = values.get("callback_requested") is False and not values.get("is_emergency")
        if step is IntakeStep.NAME:
            return bool(values.get("first_name") or values.get("last_name")) or state.name_refused
        if step is IntakeStep.NEED:
            return bool(values.get("need"))
        if step is IntakeStep.URGENCY:
            return values.get("urgency") is not None
        if step is IntakeStep.ADDRESS:
            return bool(values.get("service_address")) or values.get("urgency") == 1
        if step is IntakeStep.COMPANY:
            return bool(values.get("company")) or not state.commercial
        if step is IntakeStep.CALLBACK_NUMBER:
            return bool(values.get("callback_phone")) or declined
        if step is IntakeStep.CALLBACK_TIME:
            # an emergency is called back as soon as possible; no need to ask when
            return (
                bool(values.get("callback_window")) or declined or bool(values.get("is_emergency"))
            )
        return True

    def _record(self, step: IntakeStep, text: str) -> bool:
        """Store ``text`` as the answer to ``step``; ``False`` if it could not be read."""
        values = self._state.details
        if step is IntakeStep.NAME:
            return self._record_name(text)
        if step is IntakeStep.NEED:
            self._record_need(text)
            return True
        if step is IntakeStep.URGENCY:
            if values.get("urgency") == 5:
                return True  # danger heard in this very answer
            urgency = urgency_from_words(text)
            if urgency is None:
                return False
            values["urgency"] = urgency
            values["is_emergency"] = urgency == 5
            return True
        if step is IntakeStep.ADDRESS:
            address = read_address(text)
            if address is None:
                return False
            values["service_address"] = address[:500]
            return True
        if step is IntakeStep.COMPANY:
            company = read_company(text)
            if company is None:
                return False
            values["company"] = company
            return True
        if step is IntakeStep.CALLBACK_NUMBER:
            if values.get("callback_requested") is False and not values.get("is_emergency"):
                return True
            return self._record_number(text)
        if step is IntakeStep.CALLBACK_TIME:
            if read_callback(text) is False and not values.get("is_emergency"):
                values["callback_requested"] = False
                return True
            values["callback_window"] = text.rstrip(" .")[:255]
            values["callback_requested"] = True
            return True
        raise IntakeStateError(f"no answer is expected at {step.name}")

    def _record_need(self, text: str) -> None:
        values = self._state.details
        reading = read_urgency([text])
        values["need"] = need_line(text, reading, language=self._state.language)
        values["details"] = (f"{values['details']} {text}" if values.get("details") else text)[
            :4000
        ]
        if values.get("urgency") is None and (
            reading.urgency in (1, 5) or reading.declined_urgency
        ):
            values["urgency"] = reading.urgency or 2
            values["is_emergency"] = reading.urgency == 5
        if reading.urgency == 1 or _ASKS_RE.search(text):
            answer = answer_from_faq(text, self._business.faq)
            answers = self._lang()["answers"]
            if answer is not None and self._state.language == "en":
                self._say_next(Template(str(answers["faq"])).substitute(answer=answer))
            elif reading.urgency == 1:
                self._say_next(str(answers["unknown"]))

    def _record_name(self, text: str) -> bool:
        if is_name_refusal(text):
            self._state.name_refused = True
            return True  # answered: no name given, and none invented
        values = self._state.details
        reading = read_name(text, spanish=self._state.language == "es")
        if reading.company and not values.get("company"):
            values["company"] = reading.company
        if not reading.found:
            rest = reading.rest
            if (
                rest
                and len(rest.split()) >= 3
                and (read_urgency([rest]).urgency is not None or _SERVICE_WORDS_RE.search(rest))
            ):
                self._record_need(rest)  # the need, said instead of the name
            return False
        values["first_name"] = (reading.first or "")[:80] or None
        if reading.last:
            values["last_name"] = reading.last[:80]
        rest = _need_part(reading.rest)
        if rest and not values.get("need"):
            self._record_need(rest)
        return True

    def _record_number(self, text: str) -> bool:
        values = self._state.details
        caller_id = _usable_caller_id(self._state.caller_phone)
        phones = find_keywords([text], region=self._business.region).phones
        if phones:
            values["callback_phone"] = phones[0]
        elif caller_id is not None and _YES_RE.match(text):
            values["callback_phone"] = caller_id
        else:
            return False
        values["callback_requested"] = True
        return True


_CUSTOMER_CLAUSE_RE = re.compile(
    r"(?:\band\b\s*)?(?:i'?m|i am|we'?re|we are)\s+(?:already |an? |your )*(?:existing |current )?"
    r"(?:customers?|clients?)\b[\s,.]*|\b(?:no need to call (?:me )?back|please)\b[\s,.]*"
    r"|\bya soy cliente\b[\s,.]*",
    re.IGNORECASE,
)


def _need_part(rest: str) -> str:
    """What is left of a name answer once customer/callback remarks are taken out, when it
    still says something about the job (three words or more)."""
    cleaned = _CUSTOMER_CLAUSE_RE.sub(" ", rest)
    cleaned = re.sub(r"^[\s,.;-]*(?:and|y|so)?\s*", "", cleaned, flags=re.I).strip(" ,.")
    if len(cleaned.split()) < 3:
        return ""
    return cleaned
