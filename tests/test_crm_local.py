"""The embedded local CRM: the decision matrix executed against the service's database."""

from __future__ import annotations

import datetime as dt
import types
from pathlib import Path
from typing import Any

import pytest

from agent.summary import CallSummary, TranscriptTurn
from crm import store as crm_store
from crm.config import CrmProfile, SalesforceConfig
from crm.factory import build_crm
from crm.local import LocalCrm
from crm.store import Store, make_engine

PROFILE = CrmProfile(business="Acme Plumbing")


def make_summary(**overrides: Any) -> CallSummary:
    values: dict[str, Any] = {
        "call_sid": "CA00000000000000000000000000000001",
        "business": "Acme Plumbing",
        "caller_phone": "+14155550100",
        "first_name": "John",
        "last_name": "Doe",
        "need": "Water heater replacement quote",
        "urgency": 2,
        "transcript": [TranscriptTurn(speaker="caller", text="My water heater is old.", start=1.0)],
    }
    values.update(overrides)
    return CallSummary(**values)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'crm.db'}"))
    store.create_schema()
    return store


@pytest.fixture
def crm(store: Store) -> LocalCrm:
    return LocalCrm(store.engine)


def test_new_caller_becomes_a_lead_with_call_task_transcript_and_callback(crm: LocalCrm) -> None:
    result = crm.deliver(make_summary(callback_requested=True), PROFILE)
    assert result.record_type == "Lead" and result.record_id.startswith("00Q")
    assert [t for t, _ in result.created] == ["Lead", "Task", "ContentVersion", "Task"]
    records = crm.dump()
    (lead,) = records["Lead"]
    assert lead["Id"] == result.record_id
    assert (lead["LastName"], lead["Company"], lead["Rating"]) == ("Doe", "Doe Household", "Warm")
    assert lead["Status"] == "Open - Not Contacted"
    call_task, callback_task = records["Task"]
    assert call_task["WhoId"] == lead["Id"] and call_task["Status"] == "Completed"
    assert callback_task["Subject"] == "Call back John Doe"
    assert callback_task["Status"] == "Not Started"
    (transcript,) = records["ContentVersion"]
    assert transcript["FirstPublishLocationId"] == lead["Id"]
    assert "Caller: My water heater is old." in transcript["VersionData"]


