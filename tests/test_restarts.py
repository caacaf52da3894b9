"""Restarts never cut a live call (issue 9): a service restarting in the middle of a
scripted-intake call, or a second process starting while a Realtime call is live on the
first, loses no turn; only calls idle beyond ``RECOVERY_IDLE_SECONDS`` are recovered
(SQLite and PostgreSQL).

Through the real endpoints: the Twilio stand-in's caller reaches the restarted service
behind the same public URL (``between_webhooks``), as Twilio would after a deploy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from agent.business import load_businesses
from crm.store import CallRecord, Store
from telephony.app import recover_idle_calls
from telephony.finalize import CallFinalizer
from tests.conftest import BUSINESS_NUMBER, CALLER, RunningApp, StartApp, wait_for
from tests.conversation_scripts import INTAKE_SPEECH
from tests.standins.openai_realtime import ScriptedTurn, ToolCall
from tests.standins.plugin_openai import MakeRealtimeStandin
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_rest import new_sid
from tests.standins.twilio_script import (
    CallerScript,
    HangUp,
    Hold,
    ListenUntilAgentDone,
    Say,
    Step,
)
from tests.test_conversation_e2e import (
    PUBLIC_BASE_URL,
    SPEED,
    at,
    delivered,
    local_crm,
    openai_settings,
    salesforce_settings,
    twilio_settings,
)
from tests.test_postgres import fresh_database


def place_in_background(
    twilio: TwilioStandin, app: RunningApp, steps: list[Step]
) -> tuple[str, asyncio.Task[Any]]:
    """A Realtime call with these steps then a hang-up, placed as a task: (CallSid, task)."""
    call_sid = new_sid("CA")
    call = asyncio.create_task(
        twilio.place_call(
            app_url=app.url,
            public_base_url=PUBLIC_BASE_URL,
            from_=CALLER,
            to=BUSINESS_NUMBER,
            script=CallerScript(steps=[*steps, HangUp()]),
            call_sid=call_sid,
            speed=SPEED,
        )
    )
    return call_sid, call


async def test_an_intake_call_continues_across_a_restart(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """The service is stopped and started again (new process, same database) between the
    caller's second and third answers: the call goes on where it was — every question
    asked once, every answer in the summary — instead of the restart finalizing it and
    hanging up on the caller's next answer."""
    clock = at("2025-03-04T18:00:00+00:00")
    apps: list[RunningApp] = [await start_app(clock=clock, **twilio_settings(twilio_standin))]

    async def restart_before_third_answer(n: int) -> str | None:
        if n != 3:  # 0: incoming call, 1: name, 2: need, 3: urgency …
            return None
        await apps[0].stop()
        apps.append(await start_app(clock=clock, **twilio_settings(twilio_standin)))
        return apps[1].url

    result = await twilio_standin.place_call(
        app_url=apps[0].url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=CallerScript(speech=list(INTAKE_SPEECH)),
        speed=SPEED,
        between_webhooks=restart_before_third_answer,
    )

    assert len(apps) == 2, "the service was restarted mid-call"
    assert result.errors == [] and result.ended_by == "app_hangup"
    assert "goodbye" in result.said[-1].lower()
    said = " ".join(result.said).lower()
    questions = ("your name", "help you with", "how urgent", "calling from", "good time")
    for question in questions:
        assert said.count(question) == 1, question
    summary = await delivered(apps[1], result.call_sid)
    assert (summary.first_name, summary.last_name) == ("Dana", "Reyes")
    assert summary.urgency == 2 and summary.callback_window == "tomorrow morning"
    caller_turns = [t.text for t in summary.transcript if t.speaker == "caller"]
    assert caller_turns == INTAKE_SPEECH


