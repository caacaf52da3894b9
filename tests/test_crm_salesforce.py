"""The Salesforce adapter end to end against the Salesforce stand-in (HTTPS, real wire)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from agent.summary import CallSummary, TranscriptTurn
from crm.checks import check_salesforce
from crm.config import CrmProfile, SalesforceConfig
from crm.errors import (
    WITHHELD,
    CrmAuthError,
    CrmConfigurationError,
    CrmError,
    CrmRateLimitedError,
    CrmTransientError,
    org_message,
)
from crm.org_schema import FieldInfo, ObjectSchema
from crm.salesforce import SalesforceCrm, map_salesforce_error
from tests.standins.salesforce import SalesforceStandin

CLIENT_ID = "3MVG9-test-client"
CLIENT_SECRET = "s3cret-value"
PROFILE = CrmProfile(business="Acme Home Services")
# The call date the seed summaries carry: the planner dates Tasks and CloseDate from it, so
# no assertion depends on the wall-clock date (a run crossing midnight).
TODAY = dt.date.today()


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceStandin]:
    with SalesforceStandin(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        custom_fields={"Lead": ["Urgency_Level__c"]},
    ) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_bundle)
        yield server


def config_for(server: SalesforceStandin, **overrides: Any) -> SalesforceConfig:
    values: dict[str, Any] = {
        "login_url": server.login_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "timeout_seconds": 5.0,
    }
    values.update(overrides)
    return SalesforceConfig(**values)


@pytest.fixture
def crm(standin: SalesforceStandin) -> SalesforceCrm:
    crm = SalesforceCrm(config_for(standin))
    crm.schema()  # warm the describe cache, as a running service has
    standin.reset_counts()
    return crm


def transcript(*lines: str) -> list[TranscriptTurn]:
    turns = [TranscriptTurn(speaker="agent", text="Thanks for calling Acme.", start=0.0)]
    turns += [
        TranscriptTurn(speaker="caller", text=line, start=2.0 + 3 * i)
        for i, line in enumerate(lines)
    ]
    return turns


def quote_request(**overrides: Any) -> CallSummary:
    """Seed scenario 1: a new prospect asking for a quote."""
    values: dict[str, Any] = {
        "call_sid": "CA11111111111111111111111111111111",
        "business": "Acme Home Services",
        "caller_phone": "+14155550101",
        "first_name": "John",
        "last_name": "Doe",
        "need": "HVAC replacement quote",
        "details": "15 year old system, cooling issues.",
        "urgency": 2,
        "callback_requested": True,
        "callback_window": "tomorrow morning",
        "duration_seconds": 84,
        "transcript": transcript("I need a quote for replacing my HVAC system."),
    }
    values.update(overrides)
    return CallSummary(**values)


def existing_customer() -> CallSummary:
    """Seed scenario 2: Jane, an existing Contact, wants a smart thermostat."""
    return CallSummary(
        call_sid="CA22222222222222222222222222222222",
        business="Acme Home Services",
        caller_phone="+14155550123",
        first_name="Jane",
        need="smart thermostat installation",
        service_address="123 Main Street",
        urgency=2,
        existing_customer=True,
        new_project=True,
        duration_seconds=61,
        call_date=TODAY,
        transcript=transcript("You installed our AC last summer; we want a smart thermostat."),
    )


def burst_pipe() -> CallSummary:
    """Seed scenario 3: an unknown caller with a burst pipe."""
    return CallSummary(
        call_sid="CA33333333333333333333333333333333",
        business="Acme Home Services",
        caller_phone="+14155550199",
        need="Basement flooding, burst pipe",
        details="Water is everywhere; needs immediate dispatch.",
        urgency=5,
        is_emergency=True,
        callback_requested=True,
        duration_seconds=40,
        call_date=TODAY,
        transcript=transcript("My basement is flooding! A pipe burst!"),
    )


def seed_jane(server: SalesforceStandin) -> tuple[str, str]:
    account = server.add_record("Account", {"Name": "Smith Household"})
    contact = server.add_record(
        "Contact",
        {"FirstName": "Jane", "LastName": "Smith", "Phone": "(415) 555-0123", "AccountId": account},
    )
    return account, contact


def only(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(records) == 1, records
    return records[0]


# --- the seed's three scenarios ----------------------------------------------------------------


def test_new_prospect_quote_becomes_a_warm_lead_in_three_requests(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    summary = quote_request()
    result = crm.deliver(summary, PROFILE)
    lead = only(standin.records("Lead"))
    assert (result.record_type, result.record_id) == ("Lead", lead["Id"])
    assert lead["LastName"] == "Doe" and lead["Company"] == "Doe Household"
    assert (lead["Rating"], lead["Status"]) == ("Warm", "Open - Not Contacted")
    assert lead["LeadSource"] == "Phone Call - AI Receptionist"
    assert lead["Phone"] == "+14155550101" and lead["Urgency_Level__c"] == 2
    assert lead["_auto_assign"] is True
    tasks = {t["Subject"]: t for t in standin.records("Task")}
    call = tasks["Call: HVAC replacement quote"]
    assert (call["WhoId"], call["CallObject"], call["Status"]) == (
        lead["Id"],
        summary.call_sid,
        "Completed",
    )
    assert (call["TaskSubtype"], call["CallType"], call["CallDurationInSeconds"]) == (
        "Call",
        "Inbound",
        84,
    )
    callback = tasks["Call back John Doe"]
    assert (callback["WhoId"], callback["Status"], callback["Priority"]) == (
        lead["Id"],
        "Not Started",
        "Normal",
    )
    version = only(standin.records("ContentVersion"))
    assert version["FirstPublishLocationId"] == lead["Id"]
    assert version["Title"] == f"Call transcript {summary.call_sid}"
    assert base64.b64decode(version["VersionData"]).decode() == summary.transcript_text()
    assert result.api_requests == len(standin.api_requests) == 3
    assert result.warnings == ()


def test_existing_contact_gets_task_and_opportunity_and_no_lead(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    account, jane = seed_jane(standin)
    result = crm.deliver(existing_customer(), PROFILE)
    assert (result.record_type, result.record_id) == ("Contact", jane)
    assert standin.records("Lead") == []
    opportunity = only(standin.records("Opportunity"))
    assert opportunity["Name"] == "Smart Thermostat Installation - 123 Main St"
    assert opportunity["AccountId"] == account
    assert opportunity["StageName"] == "Prospecting"
    assert opportunity["CloseDate"] == (TODAY + dt.timedelta(days=30)).isoformat()
    role = only(standin.records("OpportunityContactRole"))
    assert (role["ContactId"], role["OpportunityId"], role["IsPrimary"]) == (
        jane,
        opportunity["Id"],
        True,
    )
    task = only(standin.records("Task"))
    assert (task["WhoId"], task["WhatId"]) == (jane, account)
    assert only(standin.records("ContentVersion"))["FirstPublishLocationId"] == jane
    assert len(standin.api_requests) == 3


def test_burst_pipe_is_a_hot_emergency_lead_with_a_high_priority_callback(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    crm.deliver(burst_pipe(), PROFILE)
    lead = only(standin.records("Lead"))
    assert (lead["Rating"], lead["Urgency_Level__c"]) == ("Hot", 5)
    assert lead["LeadSource"] == "Phone Call - Emergency"
    assert lead["LastName"] == "(not given)"
    assert lead["Description"].startswith("EMERGENCY - Basement flooding, burst pipe")
    callback = next(t for t in standin.records("Task") if t["Subject"].startswith("Call back"))
    assert (callback["Priority"], callback["ActivityDate"]) == ("High", TODAY.isoformat())
    assert callback["Status"] == "Not Started" and callback["WhoId"] == lead["Id"]


# --- idempotency and failures ------------------------------------------------------------------


def test_same_call_sid_twice_creates_nothing_twice(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    first = crm.deliver(quote_request(), PROFILE)
    standin.reset_counts()
    second = crm.deliver(quote_request(), PROFILE)
    assert second.already_delivered
    assert (second.record_type, second.record_id) == ("Lead", first.record_id)
    assert len(standin.records("Lead")) == 1 and len(standin.records("Task")) == 2
    assert len(standin.records("ContentVersion")) == 1
    assert len(standin.api_requests) == 1


def test_call_sid_external_id_upserts_the_call_task(standin: SalesforceStandin) -> None:
    with SalesforceStandin(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        custom_fields={"Task": ["Call_SID__c"]},
    ) as server:
        crm = SalesforceCrm(config_for(server))
        summary = quote_request()
        crm.deliver(summary, PROFILE)
        again = crm.deliver(summary, PROFILE)
        assert again.already_delivered
        call = next(t for t in server.records("Task") if t["Subject"].startswith("Call:"))
        assert call["Call_SID__c"] == summary.call_sid
        assert len(server.records("Task")) == 2


@pytest.mark.parametrize("fault", ["500", "503"])
def test_server_error_is_transient_and_the_retry_duplicates_nothing(
    standin: SalesforceStandin, crm: SalesforceCrm, fault: str
) -> None:
    standin.inject_fault(fault, path_contains="/composite")
    with pytest.raises(CrmTransientError) as caught:
        crm.deliver(quote_request(), PROFILE)
    assert caught.value.call_sid == quote_request().call_sid
    assert standin.records("Lead") == []
    result = crm.deliver(quote_request(), PROFILE)
    assert not result.already_delivered
    assert len(standin.records("Lead")) == 1 and len(standin.records("Task")) == 2


def test_timeout_is_transient(standin: SalesforceStandin) -> None:
    # The stand-in stalls until it is stopped: the client's 0.5 s timeout is certainly
    # what ends the request, never the stand-in hanging up first on a slow machine.
    standin.timeout_seconds = 300
    crm = SalesforceCrm(config_for(standin, timeout_seconds=0.5))
    crm.schema()
    standin.inject_fault("timeout", path_contains="/search")
    with pytest.raises(CrmTransientError):
        crm.deliver(quote_request(), PROFILE)


def test_lost_response_after_commit_is_retried_without_duplicates(
    standin: SalesforceStandin,
) -> None:
    standin.timeout_seconds = 300  # the answer never comes; stop() ends the stall
    crm = SalesforceCrm(config_for(standin, timeout_seconds=0.5))
    crm.schema()
    standin.inject_fault("timeout_after_processing", path_contains="/composite")
    with pytest.raises(CrmTransientError):
        crm.deliver(quote_request(), PROFILE)
    assert len(standin.records("Lead")) == 1  # the org did commit
    again = crm.deliver(quote_request(), PROFILE)
    assert again.already_delivered and again.record_id == standin.records("Lead")[0]["Id"]
    assert len(standin.records("Lead")) == 1 and len(standin.records("Task")) == 2


def test_request_limit_exceeded_is_rate_limited(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    standin.inject_fault("403_limit")
    with pytest.raises(CrmRateLimitedError) as caught:
        crm.deliver(quote_request(), PROFILE)
    assert caught.value.error_code == "REQUEST_LIMIT_EXCEEDED"


def test_expired_token_mid_run_is_renewed_once(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    crm.deliver(quote_request(), PROFILE)
    tokens_before = standin.token_requests
    standin.expire_tokens()
    result = crm.deliver(burst_pipe(), PROFILE)
    assert result.record_type == "Lead"
    assert standin.token_requests == tokens_before + 1
    assert len(standin.records("Lead")) == 2


def test_persistent_401_is_an_auth_error_after_one_renewal(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    standin.inject_fault("401", times=2)
    tokens_before = standin.token_requests
    with pytest.raises(CrmAuthError):
        crm.deliver(quote_request(), PROFILE)
    assert standin.token_requests == tokens_before + 1


def test_wrong_client_secret_is_an_auth_error_without_the_secret(
    standin: SalesforceStandin,
) -> None:
    crm = SalesforceCrm(config_for(standin, client_secret="wrong-secret-xyz"))
    with pytest.raises(CrmAuthError) as caught:
        crm.deliver(quote_request(), PROFILE)
    assert "wrong-secret-xyz" not in str(caught.value)


def test_rejected_field_is_dropped_and_reported(standin: SalesforceStandin) -> None:
    # Our cached describe lists Lead.Preferred_Tech__c and the business fixes its value;
    # an admin has since deleted the field, so the org answers INVALID_FIELD. The Lead is
    # written without it and the loss reported: nothing else is lost.
    described = SalesforceCrm(config_for(standin)).schema()
    lead_schema = described.objects["Lead"]
    stale = described.with_object(
        ObjectSchema(
            "Lead",
            {
                **lead_schema.fields,
                "Preferred_Tech__c": FieldInfo("Preferred_Tech__c", "string", 80),
            },
        )
    )
    profile = replace(PROFILE, field_overrides={"Lead": {"Preferred_Tech__c": "=Anyone"}})
    crm = SalesforceCrm(config_for(standin), schema=stale)
    standin.reset_counts()
    result = crm.deliver(quote_request(), profile)
    lead = only(standin.records("Lead"))
    assert lead["Rating"] == "Warm" and "Preferred_Tech__c" not in lead
    assert len(standin.records("Task")) == 2 and len(standin.records("ContentVersion")) == 1
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        "Lead.Preferred_Tech__c rejected by the org (INVALID_FIELD"
    )
    assert result.api_requests == len(standin.api_requests) == 4


def test_field_deleted_since_describe_is_described_again(standin: SalesforceStandin) -> None:
    with SalesforceStandin(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, custom_fields={}
    ) as plain_org:
        stale = SalesforceCrm(config_for(standin)).schema()  # has Lead.Urgency_Level__c
        crm = SalesforceCrm(config_for(plain_org), schema=stale)
        result = crm.deliver(burst_pipe(), PROFILE)
        lead = only(plain_org.records("Lead"))
        assert lead["Rating"] == "Hot" and "Urgency_Level__c" not in lead
        assert result.warnings == ()
        assert not crm.schema().has_field("Lead", "Urgency_Level__c")


def test_duplicate_rule_attaches_the_call_to_the_match(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    existing = standin.add_record(
        "Lead", {"LastName": "Doe", "Company": "Doe Household", "Email": "john@example.com"}
    )
    standin.inject_fault("duplicates", path_contains="/sobjects/Lead")
    result = crm.deliver(quote_request(), PROFILE)
    assert (result.record_type, result.record_id) == ("Lead", existing)
    assert [lead["Id"] for lead in standin.records("Lead")] == [existing]
    assert all(t["WhoId"] == existing for t in standin.records("Task"))
    assert only(standin.records("ContentVersion"))["FirstPublishLocationId"] == existing
    assert any("duplicate rule matched Lead" in w for w in result.warnings)


def test_open_lead_is_updated_not_duplicated(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    existing = standin.add_record(
        "Lead",
        {
            "LastName": "Doe",
            "Company": "Doe Household",
            "Phone": "4155550101",
            "Rating": "Hot",
            "Description": "Earlier call.",
        },
    )
    result = crm.deliver(quote_request(), PROFILE)
    assert result.updated == (("Lead", existing),)
    lead = only(standin.records("Lead"))
    assert lead["Rating"] == "Hot"
    assert lead["Description"].startswith("Earlier call.\n\n[")


def test_converted_lead_is_not_matched(standin: SalesforceStandin, crm: SalesforceCrm) -> None:
    standin.add_record(
        "Lead",
        {"LastName": "Doe", "Company": "Doe Household", "Phone": "4155550101", "IsConverted": True},
    )
    result = crm.deliver(quote_request(), PROFILE)
    assert result.created[0][0] == "Lead"
    assert len(standin.records("Lead")) == 2


# --- OAuth flows and the admin check ---------------------------------------------------------


def test_jwt_bearer_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "server.key"
    key_file.write_bytes(pem)
    with SalesforceStandin(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        jwt_public_key_pem=public,
        jwt_username="integration@acme.example",
    ) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
        config = SalesforceConfig(
            login_url=server.login_url,
            client_id=CLIENT_ID,
            username="integration@acme.example",
            private_key_file=key_file,
        )
        result = SalesforceCrm(config).deliver(burst_pipe(), PROFILE)
        assert result.record_type == "Lead"
        assert len(server.records("Lead")) == 1


def test_missing_key_file_is_a_configuration_error(standin: SalesforceStandin) -> None:
    config = SalesforceConfig(
        login_url=standin.login_url,
        client_id=CLIENT_ID,
        username="integration@acme.example",
        private_key_file=Path("/nonexistent/key.pem"),
    )
    with pytest.raises(CrmConfigurationError):
        SalesforceCrm(config).deliver(burst_pipe(), PROFILE)


def test_check_reports_a_good_org(standin: SalesforceStandin) -> None:
    report = check_salesforce(config_for(standin))
    assert report.ok, report.lines
    assert any("Urgency_Level__c present" in line for line in report.lines)
    assert any(
        "optional: a unique external-id Text field Task.Call_SID__c" in line
        for line in report.lines
    )


def test_check_says_what_is_missing(standin: SalesforceStandin) -> None:
    report = check_salesforce(SalesforceConfig(login_url=standin.login_url))
    assert not report.ok
    assert "SALESFORCE_CLIENT_ID" in report.lines[0]
    bad = check_salesforce(config_for(standin, client_secret="nope"))
    assert not bad.ok and "CrmAuthError" in bad.lines[-1]


def test_two_contacts_on_one_phone_pick_same_last_name_and_say_so(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    standin.add_record("Contact", {"LastName": "Brown", "Phone": "4155550101"})
    doe = standin.add_record("Contact", {"LastName": "Doe", "Phone": "+1 (415) 555-0101"})
    result = crm.deliver(quote_request(), PROFILE)
    assert (result.record_type, result.record_id) == ("Contact", doe)
    call = next(t for t in standin.records("Task") if t["Subject"].startswith("Call:"))
    assert f"2 Contacts match this caller; chose {doe}" in call["Description"]


def test_callback_number_finds_the_customer_when_caller_id_does_not(
    standin: SalesforceStandin, crm: SalesforceCrm
) -> None:
    _, jane = seed_jane(standin)
    summary = quote_request(caller_phone="+12125550000", callback_phone="415-555-0123")
    result = crm.deliver(summary, PROFILE)
    assert (result.record_type, result.record_id) == ("Contact", jane)
    assert standin.records("Lead") == []
    assert len(standin.api_requests) == 3


# -- what of the org's error messages we keep (they are logged and stored) ---------------


def org_error(crm: SalesforceCrm, request: Callable[[Salesforce], object]) -> CrmError:
    """The CrmError for what the org answered ``request`` (through simple-salesforce)."""
    _, sf = crm._connection()
    with pytest.raises(SalesforceError) as caught:
        request(sf)
    return map_salesforce_error(caught.value)


def test_an_org_error_that_echoes_the_search_keeps_no_caller_data(crm: SalesforceCrm) -> None:
    """The org answers a failing SOSL with the SOSL itself (the caller's phone digits in
    it), a caret and the reason: only the reason's schema note is kept."""
    error = org_error(
        crm,
        lambda sf: sf.search(
            "FIND {4155550101} IN PHONE FIELDS RETURNING Lead(Id, Preferred_Tech__c)"
        ),
    )
    assert error.error_code == "INVALID_FIELD"
    assert "No such column 'Preferred_Tech__c' on entity 'Lead'" in str(error)
    assert "4155550101" not in str(error) and "FIND" not in str(error)


def test_an_org_error_that_quotes_an_email_keeps_nothing_of_it(crm: SalesforceCrm) -> None:
    error = org_error(
        crm,
        lambda sf: sf.query("SELECT Id FROM Lead WHERE Email = 'ana.ruiz@example.com' AND"),
    )
    assert error.error_code == "MALFORMED_QUERY"
    assert "ana.ruiz" not in str(error) and "example.com" not in str(error)
    assert WITHHELD in str(error)


def test_org_messages_that_quote_nothing_are_kept_as_they_are() -> None:
    assert org_message("Session expired or invalid") == "Session expired or invalid"
    assert org_message("TotalRequests Limit exceeded.") == "TotalRequests Limit exceeded."
    assert org_message("unexpected token: 'Brien'") == WITHHELD  # a name's fragment
    for quoted in ("call 415 555 01 01 back", "call (415) 555-0101", "Ruiz's lead", "a@b.co"):
        assert org_message(quoted) == WITHHELD
    assert org_message("HTTP 503 from the instance") == "HTTP 503 from the instance"
