"""The scripted intake (no OpenAI) end to end: the Twilio stand-in places the call, follows
the TwiML (``<Gather>`` speech and keys, ``<Say>`` voices) and signs every webhook; the
summary lands in the local CRM or the Salesforce stand-in.

English and Spanish; one greeting; the address; the safety line the moment danger is heard;
"no need to call me back"; an existing customer's new project becoming an Opportunity
without any model; real turn offsets in the transcript.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.conftest import BUSINESS_NUMBER, CALLER, StartApp
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.plugin_openai import MakeRealtimeStandin
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp, Hold, ListenUntilAgentDone, Say
from tests.test_conversation_e2e import (
    at,
    businesses_file,
    delivered,
    local_crm,
    openai_settings,
    place_call,
    salesforce_settings,
    twilio_settings,
)

TUESDAY_EVENING = "2025-03-05T03:00:00+00:00"  # 19:00 on Tuesday in California


async def test_english_intake_listens_and_writes_clean_crm_text(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    app = await start_app(clock=at(TUESDAY_EVENING), **twilio_settings(twilio_standin))
    speech = [
        "Hi, Dr. Linda Chen here",
        "um so the water heater is leaking all over the garage floor and we have no hot water",
        "today if you can",
        "it's 1200 Mission Street",
        "yes",
        "Thursday morning",
    ]
    result = await place_call(twilio_standin, app, CallerScript(speech=speech))

    assert result.errors == [] and result.ended_by == "app_hangup"
    said = " ".join(result.said)
    assert said.count("Thanks for calling Bay Plumbing and Air") == 1  # one greeting
    assert "Para español, oprima dos" in result.said[0]
    assert "address where you need the service" in said
    assert set(result.gather_languages) == {"en-US"}
    assert set(result.voices) == {"Polly.Joanna"}
    assert 'input="speech dtmf"' in result.twiml[0] and 'numDigits="1"' in result.twiml[0]
    assert 'input="speech"' in result.twiml[1]  # keys only for the language choice

    summary = await delivered(app, result.call_sid)
    assert (summary.first_name, summary.last_name) == ("Linda", "Chen")
    assert summary.need == "Water heater is leaking all over the garage floor"
    assert (summary.urgency, summary.rating, summary.is_emergency) == (4, "Hot", False)
    assert summary.service_address == "1200 Mission Street"
    assert summary.callback_due == dt.date(2025, 3, 6)
    starts = [turn.start for turn in summary.transcript]
    assert starts == sorted(starts) and starts[-1] > 0.0  # real offsets, not all 0.0

    records = local_crm(app)
    (lead,) = records["Lead"]
    assert (lead["FirstName"], lead["LastName"], lead["Rating"]) == ("Linda", "Chen", "Hot")
    assert lead["Street"] == "1200 Mission Street"
    assert lead["Description"].count("Water heater is leaking all over the garage floor") == 1
    subjects = sorted(task["Subject"] for task in records["Task"])
    assert subjects == [
        "Call back Linda Chen",
        "Call: Water heater is leaking all over the garage floor",
    ]


async def test_spanish_intake_chosen_with_a_key(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """The caller presses 2: every later question is in Spanish (es-US recognition, a
    Spanish voice); the summary keeps the language and the original words, and the staff
    fields come out in English."""
    app = await start_app(clock=at(TUESDAY_EVENING), **twilio_settings(twilio_standin))
    speech = [
        "dtmf:2",
        "me llamo José Luis García López",
        "quisiera un presupuesto para cambiar el calentador de agua",
        "no hay prisa",
        "calle Mission 2200",
        "sí",
        "el lunes por la tarde",
    ]
    result = await place_call(twilio_standin, app, CallerScript(speech=speech))

    assert result.errors == [] and result.ended_by == "app_hangup"
    assert result.gather_languages[0] == "en-US"
    assert set(result.gather_languages[1:]) == {"es-US"}
    assert result.said[1].startswith("Muy bien, continuamos en español.")
    assert result.said[-1].startswith("Gracias, José Luis.")
    assert "Polly.Lupe" in result.voices

    summary = await delivered(app, result.call_sid)
    assert summary.language == "es"
    assert (summary.first_name, summary.last_name) == ("José Luis", "García López")
    assert summary.need == "Water heater / no hot water - caller spoke Spanish"
    assert (summary.urgency, summary.rating) == (2, "Warm")
    assert summary.new_project is True
    assert summary.callback_due == dt.date(2025, 3, 10)
    caller_words = [t.text for t in summary.transcript if t.speaker == "caller"]
    assert "quisiera un presupuesto para cambiar el calentador de agua" in caller_words

    (lead,) = local_crm(app)["Lead"]
    assert "Caller's language: es" in lead["Description"]


async def test_spanish_spoken_first_and_the_safety_line_at_once(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    app = await start_app(**twilio_settings(twilio_standin))
    speech = [
        "Hola, buenas noches, habla Juan Pérez",
        "huele a gas en la cocina",
        "calle Luna 15",
        "sí",
    ]
    result = await place_call(twilio_standin, app, CallerScript(speech=speech))
    assert result.errors == []
    # the very next thing said after the gas smell is the safety line
    assert result.said[2].startswith("Si huele a gas, salga del edificio ahora")
    summary = await delivered(app, result.call_sid)
    assert (summary.urgency, summary.is_emergency, summary.language) == (5, True, "es")
    (lead,) = local_crm(app)["Lead"]
    assert lead["Rating"] == "Hot"


async def test_no_need_to_call_back_leaves_no_open_callback_task(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """...and no confirmation text promising a call, though the business sends them."""
    app = await start_app(
        businesses_file=businesses_file(tmp_path, "sms_to_caller = true\n"),
        **twilio_settings(twilio_standin),
    )
    speech = ["Dana Reyes", "not urgent, I only have a question. No need to call me back."]
    result = await place_call(twilio_standin, app, CallerScript(speech=speech))
    assert result.errors == [] and result.ended_by == "app_hangup"
    assert "nobody will call you back" in result.said[-1]
    summary = await delivered(app, result.call_sid)
    assert (summary.urgency, summary.rating) == (1, "Cold")
    assert summary.callback_requested is False
    records = local_crm(app)
    assert [task["Subject"] for task in records["Task"]] == [f"Call: {summary.need}"]
    assert twilio_standin.messages == []


async def test_existing_customer_new_project_opens_an_opportunity_without_a_model(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    salesforce_ca_env: SalesforceStandin,
) -> None:
    salesforce = salesforce_ca_env
    account_id = salesforce.add_record("Account", {"Name": "Chen Residence"})
    salesforce.add_record(
        "Contact",
        {"FirstName": "Linda", "LastName": "Chen", "Phone": CALLER, "AccountId": account_id},
    )
    app = await start_app(**twilio_settings(twilio_standin), **salesforce_settings(salesforce))
    speech = [
        "Linda Chen, I'm already a customer and we want a quote to add central air",
        "no rush",
        "1200 Mission Street",
        "yes",
        "next week",
    ]
    result = await place_call(twilio_standin, app, CallerScript(speech=speech))
    assert result.errors == []
    summary = await delivered(app, result.call_sid)
    assert summary.existing_customer is True and summary.new_project is True
    assert summary.extraction == "deterministic"
    assert salesforce.records("Lead") == []
    (opportunity,) = salesforce.records("Opportunity")
    assert opportunity["AccountId"] == account_id
    assert opportunity["Name"] == "Quote To Add Central Air - 1200 Mission St"
    assert BUSINESS_NUMBER  # the call went to the configured business


async def test_a_spanish_voice_call_that_drops_continues_in_spanish(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    """The Realtime connection drops after the caller spoke Spanish: the scripted intake
    that takes over asks its remaining questions in Spanish (es-US, a Spanish voice)."""
    turns = [
        ScriptedTurn(
            "Hola, me llamo Rosa Díaz y tengo una fuga de agua debajo del fregadero.",
            reply="Gracias Rosa, anoté la fuga.",
            reply_ms=800,
            tool_calls=[
                ToolCall(
                    "record_caller_details",
                    {"first_name": "Rosa", "last_name": "Díaz", "need": "Leak under the sink"},
                )
            ],
        )
    ]
    ai: RealtimeStandin = await make_realtime_standin(turns=turns, extraction=None)
    ai.drop_after_turns = 1
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    script = CallerScript(
        # After speaking, the caller holds on until the app hands the call over.
        steps=[ListenUntilAgentDone(), Say(ms=1000), Hold(), HangUp()],
        speech=["hoy por favor", "calle Luna 15", "sí", "esta tarde"],
    )
    result = await place_call(twilio_standin, app, script)
    assert result.script_timeouts == []
    assert result.gather_languages and set(result.gather_languages) == {"es-US"}
    assert result.said[0].startswith("Disculpe, se perdió la conexión")
    summary = await delivered(app, result.call_sid)
    assert summary.language == "es" and summary.need == "Leak under the sink"
    assert summary.service_address == "Calle Luna 15"
