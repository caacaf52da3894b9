"""What ``receptionist check`` says about the Salesforce settings and the org's fields.

Each line is for an admin: what was checked and, when something is wrong, exactly what to
set or add. ``ok`` is False only when deliveries would fail; optional extras (the
``Urgency_Level__c`` field, a ``Call_SID__c`` external id) are reported as information.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crm.config import CrmProfile, SalesforceConfig
from crm.errors import CrmError
from crm.org_schema import OrgSchema
from crm.planner import CALL_SID_FIELD, URGENCY_FIELD
from crm.salesforce_auth import initial_flow

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "Lead": (
        "FirstName",
        "LastName",
        "Company",
        "Phone",
        "Email",
        "Street",
        "Description",
        "LeadSource",
        "Status",
        "Rating",
    ),
    "Contact": ("FirstName", "LastName", "AccountId", "Phone", "MobilePhone", "Email"),
    "Task": (
        "Subject",
        "WhoId",
        "WhatId",
        "Status",
        "Priority",
        "ActivityDate",
        "Description",
        "TaskSubtype",
        "CallType",
        "CallDurationInSeconds",
        "CallObject",
    ),
    "Opportunity": ("Name", "AccountId", "StageName", "CloseDate", "LeadSource"),
    "OpportunityContactRole": ("ContactId", "OpportunityId", "IsPrimary"),
    "ContentVersion": ("Title", "PathOnClient", "VersionData", "FirstPublishLocationId"),
}


@dataclass(slots=True)
class CheckReport:
    """The outcome of a check: ``ok`` and the admin-readable lines, in order."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def good(self, text: str) -> None:
        self.lines.append(f"[ok]   {text}")

    def fail(self, text: str) -> None:
        self.ok = False
        self.lines.append(f"[FAIL] {text}")

    def warn(self, text: str) -> None:
        self.lines.append(f"[warn] {text}")

    def info(self, text: str) -> None:
        self.lines.append(f"[info] {text}")


def check_salesforce(config: SalesforceConfig) -> CheckReport:
    """Verify credentials, the token request and the org's fields; never raises."""
    report = CheckReport()
    try:
        flow = initial_flow(config)
    except CrmError as exc:
        report.fail(str(exc))
        return report
    from crm.salesforce import SalesforceCrm  # simple-salesforce only when checking an org

    try:
        crm = SalesforceCrm(config)
        token = crm.auth.token()
        report.good(
            f"Salesforce credentials accepted ({flow.value} flow, login URL "
            f"{config.login_url or '-'}); instance {token.instance_url}"
        )
        schema = crm.schema()
    except CrmError as exc:
        report.fail(f"{type(exc).__name__}: {exc}")
        return report
    report.good(f"described {', '.join(sorted(schema.objects))} (API v{config.api_version})")
    _check_fields(report, schema)
    return report


def _check_fields(report: CheckReport, schema: OrgSchema) -> None:
    for sobject, names in REQUIRED_FIELDS.items():
        missing = [n for n in names if not schema.has_field(sobject, n)]
        if missing:
            report.fail(
                f"{sobject} is missing {', '.join(missing)} "
                "(or the integration user cannot see them: check field-level security)"
            )
    defaults = CrmProfile(business="-")
    source = schema.field("Lead", "LeadSource")
    if source is not None and source.restricted_picklist:
        absent = [
            v
            for v in (defaults.lead_source, defaults.emergency_lead_source)
            if v not in source.active_values()
        ]
        if absent:
            report.warn(
                f"Lead.LeadSource is a restricted picklist without {', '.join(absent)}: "
                "add the values, or set lead sources per business, or leads get no source"
            )
    status = schema.field("Lead", "Status")
    if status is not None and not (status.default_value() or status.active_values()):
        report.fail("Lead.Status has no active values; new Leads cannot be created")
    stage = schema.field("Opportunity", "StageName")
    if stage is not None and not any(
        not v.casefold().startswith("closed") for v in stage.active_values()
    ):
        report.fail("Opportunity.StageName has no open stage for new projects")
    if schema.has_field("Lead", URGENCY_FIELD):
        report.good(f"Lead.{URGENCY_FIELD} present: urgency 1-5 is written to it")
    else:
        report.info(
            f"optional: add a Number field Lead.{URGENCY_FIELD} to route by urgency "
            "(urgency is in the Lead description meanwhile)"
        )
    call_sid = schema.field("Task", CALL_SID_FIELD)
    if call_sid is not None and call_sid.external_id:
        report.good(f"Task.{CALL_SID_FIELD} is an external id: call Tasks are upserted by it")
    else:
        report.info(
            f"optional: a unique external-id Text field Task.{CALL_SID_FIELD} makes "
            "repeat deliveries upserts (Task.CallObject is checked meanwhile)"
        )
    if report.ok:
        report.good("the org has every field the receptionist writes")
