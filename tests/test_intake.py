"""The scripted intake core: the full walk, one greeting, names that carry the need, the
address and company, callback negation, "it can wait", Spanish by key/word/speech, the
safety line, FAQ answers, real turn offsets, silence, low confidence, resuming, persistence.
"""

from __future__ import annotations

import json

import pytest

from agent.business import Business, default_business
from agent.details import CallerDetails
from agent.intake import Intake, IntakeStateError, IntakeStep, urgency_from_words

CALLER = "+14155550100"


@pytest.fixture
def business() -> Business:
    return default_business()


def walk(intake: Intake, answers: list[str | None], *, every: float = 8.0) -> None:
    at = 0.0
    for answer in answers:
        at += every
        intake.answer(answer, confidence=0.9, at=at)


def test_full_walk(business: Business) -> None:
    intake = Intake(business, CALLER)
    first = intake.current()
    assert first.step is IntakeStep.NAME
    assert first.say.startswith("Thanks for calling Demo Home Services.")
    assert "Para español, oprima dos o diga español." in first.say
    assert first.say.endswith("First, may I have your name?")
    assert first.keys and first.language == "en-US" and "my name is" in first.hints

    intake.answer("My name is Maria Lopez.", confidence=0.92, at=6.0)
    assert intake.current().step is IntakeStep.NEED
    assert not intake.current().keys
    intake.answer("The water heater is leaking all over the garage floor.", at=14.0)
    assert intake.current().step is IntakeStep.URGENCY
    intake.answer("It needs to be today if possible.", at=22.0)
    assert intake.current().step is IntakeStep.ADDRESS
    intake.answer("It's 12 Oak Street, apartment 3", at=30.0)
    number = intake.current()
    assert number.step is IntakeStep.CALLBACK_NUMBER
    assert "ending in 0100" in number.say
    intake.answer("Yes, this number.", at=38.0)
    assert intake.current().step is IntakeStep.CALLBACK_TIME
    intake.answer("Tomorrow morning please.", at=46.0)
    assert intake.done

    details = intake.details()
    assert (details.first_name, details.last_name) == ("Maria", "Lopez")
    assert details.need == "Water heater is leaking all over the garage floor"
    assert details.urgency == 4 and not details.is_emergency
    assert details.service_address == "12 Oak Street, apartment 3"
    assert details.callback_phone == CALLER and details.callback_requested
    assert details.callback_window == "Tomorrow morning please"
    assert details.language == "en"
    assert "ending in 0100" in intake.goodbye()


def test_one_greeting_and_real_offsets(business: Business) -> None:
    intake = Intake(business, CALLER)
    walk(
        intake,
        ["Dana Reyes", "the dishwasher won't drain", "this week", "9 Elm Road", "yes"],
        every=20.0,
    )
    intake.answer("Friday", at=120.0)
    turns = intake.turns()
    text = " ".join(t for _, t, _ in turns)
    assert text.count("Thanks for calling") == 1
    starts = [start for _, _, start in turns]
    assert starts == sorted(starts)  # in order
    assert len(set(starts)) > len(turns) // 2  # not all at one instant
    assert starts[0] == 0.0 and turns[-1][2] == 120.0
    caller = [(t, s) for who, t, s in turns if who == "caller"]
    assert caller[0][0] == "Dana Reyes"
    # spoken after the greeting ended (~15 s of words), before the webhook at 20 s
    assert 15.0 < caller[0][1] < 20.0


def test_the_business_greeting_replaces_the_script_opening(business: Business) -> None:
    own = business.model_copy(update={"greeting": "Bay Plumbing, after hours."})
    prompt = Intake(own, CALLER).current()
    assert prompt.say.startswith("Bay Plumbing, after hours. Para español")
    assert "Thanks for calling" not in prompt.say


