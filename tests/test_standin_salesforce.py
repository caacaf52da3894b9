"""The Salesforce stand-in behaves like the documented REST API, seen through real clients
(``requests`` and ``simple_salesforce``) over HTTPS with the test CA."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from tests.standins.salesforce import SalesforceStandin
from tests.standins.salesforce_records import make_id

VERSION = "62.0"
MISSING_LEAD_ID = make_id("00Q", 10**9)  # well formed, never issued


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def http(salesforce_standin: SalesforceStandin) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would override verify
    session.verify = salesforce_standin.ca_bundle
    yield session
    session.close()


@pytest.fixture
def token(salesforce_standin: SalesforceStandin, http: requests.Session) -> str:
    response = http.post(
        f"{salesforce_standin.login_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": salesforce_standin.client_id,
            "client_secret": salesforce_standin.client_secret,
        },
    )
    assert response.status_code == 200
    return str(response.json()["access_token"])


@pytest.fixture
def sf(salesforce_standin: SalesforceStandin, token: str, http: requests.Session) -> Salesforce:
    return Salesforce(
        instance_url=salesforce_standin.instance_url,
        session_id=token,
        session=http,
        version=VERSION,
    )


def url(standin: SalesforceStandin, rest: str) -> str:
    return f"{standin.instance_url}/services/data/v{VERSION}/{rest}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    content = exc.value.content
    assert isinstance(content, list), content
    return dict(content[0])


def seed_lead(standin: SalesforceStandin, **fields: Any) -> str:
    return standin.add_record("Lead", {"LastName": "Doe", "Company": "Doe Household", **fields})


# ---------------------------------------------------------------- OAuth


def test_client_credentials_token_works_and_is_not_an_api_request(
    salesforce_standin: SalesforceStandin, http: requests.Session
) -> None:
    response = http.post(
        f"{salesforce_standin.login_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "standin-client-id",
            "client_secret": "standin-client-secret",
        },
    )
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == salesforce_standin.instance_url
    assert set(body) >= {"access_token", "id", "issued_at", "signature", "scope"}
    limits = http.get(url(salesforce_standin, "limits"), headers=auth(body["access_token"]))
    assert limits.status_code == 200
    assert salesforce_standin.token_requests == 1
    assert salesforce_standin.api_requests == [("GET", f"/services/data/v{VERSION}/limits")]


def test_client_credentials_accepts_http_basic(
    salesforce_standin: SalesforceStandin, http: requests.Session
) -> None:
    response = http.post(
        f"{salesforce_standin.login_url}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("standin-client-id", "standin-client-secret"),
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (
            {"client_id": "standin-client-id", "client_secret": "wrong"},
            {"error": "invalid_client", "error_description": "invalid client credentials"},
        ),
        (
            {"client_id": "someone-else", "client_secret": "standin-client-secret"},
            {"error": "invalid_client_id", "error_description": "client identifier invalid"},
        ),
    ],
)
def test_client_credentials_refuses_bad_credentials(
    salesforce_standin: SalesforceStandin,
    http: requests.Session,
    form: dict[str, str],
    error: dict[str, str],
) -> None:
    response = http.post(
        f"{salesforce_standin.login_url}/services/oauth2/token",
        data={"grant_type": "client_credentials", **form},
    )
    assert response.status_code == 400
    assert response.json() == error


def test_unknown_grant_type_is_unsupported(
    salesforce_standin: SalesforceStandin, http: requests.Session
) -> None:
    response = http.post(
        f"{salesforce_standin.login_url}/services/oauth2/token", data={"grant_type": "password"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


RsaKeys = tuple[rsa.RSAPrivateKey, bytes, rsa.RSAPrivateKey]


@pytest.fixture(scope="module")
def rsa_keys() -> RsaKeys:
    """(private key, its public PEM, an unrelated private key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public_pem, other


@pytest.fixture
def jwt_standin(rsa_keys: RsaKeys) -> Iterator[SalesforceStandin]:
    with SalesforceStandin(
        jwt_public_key_pem=rsa_keys[1], jwt_username="integration@acme.example"
    ) as standin:
        yield standin


def _jwt_token_request(standin: SalesforceStandin, assertion: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.post(
            f"{standin.login_url}/services/oauth2/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
            verify=standin.ca_bundle,
        )


def test_jwt_bearer_grant_accepts_a_valid_assertion(
    jwt_standin: SalesforceStandin, rsa_keys: RsaKeys
) -> None:
    claims = {
        "iss": jwt_standin.client_id,
        "sub": "integration@acme.example",
        "aud": jwt_standin.login_url,
        # simple-salesforce sends exp as a numeric string; Salesforce accepts it.
        "exp": f"{time.time() + 120:.0f}",
    }
    response = _jwt_token_request(jwt_standin, jwt.encode(claims, rsa_keys[0], algorithm="RS256"))
    assert response.status_code == 200
    assert response.json()["instance_url"] == jwt_standin.instance_url


@pytest.mark.parametrize(
    ("change", "key_index", "error", "description"),
    [
        ({"aud": "https://elsewhere.example"}, 0, "invalid_grant", "audience is invalid"),
        ({"exp": int(time.time()) - 10}, 0, "invalid_grant", "expired authorization code"),
        ({"exp": int(time.time()) + 3600}, 0, "invalid_grant", "invalid assertion"),
        (
            {"sub": "stranger@acme.example"},
            0,
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        ({"iss": "another-app"}, 0, "invalid_client_id", "client identifier invalid"),
        ({}, 2, "invalid_grant", "invalid assertion"),
    ],
    ids=["audience", "expired", "exp-too-far", "user", "issuer", "wrong-key"],
)
def test_jwt_bearer_grant_refuses_bad_assertions(
    jwt_standin: SalesforceStandin,
    rsa_keys: RsaKeys,
    change: dict[str, Any],
    key_index: int,
    error: str,
    description: str,
) -> None:
    claims = {
        "iss": jwt_standin.client_id,
        "sub": "integration@acme.example",
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 120,
        **change,
    }
    assertion = jwt.encode(claims, rsa_keys[key_index], algorithm="RS256")
    response = _jwt_token_request(jwt_standin, assertion)
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


# ---------------------------------------------------------------- sessions, versions, limits


def test_data_requests_need_a_valid_bearer_token(
    salesforce_standin: SalesforceStandin, http: requests.Session
) -> None:
    for headers in ({}, auth("00Dxx!not-a-token")):
        response = http.get(url(salesforce_standin, "sobjects/Lead/describe"), headers=headers)
        assert response.status_code == 401
        assert response.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]


def test_expired_tokens_are_refused(salesforce_standin: SalesforceStandin, sf: Salesforce) -> None:
    assert sf.Lead.describe()["name"] == "Lead"
    salesforce_standin.expire_tokens()
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.Lead.describe()
    assert error_of(exc)["errorCode"] == "INVALID_SESSION_ID"


def test_versions_are_listed_without_authentication(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    versions = http.get(f"{salesforce_standin.instance_url}/services/data/").json()
    assert versions[0]["version"] == "50.0"
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    assert versions[-1]["version"] == "64.0"
    old = http.get(
        f"{salesforce_standin.instance_url}/services/data/v49.0/sobjects", headers=auth(token)
    )
    assert old.status_code == 404


def test_limit_info_header_counts_api_requests(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    sf.Lead.describe()
    sf.query("SELECT Id FROM Lead")
    assert sf.api_usage["api-usage"].used == 2
    assert sf.api_usage["api-usage"].total == 15000
    assert salesforce_standin.api_requests == [
        ("GET", f"/services/data/v{VERSION}/sobjects/Lead/describe"),
        ("GET", f"/services/data/v{VERSION}/query"),
    ]
    assert salesforce_standin.soql_queries == ["SELECT Id FROM Lead"]
    salesforce_standin.reset_counts()
    assert salesforce_standin.api_requests == []
    lead = sf.Lead
    lead.describe()
    assert lead.api_usage["api-usage"].used == 3  # the org's usage keeps counting


# ---------------------------------------------------------------- describe


def test_lead_describe_has_the_real_fields(sf: Salesforce) -> None:
    fields = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    lengths = {name: fields[name]["length"] for name in (
        "LastName", "FirstName", "Company", "Phone", "Email", "Title", "Street", "Description"
    )}  # fmt: skip
    assert lengths == {
        "LastName": 80, "FirstName": 40, "Company": 255, "Phone": 40, "Email": 80,
        "Title": 128, "Street": 255, "Description": 32000,
    }  # fmt: skip
    assert fields["LastName"]["nillable"] is False
    assert fields["Name"]["createable"] is False
    status = fields["Status"]
    assert status["defaultedOnCreate"] is True
    assert status["restrictedPicklist"] is True
    assert [p["value"] for p in status["picklistValues"]] == [
        "Open - Not Contacted", "Working - Contacted", "Closed - Converted",
        "Closed - Not Converted",
    ]  # fmt: skip
    assert [p["value"] for p in status["picklistValues"] if p["defaultValue"]] == [
        "Open - Not Contacted"
    ]
    assert set(status["picklistValues"][0]) == {
        "active",
        "defaultValue",
        "label",
        "validFor",
        "value",
    }
    assert [p["value"] for p in fields["Rating"]["picklistValues"]] == ["Hot", "Warm", "Cold"]
    sources = [p["value"] for p in fields["LeadSource"]["picklistValues"]]
    assert "Phone Call - AI Receptionist" in sources
    assert "Phone Call - Emergency" in sources
    urgency = fields["Urgency_Level__c"]
    assert (urgency["type"], urgency["precision"], urgency["scale"], urgency["custom"]) == (
        "double",
        1,
        0,
        True,
    )
    assert "Call_SID__c" not in fields


def test_task_and_opportunity_describe(sf: Salesforce) -> None:
    task = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert (task["Subject"]["length"], task["CallObject"]["length"]) == (255, 255)
    assert task["Description"]["length"] == 32000
    assert task["WhoId"]["referenceTo"] == ["Contact", "Lead"]
    assert [p["value"] for p in task["Status"]["picklistValues"] if p["defaultValue"]] == [
        "Not Started"
    ]
    assert [p["value"] for p in task["Priority"]["picklistValues"]] == ["High", "Normal", "Low"]
    assert [p["value"] for p in task["CallType"]["picklistValues"]] == [
        "Internal", "Inbound", "Outbound"
    ]  # fmt: skip
    assert "Call" in [p["value"] for p in task["TaskSubtype"]["picklistValues"]]
    assert task["TaskSubtype"]["updateable"] is False
    opportunity = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert opportunity["Name"]["length"] == 120
    stages = [p["value"] for p in opportunity["StageName"]["picklistValues"]]
    assert stages[0] == "Prospecting"
    assert stages[-2:] == ["Closed Won", "Closed Lost"]


def test_stage_semantics_come_from_opportunity_stage(sf: Salesforce) -> None:
    result = sf.query(
        "SELECT ApiName, IsClosed, IsWon, DefaultProbability FROM OpportunityStage"
        " WHERE IsActive = true AND IsClosed = true ORDER BY SortOrder"
    )
    assert [(r["ApiName"], r["IsWon"]) for r in result["records"]] == [
        ("Closed Won", True),
        ("Closed Lost", False),
    ]
    default_status = sf.query("SELECT ApiName FROM LeadStatus WHERE IsDefault = true")
    assert default_status["records"][0]["ApiName"] == "Open - Not Contacted"


def test_configured_custom_fields_appear() -> None:
    with (
        SalesforceStandin(
            custom_fields={"Lead": ["Call_SID__c"], "Task": ["Call_SID__c"]}
        ) as standin,
        requests.Session() as session,
    ):
        session.trust_env = False
        session.verify = standin.ca_bundle
        headers = auth(standin.issue_token())
        lead = session.get(url(standin, "sobjects/Lead/describe"), headers=headers).json()
        names = {f["name"]: f for f in lead["fields"]}
        assert "Urgency_Level__c" not in names
        call_sid = names["Call_SID__c"]
        assert (call_sid["externalId"], call_sid["unique"], call_sid["length"]) == (True, True, 64)


def test_unknown_sobject_is_not_found(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Widget__c.describe()
    assert error_of(exc)["errorCode"] == "NOT_FOUND"


# ---------------------------------------------------------------- CRUD


def test_lead_create_get_update_delete(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    created = sf.Lead.create(
        {"LastName": "Doe", "FirstName": "John", "Company": "Doe Household", "Rating": "Warm"}
    )
    assert created["success"] is True and created["errors"] == []
    lead_id = created["id"]
    assert len(lead_id) == 18 and lead_id.startswith("00Q")
    record = sf.Lead.get(lead_id)
    assert record["attributes"] == {
        "type": "Lead",
        "url": f"/services/data/v{VERSION}/sobjects/Lead/{lead_id}",
    }
    assert (record["Name"], record["Status"], record["IsConverted"]) == (
        "John Doe", "Open - Not Contacted", False
    )  # fmt: skip
    assert sf.Lead.update(lead_id, {"Rating": "Hot", "Urgency_Level__c": 5}) == 204
    stored = salesforce_standin.get("Lead", lead_id)
    assert stored is not None
    assert (stored["Rating"], stored["Urgency_Level__c"]) == ("Hot", 5)
    assert sf.Lead.delete(lead_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(lead_id)


def test_fifteen_character_ids_are_accepted(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    lead_id = seed_lead(salesforce_standin)
    assert sf.Lead.get(lead_id[:15])["Id"] == lead_id


def test_auto_assign_header_is_recorded_and_defaults_to_true(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    default = sf.Lead.create({"LastName": "A", "Company": "A"})["id"]
    off = sf.Lead.create(
        {"LastName": "B", "Company": "B"}, headers={"Sforce-Auto-Assign": "FALSE"}
    )["id"]
    on = sf.Lead.create({"LastName": "C", "Company": "C"}, headers={"Sforce-Auto-Assign": "TRUE"})[
        "id"
    ]
    assign = {r["Id"]: r["_auto_assign"] for r in salesforce_standin.records("Lead")}
    assert assign == {default: True, off: False, on: True}


def test_converted_leads_cannot_be_updated(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    lead_id = seed_lead(salesforce_standin, IsConverted=True, Status="Closed - Converted")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.update(lead_id, {"Rating": "Hot"})
    assert error_of(exc)["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_task_on_contact_derives_account_and_closed_flags(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    account = salesforce_standin.add_record("Account", {"Name": "Doe Household"})
    contact = salesforce_standin.add_record("Contact", {"LastName": "Doe", "AccountId": account})
    task_id = sf.Task.create(
        {
            "WhoId": contact,
            "WhatId": account,
            "Subject": "Inbound call",
            "TaskSubtype": "Call",
            "CallType": "Inbound",
            "CallDurationInSeconds": 95,
            "CallObject": "CA0123456789abcdef0123456789abcdef",
            "Status": "Completed",
        }
    )["id"]
    task = salesforce_standin.get("Task", task_id)
    assert task is not None
    assert task_id.startswith("00T")
    assert (task["AccountId"], task["IsClosed"], task["Priority"]) == (account, True, "Normal")


@pytest.mark.parametrize(
    ("sobject", "body", "code", "fields", "message"),
    [
        ("Lead", {"FirstName": "Jo"}, "REQUIRED_FIELD_MISSING", ["LastName", "Company"],
         "Required fields are missing: [LastName, Company]"),
        ("Lead", {"LastName": "", "Company": "X"}, "REQUIRED_FIELD_MISSING", ["LastName"], None),
        ("Lead", {"LastName": "x" * 81, "Company": "X"}, "STRING_TOO_LONG", ["LastName"],
         f"Last Name: data value too large: {'x' * 81} (max length=80)"),
        ("Lead", {"LastName": "D", "Company": "X", "Status": "New"},
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["Status"],
         "Lead Status: bad value for restricted picklist field: New"),
        ("Lead", {"LastName": "D", "Company": "X", "Widget__c": 1}, "INVALID_FIELD", [],
         "No such column 'Widget__c' on sobject of type Lead"),
        ("Lead", {"LastName": "D", "Company": "X", "IsConverted": True},
         "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsConverted"], None),
        ("Lead", {"LastName": "D", "Company": "X", "Email": "not-an-email"},
         "INVALID_EMAIL_ADDRESS", ["Email"], "Email: invalid email address: not-an-email"),
        ("Lead", {"LastName": "D", "Company": "X", "Urgency_Level__c": 12},
         "NUMBER_OUTSIDE_VALID_RANGE", ["Urgency_Level__c"], None),
        ("Lead", {"LastName": "D", "Company": "X", "Urgency_Level__c": "5"},
         "JSON_PARSER_ERROR", None, None),
        ("Opportunity", {"Description": "x"}, "REQUIRED_FIELD_MISSING",
         ["Name", "StageName", "CloseDate"], None),
        ("Opportunity", {"Name": "N", "StageName": "Prospecting", "CloseDate": "2025-02-30"},
         "JSON_PARSER_ERROR", None, None),
        ("ContentVersion", {"Description": "x"}, "REQUIRED_FIELD_MISSING",
         ["Title", "PathOnClient", "VersionData"], None),
        ("Task", {"WhoId": "not-an-id"}, "MALFORMED_ID", ["WhoId"],
         "Name ID: id value of incorrect type: not-an-id"),
        ("Task", {"WhoId": MISSING_LEAD_ID}, "INVALID_CROSS_REFERENCE_KEY", ["WhoId"], None),
        ("Contact", {"LastName": "D", "AccountId": "00Q5g000000001AAAA"}, "MALFORMED_ID",
         ["AccountId"], None),
        ("Task", {"Subject": "x" * 256}, "STRING_TOO_LONG", ["Subject"], None),
    ],
)  # fmt: skip
def test_create_validation_errors_have_the_real_bodies(
    salesforce_standin: SalesforceStandin,
    sf: Salesforce,
    sobject: str,
    body: dict[str, Any],
    code: str,
    fields: list[str] | None,
    message: str | None,
) -> None:
    before = len(salesforce_standin.records(sobject))
    with pytest.raises(SalesforceMalformedRequest) as exc:
        getattr(sf, sobject).create(body)
    error = error_of(exc)
    assert error["errorCode"] == code
    if fields is not None:
        assert error["fields"] == fields
    if message is not None:
        assert error["message"] == message
    assert len(salesforce_standin.records(sobject)) == before


@pytest.mark.parametrize(
    ("sobject", "change", "code"),
    [
        ("Lead", {"LastName": None}, "REQUIRED_FIELD_MISSING"),
        ("Lead", {"Name": "John Doe"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ("Lead", {"Rating": "Scorching"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        ("Task", {"TaskSubtype": "Email"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ("Task", {"Description": "x" * 32001}, "STRING_TOO_LONG"),
    ],
)
def test_update_validation_errors(
    salesforce_standin: SalesforceStandin,
    sf: Salesforce,
    sobject: str,
    change: dict[str, Any],
    code: str,
) -> None:
    record_id = (
        seed_lead(salesforce_standin)
        if sobject == "Lead"
        else salesforce_standin.add_record("Task", {"TaskSubtype": "Call"})
    )
    before = salesforce_standin.get(sobject, record_id)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        getattr(sf, sobject).update(record_id, change)
    assert error_of(exc)["errorCode"] == code
    assert salesforce_standin.get(sobject, record_id) == before


def test_concurrent_clients_get_distinct_records(
    salesforce_standin: SalesforceStandin, token: str
) -> None:
    def create(index: int) -> str:
        with _trusting_session(salesforce_standin) as session:
            response = session.post(
                url(salesforce_standin, "sobjects/Lead"),
                json={"LastName": f"Caller {index}", "Company": "Household"},
                headers=auth(token),
            )
            return str(response.json()["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create, range(24)))
    assert len(set(ids)) == 24
    assert len(salesforce_standin.records("Lead")) == 24


def test_references_must_point_to_an_allowed_type(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    lead = seed_lead(salesforce_standin)
    account = salesforce_standin.add_record("Account", {"Name": "Acme"})
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contact.create({"LastName": "D", "AccountId": lead})
    assert error_of(exc)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.create({"WhatId": lead})
    assert error_of(exc)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.create({"WhoId": lead, "WhatId": account})
    assert error_of(exc)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert sf.Task.create({"WhoId": lead})["success"] is True


def test_malformed_json_and_unknown_rows(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    bad = http.post(
        url(salesforce_standin, "sobjects/Lead"),
        data=b"{not json",
        headers={**auth(token), "Content-Type": "application/json"},
    )
    assert (bad.status_code, bad.json()[0]["errorCode"]) == (400, "JSON_PARSER_ERROR")
    missing = http.get(
        url(salesforce_standin, f"sobjects/Lead/{MISSING_LEAD_ID}"), headers=auth(token)
    )
    assert missing.status_code == 404
    assert missing.json() == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]
    widget = http.post(url(salesforce_standin, "sobjects/Widget__c"), json={}, headers=auth(token))
    assert (widget.status_code, widget.json()[0]["errorCode"]) == (404, "NOT_FOUND")


# ---------------------------------------------------------------- files


def test_content_version_with_first_publish_location_links_the_record(
    salesforce_standin: SalesforceStandin, sf: Salesforce, http: requests.Session, token: str
) -> None:
    lead = seed_lead(salesforce_standin)
    transcript = b"Caller: my basement is flooding\n"
    version_id = sf.ContentVersion.create(
        {
            "Title": "Call transcript",
            "PathOnClient": "transcript.txt",
            "VersionData": base64.b64encode(transcript).decode(),
            "FirstPublishLocationId": lead,
        }
    )["id"]
    assert version_id.startswith("068")
    version = sf.ContentVersion.get(version_id)
    assert version["ContentDocumentId"].startswith("069")
    assert (version["FileType"], version["ContentSize"]) == ("TEXT", len(transcript))
    assert version["VersionData"].endswith(f"/ContentVersion/{version_id}/VersionData")
    links = sf.query(
        format_soql(
            "SELECT ContentDocumentId, LinkedEntityId FROM ContentDocumentLink"
            " WHERE LinkedEntityId = {}",
            lead,
        )
    )["records"]
    assert [(r["ContentDocumentId"], r["LinkedEntityId"]) for r in links] == [
        (version["ContentDocumentId"], lead)
    ]
    assert links[0]["attributes"]["type"] == "ContentDocumentLink"
    blob = http.get(
        url(salesforce_standin, f"sobjects/ContentVersion/{version_id}/VersionData"),
        headers=auth(token),
    )
    assert blob.content == transcript
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id FROM ContentDocumentLink")
    assert error_of(exc)["errorCode"] == "MALFORMED_QUERY"


# ---------------------------------------------------------------- external ids


@pytest.fixture
def call_sid_standin() -> Iterator[SalesforceStandin]:
    with SalesforceStandin(
        custom_fields={"Lead": ["Urgency_Level__c"], "Task": ["Call_SID__c"]}
    ) as standin:
        yield standin


def test_upsert_by_external_id(call_sid_standin: SalesforceStandin) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = call_sid_standin.ca_bundle
        headers = auth(call_sid_standin.issue_token())
        target = url(call_sid_standin, "sobjects/Task/Call_SID__c/CA123")
        first = session.patch(target, json={"Subject": "Call"}, headers=headers)
        assert first.status_code == 201
        assert first.json()["created"] is True
        again = session.patch(target, json={"Subject": "Call again"}, headers=headers)
        assert (again.status_code, again.json()["created"]) == (200, False)
        assert again.json()["id"] == first.json()["id"]
        tasks = call_sid_standin.records("Task")
        assert [(t["Call_SID__c"], t["Subject"]) for t in tasks] == [("CA123", "Call again")]
        not_external = session.patch(
            url(call_sid_standin, "sobjects/Task/Subject/x"), json={}, headers=headers
        )
        assert not_external.status_code == 404
        assert not_external.json()[0]["message"] == (
            "Provided external ID field does not exist or is not accessible: Subject"
        )
        duplicate = session.post(
            url(call_sid_standin, "sobjects/Task"), json={"Call_SID__c": "ca123"}, headers=headers
        )
        assert duplicate.json()[0]["errorCode"] == "DUPLICATE_VALUE"


def test_upsert_with_several_matches_is_300(call_sid_standin: SalesforceStandin) -> None:
    for _ in range(2):  # seeding bypasses the unique check, as data loaded elsewhere might
        call_sid_standin.add_record("Task", {"Call_SID__c": "CA999"})
    sf = Salesforce(
        instance_url=call_sid_standin.instance_url,
        session_id=call_sid_standin.issue_token(),
        session=_trusting_session(call_sid_standin),
        version=VERSION,
    )
    with pytest.raises(SalesforceMoreThanOneRecord) as exc:
        sf.Task.upsert("Call_SID__c/CA999", {"Subject": "x"})
    assert len(exc.value.content) == 2


def _trusting_session(standin: SalesforceStandin) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = standin.ca_bundle
    return session


# ---------------------------------------------------------------- SOQL


def test_soql_filters_order_and_limit(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    seed_lead(salesforce_standin, LastName="Able", Rating="Hot", Urgency_Level__c=5)
    seed_lead(salesforce_standin, LastName="Baker", Rating="Warm", Urgency_Level__c=3)
    seed_lead(salesforce_standin, LastName="Carter", Rating="Cold", IsConverted=True)
    seed_lead(salesforce_standin, LastName="Dunn", Rating=None)

    def names(soql: str) -> list[str]:
        return [r["LastName"] for r in sf.query(soql)["records"]]

    assert names("SELECT LastName FROM Lead WHERE IsConverted = false ORDER BY LastName DESC") == [
        "Dunn", "Baker", "Able"
    ]  # fmt: skip
    assert names("select lastname from lead where rating in ('hot', 'Warm') order by lastname") == [
        "Able", "Baker"
    ]  # fmt: skip
    assert names("SELECT LastName FROM Lead WHERE Rating = null") == ["Dunn"]
    assert names("SELECT LastName FROM Lead WHERE Rating != 'Hot' ORDER BY LastName LIMIT 2") == [
        "Baker", "Carter"
    ]  # fmt: skip
    assert names(
        "SELECT LastName FROM Lead WHERE LastName LIKE '%a%' AND Urgency_Level__c >= 4"
    ) == ["Able"]
    assert names(
        "SELECT LastName FROM Lead"
        " WHERE (Rating = 'Hot' OR Rating = 'Cold') AND NOT IsConverted = true"
    ) == ["Able"]
    assert sf.query("SELECT COUNT() FROM Lead WHERE IsConverted = false")["totalSize"] == 3


def test_soql_string_escapes_keep_values_values(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    seed_lead(salesforce_standin, LastName="O'Brien")
    seed_lead(salesforce_standin, LastName="Other")
    found = sf.query("SELECT LastName FROM Lead WHERE LastName = 'O\\'Brien'")
    assert [r["LastName"] for r in found["records"]] == ["O'Brien"]
    injected = sf.query("SELECT Id FROM Lead WHERE LastName = 'x\\' OR LastName != \\''")
    assert injected["totalSize"] == 0


def test_soql_parent_relationship_fields(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    account = salesforce_standin.add_record("Account", {"Name": "Doe Household"})
    salesforce_standin.add_record("Contact", {"LastName": "Doe", "AccountId": account})
    salesforce_standin.add_record("Contact", {"LastName": "Loner"})
    records = sf.query("SELECT LastName, Account.Name FROM Contact ORDER BY LastName")["records"]
    assert records[0]["Account"]["Name"] == "Doe Household"
    assert records[0]["Account"]["attributes"]["type"] == "Account"
    assert records[1]["Account"] is None
    matched = sf.query("SELECT Id FROM Contact WHERE Account.Name = 'doe household'")
    assert matched["totalSize"] == 1


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT FROM Lead", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE LastName = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE Rating = 'Hot' AND Rating = 'Warm' OR IsConverted = true",
         "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead; DELETE", "MALFORMED_QUERY"),
        ("SELECT Nope FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE Description = 'x'", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Id FROM Lead WHERE IsConverted = 'false'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Lead WHERE Urgency_Level__c = '5'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Lead WHERE Phone = 4155550100", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Lead WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR"),
    ],
)  # fmt: skip
def test_soql_errors(sf: Salesforce, soql: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    assert error_of(exc)["errorCode"] == code


# ---------------------------------------------------------------- SOSL


@pytest.fixture
def callers(salesforce_standin: SalesforceStandin) -> dict[str, str]:
    return {
        "contact": salesforce_standin.add_record(
            "Contact", {"LastName": "Doe", "Phone": "(415) 555-0100", "Email": "jo-ann@example.com"}
        ),
        "lead": seed_lead(salesforce_standin, LastName="Roe", MobilePhone="+1 415-555-0100"),
        "converted": seed_lead(
            salesforce_standin, LastName="Poe", Phone="415.555.0100", IsConverted=True
        ),
        "other": seed_lead(salesforce_standin, LastName="Zoe", Phone="(212) 555-0199"),
    }


@pytest.mark.parametrize(
    "term", ["4155550100", "\\+14155550100", "415\\-555\\-0100", "\\(415\\) 555\\-0100"]
)
def test_sosl_phone_search_ignores_punctuation(
    sf: Salesforce, callers: dict[str, str], term: str
) -> None:
    result = sf.search(
        f"FIND {{{term}}} IN PHONE FIELDS RETURNING Contact(Id, Name, AccountId),"
        " Lead(Id, Name, Status WHERE IsConverted = false)"
    )
    found = [(r["attributes"]["type"], r["Id"]) for r in result["searchRecords"]]
    assert found == [("Contact", callers["contact"]), ("Lead", callers["lead"])]


def test_sosl_email_search(sf: Salesforce, callers: dict[str, str]) -> None:
    result = sf.search(
        "FIND {jo\\-ann@example.com} IN EMAIL FIELDS RETURNING Contact(Id), Lead(Id)"
    )
    assert [r["Id"] for r in result["searchRecords"]] == [callers["contact"]]


def test_sosl_all_fields_finds_names(sf: Salesforce, callers: dict[str, str]) -> None:
    result = sf.search("FIND {roe} RETURNING Contact(Id, Name), Lead(Id)")
    assert [r["Id"] for r in result["searchRecords"]] == [callers["lead"]]
    wildcard = sf.search("FIND {zo*} IN NAME FIELDS RETURNING Lead(Id)")
    assert [r["Id"] for r in wildcard["searchRecords"]] == [callers["other"]]
    nobody = sf.search("FIND {nobody} RETURNING Contact(Id), Lead(Id)")
    assert nobody["searchRecords"] == []


@pytest.mark.parametrize(
    "search",
    [
        "FIND {+14155550100} IN PHONE FIELDS RETURNING Lead(Id)",
        "FIND {415-555-0100} IN PHONE FIELDS RETURNING Lead(Id)",
        "FIND {a} RETURNING Lead(Id)",
        "FIND 4155550100 RETURNING Lead(Id)",
        "FIND {4155550100 RETURNING Lead(Id)",
        "FIND {4155550100} IN PHONE FIELDS RETURNING Lead(Id WHERE)",
    ],
)
def test_sosl_malformed_searches(sf: Salesforce, callers: dict[str, str], search: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.search(search)
    assert error_of(exc)["errorCode"] == "MALFORMED_SEARCH"


# ---------------------------------------------------------------- composite


def _composite(
    standin: SalesforceStandin, http: requests.Session, token: str, body: dict[str, Any]
) -> requests.Response:
    return http.post(url(standin, "composite"), json=body, headers=auth(token))


def test_composite_references_and_counts_as_one_request(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    base = f"/services/data/v{VERSION}"
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": f"{base}/sobjects/Account", "referenceId": "account",
             "body": {"Name": "Doe Household"}},
            {"method": "POST", "url": f"{base}/sobjects/Contact", "referenceId": "contact",
             "body": {"LastName": "Doe", "AccountId": "@{account.id}"}},
            {"method": "GET", "url": f"{base}/sobjects/Contact/@{{contact.id}}?fields=AccountId",
             "referenceId": "readBack"},
            {"method": "POST", "url": f"{base}/sobjects/Opportunity", "referenceId": "opportunity",
             "body": {"Name": "Smart thermostat", "StageName": "Prospecting",
                      "CloseDate": "2025-07-01", "AccountId": "@{readBack.AccountId}"}},
            {"method": "POST", "url": f"{base}/sobjects/OpportunityContactRole",
             "referenceId": "role",
             "body": {"OpportunityId": "@{opportunity.id}", "ContactId": "@{contact.id}"}},
            {"method": "GET", "url": f"{base}/query?q=SELECT+Id+FROM+Contact",
             "referenceId": "contacts"},
        ],
    }  # fmt: skip
    response = _composite(salesforce_standin, http, token, body)
    assert response.status_code == 200
    results = {r["referenceId"]: r for r in response.json()["compositeResponse"]}
    assert [r["httpStatusCode"] for r in results.values()] == [201, 201, 200, 201, 201, 200]
    account_id = results["account"]["body"]["id"]
    assert results["account"]["httpHeaders"]["Location"].endswith(f"/Account/{account_id}")
    assert results["readBack"]["body"]["AccountId"] == account_id
    assert results["contacts"]["body"]["totalSize"] == 1
    opportunity = salesforce_standin.records("Opportunity")[0]
    assert (opportunity["AccountId"], opportunity["Probability"], opportunity["IsClosed"]) == (
        account_id, 10, False
    )  # fmt: skip
    assert len(salesforce_standin.records("OpportunityContactRole")) == 1
    assert salesforce_standin.api_requests == [("POST", f"{base}/composite")]
    assert len(salesforce_standin.composite_subrequests) == 6


def test_composite_all_or_none_rolls_everything_back(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    base = f"/services/data/v{VERSION}"
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": f"{base}/sobjects/Lead", "referenceId": "lead",
             "body": {"LastName": "Doe", "Company": "Doe Household"}},
            {"method": "POST", "url": f"{base}/sobjects/Task", "referenceId": "task",
             "body": {"WhoId": "@{lead.id}", "Priority": "Urgent"}},
            {"method": "POST", "url": f"{base}/sobjects/Task", "referenceId": "callback",
             "body": {"WhoId": "@{lead.id}"}},
        ],
    }  # fmt: skip
    results = _composite(salesforce_standin, http, token, body).json()["compositeResponse"]
    halted = {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in the same"
                " transaction failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
    }
    assert results[0] == {**halted, "referenceId": "lead"}
    assert results[1]["httpStatusCode"] == 400
    assert results[1]["body"][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert results[2] == {**halted, "referenceId": "callback"}
    assert salesforce_standin.records("Lead") == []
    assert salesforce_standin.records("Task") == []


def test_composite_without_all_or_none_keeps_successes(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    base = f"/services/data/v{VERSION}"
    body = {
        "compositeRequest": [
            {"method": "POST", "url": f"{base}/sobjects/Lead", "referenceId": "good",
             "body": {"LastName": "Doe", "Company": "Doe Household"},
             "httpHeaders": {"Sforce-Auto-Assign": "FALSE"}},
            {"method": "POST", "url": f"{base}/sobjects/Lead", "referenceId": "bad",
             "body": {"LastName": "Roe"}},
            {"method": "POST", "url": f"{base}/sobjects/Task", "referenceId": "dependent",
             "body": {"WhoId": "@{bad.id}"}},
        ],
    }  # fmt: skip
    results = _composite(salesforce_standin, http, token, body).json()["compositeResponse"]
    assert [r["httpStatusCode"] for r in results] == [201, 400, 400]
    assert results[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert results[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    leads = salesforce_standin.records("Lead")
    assert [(lead["LastName"], lead["_auto_assign"]) for lead in leads] == [("Doe", False)]


def test_composite_limits_subrequests(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    sub = {"method": "GET", "url": f"/services/data/v{VERSION}/limits"}
    body = {"compositeRequest": [{**sub, "referenceId": f"r{i}"} for i in range(26)]}
    assert _composite(salesforce_standin, http, token, body).status_code == 400


# ---------------------------------------------------------------- collections


def test_collections_create_partial_and_all_or_none(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Acme"},
        {"attributes": {"type": "Lead"}, "LastName": "Doe"},
    ]
    target = url(salesforce_standin, "composite/sobjects")
    partial = http.post(target, json={"allOrNone": False, "records": records}, headers=auth(token))
    results = partial.json()
    assert results[0]["success"] is True and results[0]["id"].startswith("001")
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Company]",
                "fields": ["Company"],
            }
        ],
    }
    whole = http.post(target, json={"allOrNone": True, "records": records}, headers=auth(token))
    assert whole.json()[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert len(salesforce_standin.records("Account")) == 1
    untyped = http.post(target, json={"records": [{"Name": "x"}]}, headers=auth(token))
    assert (untyped.status_code, untyped.json()[0]["errorCode"]) == (400, "INVALID_TYPE")
    too_many = http.post(target, json={"records": [records[0]] * 201}, headers=auth(token))
    assert too_many.status_code == 400


def test_collections_update(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    lead = seed_lead(salesforce_standin)
    response = http.patch(
        url(salesforce_standin, "composite/sobjects"),
        json={"records": [{"attributes": {"type": "Lead"}, "id": lead, "Rating": "Hot"}]},
        headers=auth(token),
    )
    assert response.json() == [{"id": lead, "success": True, "errors": []}]
    stored = salesforce_standin.get("Lead", lead)
    assert stored is not None and stored["Rating"] == "Hot"


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "status", "code", "exception"),
    [
        ("401", 401, "INVALID_SESSION_ID", SalesforceExpiredSession),
        ("403_limit", 403, "REQUEST_LIMIT_EXCEEDED", SalesforceRefusedRequest),
        ("500", 500, "UNKNOWN_EXCEPTION", SalesforceGeneralError),
        ("503", 503, "SERVER_UNAVAILABLE", SalesforceGeneralError),
    ],
)
def test_injected_http_faults_fail_once_then_recover(
    salesforce_standin: SalesforceStandin,
    sf: Salesforce,
    kind: str,
    status: int,
    code: str,
    exception: type[Exception],
) -> None:
    salesforce_standin.inject_fault(kind)
    with pytest.raises(exception) as exc:
        sf.Lead.create({"LastName": "Doe", "Company": "Doe Household"})
    assert exc.value.status == status  # type: ignore[attr-defined]
    assert error_of(exc)["errorCode"] == code
    assert salesforce_standin.records("Lead") == []
    assert sf.Lead.create({"LastName": "Doe", "Company": "Doe Household"})["success"] is True


def test_limit_fault_body_is_documented(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    salesforce_standin.inject_fault("403_limit")
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Lead")
    assert exc.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]


def test_faults_respect_path_and_times(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    salesforce_standin.inject_fault("503", times=2, path_contains="/query")
    assert sf.Lead.describe()["name"] == "Lead"
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError):
            sf.query("SELECT Id FROM Lead")
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0


def test_timeout_fault_stalls_then_drops_without_writing(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    salesforce_standin.timeout_seconds = 30  # longer than the client waits; stop() ends it
    salesforce_standin.inject_fault("timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(
            url(salesforce_standin, "sobjects/Lead"),
            json={"LastName": "Doe", "Company": "Doe Household"},
            headers=auth(token),
            # 0.3 s to read only: the connect and TLS handshake get their own 10 s, so a
            # loaded machine cannot turn this into a ConnectTimeout.
            timeout=(10, 0.3),
        )
    assert salesforce_standin.records("Lead") == []


def test_timeout_fault_drops_the_connection_for_patient_clients(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    salesforce_standin.timeout_seconds = 0.05
    salesforce_standin.inject_fault("timeout_after_processing")
    with pytest.raises(requests.exceptions.ConnectionError):
        http.post(
            url(salesforce_standin, "sobjects/Lead"),
            json={"LastName": "Doe", "Company": "Doe Household"},
            headers=auth(token),
            timeout=10,
        )
    assert len(salesforce_standin.records("Lead")) == 1  # written; only the answer was lost


def test_duplicates_fault_reports_the_matched_records(
    salesforce_standin: SalesforceStandin, sf: Salesforce
) -> None:
    existing = seed_lead(salesforce_standin, Phone="(415) 555-0100")
    contact = salesforce_standin.add_record(
        "Contact", {"LastName": "Other", "Phone": "415-555-0100"}
    )
    salesforce_standin.inject_fault("duplicates")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.create({"LastName": "Newman", "Company": "N", "Phone": "+14155550100"})
    error = error_of(exc)
    assert error["errorCode"] == "DUPLICATES_DETECTED"
    result = error["duplicateResult"]
    assert (result["allowSave"], result["duplicateRuleEntityType"]) == (False, "Lead")
    matched = {
        (m["entityType"], record["record"]["Id"])
        for m in result["matchResults"]
        for record in m["matchRecords"]
    }
    assert matched == {("Lead", existing), ("Contact", contact)}
    assert sf.Lead.create({"LastName": "Newman", "Company": "N"})["success"] is True


def test_duplicates_fault_applies_inside_composite(
    salesforce_standin: SalesforceStandin, http: requests.Session, token: str
) -> None:
    existing = seed_lead(salesforce_standin)
    salesforce_standin.inject_fault("duplicates", match_ids=[existing])
    body = {
        "compositeRequest": [
            {"method": "POST", "url": f"/services/data/v{VERSION}/sobjects/Lead",
             "referenceId": "lead", "body": {"LastName": "Newman", "Company": "N"}},
        ]
    }  # fmt: skip
    result = _composite(salesforce_standin, http, token, body).json()["compositeResponse"][0]
    assert result["httpStatusCode"] == 400
    match = result["body"][0]["duplicateResult"]["matchResults"][0]["matchRecords"][0]
    assert match["record"]["Id"] == existing


def test_unknown_fault_kind_is_refused(salesforce_standin: SalesforceStandin) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        salesforce_standin.inject_fault("418")


# ---------------------------------------------------------------- clients and lifecycle


def test_ca_env_fixture_lets_default_clients_trust_the_standin(
    salesforce_ca_env: SalesforceStandin,
) -> None:
    response = requests.get(f"{salesforce_ca_env.instance_url}/services/data/", timeout=5)
    assert response.status_code == 200


async def test_async_clients_can_use_the_standin(salesforce_standin: SalesforceStandin) -> None:
    context = ssl.create_default_context(cafile=salesforce_standin.ca_bundle)
    headers = auth(salesforce_standin.issue_token())
    async with httpx.AsyncClient(
        verify=context, base_url=salesforce_standin.instance_url
    ) as client:
        response = await client.get(
            f"/services/data/v{VERSION}/sobjects/Lead/describe", headers=headers
        )
    assert response.status_code == 200
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"


def test_stop_is_idempotent_and_closes_the_port() -> None:
    standin = SalesforceStandin()
    standin.start()
    instance_url, bundle = standin.instance_url, standin.ca_bundle
    standin.stop()
    standin.stop()
    with requests.Session() as session, pytest.raises(requests.exceptions.ConnectionError):
        session.trust_env = False
        session.get(f"{instance_url}/services/data/", verify=False, timeout=2)
    assert bundle  # the path was published while running
