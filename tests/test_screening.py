"""Spam screening: the pure classification, and end to end through the webhooks — a
blocklisted number refused at the door, a robocall and a silent unverified call kept for
staff but not sent to the CRM, and a business that wants even those in its CRM."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agent.screening import Screening, screen_finished, screen_inbound
from telephony.staff_auth import hash_password
from tests.conftest import CALLER, ON_CALL_PHONE, StartApp, wait_for
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_conversation_e2e import (
    businesses_file,
    delivered,
    local_crm,
    place_call,
    twilio_settings,
)

ROBOCALL = "This is a recorded message about your vehicle's extended warranty. Press one now."


def test_blocklist_and_stir_shaken_at_the_door() -> None:
    blocked = screen_inbound(
        caller="+1 (415) 555-0100", stir_verstat=None, blocklist=["+14155550100"]
    )
    assert blocked.is_spam and blocked.reasons == ("blocklisted number",)
    failed = screen_inbound(caller=CALLER, stir_verstat="TN-Validation-Failed", blocklist=[])
    assert failed.verdict == "suspect"
    passed = screen_inbound(caller=CALLER, stir_verstat="TN-Validation-Passed-A", blocklist=[])
    assert passed.verdict == "clean" and passed.stir_verstat == "TN-Validation-Passed-A"
    assert Screening.from_json(failed.to_json()) == failed
    assert Screening.from_json("garbage") == Screening()


@pytest.mark.parametrize(
    ("inbound", "texts", "agent_turns", "seconds", "verdict"),
    [
        pytest.param(Screening(), [ROBOCALL], 2, 20, "spam", id="robocall"),
        pytest.param(
            Screening(), ["Oprima el uno para hablar con un agente"], 2, 20, "spam", id="es-robo"
        ),
        pytest.param(Screening(), [], 3, 20, "spam", id="silent-through-questions"),
        pytest.param(Screening(), [], 1, 40, "spam", id="silent-stream"),
        pytest.param(Screening("suspect"), [], 1, 4, "spam", id="unverified-and-silent"),
        pytest.param(Screening(), [], 1, 3, "suspect", id="instant-hang-up"),
        pytest.param(Screening(), [], 1, 10, "clean", id="hung-up-during-greeting"),
        pytest.param(
            Screening(),
            ["My warranty on the water heater expired, can you fix it?"],
            4,
            60,
            "clean",
            id="warranty-customer",
        ),
        pytest.param(
            Screening("suspect"), ["my basement is flooding"], 4, 60, "suspect", id="real-caller"
        ),
    ],
)
def test_what_happened_on_the_line(
    inbound: Screening, texts: list[str], agent_turns: int, seconds: int, verdict: str
) -> None:
    result = screen_finished(
        inbound, caller_texts=texts, agent_turns=agent_turns, duration_seconds=seconds
    )
    assert result.verdict == verdict, result.reasons


BLOCKED = f'blocklist = ["{CALLER}"]\n'


async def test_a_blocklisted_number_is_refused_and_recorded(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    app = await start_app(
        businesses_file=businesses_file(tmp_path, BLOCKED), **twilio_settings(twilio_standin)
    )
    result = await place_call(twilio_standin, app, CallerScript(speech=["hello"]))
    assert result.ended_by == "app_hangup" and result.said == []
    assert "<Reject" in result.twiml[0]
    call = app.services.store.get_call(result.call_sid)
    assert call is not None and call.state == "screened"
    assert call.details["_screening"]["verdict"] == "spam"
    assert app.services.store.outbox_job(result.call_sid) is None
    assert local_crm(app) == {}


async def test_a_robocall_is_kept_for_staff_but_not_sent_to_the_crm(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """An "emergency notice" robocall: no on-call alert, no CRM record; the staff pages
    show it as screened spam, with the reason."""
    app = await start_app(
        staff_password_hash=hash_password("pw", iterations=2_000),
        **twilio_settings(twilio_standin),
    )
    robo = f"This is an emergency notice. {ROBOCALL}"
    result = await place_call(twilio_standin, app, CallerScript(speech=[robo, robo]))
    store = app.services.store
    await wait_for(lambda: (c := store.get_call(result.call_sid)) and c.state != "active")
    call = store.get_call(result.call_sid)
    assert call is not None and call.state == "screened"
    assert call.details["_screening"]["reasons"] == ["machine-like speech"]
    assert store.get_summary(result.call_sid) is not None  # kept for the staff pages
    assert store.outbox_job(result.call_sid) is None
    assert local_crm(app) == {}
    assert [m for m in twilio_standin.messages if m["To"] == ON_CALL_PHONE] == []
    async with httpx.AsyncClient(base_url=app.url, auth=("staff", "pw")) as client:
        listing = await client.get("/calls")
        page = await client.get(f"/calls/{result.call_sid}")
    assert "screened" in listing.text
    assert "Spam screening: spam" in page.text and "machine-like speech" in page.text


async def test_a_silent_unverified_call_is_spam(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """Silence on a call that failed STIR/SHAKEN: spam — and, although the business texts
    callers a confirmation and texts back missed calls, nothing is texted to it."""
    extra = "sms_to_caller = true\nmissed_call_text_back = true\n"
    app = await start_app(
        businesses_file=businesses_file(tmp_path, extra), **twilio_settings(twilio_standin)
    )
    script = CallerScript(speech=["", "", ""], stir_verstat="TN-Validation-Failed")
    result = await place_call(twilio_standin, app, script)
    store = app.services.store
    await wait_for(lambda: (c := store.get_call(result.call_sid)) and c.state != "active")
    call = store.get_call(result.call_sid)
    assert call is not None and call.state == "screened"
    screening = call.details["_screening"]
    assert screening["stir_verstat"] == "TN-Validation-Failed"
    assert "STIR/SHAKEN: TN-Validation-Failed" in screening["reasons"]
    assert local_crm(app) == {}
    assert twilio_standin.messages == []


async def test_a_business_can_still_send_spam_to_its_crm(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    app = await start_app(
        businesses_file=businesses_file(tmp_path, "spam_to_crm = true\n"),
        **twilio_settings(twilio_standin),
    )
    result = await place_call(twilio_standin, app, CallerScript(speech=[ROBOCALL, ROBOCALL]))
    await delivered(app, result.call_sid)
    call = app.services.store.get_call(result.call_sid)
    assert call is not None and call.details["_screening"]["verdict"] == "spam"
    assert len(local_crm(app)["Lead"]) == 1


async def test_a_verified_real_caller_is_clean(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    app = await start_app(**twilio_settings(twilio_standin))
    script = CallerScript(
        speech=["Dana Reyes", "my basement is flooding", "1 Main Street", "yes"],
        stir_verstat="TN-Validation-Passed-A",
    )
    result = await place_call(twilio_standin, app, script)
    summary = await delivered(app, result.call_sid)
    assert summary.is_emergency
    call = app.services.store.get_call(result.call_sid)
    assert call is not None and call.details["_screening"]["verdict"] == "clean"