THREE_TURNS = [
    ScriptedTurn(
        "Hi, this is Lee Chen.",
        reply="Hi Lee, what can we help with?",
        reply_ms=800,
        tool_calls=[ToolCall("record_caller_details", {"first_name": "Lee", "last_name": "Chen"})],
    ),
    ScriptedTurn(
        "My air conditioner stopped cooling.",
        reply="Sorry to hear that. When should the team call you back?",
        reply_ms=800,
        tool_calls=[ToolCall("record_caller_details", {"need": "AC not cooling"})],
    ),
    ScriptedTurn(
        "Tomorrow afternoon is fine.",
        reply="Got it, tomorrow afternoon. Goodbye!",
        reply_ms=800,
        tool_calls=[ToolCall("request_callback", {"callback_window": "tomorrow afternoon"})],
    ),
]


async def test_a_second_process_starting_does_not_cut_a_live_realtime_call(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    """A second service process starts on the same database while a Realtime call is live
    on the first (a deploy, a scale-out): its start-up recovery leaves the call alone, the
    later turns are saved, and the call is finalized once, by the process serving it."""
    ai = await make_realtime_standin(turns=THREE_TURNS, extraction=None)
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    first = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    second_started: list[bool] = []
    # After its first turn the caller holds on until the second process is up, so the call
    # is certainly live while it starts and the later turns certainly come after.
    steps: list[Step] = [ListenUntilAgentDone(), Say(ms=1200), ListenUntilAgentDone()]
    steps.append(Hold(until=lambda: second_started))
    for _ in THREE_TURNS[1:]:
        steps += [Say(ms=1200), ListenUntilAgentDone()]
    call_sid, call = place_in_background(twilio_standin, first, steps)
    store = first.services.store
    await wait_for(lambda: (c := store.get_call(call_sid)) is not None and bool(c.transcript))
    second = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    live = store.get_call(call_sid)
    assert live is not None and live.state == "active", "the second process cut the live call"
    second_started.append(True)

    result = await call
    assert result.script_timeouts == []
    assert result.stream_closed_by == "caller"
    summary = await delivered(first, call_sid)
    caller_turns = [t.text for t in summary.transcript if t.speaker == "caller"]
    assert caller_turns == [turn.caller_says for turn in THREE_TURNS]
    assert summary.callback_window == "tomorrow afternoon"
    assert second.services.store.get_summary(call_sid) == summary


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'recovery.db'}"
        store = Store.from_url(url)
        store.create_schema()
        yield store
        store.engine.dispose()
    else:
        with fresh_database() as url:
            store = Store.from_url(url)
            store.create_schema()
            yield store
            store.engine.dispose()


