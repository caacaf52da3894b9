"""Emergencies on every path (issue 9): the scripted intake, a Realtime connection that
drops right after ``flag_emergency``, a process that crashed before sending, two processes
racing — each time exactly one text reaches the on-call phone, and a caller is never told
the on-call team was alerted when it was not.

Every test goes through the real entry points (Twilio webhooks, the Media Stream) against
the Twilio and OpenAI stand-ins, or drives the escalation service on a real database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from crm.store import Store
from telephony.escalation import Escalation
from telephony.twilio_rest import TwilioActions
from tests.conftest import BUSINESS_NUMBER, CALLER, ON_CALL_PHONE, StartApp, wait_for
from tests.conversation_scripts import EMERGENCY_ADDRESS, EMERGENCY_TURNS
from tests.standins.plugin_openai import MakeRealtimeStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_rest import new_sid
from tests.standins.twilio_script import CallerScript, HangUp, Hold, ListenUntilAgentDone, Say
from tests.test_conversation_e2e import (
    businesses_file,
    delivered,
    openai_settings,
    place_call,
    twilio_settings,
)
from tests.test_postgres import fresh_database

BURST_PIPE_SPEECH = [
    "This is Maria Lopez",
    "A pipe just burst and my basement is flooding right now",
    "12 Oak Street",
    "yes",
]


def alerts_sent() -> float:
    return REGISTRY.get_sample_value("receptionist_emergency_alerts_total") or 0.0


def on_call_texts(twilio: TwilioStandin) -> list[dict[str, object]]:
    return [m for m in twilio.messages if m["To"] == ON_CALL_PHONE]


async def test_an_emergency_in_the_scripted_intake_texts_the_on_call_phone_once_at_once(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """No OpenAI: "a pipe burst, the basement is flooding" → the on-call phone is texted
    before the intake asks its next question (the caller hears that it was), exactly once
    although two more answers follow; the summary is urgency 5, Hot."""
    before = alerts_sent()
    app = await start_app(**twilio_settings(twilio_standin))
    result = await place_call(twilio_standin, app, CallerScript(speech=list(BURST_PIPE_SPEECH)))

    assert result.errors == []
    (sms,) = twilio_standin.messages
    assert (sms["To"], sms["From"]) == (ON_CALL_PHONE, BUSINESS_NUMBER)
    assert "EMERGENCY" in str(sms["Body"]) and "Maria Lopez" in str(sms["Body"])
    # The text had gone out when the next question was asked, and the caller was told so.
    assert any("sent your details to our on-call technician" in s for s in result.said)
    assert "on-call team will call you back" in result.said[-1]
    assert alerts_sent() == before + 1

    summary = await delivered(app, result.call_sid)
    assert (summary.urgency, summary.is_emergency, summary.rating) == (5, True, "Hot")
    call = app.services.store.get_call(result.call_sid)
    assert call is not None and call.alert_sent_at is not None


async def test_without_an_on_call_phone_the_intake_never_claims_an_alert(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """A business with no on-call phone: nothing is texted, and the caller is not told
    the on-call team was alerted; the emergency is still recorded (Hot Lead)."""
    path = tmp_path / "no-on-call.toml"
    path.write_text(
        f'[[business]]\nnumber = "{BUSINESS_NUMBER}"\nname = "Bay Plumbing & Air"\n'
        'timezone = "America/Los_Angeles"\n'
    )
    app = await start_app(businesses_file=path, **twilio_settings(twilio_standin))
    result = await place_call(twilio_standin, app, CallerScript(speech=list(BURST_PIPE_SPEECH)))

    assert twilio_standin.messages == []
    said = " ".join(result.said).lower()
    assert "on-call" not in said
    assert "911" in result.said[-1]
    summary = await delivered(app, result.call_sid)
    assert summary.rating == "Hot"
    agent_said = " ".join(t.text for t in summary.transcript if t.speaker == "agent")
    assert "on-call" not in agent_said.lower(), "the transcript is what the caller heard"


async def test_warm_transfer_from_the_intake_connects_the_caller_after_the_text(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """warm_transfer = true, no OpenAI: the emergency answer is followed by the on-call
    text and then a <Dial> to the on-call phone (once), not more questions."""
    app = await start_app(
        businesses_file=businesses_file(tmp_path, "warm_transfer = true\n"),
        **twilio_settings(twilio_standin),
    )
    result = await place_call(twilio_standin, app, CallerScript(speech=list(BURST_PIPE_SPEECH)))

    assert [m["To"] for m in twilio_standin.messages] == [ON_CALL_PHONE]
    assert result.dialed == [ON_CALL_PHONE]
    await delivered(app, result.call_sid)


async def test_warm_transfers_use_the_emergency_budget_not_the_callers_limits(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """warm_transfer = true, caller-facing texts limited to 1 an hour, the emergency budget
    at 2: the first two emergency calls are texted and transferred (the callers' limit
    does not apply to the business's own on-call phone); past the budget the third is
    neither — its alert held (owed), no transfer — and the intake goes on with its
    questions, never saying the on-call team was alerted."""
    from sqlalchemy import text

    app = await start_app(
        businesses_file=businesses_file(tmp_path, "warm_transfer = true\n"),
        outbound_sms_per_number_per_hour=1,
        outbound_sms_per_business_per_hour=1,
        emergency_alerts_per_business_per_hour=2,
        **twilio_settings(twilio_standin),
    )
    results = [
        await place_call(twilio_standin, app, CallerScript(speech=list(BURST_PIPE_SPEECH)))
        for _ in range(3)
    ]

    assert [r.dialed for r in results] == [[ON_CALL_PHONE], [ON_CALL_PHONE], []]
    assert [m["To"] for m in twilio_standin.messages] == [ON_CALL_PHONE, ON_CALL_PHONE]
    held = results[2]
    assert not any("on-call technician" in s for s in held.said)
    assert len(held.said) > len(results[0].said), "the intake went on instead of transferring"
    call = app.services.store.get_call(held.call_sid)
    assert call is not None and call.transferred_at is None and call.alert_sent_at is None
    assert "emergency alert budget" in call.alert_error
    with app.services.store.engine.connect() as connection:
        kinds = connection.execute(
            text("SELECT kind, COUNT(*) FROM outbound_sends GROUP BY kind ORDER BY kind")
        ).all()
    assert [tuple(k) for k in kinds] == [("alert", 2), ("transfer", 2)]


async def test_a_realtime_drop_right_after_flag_emergency_still_texts_once(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    """The model flags the emergency and its connection drops at that very moment: the
    alert, recorded before anything else, is sent by the service (not the call's cancelled
    tasks); the intake that takes over does not send it again — exactly one text."""
    ai = await make_realtime_standin(turns=EMERGENCY_TURNS, extraction=None)
    ai.drop_after_turns = 1
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    script = CallerScript(
        # After speaking, the caller holds on until the app hands the call over.
        steps=[ListenUntilAgentDone(), Say(ms=1200), Hold(), HangUp()],
        speech=["yes", "as soon as possible"],
    )
    result = await place_call(twilio_standin, app, script)

    assert result.script_timeouts == []
    assert result.said, "the scripted intake took over the live call"
    await wait_for(lambda: on_call_texts(twilio_standin))
    summary = await delivered(app, result.call_sid)
    (sms,) = twilio_standin.messages
    assert sms["To"] == ON_CALL_PHONE
    assert EMERGENCY_ADDRESS.lower() in str(sms["Body"]).lower()
    assert (summary.urgency, summary.rating) == (5, "Hot")
    assert ai.sessions[0].dropped, "the Realtime connection really dropped"


def owe_an_alert(store: Store, call_sid: str) -> None:
    """What a process leaves behind when it dies right after recording the emergency."""
    store.begin_call(
        call_sid,
        business="Bay Plumbing & Air",
        business_number=BUSINESS_NUMBER,
        caller_phone=CALLER,
        mode="realtime",
    )
    assert store.record_emergency(call_sid, "gas smell in the kitchen")
    assert not store.record_emergency(call_sid, "again")  # recorded once


async def test_an_alert_a_crashed_process_never_sent_goes_out_when_a_process_starts(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """Recorded, then the process died before the text: the next process to start sends
    it (once); a second process on the same database does not send it again."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'receptionist.db'}")
    store.create_schema()
    call_sid = new_sid("CA")
    owe_an_alert(store, call_sid)

    first = await start_app(**twilio_settings(twilio_standin))
    await wait_for(lambda: on_call_texts(twilio_standin))
    await start_app(**twilio_settings(twilio_standin))
    await first.services.escalation.send_owed()

    (sms,) = twilio_standin.messages
    assert sms["To"] == ON_CALL_PHONE and "gas smell" in str(sms["Body"])
    call = store.get_call(call_sid)
    assert call is not None and call.alert_sent_at is not None
    store.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
    else:
        with fresh_database() as url:
            yield url


