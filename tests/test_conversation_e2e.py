"""The conversation issue's scenarios, each one a phone call through the real endpoints and
the three stand-ins (Twilio caller + REST API, OpenAI Realtime + extraction, Salesforce or
the local CRM): emergencies, callback due dates in the business's timezone, existing
customers, callers who will not give a name or try to steer the record, a Spanish-speaking
caller, the scripted intake, opening hours, SMS confirmations and warm transfer.

Audio runs faster than real time here (``SPEED``): these tests check logic; the real-time
paced call is in test_e2e_call.py. The service's clock is fixed with ``start_app(clock=...)``
where the date matters.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.summary import CallSummary
from crm.local import LocalCrm
from tests.conftest import (
    BUSINESS_NUMBER,
    BUSINESSES_TOML,
    CALLER,
    ON_CALL_PHONE,
    PUBLIC_BASE_URL,
    RunningApp,
    StartApp,
    wait_for,
)
from tests.conversation_scripts import (
    CALLBACK_EXTRACTION,
    CALLBACK_TURNS,
    EMERGENCY_ADDRESS,
    EMERGENCY_EXTRACTION,
    EMERGENCY_TURNS,
    EXISTING_EXTRACTION,
    EXISTING_TURNS,
    INTAKE_SPEECH,
    MANIPULATION_EXTRACTION,
    MANIPULATION_TURNS,
    NO_NAME_EXTRACTION,
    NO_NAME_TURNS,
    OFFICE_PHONE,
    SPANISH_EXTRACTION,
    SPANISH_TURNS,
)
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn
from tests.standins.plugin_openai import MakeRealtimeStandin
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_rest import new_sid
from tests.standins.twilio_script import (
    CallerScript,
    CallResult,
    DialOutcome,
    HangUp,
    Hold,
    ListenUntilAgentDone,
    Say,
    Step,
)

SPEED = 4.0
"""Audio time runs this many times faster than the wall clock (logic only)."""

Clock = Callable[[], dt.datetime]


# --- helpers ---------------------------------------------------------------------------


def at(iso_utc: str) -> Clock:
    """A clock stopped at one instant (ISO 8601 with an offset)."""
    moment = dt.datetime.fromisoformat(iso_utc)
    assert moment.utcoffset() is not None
    return lambda: moment


def ticking_from(iso_utc: str, step: dt.timedelta) -> Clock:
    """A clock that moves ``step`` forward every time the service reads it."""
    moment = [dt.datetime.fromisoformat(iso_utc)]

    def now() -> dt.datetime:
        current = moment[0]
        moment[0] = current + step
        return current

    return now


def businesses_file(tmp_path: Path, extra: str) -> Path:
    """The test business (tests/conftest.py) with ``extra`` TOML lines added to its table."""
    path = tmp_path / "businesses-extra.toml"
    path.write_text(BUSINESSES_TOML + extra)
    return path


def twilio_settings(twilio: TwilioStandin) -> dict[str, Any]:
    return {
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_api_base_url": twilio.api_base_url,
    }


def openai_settings(ai: RealtimeStandin) -> dict[str, Any]:
    return {"openai_api_key": ai.api_key, "openai_base_url": ai.base_url}


def salesforce_settings(salesforce: SalesforceStandin) -> dict[str, Any]:
    return {
        "salesforce_login_url": salesforce.login_url,
        "salesforce_client_id": salesforce.client_id,
        "salesforce_client_secret": salesforce.client_secret,
    }


def conversation(utterances: int, *, then: list[Step] | None = None) -> CallerScript:
    """Listen to the greeting, then speak ``utterances`` times, listening to each reply;
    then ``then`` (default: hang up)."""
    steps: list[Step] = [ListenUntilAgentDone()]
    for _ in range(utterances):
        steps += [Say(ms=1200), ListenUntilAgentDone()]
    steps += then if then is not None else [HangUp()]
    return CallerScript(steps=steps)


async def place_call(
    twilio: TwilioStandin,
    app: RunningApp,
    script: CallerScript,
    *,
    call_sid: str | None = None,
) -> CallResult:
    return await twilio.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
        call_sid=call_sid,
        speed=SPEED,
    )


async def delivered(app: RunningApp, call_sid: str) -> CallSummary:
    """Wait until the call's CRM delivery is done; its stored summary."""
    store = app.services.store
    await wait_for(
        lambda: (job := store.outbox_job(call_sid)) is not None and job.state == "delivered"
    )
    summary = store.get_summary(call_sid)
    assert summary is not None
    return summary


