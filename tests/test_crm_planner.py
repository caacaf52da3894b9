"""The CRM decision matrix, branch by branch: summary + lookup + schema in, plan out."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from agent.summary import CallSummary, TranscriptTurn
from crm.config import CrmProfile
from crm.org_schema import (
    FieldInfo,
    ObjectSchema,
    OrgSchema,
    PicklistValue,
    apply_overrides,
    fit_fields,
    parse_describe,
    standard_org_schema,
)
from crm.planner import (
    CreateRecord,
    FoundRecord,
    Lookup,
    Plan,
    Ref,
    UpdateRecord,
    UpsertRecord,
    delivered_check_soql,
    email_search_sosl,
    escape_soql,
    escape_sosl,
    lookup_phone_terms,
    opportunity_name,
    parse_search_result,
    phone_search_sosl,
    plan_delivery,
)

TODAY = dt.date(2025, 7, 14)
SCHEMA = standard_org_schema()
PROFILE = CrmProfile(business="Acme Heating & Air")

TRANSCRIPT = [
    TranscriptTurn(speaker="agent", text="Acme Heating, how can I help?", start=0.0),
    TranscriptTurn(speaker="caller", text="I need a quote for a new HVAC system.", start=2.5),
]


def make_summary(**overrides: Any) -> CallSummary:
    values: dict[str, Any] = {
        "call_sid": "CA0123456789abcdef0123456789abcdef",
        "business": "Acme Heating & Air",
        "caller_phone": "+14155550100",
        "first_name": "John",
        "last_name": "Doe",
        "need": "HVAC replacement quote",
        "details": "15 year old system, not cooling well.",
        "urgency": 2,
        "duration_seconds": 95,
        "transcript": TRANSCRIPT,
    }
    values.update(overrides)
    return CallSummary(**values)


def contact(
    record_id: str, last: str, modified: str, account: str = "001000000000001AAA"
) -> FoundRecord:
    return FoundRecord(
        "Contact",
        record_id,
        {
            "Id": record_id,
            "FirstName": "Jane",
            "LastName": last,
            "AccountId": account,
            "LastModifiedDate": modified,
        },
    )


def lead(record_id: str = "00Q000000000001AAA", **fields: Any) -> FoundRecord:
    return FoundRecord("Lead", record_id, {"Id": record_id, "LastName": "Doe", **fields})


def by_ref(plan: Plan, ref: str) -> Any:
    action = plan.action(ref)
    assert action is not None, f"no action {ref!r} in {[a.ref for a in plan.actions]}"
    return action


NO_MATCH = Lookup()


def plan(summary: CallSummary, lookup: Lookup = NO_MATCH, **kw: Any) -> Plan:
    return plan_delivery(
        summary, kw.pop("profile", PROFILE), lookup, kw.pop("schema", SCHEMA), today=TODAY, **kw
    )


# --- the seed's three scenarios ----------------------------------------------------------


def test_new_prospect_asking_for_a_quote_becomes_a_warm_lead() -> None:
    p = plan(make_summary(callback_requested=True, callback_window="tomorrow morning"))
    assert p.record_type == "Lead" and p.record == Ref("lead")
    new_lead = by_ref(p, "lead")
    assert isinstance(new_lead, CreateRecord) and new_lead.auto_assign
    assert new_lead.fields["Rating"] == "Warm"
    assert new_lead.fields["Status"] == "Open - Not Contacted"  # the org's default
    assert new_lead.fields["LeadSource"] == "Phone Call - AI Receptionist"
    assert new_lead.fields["Company"] == "Doe Household"
    assert new_lead.fields["Phone"] == "+14155550100"
    assert new_lead.fields["Urgency_Level__c"] == 2
    assert new_lead.fields["Description"].startswith("HVAC replacement quote\n15 year old")
    assert [a.ref for a in p.actions] == ["lead", "callTask", "transcript", "callbackTask"]
    assert p.warnings == ()


def test_existing_contact_with_a_new_project_gets_an_opportunity_and_no_lead() -> None:
    jane = contact("003000000000001AAA", "Smith", "2025-01-01T00:00:00.000+0000")
    summary = make_summary(
        first_name="Jane",
        last_name="Smith",
        need="smart thermostat installation",
        service_address="123 Main Street, Springfield",
        new_project=True,
        existing_customer=True,
    )
    p = plan(summary, Lookup(contacts=(jane,)))
    assert p.record_type == "Contact" and p.record == jane.id
    assert not any(a.sobject == "Lead" for a in p.actions)
    task = by_ref(p, "callTask")
    assert task.fields["WhoId"] == jane.id and task.fields["WhatId"] == "001000000000001AAA"
    opportunity = by_ref(p, "opportunity")
    assert opportunity.fields == {
        "Name": "Smart Thermostat Installation - 123 Main St",
        "AccountId": "001000000000001AAA",
        "StageName": "Prospecting",
        "CloseDate": "2025-08-13",
        "LeadSource": "Phone Call - AI Receptionist",
        "Description": opportunity.fields["Description"],
    }
    role = by_ref(p, "contactRole")
    assert role.fields == {
        "ContactId": jane.id,
        "OpportunityId": Ref("opportunity"),
        "IsPrimary": True,
    }


def test_unknown_caller_with_a_burst_pipe_is_a_hot_emergency_lead() -> None:
    summary = make_summary(
        first_name=None,
        last_name=None,
        need="Basement flooding, burst pipe",
        details="Water is everywhere, needs immediate dispatch.",
        urgency=5,
        is_emergency=True,
        callback_requested=True,
    )
    p = plan(summary)
    new_lead = by_ref(p, "lead")
    assert new_lead.fields["Rating"] == "Hot"
    assert new_lead.fields["Urgency_Level__c"] == 5
    assert new_lead.fields["LeadSource"] == "Phone Call - Emergency"
    assert new_lead.fields["Description"].startswith("EMERGENCY - Basement flooding")
    callback = by_ref(p, "callbackTask")
    assert callback.fields["Priority"] == "High"
    assert callback.fields["Status"] == "Not Started"
    assert callback.fields["ActivityDate"] == TODAY.isoformat()
    assert callback.fields["WhoId"] == Ref("lead")
    assert callback.fields["Subject"] == "Call back +14155550100"


# --- the other branches --------------------------------------------------------------------

TWO_CONTACT_CASES = [
    pytest.param("Smith", "003000000000002AAA", id="same last name wins over newer"),
    pytest.param("Jones", "003000000000001AAA", id="no last name match: most recently modified"),
    pytest.param(None, "003000000000001AAA", id="no last name given: most recently modified"),
]


@pytest.mark.parametrize(("last_name", "expected"), TWO_CONTACT_CASES)
def test_phone_matching_two_contacts_picks_deterministically(
    last_name: str | None, expected: str
) -> None:
    newer = contact("003000000000001AAA", "Brown", "2025-06-01T00:00:00.000+0000")
    older = contact("003000000000002AAA", "Smith", "2024-01-01T00:00:00.000+0000")
    for order in ((newer, older), (older, newer)):
        p = plan(make_summary(last_name=last_name), Lookup(contacts=order))
        assert p.record == expected
        description = by_ref(p, "callTask").fields["Description"]
        assert f"2 Contacts match this caller; chose {expected}" in description


def test_a_converted_lead_is_not_a_match() -> None:
    search = {
        "searchRecords": [
            {
                "attributes": {"type": "Lead"},
                "Id": "00Q000000000009AAA",
                "LastName": "Doe",
                "IsConverted": True,
            }
        ]
    }
    lookup = parse_search_result(search)
    assert lookup.empty
    assert plan(make_summary(), lookup).record == Ref("lead")


def test_callback_number_different_from_caller_id_is_looked_up_and_written() -> None:
    summary = make_summary(callback_phone="(415) 555-0199", callback_requested=True)
    assert lookup_phone_terms(summary) == ("4155550100", "14155550100", "4155550199", "14155550199")
    p = plan(summary)
    new_lead = by_ref(p, "lead")
    assert new_lead.fields["Phone"] == "+14155550199"
    assert "Caller ID: +14155550100." in new_lead.fields["Description"]
    assert "Callback number: +14155550199" in by_ref(p, "callTask").fields["Description"]


COMPANY_CASES = [
    pytest.param({}, PROFILE, "Doe", "Doe Household", id="B2C household"),
    pytest.param({"company": "Doe Builders"}, PROFILE, "Doe", "Doe Builders", id="caller company"),
    pytest.param(
        {},
        replace(PROFILE, company_name="Acme Residential"),
        "Doe",
        "Acme Residential",
        id="profile",
    ),
    pytest.param({"last_name": None}, PROFILE, "(not given)", "John Household", id="no last name"),
    pytest.param(
        {"last_name": None, "first_name": None},
        PROFILE,
        "(not given)",
        "Household (name not given)",
        id="no name at all",
    ),
]


@pytest.mark.parametrize(("changes", "profile", "last_name", "company"), COMPANY_CASES)
def test_new_lead_names_and_company(
    changes: dict[str, Any], profile: CrmProfile, last_name: str, company: str
) -> None:
    new_lead = by_ref(plan(make_summary(**changes), profile=profile), "lead")
    assert new_lead.fields["LastName"] == last_name
    assert new_lead.fields["Company"] == company


def test_existing_contact_without_new_project_gets_only_the_call_logged() -> None:
    jane = contact("003000000000001AAA", "Smith", "2025-01-01T00:00:00.000+0000")
    p = plan(make_summary(last_name="Smith"), Lookup(contacts=(jane,)))
    assert [a.ref for a in p.actions] == ["callTask", "transcript"]
    assert by_ref(p, "transcript").fields["FirstPublishLocationId"] == jane.id


def test_contact_wins_over_an_open_lead() -> None:
    jane = contact("003000000000001AAA", "Doe", "2025-01-01T00:00:00.000+0000")
    p = plan(make_summary(), Lookup(contacts=(jane,), leads=(lead(Rating="Cold"),)))
    assert p.record_type == "Contact"
    assert not any(isinstance(a, UpdateRecord) for a in p.actions)


RATING_CASES = [
    pytest.param("Cold", 2, "Warm", id="cold lead raised to warm"),
    pytest.param("Warm", 5, "Hot", id="warm lead raised to hot"),
    pytest.param("Hot", 2, None, id="hot lead never lowered"),
    pytest.param("Warm", 3, None, id="same rating left alone"),
    pytest.param(None, 1, "Cold", id="unrated lead gets a rating"),
]


@pytest.mark.parametrize(("current", "urgency", "written"), RATING_CASES)
def test_open_lead_is_updated_rating_only_goes_up(
    current: str | None, urgency: int, written: str | None
) -> None:
    existing = lead(Rating=current, Description="Called in May about a furnace.")
    p = plan(make_summary(urgency=urgency), Lookup(leads=(existing,)))
    assert p.record_type == "Lead" and p.record == existing.id
    assert not any(isinstance(a, CreateRecord) and a.sobject == "Lead" for a in p.actions)
    update = by_ref(p, "leadUpdate")
    assert isinstance(update, UpdateRecord) and update.record_id == existing.id
    assert update.fields.get("Rating") == written
    description = update.fields["Description"]
    assert description.startswith("Called in May about a furnace.\n\n[2025-07-14] HVAC")
    assert by_ref(p, "callTask").fields["WhoId"] == existing.id


def test_lead_description_append_keeps_the_newest_text_within_the_field_length() -> None:
    existing = lead(Rating="Warm", Description="x" * 32000)
    update = by_ref(plan(make_summary(), Lookup(leads=(existing,))), "leadUpdate")
    assert len(update.fields["Description"]) == 32000
    assert update.fields["Description"].endswith("15 year old system, not cooling well.")


def test_call_task_is_a_completed_inbound_call() -> None:
    task = by_ref(plan(make_summary()), "callTask")
    assert isinstance(task, CreateRecord)
    fields = dict(task.fields)
    assert fields.pop("Description").startswith("Caller: John Doe (+14155550100)\nNeed: HVAC")
    assert fields == {
        "Subject": "Call: HVAC replacement quote",
        "TaskSubtype": "Call",
        "CallType": "Inbound",
        "CallDurationInSeconds": 95,
        "CallObject": "CA0123456789abcdef0123456789abcdef",
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": "2025-07-14",
        "WhoId": Ref("lead"),
    }


def test_transcript_is_a_content_version_on_the_record() -> None:
    summary = make_summary()
    version = by_ref(plan(summary), "transcript")
    assert version.fields["Title"] == f"Call transcript {summary.call_sid}"
    assert version.fields["PathOnClient"] == f"transcript-{summary.call_sid}.txt"
    assert base64.b64decode(version.fields["VersionData"]).decode() == summary.transcript_text()
    assert version.fields["FirstPublishLocationId"] == Ref("lead")


def test_no_transcript_and_no_callback_means_only_lead_and_call_task() -> None:
    p = plan(make_summary(transcript=[]))
    assert [a.ref for a in p.actions] == ["lead", "callTask"]


def test_callback_is_due_when_the_caller_asked() -> None:
    due = dt.date(2025, 7, 16)
    callback = by_ref(
        plan(make_summary(callback_requested=True, callback_due=due, urgency=3)), "callbackTask"
    )
    assert callback.fields["ActivityDate"] == "2025-07-16"
    assert callback.fields["Priority"] == "Normal"
    assert callback.fields["Subject"] == "Call back John Doe"


def test_org_without_urgency_field_gets_no_urgency_value() -> None:
    schema = standard_org_schema(urgency_field=False)
    p = plan(make_summary(urgency=5, is_emergency=True), schema=schema)
    assert "Urgency_Level__c" not in by_ref(p, "lead").fields
    assert p.warnings == ()
    assert "Urgency_Level__c" not in (phone_search_sosl(["4155550100"], schema) or "")


def test_restricted_picklist_value_is_dropped_with_a_warning() -> None:
    lead_schema = SCHEMA.objects["Lead"]
    restricted = replace(
        lead_schema.fields["LeadSource"],
        restricted_picklist=True,
        picklist=(PicklistValue("Web"), PicklistValue("Phone Inquiry")),
    )
    schema = SCHEMA.with_object(
        ObjectSchema("Lead", {**lead_schema.fields, "LeadSource": restricted})
    )
    p = plan(make_summary(), schema=schema)
    assert "LeadSource" not in by_ref(p, "lead").fields
    assert p.warnings == (
        "Lead.LeadSource: 'Phone Call - AI Receptionist' is not one of the org's picklist "
        "values; dropped",
    )


def test_fitting_truncates_and_reports_unknown_fields() -> None:
    result = fit_fields(
        "Lead",
        {"FirstName": "A" * 50, "Description": "d" * 40000, "Nope__c": 1, "IsConverted": True},
        SCHEMA,
        creating=True,
    )
    assert result.fields == {"FirstName": "A" * 40, "Description": "d" * 32000}
    assert result.warnings == (
        "Lead.FirstName truncated to 40 characters",
        "Lead.Nope__c does not exist in this org; value not written",
        "Lead.IsConverted cannot be created by the integration user; skipped",
    )


def test_field_overrides_fixed_values_and_renames() -> None:
    lead_fields = dict(SCHEMA.objects["Lead"].fields)
    lead_fields["Call_Notes__c"] = FieldInfo("Call_Notes__c", "textarea", 131072)
    schema = SCHEMA.with_object(ObjectSchema("Lead", lead_fields))
    profile = replace(
        PROFILE,
        field_overrides={
            "Lead": {"LeadSource": "Phone Inquiry", "Description": "Call_Notes__c"},
            "Task": {"Subject": "=After-hours call"},
        },
    )
    p = plan(make_summary(), profile=profile, schema=schema)
    new_lead = by_ref(p, "lead").fields
    assert new_lead["LeadSource"] == "Phone Inquiry"
    assert "Description" not in new_lead
    assert new_lead["Call_Notes__c"].startswith("HVAC replacement quote")
    assert by_ref(p, "callTask").fields["Subject"] == "After-hours call"


def test_fixed_override_values_are_not_applied_to_updates() -> None:
    overrides = {"Lead": {"LeadSource": "=Phone Inquiry", "Description": "@Other__c"}}
    updated = apply_overrides("Lead", {"Description": "x"}, overrides, SCHEMA, creating=False)
    assert updated == {"Other__c": "x"}


def test_call_sid_external_id_makes_the_call_task_an_upsert() -> None:
    task_fields = dict(SCHEMA.objects["Task"].fields)
    task_fields["Call_SID__c"] = FieldInfo("Call_SID__c", "string", 64, external_id=True)
    schema = SCHEMA.with_object(ObjectSchema("Task", task_fields))
    summary = make_summary()
    task = by_ref(plan(summary, schema=schema), "callTask")
    assert isinstance(task, UpsertRecord)
    assert (task.external_id_field, task.external_id) == ("Call_SID__c", summary.call_sid)
    assert delivered_check_soql(summary.call_sid, schema) == (
        "SELECT Id, WhoId FROM Task WHERE Call_SID__c = 'CA0123456789abcdef0123456789abcdef'"
    )


def test_duplicate_match_gets_the_call_attached_without_a_new_lead() -> None:
    match = FoundRecord("Lead", "00Q000000000007AAA", {"Id": "00Q000000000007AAA"})
    p = plan(make_summary(callback_requested=True), duplicate_of=match)
    assert p.record == match.id
    assert [a.ref for a in p.actions] == ["callTask", "transcript", "callbackTask"]
    assert all(a.fields.get("WhoId", match.id) == match.id for a in p.actions)
    assert p.warnings == ("duplicate rule matched Lead 00Q000000000007AAA; attached to it",)


def test_without_fields_drops_a_rejected_field_from_one_action() -> None:
    p = plan(make_summary()).without_fields("lead", ["Rating"])
    assert "Rating" not in by_ref(p, "lead").fields
    assert "Status" in by_ref(p, "callTask").fields


# --- queries: escaped, never spliced -------------------------------------------------------


def test_phone_sosl_searches_contacts_and_unconverted_leads() -> None:
    sosl = phone_search_sosl(["4155550100", "14155550100"], SCHEMA)
    assert sosl == (
        "FIND {4155550100 OR 14155550100} IN PHONE FIELDS RETURNING "
        "Contact(Id, FirstName, LastName, AccountId, Phone, MobilePhone, Email, "
        "LastModifiedDate), Lead(Id, FirstName, LastName, Company, Rating, Status, Phone, "
        "Email, Description, LastModifiedDate, Urgency_Level__c WHERE IsConverted = false)"
    )
    assert phone_search_sosl([], SCHEMA) is None


def test_anonymous_caller_has_nothing_to_look_up() -> None:
    assert lookup_phone_terms(make_summary(caller_phone="Anonymous")) == ()


def test_sosl_and_soql_escaping() -> None:
    assert escape_sosl('a-b+c"d{e}\\f') == 'a\\-b\\+c\\"d\\{e\\}\\\\f'
    sosl = email_search_sosl("jane-doe+hvac@example.com", SCHEMA) or ""
    assert sosl.startswith('FIND {"jane\\-doe\\+hvac@example.com"} IN EMAIL FIELDS RETURNING ')
    assert escape_soql("CA1' OR Id != '") == "CA1\\' OR Id != \\'"
    assert delivered_check_soql("CA1'x", SCHEMA) == (
        "SELECT Id, WhoId FROM Task WHERE CallObject = 'CA1\\'x'"
    )


def test_opportunity_names() -> None:
    assert opportunity_name("new furnace", "42 Oak Avenue, Springfield, IL") == (
        "New Furnace - 42 Oak Ave"
    )
    assert opportunity_name("HVAC tune-up", None) == "HVAC Tune-up"


def test_parse_describe_reads_lengths_picklists_and_defaults() -> None:
    obj = parse_describe(
        {
            "name": "Lead",
            "fields": [
                {
                    "name": "Status",
                    "type": "picklist",
                    "length": 40,
                    "restrictedPicklist": True,
                    "createable": True,
                    "updateable": True,
                    "picklistValues": [
                        {"value": "Old", "active": False, "defaultValue": False},
                        {"value": "New", "active": True, "defaultValue": True},
                    ],
                }
            ],
        }
    )
    status = obj.fields["Status"]
    assert status.length == 40 and status.restricted_picklist
    assert status.active_values() == ("New",) and status.default_value() == "New"
    assert OrgSchema({"Lead": obj}).has_field("Lead", "Status")


def test_call_subject_is_the_short_need_marked_when_an_emergency() -> None:
    summary = make_summary(need="Burst pipe in basement", urgency=5, is_emergency=True)
    task = by_ref(plan(summary), "callTask")
    assert task.fields["Subject"] == "Call: Burst pipe in basement — EMERGENCY"
    rambling = make_summary(need="so basically " + "the pipe in the basement burst " * 6)
    subject = by_ref(plan(rambling), "callTask").fields["Subject"]
    assert len(subject) <= len("Call: ") + 80 and subject.endswith("…")


def test_lead_description_does_not_repeat_the_need() -> None:
    summary = make_summary(need="Water heater leaking", details="Water heater leaking.")
    description = by_ref(plan(summary), "lead").fields["Description"]
    assert description.count("Water heater leaking") == 1
    task = by_ref(plan(summary), "callTask").fields["Description"]
    assert "Details:" not in task
