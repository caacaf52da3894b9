"""Missed calls, captured honestly (issue 9): a caller who hangs up before giving anything
usable is a missed call — a Cold record saying so with an open callback Task due today —
never a Warm Lead "(not given)"; repeated hang-ups from one number the same day merge into
one record; ``missed_call_text_back`` texts the caller ID once; a withheld number never
lands in a Phone field. Through the real webhooks and Media Stream, local CRM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crm.local import LocalCrm
from tests.conftest import BUSINESS_NUMBER, CALLER, StartApp
from tests.standins.plugin_openai import MakeRealtimeStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp, ListenUntilAgentDone, Pause
from tests.test_conversation_e2e import (
    PUBLIC_BASE_URL,
    SPEED,
    at,
    businesses_file,
    delivered,
    local_crm,
    openai_settings,
    place_call,
    salesforce_settings,
    twilio_settings,
)

TUESDAY_9PM = at("2025-03-05T05:00:00+00:00")  # Tue 21:00 in San Francisco
TUESDAY = "2025-03-04"


async def test_a_silent_hang_up_in_the_intake_is_a_cold_missed_call_with_a_callback_today(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """The caller hangs up at the first question: a Cold Lead whose Description says
    "Missed call", the call logged, an open callback Task due today; no Warm Lead."""
    app = await start_app(clock=TUESDAY_9PM, **twilio_settings(twilio_standin))
    result = await place_call(twilio_standin, app, CallerScript(speech=[]))
    assert result.ended_by == "caller"

    summary = await delivered(app, result.call_sid)
    assert summary.missed_call and summary.rating == "Cold"
    records = local_crm(app)
    (lead,) = records["Lead"]
    assert lead["Rating"] == "Cold"
    assert lead["Description"].startswith(f"[{TUESDAY}] Missed call from {CALLER}")
    assert lead["Phone"] == CALLER
    call_task, callback = sorted(records["Task"], key=lambda t: "CallObject" in t)[::-1]
    assert call_task["CallObject"] == result.call_sid
    assert call_task["Subject"].startswith("Missed call")
    assert callback["Status"] != "Completed" and callback["ActivityDate"] == TUESDAY
    assert twilio_standin.messages == []


async def test_a_silent_realtime_call_is_a_missed_call_too(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: MakeRealtimeStandin,
) -> None:
    """A 4-second Realtime call where the caller never spoke: a missed call, Cold."""
    ai = await make_realtime_standin(turns=[], extraction=None)
    app = await start_app(
        clock=TUESDAY_9PM, **twilio_settings(twilio_standin), **openai_settings(ai)
    )
    script = CallerScript(steps=[ListenUntilAgentDone(), Pause(ms=1500), HangUp()])
    result = await place_call(twilio_standin, app, script)

    summary = await delivered(app, result.call_sid)
    assert summary.missed_call and summary.urgency == 1
    (lead,) = local_crm(app)["Lead"]
    assert lead["Rating"] == "Cold" and "Missed call" in lead["Description"]


async def test_repeated_hang_ups_the_same_day_merge_into_one_record(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """Three hang-ups from one number on one evening: one Lead, one open callback Task,
    each call logged on it (nothing lost, nothing tripled)."""
    app = await start_app(clock=TUESDAY_9PM, **twilio_settings(twilio_standin))
    sids = []
    for _ in range(3):
        result = await place_call(twilio_standin, app, CallerScript(speech=[]))
        await delivered(app, result.call_sid)
        sids.append(result.call_sid)

    records = local_crm(app)
    (lead,) = records["Lead"]
    call_tasks = [t for t in records["Task"] if t.get("CallObject")]
    callbacks = [t for t in records["Task"] if not t.get("CallObject")]
    assert sorted(t["CallObject"] for t in call_tasks) == sorted(sids)
    assert all(t["WhoId"] == lead["Id"] for t in records["Task"])
    assert len(callbacks) == 1
    assert lead["Rating"] == "Cold"


async def test_missed_call_text_back_texts_the_caller_id_once(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """missed_call_text_back = true: one text, to the caller ID, from the business number."""
    app = await start_app(
        clock=TUESDAY_9PM,
        businesses_file=businesses_file(tmp_path, "missed_call_text_back = true\n"),
        **twilio_settings(twilio_standin),
    )
    result = await place_call(twilio_standin, app, CallerScript(speech=[]))
    await delivered(app, result.call_sid)

    (sms,) = twilio_standin.messages
    assert (sms["To"], sms["From"]) == (CALLER, BUSINESS_NUMBER)
    assert "missed your call" in str(sms["Body"])


async def test_a_withheld_number_never_lands_in_the_phone_field(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """Caller ID "anonymous": the missed call is recorded (Cold, says the number was
    withheld), with no Phone and no callback Task; the text-back is not attempted."""
    app = await start_app(
        clock=TUESDAY_9PM,
        businesses_file=businesses_file(tmp_path, "missed_call_text_back = true\n"),
        **twilio_settings(twilio_standin),
    )
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_="anonymous",
        to=BUSINESS_NUMBER,
        script=CallerScript(speech=[]),
        speed=SPEED,
    )
    summary = await delivered(app, result.call_sid)
    assert summary.missed_call and not summary.callback_requested
    records = local_crm(app)
    (lead,) = records["Lead"]
    assert not lead.get("Phone")
    assert "withheld" in lead["Description"]
    assert [t for t in records["Task"] if not t.get("CallObject")] == []
    assert twilio_standin.messages == []


async def test_a_call_known_only_from_its_status_callback_is_a_missed_call(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """Twilio's status callback for a call whose first webhook never reached the service,
    from a withheld number: recorded at once as a missed call (Cold, no junk in Phone, the
    duration Twilio reported), not a Warm Lead — and only once when Twilio sends it twice."""
    import httpx
    from twilio.request_validator import RequestValidator

    from tests.standins.twilio_rest import new_sid

    app = await start_app(clock=TUESDAY_9PM, **twilio_settings(twilio_standin))
    call_sid = new_sid("CA")
    params = {
        "CallSid": call_sid,
        "AccountSid": twilio_standin.account_sid,
        "From": "sip:anonymous@10.0.0.1;transp",
        "To": BUSINESS_NUMBER,
        "CallStatus": "completed",
        "CallDuration": "4",
    }
    signature = RequestValidator(twilio_standin.auth_token).compute_signature(
        PUBLIC_BASE_URL + "/twilio/status", params
    )
    async with httpx.AsyncClient(trust_env=False) as http:
        for _ in range(2):
            response = await http.post(
                f"{app.url}/twilio/status", data=params, headers={"X-Twilio-Signature": signature}
            )
            assert response.status_code == 204

    summary = await delivered(app, call_sid)
    assert summary.missed_call and summary.rating == "Cold" and summary.duration_seconds == 4
    (lead,) = local_crm(app)["Lead"]
    assert not lead.get("Phone") and lead["Rating"] == "Cold"


@pytest.mark.parametrize("crm", ["local", "salesforce"])
async def test_repeated_hang_ups_from_a_customer_merge_on_their_contact(
    crm: str,
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    request: pytest.FixtureRequest,
) -> None:
    """Two hang-ups from an existing customer's number: both calls logged on the Contact,
    one open callback Task (due today), no Lead — local CRM and Salesforce alike."""
    settings: dict[str, object] = dict(twilio_settings(twilio_standin))
    salesforce = None
    if crm == "salesforce":
        salesforce = request.getfixturevalue("salesforce_ca_env")
        settings |= salesforce_settings(salesforce)
        contact_id = salesforce.add_record(
            "Contact", {"FirstName": "Dana", "LastName": "Reyes", "Phone": CALLER}
        )
    app = await start_app(clock=TUESDAY_9PM, **settings)
    if salesforce is None:
        local = app.services.crm
        assert isinstance(local, LocalCrm)
        contact_id = local.add_contact(first_name="Dana", last_name="Reyes", phone=CALLER)
    sids = []
    for _ in range(2):
        result = await place_call(twilio_standin, app, CallerScript(speech=[]))
        await delivered(app, result.call_sid)
        sids.append(result.call_sid)

    if salesforce is None:
        records = local_crm(app)
    else:
        records = {name: salesforce.records(name) for name in ("Lead", "Task")}
    assert not records.get("Lead")
    tasks = records["Task"]
    assert sorted(t["CallObject"] for t in tasks if t.get("CallObject")) == sorted(sids)
    (callback,) = [t for t in tasks if str(t.get("Subject", "")).startswith("Call back")]
    assert callback["WhoId"] == contact_id
    assert str(callback["ActivityDate"]) == TUESDAY