def local_crm(app: RunningApp) -> dict[str, list[dict[str, Any]]]:
    crm = app.services.crm
    assert isinstance(crm, LocalCrm)
    return crm.dump()


def caller_texts(summary: CallSummary) -> str:
    return " ".join(t.text for t in summary.transcript if t.speaker == "caller")


async def realtime_app(
    start_app: StartApp,
    twilio: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
    *,
    turns: list[ScriptedTurn],
    extraction: dict[str, Any] | None,
    **overrides: Any,
) -> tuple[RunningApp, RealtimeStandin]:
    ai = await make_realtime_standin(turns=turns, extraction=extraction)
    twilio.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(**twilio_settings(twilio), **openai_settings(ai), **overrides)
    return app, ai


# --- emergencies -----------------------------------------------------------------------


async def test_emergency_texts_the_on_call_phone_while_the_caller_is_still_on_the_line(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin: MakeRealtimeStandin
) -> None:
    """flag_emergency → an SMS to the on-call phone (name, number, address, need) sent
    while the stream is still live; the summary is urgency 5, Hot, even though the post-call
    model under-rated it; the Lead is Hot with the emergency lead source."""
    app, ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=EMERGENCY_TURNS,
        extraction=EMERGENCY_EXTRACTION,
    )
    call_sid = new_sid("CA")
    live_when_texted: list[bool] = []

    def texted() -> bool:
        """Checked by the caller every tick, on the event loop the service runs on."""
        if twilio_standin.messages and not live_when_texted:
            live_when_texted.append(call_sid in app.services.live_calls)
        return bool(live_when_texted)

    # After the agent's reply the caller stays on the line until the on-call SMS is sent.
    script = conversation(1, then=[Hold(until=texted), HangUp()])
    result = await place_call(twilio_standin, app, script, call_sid=call_sid)

    assert result.script_timeouts == []
    assert live_when_texted == [True], "the on-call SMS must leave while the call is live"
    (sms,) = twilio_standin.messages
    assert (sms["To"], sms["From"]) == (ON_CALL_PHONE, BUSINESS_NUMBER)
    for expected in ("EMERGENCY", "Maria Lopez", CALLER, EMERGENCY_ADDRESS, "burst pipe"):
        assert expected.lower() in sms["Body"].lower(), expected
    assert result.stream_closed_by == "caller"

    summary = await delivered(app, call_sid)
    assert (summary.urgency, summary.is_emergency, summary.rating) == (5, True, "Hot")
    assert summary.service_address == EMERGENCY_ADDRESS
    (lead,) = local_crm(app)["Lead"]
    assert (lead["FirstName"], lead["LastName"], lead["Phone"]) == ("Maria", "Lopez", CALLER)
    assert lead["Rating"] == "Hot"
    assert lead["LeadSource"] == "Phone Call - Emergency"
    assert ai.sessions[0].violations == []


# --- callback due dates in the business's timezone ---------------------------------------


@pytest.mark.parametrize(
    ("clock", "due"),
    [
        # Tue 21:30 in San Francisco is already Wednesday in UTC: "tomorrow" is Wednesday.
        pytest.param(at("2025-03-05T05:30:00+00:00"), "2025-03-05", id="evening"),
        # Wed 00:20: the caller has not slept; "tomorrow morning" is the day just begun.
        pytest.param(at("2025-03-05T08:20:00+00:00"), "2025-03-05", id="just-after-midnight"),
        # Sat 23:30 PST before the spring-forward night: +24 h would land on Monday 00:30.
        pytest.param(at("2025-03-09T07:30:00+00:00"), "2025-03-09", id="eve-of-spring-forward"),
        # A call that starts at 01:58 PST and is finalized after 03:00 PDT.
        pytest.param(
            ticking_from("2025-03-09T09:58:00+00:00", dt.timedelta(minutes=1)),
            "2025-03-09",
            id="across-spring-forward",
        ),
        # 01:30 in the repeated hour of the fall-back night (the second, PST, one).
        pytest.param(at("2025-11-02T09:30:00+00:00"), "2025-11-02", id="repeated-hour"),
        # Sat 23:45 PDT before the fall-back night.
        pytest.param(at("2025-11-02T06:45:00+00:00"), "2025-11-02", id="eve-of-fall-back"),
    ],
)
async def test_tomorrow_morning_is_due_on_the_right_local_day(
    start_app: StartApp, twilio_standin: TwilioStandin, clock: Clock, due: str
) -> None:
    """A "tomorrow morning" callback (scripted intake) is due on the right calendar day in
    the business's timezone (America/Los_Angeles), around midnight and DST changes: in the
    summary and on the CRM's open callback Task."""
    app = await start_app(clock=clock, **twilio_settings(twilio_standin))
    result = await place_call(twilio_standin, app, CallerScript(speech=list(INTAKE_SPEECH)))

    summary = await delivered(app, result.call_sid)
    assert summary.callback_window == "tomorrow morning"
    assert summary.callback_due == dt.date.fromisoformat(due)
    callback_tasks = [t for t in local_crm(app)["Task"] if t.get("CallObject") is None]
    assert [t["ActivityDate"] for t in callback_tasks] == [due]


