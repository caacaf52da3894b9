"""The scripted intake: a full walk, silence, low confidence, resuming, persistence."""

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


def test_full_walk(business: Business) -> None:
    intake = Intake(business, CALLER)
    first = intake.current()
    assert first.step is IntakeStep.NAME
    assert first.say.startswith("Thanks for calling Demo Home Services.")
    assert first.say.endswith("First, may I have your name?")
    assert "my name is" in first.hints

    intake.answer("My name is Maria Lopez.", confidence=0.92)
    assert intake.current().step is IntakeStep.NEED
    intake.answer("The water heater is leaking all over the garage floor.")
    assert intake.current().step is IntakeStep.URGENCY
    intake.answer("It needs to be today if possible.")
    number = intake.current()
    assert number.step is IntakeStep.CALLBACK_NUMBER
    assert "ending in 0100" in number.say
    intake.answer("Yes, this number is fine.")
    assert intake.current().step is IntakeStep.CALLBACK_TIME
    intake.answer("Tomorrow morning after eight.")

    assert intake.done
    assert intake.goodbye() == (
        "Thank you, Maria. I've passed this on, and the team will call you back at the "
        "number ending in 0100. Goodbye."
    )
    assert intake.details() == CallerDetails(
        first_name="Maria",
        last_name="Lopez",
        need="The water heater is leaking all over the garage floor",
        details="The water heater is leaking all over the garage floor.",
        urgency=4,
        is_emergency=False,
        callback_phone=CALLER,
        callback_requested=True,
        callback_window="Tomorrow morning after eight",
        language="en",
    )
    turns = intake.turns()
    assert [speaker for speaker, _ in turns] == ["agent", "caller"] * 5 + ["agent"]
    assert turns[1] == ("caller", "My name is Maria Lopez.")
    assert turns[-1] == ("agent", intake.goodbye())


def test_silence_is_asked_once_more_then_skipped(business: Business) -> None:
    intake = Intake(business, CALLER)
    intake.answer(None)
    retry = intake.current()
    assert retry.step is IntakeStep.NAME
    assert retry.say.startswith("Sorry, I didn't catch that.")
    intake.answer("   ")
    assert intake.current().step is IntakeStep.NEED
    assert intake.details().first_name is None
    # the turns show both questions and no empty caller turns
    assert [s for s, _ in intake.turns()] == ["agent", "agent", "agent"]


def test_unreadable_urgency_is_asked_again(business: Business) -> None:
    intake = Intake(business, CALLER, known=CallerDetails(first_name="Al", need="Leak"))
    assert intake.current().step is IntakeStep.URGENCY
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


def test_emergency_need_skips_the_urgency_question(business: Business) -> None:
    intake = Intake(business, CALLER)
    intake.answer("Ana")
    intake.answer("There's a burst pipe and water everywhere in the basement.")
    assert intake.current().step is IntakeStep.CALLBACK_NUMBER
    intake.answer("Call me on 212 555 1234")
    intake.answer("Right away")
    details = intake.details()
    assert details.urgency == 5 and details.is_emergency
    assert details.callback_phone == "+12125551234"
    assert "emergency" in intake.goodbye() and "911" in intake.goodbye()


def test_spoken_callback_number(business: Business) -> None:
    intake = Intake(business, CALLER, known=CallerDetails(first_name="A", need="B", urgency=3))
    assert intake.current().step is IntakeStep.CALLBACK_NUMBER
    intake.answer("No, use six one seven five five five zero one two three.")
    assert intake.details().callback_phone == "+16175550123"


def test_no_caller_id_asks_for_a_number(business: Business) -> None:
    intake = Intake(business, "anonymous", known=CallerDetails(first_name="A", need="B", urgency=3))
    prompt = intake.current()
    assert prompt.say.endswith(
        " the team can call you back. What is the best phone number to reach you?"
    )
    intake.answer("yes")  # no caller ID to say yes to
    assert intake.current().step is IntakeStep.CALLBACK_NUMBER
    intake.answer(None)
    assert intake.current().step is IntakeStep.CALLBACK_TIME
    assert intake.details().callback_phone is None
    intake.answer("any time")
    assert intake.goodbye() == "Thank you, A. I've passed this on to the team. Goodbye."


def test_unreadable_number_falls_back_to_caller_id(business: Business) -> None:
    intake = Intake(business, CALLER, known=CallerDetails(first_name="A", need="B", urgency=3))
    intake.answer("no")
    assert intake.current().say.startswith("Sorry, I didn't get that.")
    intake.answer("the other one")
    assert intake.details().callback_phone == CALLER


def test_resume_with_known_details(business: Business) -> None:
    known = CallerDetails(
        first_name="Maria", last_name="Lopez", need="No heat", urgency=4, callback_requested=True
    )
    intake = Intake(business, CALLER, known=known, resumed=True)
    prompt = intake.current()
    assert prompt.step is IntakeStep.CALLBACK_NUMBER
    assert prompt.say.startswith("Sorry, we lost the connection for a moment.")
    assert "Thanks for calling" not in prompt.say
    intake.answer("yes")
    intake.answer("after 5")
    details = intake.details()
    assert details.first_name == "Maria" and details.need == "No heat" and details.urgency == 4
    assert details.callback_window == "after 5"


def test_everything_known_goes_straight_to_goodbye(business: Business) -> None:
    known = CallerDetails(
        first_name="Sam",
        need="Quote",
        urgency=2,
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
    for answer in ["Bo", "Gutter repair", "this week", "yes", "Friday"]:
        intake.answer(answer)
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
        ("The basement is flooding", 5),
        ("today please", 4),
        ("ASAP", 4),
        ("sometime this week", 3),
        ("no rush", 2),
        ("it's not an emergency", 2),
        ("whenever is fine", 2),
        ("just a question really", 1),
        ("es urgente", 4),
        ("no hay prisa", 2),
        ("hmm", None),
    ],
)
def test_urgency_from_words(words: str, urgency: int | None) -> None:
    assert urgency_from_words(words) == urgency
