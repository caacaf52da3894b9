"""Issue 9's fidelity fixes, checked against the real libraries' behaviour, and the missed-
call branches of the decision matrix: speech hints serialised into ``<Gather>``, the JWT
audience of scratch orgs, e-mail addresses validated before Salesforce sees them, one
OpenAI client per process closed at shutdown, and a missed call matched to an existing
Contact or Lead.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from crm.planner import CreateRecord, Lookup, UpdateRecord, valid_email
from crm.salesforce_auth import jwt_audience
from telephony import twiml
from tests.conftest import StartApp
from tests.test_crm_planner import TODAY, by_ref, contact, lead, make_summary, plan


def test_gather_speech_hints_are_in_the_twiml() -> None:
    """Twilio reads ``hints`` from the ``<Gather>`` attribute; set as a Python attribute
    on twilio's ``Gather`` it was never serialised."""
    document = twiml.gather_speech(
        prompt="What can we help you with?", action="https://x/a", hints="leak, no heat"
    )
    gather = ET.fromstring(document).find("Gather")  # noqa: S314 - our own output
    assert gather is not None and gather.get("hints") == "leak, no heat"
    plain = ET.fromstring(twiml.gather_speech(prompt="p", action="https://x/a"))  # noqa: S314
    assert plain.find("Gather").get("hints") is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--dev.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        (
            "https://site-ability-1234-dev-ed.scratch.my.salesforce.com",
            "https://test.salesforce.com",
        ),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_jwt_audience_matches_the_org_kind(login_url: str, audience: str) -> None:
    assert jwt_audience(login_url) == audience


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("dana@example.com", "dana@example.com"),
        (" dana.reyes+work@mail.example.co.uk ", "dana.reyes+work@mail.example.co.uk"),
        ("dana at example dot com", None),
        ("dana@example", None),
        ("dana@@example.com", None),
        ("dana..reyes@example.com", None),
        ("d" * 75 + "@example.com", None),
    ],
)
def test_only_valid_email_addresses_reach_the_crm(raw: str, kept: str | None) -> None:
    assert valid_email(raw) == kept
    new_lead = by_ref(plan(make_summary(email=raw)), "lead")
    assert isinstance(new_lead, CreateRecord)
    assert new_lead.fields.get("Email") == kept
    note = by_ref(plan(make_summary(email=raw)), "callTask").fields["Description"]
    assert (raw.strip() in note) == (kept is not None)


def missed(**overrides: object) -> object:
    return make_summary(
        first_name=None,
        last_name=None,
        need="Missed call",
        details="The caller hung up before leaving their name or what they needed.",
        urgency=1,
        callback_requested=True,
        callback_window="today",
        callback_due=TODAY,
        call_date=TODAY,
        missed_call=True,
        transcript=[],
        **overrides,
    )


def test_a_missed_call_from_a_known_contact_is_logged_on_the_contact() -> None:
    """A missed call from a customer's number: a call Task and a callback due today on the
    Contact, no Lead."""
    found = Lookup(contacts=(contact("003000000000001AAA", "Reyes", "2025-07-01"),))
    result = plan(missed(), found)  # type: ignore[arg-type]
    assert result.record_type == "Contact"
    assert all(not (isinstance(a, CreateRecord) and a.sobject == "Lead") for a in result.actions)
    call_task = by_ref(result, "callTask")
    assert call_task.fields["Subject"].startswith("Missed call")
    callback = by_ref(result, "callbackTask")
    assert str(callback.fields["ActivityDate"]) == TODAY.isoformat()
    assert callback.fields["WhoId"] == "003000000000001AAA"


def test_a_missed_call_never_lowers_an_open_lead() -> None:
    """A Hot Lead's number hangs up: Rating stays Hot; the call is logged on the Lead."""
    result = plan(missed(), Lookup(leads=(lead(Rating="Hot"),)))  # type: ignore[arg-type]
    update = by_ref(result, "leadUpdate")
    assert isinstance(update, UpdateRecord)
    assert "Rating" not in update.fields
    assert by_ref(result, "callbackTask").fields["WhoId"] == "00Q000000000001AAA"


async def test_one_openai_client_per_process_closed_at_shutdown(
    start_app: StartApp, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    ai = await make_realtime_standin()
    app = await start_app(openai_api_key=ai.api_key, openai_base_url=ai.base_url)
    client = app.services.openai
    assert client is not None and not client.is_closed()
    await app.stop()
    assert client.is_closed()