async def test_realtime_callback_request_is_due_by_the_service_clock(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin: MakeRealtimeStandin
) -> None:
    """Through the voice agent: request_callback("tomorrow morning") on Tuesday 21:30 local
    (already Wednesday in UTC) → due Wednesday, and the agent's instructions say Tuesday."""
    app, ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=CALLBACK_TURNS,
        extraction=CALLBACK_EXTRACTION,
        clock=at("2025-03-05T05:30:00+00:00"),
    )
    result = await place_call(twilio_standin, app, conversation(1))

    summary = await delivered(app, result.call_sid)
    assert summary.callback_requested and summary.callback_window == "tomorrow morning"
    assert summary.callback_due == dt.date(2025, 3, 5)
    assert (summary.first_name, summary.rating) == ("Ken", "Warm")
    instructions = ai.sessions[0].session_config["instructions"]
    assert "Tuesday, March 4, 2025" in instructions
    (callback_task,) = [t for t in local_crm(app)["Task"] if t.get("CallObject") is None]
    assert callback_task["ActivityDate"] == "2025-03-05"


async def test_extraction_model_is_told_the_business_local_date(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin: MakeRealtimeStandin
) -> None:
    """The post-call extraction prompt says "Today is <date> in the business's timezone":
    that date must be the business's local date by the service clock, or the model reads
    "tomorrow" against the wrong day."""
    app, ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=CALLBACK_TURNS,
        extraction=CALLBACK_EXTRACTION,
        clock=at("2025-03-05T05:30:00+00:00"),
    )
    result = await place_call(twilio_standin, app, conversation(1))
    await delivered(app, result.call_sid)

    (request,) = ai.extraction_requests
    system = next(m["content"] for m in request["messages"] if m["role"] == "system")
    assert "Today is 2025-03-04" in system


async def test_logged_call_task_is_dated_on_the_calls_local_day(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """The completed call Task's ActivityDate is the day the call happened in the
    business's timezone (Tuesday 21:30 in San Francisco is Tuesday, not UTC Wednesday)."""
    app = await start_app(clock=at("2025-03-05T05:30:00+00:00"), **twilio_settings(twilio_standin))
    result = await place_call(twilio_standin, app, CallerScript(speech=list(INTAKE_SPEECH)))
    await delivered(app, result.call_sid)

    (call_task,) = [t for t in local_crm(app)["Task"] if t.get("CallObject") == result.call_sid]
    assert call_task["ActivityDate"] == "2025-03-04"


# --- who is calling ----------------------------------------------------------------------


async def test_existing_customer_gets_a_call_task_on_their_contact_and_no_lead(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
    salesforce_ca_env: SalesforceStandin,
) -> None:
    """A caller whose number is on a Contact: the call is logged as a Task on that Contact
    and its Account, the transcript is attached to the Contact, and no Lead is created."""
    salesforce = salesforce_ca_env
    account_id = salesforce.add_record("Account", {"Name": "Natarajan Residence"})
    contact_id = salesforce.add_record(
        "Contact",
        {
            "FirstName": "Priya",
            "LastName": "Natarajan",
            "Phone": "(415) 555-0100",
            "AccountId": account_id,
        },
    )
    app, _ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=EXISTING_TURNS,
        extraction=EXISTING_EXTRACTION,
        **salesforce_settings(salesforce),
    )
    result = await place_call(twilio_standin, app, conversation(1))

    summary = await delivered(app, result.call_sid)
    assert summary.existing_customer is True
    assert salesforce.records("Lead") == []
    assert salesforce.records("Opportunity") == []
    (task,) = salesforce.records("Task")
    assert task["CallObject"] == result.call_sid
    assert (task["WhoId"], task["WhatId"]) == (contact_id, account_id)
    assert "Thermostat keeps resetting" in task["Description"]
    (transcript,) = salesforce.records("ContentVersion")
    assert transcript["FirstPublishLocationId"] == contact_id


