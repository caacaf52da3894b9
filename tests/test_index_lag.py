"""No duplicates across Salesforce's search-index lag (issue 9).

Salesforce indexes new records for SOSL asynchronously; the stand-in's lag is on in these
end-to-end tests (records created through the API stay invisible to SOSL for the whole
test; SOQL sees them at once). A caller who rings back minutes after their first call is
matched through the service's own ledger of records it wrote per phone, fetched by id with
SOQL — one Lead, both calls on it.
"""

from __future__ import annotations

from tests.conftest import StartApp
from tests.standins.salesforce import SalesforceStandin
from tests.standins.salesforce_query import run_sosl
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_conversation_e2e import (
    INTAKE_SPEECH,
    delivered,
    place_call,
    salesforce_settings,
    twilio_settings,
)

CALLING_BACK = [
    "This is Dana Reyes again",
    "the water heater is leaking now, there is water on the floor of the garage",
    "today please",
    "yes",
    "this afternoon",
]


def phone_search(salesforce: SalesforceStandin, digits: str) -> list[object]:
    found = run_sosl(
        salesforce.org, f"FIND {{{digits}}} IN PHONE FIELDS RETURNING Lead(Id)", "62.0"
    )
    return list(found["searchRecords"])


async def test_a_repeat_caller_under_index_lag_gets_one_lead(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    salesforce_standin: SalesforceStandin,
    salesforce_ca_env: SalesforceStandin,
) -> None:
    """Dana calls for a quote, then calls back minutes later about a leak: SOSL still
    cannot see the Lead the first call created, yet the second call updates that Lead
    (Rating up to Hot) and logs its call Task on it — no second Lead."""
    app = await start_app(
        **twilio_settings(twilio_standin), **salesforce_settings(salesforce_standin)
    )
    first = await place_call(twilio_standin, app, CallerScript(speech=list(INTAKE_SPEECH)))
    await delivered(app, first.call_sid)
    (lead,) = salesforce_standin.records("Lead")
    assert phone_search(salesforce_standin, "4155550100") == [], "the index still lags"

    salesforce_standin.reset_counts()
    second = await place_call(twilio_standin, app, CallerScript(speech=list(CALLING_BACK)))
    summary = await delivered(app, second.call_sid)
    # The idempotency check, SOSL (which misses the Lead), one SOQL by id, one composite.
    assert len(salesforce_standin.api_requests) == 4, salesforce_standin.api_requests

    assert summary.rating == "Hot"
    (still_one,) = salesforce_standin.records("Lead")
    assert still_one["Id"] == lead["Id"]
    assert still_one["Rating"] == "Hot"
    call_tasks = {
        t["CallObject"]: t["WhoId"]
        for t in salesforce_standin.records("Task")
        if t.get("CallObject")
    }
    assert call_tasks == {first.call_sid: lead["Id"], second.call_sid: lead["Id"]}
    assert any(f"'{lead['Id']}'" in q for q in salesforce_standin.soql_queries)


def test_the_standin_hides_new_records_from_sosl_until_the_index_catches_up() -> None:
    """Index-lag mode: a Lead created through the REST API is found by SOQL at once and by
    SOSL only after the lag; seeded records (already indexed) are found at once."""
    import requests
    from simple_salesforce.api import Salesforce

    now = [1000.0]
    with SalesforceStandin(index_lag_seconds=30.0) as org:
        org.org.clock = lambda: now[0]
        seeded = org.add_record(
            "Lead", {"LastName": "Old", "Company": "X", "Phone": "+14155550111"}
        )
        session = requests.Session()
        session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would win otherwise
        session.verify = org.ca_bundle
        sf = Salesforce(
            instance_url=org.instance_url,
            session_id=org.issue_token(),
            version="62.0",
            session=session,
        )
        created = sf.Lead.create({"LastName": "New", "Company": "Y", "Phone": "+14155550122"})
        new_id = created["id"]

        assert [r["Id"] for r in phone_search(org, "4155550111")] == [seeded]
        assert phone_search(org, "4155550122") == []
        soql = sf.query("SELECT Id FROM Lead WHERE Phone = '+14155550122'")
        assert [r["Id"] for r in soql["records"]] == [new_id]
        now[0] += 31
        assert [r["Id"] for r in phone_search(org, "4155550122")] == [new_id]