def test_name_answer_that_carries_the_need_keeps_both(business: Business) -> None:
    intake = Intake(business, CALLER)
    intake.answer("Linda Chen, I'm already a customer and the furnace is out and it's freezing")
    details = intake.details()
    assert (details.first_name, details.last_name) == ("Linda", "Chen")
    assert details.existing_customer is True
    assert details.urgency == 5 and details.is_emergency
    assert "furnace is out" in (details.need or "").lower()
    assert intake.current().step is IntakeStep.ADDRESS  # need and urgency already known


def test_need_said_instead_of_a_name_is_kept_and_the_name_asked_again(
    business: Business,
) -> None:
    intake = Intake(business, CALLER)
    intake.answer("I'm calling because the water heater is leaking all over the garage")
    assert intake.current().step is IntakeStep.NAME
    intake.answer("oh sorry, it's Kevin Park")
    details = intake.details()
    assert (details.first_name, details.last_name) == ("Kevin", "Park")
    assert "water heater is leaking" in (details.need or "").lower()
    assert intake.current().step is IntakeStep.URGENCY


@pytest.mark.parametrize(
    ("answer", "urgency"),
    [("it can wait", 2), ("just want a price", 2), ("just looking for information", 1)],
)
def test_urgency_answers_that_used_to_be_asked_again(
    business: Business, answer: str, urgency: int
) -> None:
    intake = Intake(business, CALLER, known=CallerDetails(first_name="Al", need="Leak"))
    assert intake.current().step is IntakeStep.URGENCY
    intake.answer(answer)
    assert intake.step is not IntakeStep.URGENCY
    assert intake.details().urgency == urgency


def test_no_need_to_call_back_skips_the_callback_steps(business: Business) -> None:
    intake = Intake(business, CALLER)
    walk(intake, ["Dana Reyes", "not urgent, I only have a question, no need to call me back"])
    assert intake.done
    details = intake.details()
    assert details.urgency == 1 and details.callback_requested is False
    assert "nobody will call you back" in intake.goodbye()


def test_a_general_question_gets_the_faq_answer_or_the_team_will_confirm(
    business: Business,
) -> None:
    with_faq = business.model_copy(
        update={"faq": {"Do you service tankless water heaters?": "Yes, all major brands."}}
    )
    intake = Intake(with_faq, CALLER)
    walk(intake, ["Dana Reyes", "just a question, do you service tankless water heaters?"])
    assert intake.current().say.startswith("Yes, all major brands.")
    assert intake.current().step is IntakeStep.CALLBACK_NUMBER  # no address for a question

    other = Intake(with_faq, CALLER)
    walk(other, ["Dana Reyes", "quick question, how much is a new furnace?"])
    assert "team will confirm it when they call you back" in other.current().say
    assert "$" not in other.current().say


def test_commercial_caller_is_asked_for_the_business_name(business: Business) -> None:
    intake = Intake(business, CALLER)
    walk(intake, ["Grace Liu", "the sink at our restaurant is backing up", "today", "55 Main St"])
    assert intake.current().step is IntakeStep.COMPANY
    intake.answer("the Golden Spoon")
    assert intake.details().company == "The Golden Spoon"
    named = Intake(business, CALLER)
    named.answer("this is Bob Hansen from Acme Property Management")
    assert named.details().company == "Acme Property Management"


def test_safety_line_the_moment_danger_is_heard(business: Business) -> None:
    intake = Intake(business, CALLER)
    walk(intake, ["Rachel Green", "the furnace is making a clicking noise"])
    assert intake.current().step is IntakeStep.URGENCY
    intake.answer("actually now that I'm standing here it smells like gas")
    prompt = intake.current()
    assert prompt.step is IntakeStep.ADDRESS
    assert prompt.say.startswith("If you smell gas, please leave the building now")
    intake.answer("90 Grove Street")
    assert "leave the building" not in intake.current().say  # said once
    intake.answer("yes")
    assert intake.done  # an emergency is called back as soon as possible: no time question
    details = intake.details()
    assert details.urgency == 5 and details.is_emergency
    assert intake.urgency == 5 and intake.is_emergency  # what the on-call alert hook reads
    assert details.callback_window == "as soon as possible"
    assert "on-call" in intake.goodbye()