async def test_caller_who_will_not_give_a_name_still_gets_a_lead_without_one(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin: MakeRealtimeStandin
) -> None:
    """No name learned: the summary invents none, and the Lead is still written with the
    caller's number and need, a placeholder last name and a household company."""
    app, _ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=NO_NAME_TURNS,
        extraction=NO_NAME_EXTRACTION,
    )
    result = await place_call(twilio_standin, app, conversation(1))

    summary = await delivered(app, result.call_sid)
    assert (summary.first_name, summary.last_name) == (None, None)
    assert summary.need == "Clogged kitchen sink"
    (lead,) = local_crm(app)["Lead"]
    assert lead.get("FirstName") is None
    assert lead["LastName"] == "(not given)"
    assert lead["Company"] == "Household (name not given)"
    assert lead["Phone"] == CALLER
    assert "Clogged kitchen sink" in lead["Description"]


@pytest.mark.parametrize(
    "name_answers",
    [
        pytest.param(["I'd rather not say", "no"], id="refuses-twice"),
        pytest.param(["My name is not important"], id="not-important"),
    ],
)
async def test_a_name_refusal_is_not_taken_for_a_name(
    start_app: StartApp, twilio_standin: TwilioStandin, name_answers: list[str]
) -> None:
    """A caller who declines to give a name in the scripted intake gets no invented name
    on the Lead (the intake moves on to the need)."""
    app = await start_app(**twilio_settings(twilio_standin))
    speech = [*name_answers, *INTAKE_SPEECH[1:]]
    result = await place_call(twilio_standin, app, CallerScript(speech=speech))

    summary = await delivered(app, result.call_sid)
    assert (summary.first_name, summary.last_name) == (None, None)
    (lead,) = local_crm(app)["Lead"]
    assert lead.get("FirstName") is None


async def test_caller_cannot_talk_the_agent_into_urgency_or_other_records(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
    salesforce_ca_env: SalesforceStandin,
) -> None:
    """The caller asks to be marked urgent / Hot and to change someone else's Lead, and the
    model tries a tool call with a rating and a record id: that call is refused (without
    echoing what was sent), the caller's own Lead is Warm from the situation described,
    and the other records are untouched."""
    salesforce = salesforce_ca_env
    jane_id = salesforce.add_record(
        "Lead",
        {
            "FirstName": "Jane",
            "LastName": "Doe",
            "Company": "Doe Household",
            "Phone": "(650) 555-0142",
            "Rating": "Cold",
        },
    )
    contact_id = salesforce.add_record(
        "Contact", {"FirstName": "Ann", "LastName": "Other", "Phone": "(650) 555-0199"}
    )
    jane_before = salesforce.get("Lead", jane_id)
    contact_before = salesforce.get("Contact", contact_id)
    app, ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=MANIPULATION_TURNS,
        extraction=MANIPULATION_EXTRACTION,
        **salesforce_settings(salesforce),
    )
    result = await place_call(twilio_standin, app, conversation(1))

    summary = await delivered(app, result.call_sid)
    assert (summary.urgency, summary.is_emergency, summary.rating) == (2, False, "Warm")

    outputs = [
        json.loads(o["output"]) if o["output"].startswith("{") else o["output"]
        for o in ai.sessions[0].function_outputs
    ]
    refused = [o for o in outputs if isinstance(o, dict) and o.get("ok") is False]
    assert len(refused) == 1
    assert "rating" in refused[0]["error"] and "lead_id" in refused[0]["error"]
    assert "Hot" not in refused[0]["error"] and "00Q" not in refused[0]["error"]

    assert salesforce.get("Lead", jane_id) == jane_before
    assert salesforce.get("Contact", contact_id) == contact_before
    leads = salesforce.records("Lead")
    assert len(leads) == 2
    (tom,) = [lead for lead in leads if lead["Id"] != jane_id]
    assert (tom["FirstName"], tom["LastName"], tom["Phone"]) == ("Tom", "Baker", CALLER)
    assert tom["Rating"] == "Warm"
    assert tom["LeadSource"] == "Phone Call - AI Receptionist"
    assert all(task["WhoId"] == tom["Id"] for task in salesforce.records("Task"))


