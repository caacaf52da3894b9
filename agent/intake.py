"""The scripted intake: the receptionist without a voice model, one ``<Gather>`` per question.

Used when no OpenAI key is configured, when the model cannot be reached, and to finish a
call whose voice conversation dropped (``resumed=True`` with what was already ``known``).
It is a pure state machine: the telephony shell says ``current().say`` inside a
``<Gather input="speech">``, feeds Twilio's ``SpeechResult``/``Confidence`` to ``answer()``
and keeps ``to_json()`` between webhooks. The steps, in order::

    NAME → NEED → URGENCY → CALLBACK_NUMBER → CALLBACK_TIME → DONE

A step whose answer is already known is skipped (an emergency described in NEED answers
URGENCY). Silence or an answer that cannot be read is asked once more, then the intake
moves on: a caller who cannot be understood still gets a callback. ``answer()`` after
DONE, ``goodbye()`` before it and ``current()`` once done raise ``IntakeStateError``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from string import Template
from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, ValidationError

from agent.business import Business
from agent.details import CallerDetails
from agent.keywords import find_keywords, is_name_refusal
from prompts import intake_script

__all__ = ["LOW_CONFIDENCE", "Intake", "IntakePrompt", "IntakeStateError", "IntakeStep"]

LOW_CONFIDENCE = 0.3
"""Below this Twilio ``Confidence`` an answer is asked again (kept if the retry is silent)."""


class IntakeStep(enum.Enum):
    NAME = "name"
    NEED = "need"
    URGENCY = "urgency"
    CALLBACK_NUMBER = "callback_number"
    CALLBACK_TIME = "callback_time"
    DONE = "done"


_NEXT: dict[IntakeStep, IntakeStep] = {
    IntakeStep.NAME: IntakeStep.NEED,
    IntakeStep.NEED: IntakeStep.URGENCY,
    IntakeStep.URGENCY: IntakeStep.CALLBACK_NUMBER,
    IntakeStep.CALLBACK_NUMBER: IntakeStep.CALLBACK_TIME,
    IntakeStep.CALLBACK_TIME: IntakeStep.DONE,
}


class IntakeStateError(Exception):
    """The intake was driven out of order (answering after DONE, goodbye before it...)."""


@dataclass(frozen=True, slots=True)
class IntakePrompt:
    """What to say inside the ``<Gather>`` for ``step``; ``hints`` are Twilio speech hints."""

    step: IntakeStep
    say: str
    hints: str


class _State(BaseModel):
    """The intake as kept between webhooks (``to_json``)."""

    model_config = ConfigDict(extra="forbid")

    business_number: str
    caller_phone: str
    step: IntakeStep
    say: str
    attempts: int = 0
    tentative: str | None = None
    opening_pending: bool = False
    resumed: bool = False
    details: dict[str, Any]
    turns: list[tuple[str, str]]
    goodbye: str | None = None


_YES_RE = re.compile(
    r"^\W*(?:yes|yeah|yep|yup|sure|correct|right|that's right|that is right|that's fine|"
    r"that works|this (?:number|one)|same (?:number|one)|this is fine|s[ií]|claro|correcto|"
    r"este (?:n[uú]mero|mismo))\b",
    re.I,
)
_NO_RUSH_RE = re.compile(
    r"\b(?:no rush|no hurry|not urgent|not an emergency|whenever|flexible|any ?time|"
    r"next week|no (?:big )?deal|just a quote|a quote|estimate|no es urgente|no hay prisa|"
    r"sin prisa|cuando (?:puedan|pueda))\b",
    re.I,
)
_THIS_WEEK_RE = re.compile(
    r"\b(?:this week|few days|couple (?:of )?days|soon|tomorrow|in a day or two|"
    r"esta semana|pronto|ma[nñ]ana)\b",
    re.I,
)
_INFO_RE = re.compile(
    r"\b(?:just (?:a question|wondering|asking|information|info)|information only|"
    r"only a question|solo una pregunta|informaci[oó]n)\b",
    re.I,
)
_NAME_PREFIX_RE = re.compile(
    r"^\W*(?:(?:hi|hello|yes|yeah|um+|uh+)\W+)*"
    r"(?:my name is|my name's|name's|this is|it's|it is|i'm|i am|me llamo|mi nombre es|soy)?\s*",
    re.I,
)


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
    findings = find_keywords([text])
    if findings.urgency_floor is not None:
        return findings.urgency_floor
    if _THIS_WEEK_RE.search(text):
        return 3
    if _NO_RUSH_RE.search(text):
        return 2
    if _INFO_RE.search(text):
        return 1
    return None


class Intake:
    """The scripted intake for one call (see the module docstring for the flow)."""

    def __init__(
        self,
        business: Business,
        caller_phone: str,
        *,
        known: CallerDetails | None = None,
        resumed: bool = False,
    ) -> None:
        self._business = business
        self._script = intake_script()
        known_values = known.learned() if known is not None else {}
        self._state = _State(
            business_number=business.number,
            caller_phone=caller_phone,
            step=IntakeStep.NAME,
            say="",
            opening_pending=True,
            resumed=resumed,
            details=known_values,
            turns=[],
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

    def current(self) -> IntakePrompt:
        """What to say inside the ``<Gather>`` now."""
        if self.done:
            raise IntakeStateError("the intake is done; say goodbye() instead")
        hints = str(self._step_script(self._state.step).get("hints", ""))
        return IntakePrompt(self._state.step, self._state.say, hints)

    def answer(self, speech: str | None, *, confidence: float | None = None) -> None:
        """Record the caller's answer to the current step and move on (or ask once more)."""
        if self.done:
            raise IntakeStateError("the intake is done; no question is waiting for an answer")
        state = self._state
        text = " ".join((speech or "").split())
        if text:
            state.turns.append(("caller", text))
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
        if self._record(state.step, text):
            self._advance()
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
        values.setdefault("language", "en")
        return CallerDetails.model_validate(values)

    def turns(self) -> list[tuple[str, str]]:
        """``(speaker, text)`` in order — ``"agent"`` prompts and ``"caller"`` answers."""
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
        if self._state.step is IntakeStep.CALLBACK_NUMBER and not values.get("callback_phone"):
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
            state.goodbye = self._with_opening(self._goodbye_text())
            state.turns.append(("agent", state.goodbye))
            return
        state.say = self._with_opening(self._question(step, retry=False))
        state.turns.append(("agent", state.say))

    def _retry(self) -> None:
        state = self._state
        state.attempts += 1
        state.say = self._question(state.step, retry=True)
        state.turns.append(("agent", state.say))

    def _with_opening(self, text: str) -> str:
        state = self._state
        if not state.opening_pending:
            return text
        state.opening_pending = False
        opening = self._script["opening"]
        lead = opening["resumed"] if state.resumed else opening["say"]
        return Template(lead).substitute(business_name=self._business.name) + " " + text

    # --- wording ---------------------------------------------------------------------------

    def _step_script(self, step: IntakeStep) -> dict[str, Any]:
        steps: dict[str, Any] = self._script["steps"]
        return dict(steps[step.value])

    def _question(self, step: IntakeStep, *, retry: bool) -> str:
        script = self._step_script(step)
        key = "retry" if retry else "say"
        last_four = _last_four(_usable_caller_id(self._state.caller_phone))
        if step is IntakeStep.CALLBACK_NUMBER and not retry and last_four is None:
            key = "say_no_caller_id"
        return Template(str(script[key])).substitute(last_four=last_four or "")

    def _goodbye_text(self) -> str:
        values = self._state.details
        goodbye: dict[str, str] = self._script["goodbye"]
        first = values.get("first_name")
        thanks = f"Thank you, {first}" if first else "Thank you"
        last_four = _last_four(values.get("callback_phone"))
        if values.get("is_emergency"):
            key = "emergency"
        elif last_four is not None:
            key = "normal"
        else:
            key = "no_number"
        return Template(goodbye[key]).substitute(thanks=thanks, last_four=last_four or "")

    # --- answers ---------------------------------------------------------------------------

    def _answered(self, step: IntakeStep) -> bool:
        values = self._state.details
        if step is IntakeStep.NAME:
            return bool(values.get("first_name") or values.get("last_name"))
        if step is IntakeStep.NEED:
            return bool(values.get("need"))
        if step is IntakeStep.URGENCY:
            return values.get("urgency") is not None
        if step is IntakeStep.CALLBACK_NUMBER:
            return bool(values.get("callback_phone"))
        if step is IntakeStep.CALLBACK_TIME:
            return bool(values.get("callback_window"))
        return True

    def _record(self, step: IntakeStep, text: str) -> bool:
        """Store ``text`` as the answer to ``step``; ``False`` if it could not be read."""
        values = self._state.details
        if step is IntakeStep.NAME:
            return self._record_name(text)
        if step is IntakeStep.NEED:
            findings = find_keywords([text])
            need = findings.need_guess or text.rstrip(" .")
            values["need"] = need[:255]
            values["details"] = text[:4000]
            if findings.is_emergency:
                values["urgency"] = 5
                values["is_emergency"] = True
            return True
        if step is IntakeStep.URGENCY:
            urgency = urgency_from_words(text)
            if urgency is None:
                return False
            values["urgency"] = urgency
            values["is_emergency"] = urgency == 5
            return True
        if step is IntakeStep.CALLBACK_NUMBER:
            return self._record_number(text)
        if step is IntakeStep.CALLBACK_TIME:
            values["callback_window"] = text.rstrip(" .")[:255]
            values["callback_requested"] = True
            return True
        raise IntakeStateError(f"no answer is expected at {step.name}")

    def _record_name(self, text: str) -> bool:
        if is_name_refusal(text):
            return True  # answered: no name given, and none invented
        first, last = find_keywords([text]).name_guess
        if first is None:
            words = [
                w.strip(".,!?'\"")
                for w in _NAME_PREFIX_RE.sub("", text, count=1).split()
                if w.strip(".,!?'\"")
            ]
            if not 1 <= len(words) <= 3 or not all(
                re.fullmatch(r"[^\W\d_][\w'-]*", w) for w in words
            ):
                return False
            words = [w if any(c.isupper() for c in w) else w.capitalize() for w in words]
            first, last = (words[0], None) if len(words) == 1 else (" ".join(words[:-1]), words[-1])
        values = self._state.details
        values["first_name"] = first[:80]
        if last:
            values["last_name"] = last[:80]
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