@pytest.mark.parametrize(
    ("first", "digits"),
    [(None, "2"), ("español", None), ("Hola, buenas noches, habla Juan Pérez", None)],
)
def test_spanish_by_key_word_or_speech(
    business: Business, first: str | None, digits: str | None
) -> None:
    intake = Intake(business, CALLER)
    intake.answer(first, digits=digits, at=5.0)
    prompt = intake.current()
    assert (prompt.language, prompt.voice) == ("es-US", "Polly.Lupe")
    assert intake.language == "es"
    if intake.step is IntakeStep.NAME:
        assert prompt.say.startswith("Muy bien, continuamos en español.")
        intake.answer("me llamo Juan Pérez", at=10.0)
    assert intake.current().say == "Gracias. ¿En qué le podemos ayudar?"
    intake.answer("se rompió una tubería y hay agua por todas partes", at=18.0)
    assert intake.current().say.startswith("Si puede hacerlo sin peligro, cierre la llave")
    walk(intake, ["calle Luna 15", "sí"])
    assert intake.done and intake.goodbye().startswith("Gracias, Juan.")
    details = intake.details()
    assert (details.first_name, details.last_name) == ("Juan", "Pérez")
    assert details.language == "es" and details.urgency == 5
    assert details.need == "Burst pipe - caller spoke Spanish"  # staff read English
    assert "tubería" in (details.details or "")  # the caller's words are kept


def test_silence_is_asked_once_more_then_skipped(business: Business) -> None:
    intake = Intake(business, CALLER)
    intake.answer(None)
    retry = intake.current()
    assert retry.step is IntakeStep.NAME
    assert retry.say.startswith("Sorry, I didn't catch that.")
    intake.answer("   ")
    assert intake.current().step is IntakeStep.NEED
    assert intake.details().first_name is None
    assert [s for s, _, _ in intake.turns()] == ["agent", "agent", "agent"]


def test_unreadable_urgency_is_asked_again(business: Business) -> None:
    intake = Intake(business, CALLER, known=CallerDetails(first_name="Al", need="Leak"))
    intake.answer("Hmm, I'm not sure really.")
    assert intake.current().step is IntakeStep.URGENCY
    intake.answer("No rush at all.")
    assert intake.details().urgency == 2


def test_low_confidence_is_confirmed_and_kept_if_the_retry_is_silent(business: Business) -> None:
    intake = Intake(business, CALLER)
    intake.answer("Jon Smyth", confidence=0.12)
    assert intake.current().step is IntakeStep.NAME
    intake.answer(None)
    assert intake.current().step is IntakeStep.NEED
    assert (intake.details().first_name, intake.details().last_name) == ("Jon", "Smyth")


def test_address_with_spoken_digits_and_a_non_address(business: Business) -> None:
    intake = Intake(business, CALLER, known=CallerDetails(first_name="A", need="B", urgency=3))
    assert intake.current().step is IntakeStep.ADDRESS
    intake.answer("at my house")
    assert intake.current().say.startswith("Sorry, I didn't get that.")
    intake.answer("four one two Maple Avenue")
    assert intake.details().service_address == "412 Maple Avenue"


def test_spoken_callback_number(business: Business) -> None:
    known = CallerDetails(first_name="A", need="B", urgency=3, service_address="1 Main St")
    intake = Intake(business, CALLER, known=known)
    assert intake.current().step is IntakeStep.CALLBACK_NUMBER
    intake.answer("No, use six one seven five five five zero one two three.")
    assert intake.details().callback_phone == "+16175550123"


def test_unreadable_number_falls_back_to_caller_id(business: Business) -> None:
    known = CallerDetails(first_name="A", need="B", urgency=3, service_address="1 Main St")
    intake = Intake(business, CALLER, known=known)
    intake.answer("no")
    assert intake.current().say.startswith("Sorry, I didn't get that.")
    intake.answer("the other one")
    assert intake.details().callback_phone == CALLER