async def test_recovery_finalizes_only_calls_idle_beyond_the_bound(
    store: Store, businesses_file: Path
) -> None:
    """Start-up (and periodic) recovery finalizes a call nobody has touched for longer
    than the bound, and leaves a call with a recent heartbeat alone — on both databases."""
    stale, live = new_sid("CA"), new_sid("CA")
    for sid in (stale, live):
        store.begin_call(
            sid,
            business="Bay Plumbing & Air",
            business_number=BUSINESS_NUMBER,
            caller_phone=CALLER,
            mode="intake",
        )
    with store.sessions.begin() as session:
        session.execute(
            update(CallRecord)
            .where(CallRecord.call_sid == stale)
            .values(updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
        )
    store.touch(live)
    finalizer = CallFinalizer(
        store=store,
        businesses=load_businesses(businesses_file),
        crm_name="local",
        openai_client=None,
        summary_model="unused",
    )

    assert await finalizer.recover(idle_for=dt.timedelta(minutes=5)) == 1
    stale_call, live_call = store.get_call(stale), store.get_call(live)
    assert stale_call is not None and stale_call.state == "finalized"
    assert live_call is not None and live_call.state == "active"


async def test_a_process_never_recovers_a_call_it_is_serving(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    """However late a live call's heartbeat (a loaded machine can delay it past the idle
    bound), the process serving the call does not take it for a dead process's call; a
    stale call nobody serves is recovered by the same sweep."""
    ai = await make_realtime_standin(turns=[], extraction=None)
    twilio_standin.agent_busy = ai.responding
    app = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    store = app.services.store
    swept: list[tuple[int, str]] = []
    live, call = place_in_background(twilio_standin, app, [Hold(until=lambda: swept)])
    stale = new_sid("CA")
    await wait_for(lambda: live in app.services.live_calls)
    store.begin_call(
        stale,
        business="Bay Plumbing & Air",
        business_number=BUSINESS_NUMBER,
        caller_phone="+14155550177",
        mode="intake",
    )
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with store.sessions.begin() as session:
        session.execute(
            update(CallRecord)
            .where(CallRecord.call_sid.in_([live, stale]))
            .values(updated_at=long_ago)
        )
    recovered = await recover_idle_calls(app.services)
    live_call = store.get_call(live)
    assert live_call is not None
    swept.append((recovered, live_call.state))
    result = await call

    assert swept == [(1, "active")]
    stale_call = store.get_call(stale)
    assert stale_call is not None and stale_call.state == "finalized"
    assert result.script_timeouts == [] and result.stream_closed_by == "caller"
    await wait_for(lambda: store.get_summary(live) is not None)  # ended by the caller


async def test_a_bridge_crash_finalizes_the_call_instead_of_stranding_it(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected exception inside the bridge (forced here in the progress saver): what
    was said is saved, the call is finalized and delivered at once (not left active for a
    status callback or a restart to find), and the caller hears an apology, not silence."""
    from telephony import bridge

    async def broken(self: bridge.CallBridge) -> None:
        await asyncio.sleep(0.3)
        raise ValueError("a bug in the bridge")

    monkeypatch.setattr(bridge.CallBridge, "_save_progress_periodically", broken)
    ai = await make_realtime_standin(turns=THREE_TURNS, extraction=None)
    app = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        # The caller stays on the line until the app ends the call (the crash is timed
        # by the wall clock; the caller's script is not).
        script=CallerScript(steps=[ListenUntilAgentDone(), Say(ms=3000), Hold(), HangUp()]),
        speed=SPEED,
        status_callback=False,  # nothing else would find the call
    )

    assert result.script_timeouts == []
    assert result.stream_closed_by == "app"
    assert "technical problem" in result.said[-1]
    summary = await delivered(app, result.call_sid)
    call = app.services.store.get_call(result.call_sid)
    assert call is not None and call.state == "finalized"
    assert summary.caller_phone == CALLER


@pytest.mark.parametrize("crm", ["local", "salesforce"])
async def test_turns_after_the_call_was_finalized_amend_the_same_records(
    crm: str,
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    request: pytest.FixtureRequest,
) -> None:
    """The amendment rule. The call is finalized and delivered under a live caller (as a
    process that thought it idle would) after their second answer; the caller goes on. The
    later answers are not dropped: when the call ends the summary is rebuilt from the whole
    call and delivered as an update of the *same* records — the call Task's summary, the
    whole transcript attached again, the callback Task the later answers asked for — with
    no second Lead and no second call Task (local CRM and Salesforce)."""
    settings: dict[str, object] = dict(twilio_settings(twilio_standin))
    salesforce: SalesforceStandin | None = None
    if crm == "salesforce":
        salesforce = request.getfixturevalue("salesforce_ca_env")
        settings |= salesforce_settings(salesforce)
    app = await start_app(clock=at("2025-03-04T18:00:00+00:00"), **settings)
    store = app.services.store
    call_sid = new_sid("CA")

    async def finalize_under_the_caller(n: int) -> str | None:
        if n == 3:
            await app.services.finalize(call_sid, "looked idle to another process")
            await delivered(app, call_sid)
        return None

    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=CallerScript(speech=list(INTAKE_SPEECH)),
        call_sid=call_sid,
        speed=SPEED,
        between_webhooks=finalize_under_the_caller,
    )
    assert result.errors == [] and "goodbye" in result.said[-1].lower()
    await wait_for(lambda: (s := store.get_summary(call_sid)) is not None and s.amendment == 1)
    summary = await delivered(app, call_sid)

    assert [t.text for t in summary.transcript if t.speaker == "caller"] == INTAKE_SPEECH
    assert summary.callback_window == "tomorrow morning"
    if salesforce is None:
        records = local_crm(app)
    else:
        records = {name: salesforce.records(name) for name in ("Lead", "Task", "ContentVersion")}
        for version in records["ContentVersion"]:
            version["VersionData"] = version["_version_data"].decode()
    (lead,) = records["Lead"]
    (call_task,) = [t for t in records["Task"] if t.get("CallObject") == call_sid]
    assert call_task["WhoId"] == lead["Id"]
    assert "Amended" in call_task["Description"]
    assert "tomorrow morning" in call_task["Description"]
    callbacks = [t for t in records["Task"] if str(t.get("Subject", "")).startswith("Call back")]
    assert len(callbacks) == 1 and callbacks[0]["WhoId"] == lead["Id"]
    titles = sorted(v["Title"] for v in records["ContentVersion"])
    assert titles == [f"Call transcript {call_sid}", f"Call transcript {call_sid} (amended 1)"]
    amended = next(v for v in records["ContentVersion"] if "amended" in v["Title"])
    assert "tomorrow morning" in amended["VersionData"]


async def test_a_realtime_call_finalized_under_a_live_caller_is_amended(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    """Realtime: the call is finalized (and delivered) by someone else after the first
    turn while the bridge is still serving it; the bridge's later progress is kept and,
    when the caller hangs up, delivered as an amendment of the same Lead."""
    ai = await make_realtime_standin(turns=THREE_TURNS, extraction=None)
    app = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    steps: list[Step] = [ListenUntilAgentDone()]
    for _ in THREE_TURNS:
        steps += [Say(ms=1200), ListenUntilAgentDone()]
    call_sid, call = place_in_background(twilio_standin, app, steps)
    store = app.services.store
    await wait_for(
        lambda: ((c := store.get_call(call_sid)) is not None and bool(c.transcript)) or call.done()
    )
    await app.services.finalize(call_sid, "looked idle to another process")
    first = await delivered(app, call_sid)
    assert first.amendment == 0 and len(first.transcript) < 6

    await call
    await wait_for(lambda: (s := store.get_summary(call_sid)) is not None and s.amendment == 1)
    summary = await delivered(app, call_sid)
    caller_turns = [t.text for t in summary.transcript if t.speaker == "caller"]
    assert caller_turns == [turn.caller_says for turn in THREE_TURNS]
    assert summary.callback_window == "tomorrow afternoon"
    records = local_crm(app)
    assert len(records["Lead"]) == 1
    assert len([t for t in records["Task"] if t.get("CallObject") == call_sid]) == 1


@pytest.mark.parametrize(("idle", "warned"), [(20.0, True), (60.0, False), (300.0, False)])
async def test_a_recovery_bound_shorter_than_the_heartbeat_is_warned_about_at_start(
    start_app: StartApp, caplog: pytest.LogCaptureFixture, idle: float, warned: bool
) -> None:
    """A quiet live call marks itself live every 30 s: a ``RECOVERY_IDLE_SECONDS`` below
    twice that could recover it mid-call, so the service says so (and how to fix it)."""
    caplog.set_level(logging.WARNING, logger="telephony")
    await start_app(recovery_idle_seconds=idle)
    lines = [r.getMessage() for r in caplog.records if "heartbeat of a live call" in r.getMessage()]
    if warned:
        assert lines == [
            f"RECOVERY_IDLE_SECONDS={idle:g} is shorter than twice the heartbeat of a live call"
            " (30 s): a call in which nobody speaks for a while could be recovered while it"
            " goes on; set it to 60 or more"
        ]
    else:
        assert lines == []
