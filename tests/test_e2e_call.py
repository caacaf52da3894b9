"""One phone call the whole way, through the real endpoints and the three stand-ins:
Twilio caller → /twilio/voice → Media Stream ⇄ bridge ⇄ OpenAI Realtime → summary in the
database → CRM. Audio is paced in real time here (speed=1)."""

from __future__ import annotations

from tests.conftest import BUSINESS_NUMBER, CALLER, RunningApp, StartApp, wait_for
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import (
    CallerScript,
    HangUp,
    InterruptAgent,
    ListenUntilAgentDone,
    Say,
)

JOHN_DETAILS = {
    "first_name": "John",
    "last_name": "Smith",
    "need": "Water heater replacement quote",
    "details": "Old tank water heater; wants a quote to replace it.",
    "urgency": 2,
}

JOHN_TURNS = [
    ScriptedTurn(
        "Hi, this is John Smith. I would like a quote to replace my old water heater.",
        reply="Thanks John, I have noted that you would like a water heater replacement quote. "
        "Can I get the best number and time to call you back tomorrow?",
        reply_ms=6000,
        tool_calls=[ToolCall("record_caller_details", JOHN_DETAILS)],
    ),
    ScriptedTurn(
        "Sorry, just call me back on this number tomorrow morning.",
        reply="Of course. Someone will call you back tomorrow morning. Goodbye!",
        reply_ms=1500,
        tool_calls=[ToolCall("request_callback", {"callback_window": "tomorrow morning"})],
    ),
]

JOHN_EXTRACTION = {
    "first_name": "John",
    "last_name": "Smith",
    "company": None,
    "email": None,
    "service_address": None,
    "callback_phone": None,
    "need": "Water heater replacement quote",
    "details": "Wants a quote to replace an old water heater; callback tomorrow morning.",
    "urgency": 2,
    "is_emergency": False,
    "callback_requested": True,
    "callback_window": "tomorrow morning",
    "existing_customer": None,
    "new_project": False,
    "language": "en",
}


async def run_john_call(app: RunningApp, twilio: TwilioStandin, speed: float = 1.0):  # type: ignore[no-untyped-def]
    script = CallerScript(
        steps=[
            ListenUntilAgentDone(),
            Say(ms=1200),
            InterruptAgent(after_ms=600, say_ms=1200),
            ListenUntilAgentDone(),
            HangUp(),
        ]
    )
    return await twilio.place_call(
        app_url=app.url,
        public_base_url=app.settings.public_base_url,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
        speed=speed,
    )


async def test_call_end_to_end_to_local_crm(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    ai: RealtimeStandin = await make_realtime_standin(turns=JOHN_TURNS, extraction=JOHN_EXTRACTION)
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
    )
    result = await run_john_call(app, twilio_standin)

    assert result.script_timeouts == []
    assert result.webhook_statuses[0] == 200
    assert result.played_audio_ms > 1000  # the caller heard the greeting and replies
    assert result.cleared_audio_ms > 0  # the interruption cleared queued audio
    assert result.played_after_clear == []

    session = ai.sessions[0]
    assert session.violations == []
    assert session.session_config["audio"]["input"]["format"]["type"] == "audio/pcmu"
    assert len(session.truncates) == 1

    store = app.services.store
    await wait_for(
        lambda: (job := store.outbox_job(result.call_sid)) is not None and job.state == "delivered"
    )
    summary = store.get_summary(result.call_sid)
    assert summary is not None
    assert (summary.first_name, summary.last_name) == ("John", "Smith")
    assert summary.caller_phone == CALLER
    assert summary.rating == "Warm"
    assert summary.callback_requested
    speakers = [t.speaker for t in summary.transcript]
    assert "caller" in speakers and "agent" in speakers
    assert any(t.interrupted for t in summary.transcript if t.speaker == "agent")


async def test_call_end_to_end_to_salesforce(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin,
    salesforce_standin,
    salesforce_ca_env,
) -> None:  # type: ignore[no-untyped-def]
    """The issue's must-show: one signed call with a barge-in → exactly one Lead in
    Salesforce with name, E.164 phone, need, Rating and LeadSource, the transcript attached,
    and the call and its summary in the database."""
    ai: RealtimeStandin = await make_realtime_standin(turns=JOHN_TURNS, extraction=JOHN_EXTRACTION)
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
        salesforce_login_url=salesforce_standin.login_url,
        salesforce_client_id=salesforce_standin.client_id,
        salesforce_client_secret=salesforce_standin.client_secret,
    )
    result = await run_john_call(app, twilio_standin)

    assert result.script_timeouts == []
    # Barge-in: nothing queued before the clear reached the caller, and the truncate's
    # audio_end_ms is exactly a mark the caller echoed for that item, never past the audio sent.
    assert result.cleared_audio_ms > 0
    assert result.played_after_clear == []
    session = ai.sessions[0]
    assert session.violations == []
    (truncate,) = session.truncates
    echoed = {
        int(name.rpartition(":")[2])
        for name in result.marks_echoed
        if name.startswith(truncate["item_id"] + ":")
    }
    assert truncate["audio_end_ms"] in echoed | {0}
    assert truncate["audio_end_ms"] < max(echoed)

    store = app.services.store
    await wait_for(
        lambda: (job := store.outbox_job(result.call_sid)) is not None and job.state == "delivered"
    )
    (lead,) = salesforce_standin.records("Lead")
    assert (lead["FirstName"], lead["LastName"]) == ("John", "Smith")
    assert lead["Phone"] == CALLER
    assert lead["Rating"] == "Warm"
    assert lead["LeadSource"] == "Phone Call - AI Receptionist"
    assert "Water heater replacement quote" in lead["Description"]
    tasks = salesforce_standin.records("Task")
    assert any(
        t.get("CallObject") == result.call_sid and t.get("WhoId") == lead["Id"] for t in tasks
    )
    versions = salesforce_standin.records("ContentVersion")
    assert any(v.get("FirstPublishLocationId") == lead["Id"] for v in versions)
    summary = store.get_summary(result.call_sid)
    call = store.get_call(result.call_sid)
    assert summary is not None and call is not None and call.state == "finalized"