def test_records_created_in_the_same_microsecond_are_listed_in_creation_order(
    crm: LocalCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One delivery creates its Lead, call Task, transcript and callback Task in one flush,
    often within one microsecond: with the clock frozen (every record in the same
    microsecond), ``dump`` still lists them in the order they were created — not by their
    random ids, which put the callback Task first about one run in 25."""

    class FrozenDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> FrozenDatetime:
            return cls(2026, 3, 4, 22, 15, tzinfo=tz)

    # The store's clock (``crm.store.utcnow``, which every default and stamp reads) stops;
    # only that module's view of ``datetime`` changes, nobody else's.
    frozen_dt = types.SimpleNamespace(**vars(dt))
    frozen_dt.datetime = FrozenDatetime
    monkeypatch.setattr(crm_store, "dt", frozen_dt)
    created: list[str] = []
    for n in range(1, 9):
        summary = make_summary(
            call_sid=f"CA{n:032d}", caller_phone=f"+1415555010{n}", callback_requested=True
        )
        created += [record_id for _, record_id in crm.deliver(summary, PROFILE).created]
    records = crm.dump()
    assert sorted(r["Id"] for rows in records.values() for r in rows) == sorted(created)
    for rows in records.values():  # each sObject's rows, oldest first: in creation order
        ids = {r["Id"] for r in rows}
        assert [r["Id"] for r in rows] == [i for i in created if i in ids]
    assert [t["Status"] for t in records["Task"]] == ["Completed", "Not Started"] * 8


def test_same_call_sid_twice_writes_nothing_twice(crm: LocalCrm) -> None:
    first = crm.deliver(make_summary(), PROFILE)
    second = crm.deliver(make_summary(), PROFILE)
    assert second.already_delivered and not first.already_delivered
    assert (second.record_type, second.record_id) == (first.record_type, first.record_id)
    records = crm.dump()
    assert len(records["Lead"]) == 1 and len(records["Task"]) == 1


def test_seeded_customer_with_new_project_gets_opportunity_not_lead(crm: LocalCrm) -> None:
    jane = crm.add_contact(
        first_name="Jane",
        last_name="Smith",
        phone="(415) 555-0123",
        account_name="Smith Household",
    )
    summary = make_summary(
        caller_phone="+14155550123",
        first_name="Jane",
        last_name=None,
        need="smart thermostat installation",
        service_address="123 Main Street",
        new_project=True,
        call_date=dt.date(2026, 3, 4),
    )
    result = crm.deliver(summary, PROFILE)
    assert (result.record_type, result.record_id) == ("Contact", jane)
    records = crm.dump()
    assert "Lead" not in records
    (opportunity,) = records["Opportunity"]
    assert opportunity["Name"] == "Smart Thermostat Installation - 123 Main St"
    assert opportunity["AccountId"] == records["Account"][0]["Id"]
    assert opportunity["StageName"] == "Prospecting"
    assert opportunity["CloseDate"] == "2026-04-03"
    (role,) = records["OpportunityContactRole"]
    assert role == {
        "Id": role["Id"],
        "ContactId": jane,
        "OpportunityId": opportunity["Id"],
        "IsPrimary": True,
    }
    (task,) = records["Task"]
    assert (task["WhoId"], task["WhatId"]) == (jane, opportunity["AccountId"])


def test_second_call_from_a_lead_updates_it_and_raises_the_rating(crm: LocalCrm) -> None:
    first = crm.deliver(make_summary(urgency=1), PROFILE)
    second = crm.deliver(
        make_summary(call_sid="CA00000000000000000000000000000002", urgency=5, need="Leak!"),
        PROFILE,
    )
    assert second.record_id == first.record_id
    assert second.updated == (("Lead", first.record_id),)
    (lead,) = crm.dump()["Lead"]
    assert lead["Rating"] == "Hot" and lead["Urgency_Level__c"] == 5
    assert "Water heater replacement quote" in lead["Description"]
    assert "Leak!" in lead["Description"]


def test_email_match_finds_a_customer_calling_from_another_phone(crm: LocalCrm) -> None:
    jane = crm.add_contact(
        first_name="Jane", last_name="Smith", phone="+14155550123", email="jane@example.com"
    )
    result = crm.deliver(
        make_summary(caller_phone="+12125550000", email="Jane@Example.com"), PROFILE
    )
    assert (result.record_type, result.record_id) == ("Contact", jane)


def test_factory_picks_local_without_salesforce_config(store: Store) -> None:
    assert build_crm(None, store).name == "local"
    config = SalesforceConfig(
        login_url="https://acme.my.salesforce.com", client_id="id", client_secret="s"
    )
    assert build_crm(config, store).name == "salesforce"


def test_a_caller_who_spoke_spanish_is_flagged_for_staff(tmp_path: Path) -> None:
    """Staff calling back see the caller's language on the Lead and the call Task."""
    from agent.summary import CallSummary
    from crm.config import CrmProfile
    from crm.local import LocalCrm
    from crm.store import make_engine

    crm = LocalCrm(make_engine(f"sqlite:///{tmp_path / 'lang.db'}"))
    summary = CallSummary(
        call_sid="CA" + "e" * 32,
        business="Bay Plumbing & Air",
        caller_phone="+14155550177",
        first_name="Lucía",
        last_name="Gómez",
        need="Water heater leaking",
        language="es",
    )
    crm.deliver(summary, CrmProfile(business="Bay Plumbing & Air"))
    records = crm.dump()
    (lead,) = records["Lead"]
    assert "Caller's language: es" in lead["Description"]
    assert any("Caller's language: es" in t["Description"] for t in records["Task"])