async def test_spanish_speaking_caller_gets_an_english_summary_with_the_language_recorded(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin: MakeRealtimeStandin
) -> None:
    """A caller speaking Spanish: the transcript keeps her words, the summary's need and
    details are in English, language is "es", and "mañana por la mañana" is due tomorrow."""
    app, _ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=SPANISH_TURNS,
        extraction=SPANISH_EXTRACTION,
        clock=at("2025-03-05T05:30:00+00:00"),
    )
    result = await place_call(twilio_standin, app, conversation(1))

    summary = await delivered(app, result.call_sid)
    assert summary.language == "es"
    assert (summary.first_name, summary.last_name) == ("Lucía", "Fernández")
    assert summary.need == "Water heater not working - no hot water"
    assert summary.details == SPANISH_EXTRACTION["details"]
    assert "calentador de agua" in caller_texts(summary)
    assert (summary.urgency, summary.rating) == (4, "Hot")
    assert summary.callback_due == dt.date(2025, 3, 5)
    (lead,) = local_crm(app)["Lead"]
    assert "Water heater not working" in lead["Description"]


# --- the scripted intake (no OpenAI) -------------------------------------------------------


async def test_scripted_intake_end_to_end_without_openai(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """No OpenAI settings: the caller answers five spoken <Gather>s (name, need, urgency,
    callback number, callback time); the summary and a Warm Lead with a callback Task
    follow; no SMS goes out (nobody asked for one)."""
    app = await start_app(clock=at("2025-03-04T18:00:00+00:00"), **twilio_settings(twilio_standin))
    result = await place_call(twilio_standin, app, CallerScript(speech=list(INTAKE_SPEECH)))

    assert result.streams == 0 and result.errors == []
    assert result.ended_by == "app_hangup"
    said = " ".join(result.said).lower()
    for question in ("your name", "help you with", "how urgent", "ending in 0100", "good time"):
        assert question in said, question
    assert "goodbye" in result.said[-1].lower()

    summary = await delivered(app, result.call_sid)
    assert (summary.first_name, summary.last_name) == ("Dana", "Reyes")
    assert "water heater" in summary.need.lower()
    assert (summary.urgency, summary.rating) == (2, "Warm")
    assert summary.callback_phone == CALLER
    assert summary.callback_due == dt.date(2025, 3, 5)
    assert summary.extraction == "deterministic"
    records = local_crm(app)
    (lead,) = records["Lead"]
    assert (lead["FirstName"], lead["LastName"], lead["Rating"]) == ("Dana", "Reyes", "Warm")
    assert len(records["Task"]) == 2  # the logged call and the open callback
    assert twilio_standin.messages == []


# --- opening hours -------------------------------------------------------------------------

OPEN_HOURS = f"""office_phone = "{OFFICE_PHONE}"
ring_timeout_seconds = 15
opening_hours = {{ "mon-fri" = "08:00-17:00" }}
"""
TUESDAY_10AM = "2025-03-04T18:00:00+00:00"
TUESDAY_9PM = "2025-03-05T05:00:00+00:00"


@pytest.mark.parametrize(
    ("now", "dial_outcome", "office_rung", "receptionist_answers"),
    [
        pytest.param(TUESDAY_10AM, "no-answer", True, True, id="open-office-no-answer"),
        pytest.param(TUESDAY_10AM, "completed", True, False, id="open-office-answered"),
        # The office voicemail picks up: Twilio says the <Dial> completed, but nobody
        # pressed 1 on the screening prompt, so the receptionist still takes the call.
        pytest.param(TUESDAY_10AM, "voicemail", True, True, id="open-office-voicemail"),
        pytest.param(TUESDAY_9PM, "completed", False, True, id="closed"),
    ],
)
async def test_opening_hours_ring_the_office_first(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    tmp_path: Path,
    now: str,
    dial_outcome: DialOutcome,
    office_rung: bool,
    receptionist_answers: bool,
) -> None:
    """During opening hours the call rings the office line (<Dial>); when nobody answers
    the receptionist takes the call; when the office answers there is no summary and no
    CRM record. After hours the receptionist answers at once."""
    app = await start_app(
        clock=at(now),
        businesses_file=businesses_file(tmp_path, OPEN_HOURS),
        **twilio_settings(twilio_standin),
    )
    script = CallerScript(speech=list(INTAKE_SPEECH), dial_outcome=dial_outcome)
    result = await place_call(twilio_standin, app, script)

    assert result.errors == []
    assert result.dialed == ([OFFICE_PHONE] if office_rung else [])
    if office_rung:
        assert 'timeout="15"' in result.twiml[0]
        screened = any("press 1" in heard.lower() for heard in result.screening_heard)
        assert screened == (dial_outcome != "no-answer")
        assert result.bridged_to == ([] if receptionist_answers else [OFFICE_PHONE])
    store = app.services.store
    if receptionist_answers:
        assert any("your name" in s.lower() for s in result.said)
        summary = await delivered(app, result.call_sid)
        assert summary.first_name == "Dana"
        assert len(local_crm(app)["Lead"]) == 1
    else:
        assert result.said == []
        call = store.get_call(result.call_sid)
        assert call is not None and call.state != "active"
        assert store.get_summary(result.call_sid) is None
        assert store.outbox_job(result.call_sid) is None
        assert local_crm(app) == {}


# --- messages to the caller and transfers --------------------------------------------------


async def test_sms_confirmation_to_the_caller_when_the_business_wants_it(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """sms_to_caller = true: after the call the caller gets one text from the business
    number naming the business and when it will call back — in the service's own words
    ("tomorrow"), never the caller's ("tomorrow morning")."""
    app = await start_app(
        businesses_file=businesses_file(tmp_path, "sms_to_caller = true\n"),
        clock=at("2026-03-03T20:00:00-08:00"),
        **twilio_settings(twilio_standin),
    )
    result = await place_call(twilio_standin, app, CallerScript(speech=list(INTAKE_SPEECH)))
    await delivered(app, result.call_sid)
    await wait_for(lambda: twilio_standin.messages)

    (sms,) = twilio_standin.messages
    assert (sms["To"], sms["From"]) == (CALLER, BUSINESS_NUMBER)
    assert sms["Body"] == "Bay Plumbing & Air got your request and will call you back tomorrow."


WARM_TRANSFER = "warm_transfer = true\n"


async def test_warm_transfer_connects_the_emergency_caller_to_the_on_call_phone(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
    tmp_path: Path,
) -> None:
    """warm_transfer = true: flag_emergency → a REST update of the live call whose TwiML
    tells the caller and dials the on-call phone; Twilio ends the stream, the caller is
    connected, the on-call phone is texted, and the call is still summarized (Hot)."""
    app, _ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=EMERGENCY_TURNS,
        extraction=EMERGENCY_EXTRACTION,
        businesses_file=businesses_file(tmp_path, WARM_TRANSFER),
    )
    # The caller stays on the line until the app moves the call.
    script = conversation(1, then=[Hold(), HangUp()])
    result = await place_call(twilio_standin, app, script)

    assert result.script_timeouts == []

    (update,) = twilio_standin.call_updates
    assert update["CallSid"] == result.call_sid
    twiml = update["params"]["Twiml"]
    assert "<Dial" in twiml and ON_CALL_PHONE in twiml
    assert result.stream_closed_by == "rest_update"
    assert result.dialed == [ON_CALL_PHONE]
    assert any("on-call" in s.lower() for s in result.said)
    # The on-call SMS and the transfer leave side by side; the call may be over first.
    await wait_for(lambda: twilio_standin.messages)
    assert [m["To"] for m in twilio_standin.messages] == [ON_CALL_PHONE]

    summary = await delivered(app, result.call_sid)
    assert (summary.urgency, summary.rating) == (5, "Hot")


async def test_warm_transfer_tells_the_model_the_caller_is_being_connected(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
    tmp_path: Path,
) -> None:
    """Under warm transfer, flag_emergency's function output tells the model the call is
    being connected (so it says "putting you through", not "we'll call you back")."""
    app, ai = await realtime_app(
        start_app,
        twilio_standin,
        make_realtime_standin,
        turns=EMERGENCY_TURNS,
        extraction=EMERGENCY_EXTRACTION,
        businesses_file=businesses_file(tmp_path, WARM_TRANSFER),
    )
    result = await place_call(twilio_standin, app, conversation(1, then=[Hold(), HangUp()]))
    await delivered(app, result.call_sid)

    (flag_output,) = [
        o["output"] for o in ai.sessions[0].function_outputs if o.get("name") == "flag_emergency"
    ]
    assert "connected to the on-call technician" in flag_output