def test_resume_with_known_details(business: Business) -> None:
    known = CallerDetails(
        first_name="Maria",
        last_name="Lopez",
        need="No heat",
        urgency=4,
        service_address="5 Pine Ct",
        callback_requested=True,
    )
    intake = Intake(business, CALLER, known=known, resumed=True, at=42.0)
    prompt = intake.current()
    assert prompt.step is IntakeStep.CALLBACK_NUMBER
    assert prompt.say.startswith("Sorry, we lost the connection for a moment.")
    assert "Thanks for calling" not in prompt.say and "español" not in prompt.say
    assert intake.turns()[0][2] == 42.0
    walk(intake, ["yes", "after 5"])
    details = intake.details()
    assert details.first_name == "Maria" and details.need == "No heat" and details.urgency == 4
    assert details.callback_window == "after 5"


def test_everything_known_goes_straight_to_goodbye(business: Business) -> None:
    known = CallerDetails(
        first_name="Sam",
        need="Quote",
        urgency=2,
        service_address="1 Main St",
        callback_phone=CALLER,
        callback_window="Monday",
    )
    intake = Intake(business, CALLER, known=known, resumed=True)
    assert intake.done
    assert intake.goodbye().startswith("Sorry, we lost the connection for a moment.")
    with pytest.raises(IntakeStateError):
        intake.current()


def test_illegal_transitions(business: Business) -> None:
    intake = Intake(business, CALLER)
    with pytest.raises(IntakeStateError):
        intake.goodbye()
    walk(intake, ["Bo", "Gutter repair", "this week", "1 Main St", "yes", "Friday"])
    assert intake.done
    with pytest.raises(IntakeStateError):
        intake.answer("one more thing")


def test_json_round_trip_between_webhooks(business: Business) -> None:
    intake = Intake(business, CALLER)
    intake.answer("This is Priya Shah")
    intake.answer(None)
    restored = Intake.from_json(intake.to_json(), business)
    assert restored.current() == intake.current()
    assert restored.turns() == intake.turns()
    assert restored.details() == intake.details()
    restored.answer("The AC stopped working")
    assert restored.current().step is IntakeStep.URGENCY
    assert json.loads(restored.to_json())["step"] == "urgency"


def test_state_from_another_business_or_garbage_is_refused(business: Business) -> None:
    other = Business(number="+13125550142", name="Other", timezone="America/Chicago")
    data = Intake(business, CALLER).to_json()
    with pytest.raises(IntakeStateError, match="another business"):
        Intake.from_json(data, other)
    with pytest.raises(IntakeStateError, match="not readable"):
        Intake.from_json('{"step": "nowhere"}', business)


@pytest.mark.parametrize(
    ("words", "urgency"),
    [
        ("It's an emergency!", 5),
        ("emergency", 5),
        ("The basement is flooding", 5),
        ("today please", 4),
        ("ASAP", 4),
        ("sometime this week", 3),
        ("it can wait a few days", 3),
        ("no rush", 2),
        ("it can wait", 2),
        ("it's not an emergency", 2),
        ("whenever is fine", 2),
        ("just want a price", 2),
        ("just a question really", 1),
        ("just looking for information", 1),
        ("es urgente", 4),
        ("no hay prisa", 2),
        ("hmm", None),
    ],
)
def test_urgency_from_words(words: str, urgency: int | None) -> None:
    assert urgency_from_words(words) == urgency


def test_a_resumed_spanish_conversation_continues_in_spanish(business: Business) -> None:
    known = CallerDetails(first_name="Ana", need="Fuga", urgency=4, language="es")
    intake = Intake(business, CALLER, known=known, resumed=True)
    prompt = intake.current()
    assert prompt.language == "es-US" and prompt.say.startswith("Disculpe, se perdió la conexión")