async def test_two_processes_racing_for_one_alert_send_it_once(
    twilio_standin: TwilioStandin, database_url: str, businesses_file: Path
) -> None:
    """Two escalation services (two processes) on one database, both woken for the same
    owed alert at the same moment: the claim lets exactly one of them text (SQLite and
    PostgreSQL)."""
    from agent.business import load_businesses

    url = database_url
    stores = [Store.from_url(url), Store.from_url(url)]
    stores[0].create_schema()
    call_sid = new_sid("CA")
    owe_an_alert(stores[0], call_sid)
    services = [
        Escalation(
            store=store,
            businesses=load_businesses(businesses_file),
            twilio=TwilioActions(
                account_sid=twilio_standin.account_sid,
                auth_token=twilio_standin.auth_token,
                api_base_url=twilio_standin.api_base_url,
            ),
        )
        for store in stores
    ]
    results = await asyncio.gather(*(s.send(call_sid) for s in services for _ in range(3)))

    assert any(results)
    assert len(twilio_standin.messages) == 1
    for store in stores:
        store.engine.dispose()


async def test_an_alert_twilio_refuses_is_retried_until_it_goes_out(
    twilio_standin: TwilioStandin, tmp_path: Path, businesses_file: Path
) -> None:
    """Twilio answers the on-call SMS with a 500: the alert stays owed (the error kept on
    the call), and the next sweep sends it — once."""
    import datetime as dt

    from agent.business import load_businesses

    store = Store.from_url(f"sqlite:///{tmp_path / 'retry.db'}")
    store.create_schema()
    call_sid = new_sid("CA")
    owe_an_alert(store, call_sid)
    escalation = Escalation(
        store=store,
        businesses=load_businesses(businesses_file),
        twilio=TwilioActions(
            account_sid=twilio_standin.account_sid,
            auth_token=twilio_standin.auth_token,
            api_base_url=twilio_standin.api_base_url,
        ),
        retry_after=dt.timedelta(0),
    )
    twilio_standin.fail_next_messages(1)

    assert not await escalation.send(call_sid)
    call = store.get_call(call_sid)
    assert call is not None and call.alert_sent_at is None and "500" in call.alert_error
    assert twilio_standin.messages == []

    assert await escalation.send_owed() == 1
    assert await escalation.send_owed() == 0
    assert [m["To"] for m in twilio_standin.messages] == [ON_CALL_PHONE]
    store.engine.dispose()


async def test_an_emergency_found_only_when_a_dead_process_s_call_is_recovered_is_alerted(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """A process died mid-call after the caller said "I smell gas", before anything was
    flagged: the process that recovers the idle call finds urgency 5 in what was stored and
    texts the on-call phone (once) — recovery escalates like every other path."""
    import datetime as dt

    from sqlalchemy import update

    from agent.summary import TranscriptTurn
    from crm.store import CallRecord

    store = Store.from_url(f"sqlite:///{tmp_path / 'receptionist.db'}")
    store.create_schema()
    call_sid = new_sid("CA")
    store.begin_call(
        call_sid,
        business="Bay Plumbing & Air",
        business_number=BUSINESS_NUMBER,
        caller_phone=CALLER,
        mode="realtime",
    )
    said = "This is Ann Lee, I smell gas in the kitchen right now"
    store.save_progress(call_sid, [TranscriptTurn(speaker="caller", text=said, start=1.0)], {})
    with store.sessions.begin() as session:
        session.execute(
            update(CallRecord)
            .where(CallRecord.call_sid == call_sid)
            .values(updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        )

    app = await start_app(**twilio_settings(twilio_standin))
    summary = await delivered(app, call_sid)
    await wait_for(lambda: on_call_texts(twilio_standin))

    assert summary.is_emergency
    (sms,) = twilio_standin.messages
    assert sms["To"] == ON_CALL_PHONE and CALLER in str(sms["Body"])
    store.engine.dispose()
