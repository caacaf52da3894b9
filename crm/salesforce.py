"""The Salesforce adapter: executes the decision matrix's plan through simple-salesforce.

A delivery costs, once the org's schema is cached (one composite of describes, refreshed
every 15 minutes):

1. ``SELECT Id, WhoId FROM Task WHERE CallObject = '<sid>'`` (or ``Call_SID__c``) — a hit
   means an earlier delivery committed, so nothing is written twice;
2. one SOSL phone lookup (plus an email lookup only when the phone found nobody);
3. one composite request, ``allOrNone``, writing the Lead/updates, the call Task, the
   callback Task and the transcript, the later ones referring to ``@{lead.id}``.

Because the composite is all-or-nothing, a failure or a lost response leaves either
nothing or everything; the check in step 1 makes the retry safe. When the org rejects
one field, the plan is re-sent without it and the loss reported as a warning; when the
org's duplicate rules block the new Lead, the call is attached to the matched record.

Every data request carries a timeout; a 401 renews the token once and retries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from agent.summary import CallSummary
from crm.config import CrmProfile, DeliveryResult, PhoneLedger, SalesforceConfig
from crm.errors import (
    CrmAuthError,
    CrmConfigurationError,
    CrmError,
    CrmRateLimitedError,
    CrmRejectedError,
    CrmTransientError,
    org_message,
)
from crm.org_schema import OrgSchema, parse_describe
from crm.planner import (
    CreateRecord,
    DeliveredCall,
    FoundRecord,
    Lookup,
    Plan,
    Ref,
    UpdateRecord,
    UpsertRecord,
    amendment_check_soql,
    call_task_soql,
    delivered_check_soql,
    email_search_sosl,
    ledger_phones,
    lookup_phone_terms,
    open_callback_soql,
    open_callbacks_soql,
    parse_query_records,
    parse_search_result,
    phone_search_sosl,
    plan_amendment,
    plan_delivery,
    record_type_of,
    records_by_id_soql,
)
from crm.salesforce_auth import AccessToken, SalesforceAuth

log = logging.getLogger(__name__)
T = TypeVar("T")

DESCRIBED_OBJECTS = (
    "Lead",
    "Contact",
    "Task",
    "ContentVersion",
    "Opportunity",
    "OpportunityContactRole",
)
SCHEMA_TTL_SECONDS = 900.0
MAX_COMPOSITE_ATTEMPTS = 5
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
# Errors about one field's value or existence: drop the field and write the rest.
FIELD_ERRORS = frozenset(
    {
        "INVALID_FIELD",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "STRING_TOO_LONG",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "NUMBER_OUTSIDE_VALID_RANGE",
        "INVALID_EMAIL_ADDRESS",
        "FIELD_INTEGRITY_EXCEPTION",
        "MALFORMED_ID",
        "INVALID_ID_FIELD",
    }
)
# Without these the record is wrong or unlinked; better dead-lettered than written.
ESSENTIAL_FIELDS: Mapping[str, frozenset[str]] = {
    "Lead": frozenset({"LastName", "Company"}),
    "Task": frozenset({"WhoId", "CallObject"}),
    "ContentVersion": frozenset({"VersionData", "PathOnClient", "FirstPublishLocationId"}),
    "Opportunity": frozenset({"Name", "StageName", "CloseDate"}),
    "OpportunityContactRole": frozenset({"ContactId", "OpportunityId"}),
}
NO_SUCH_COLUMN = re.compile(r"No such column '(\w+)'")


class TimeoutSession(requests.Session):
    """A requests session whose every request has a timeout (simple-salesforce sets none)."""

    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


@dataclass(slots=True)
class _Delivery:
    """Bookkeeping for one deliver() call."""

    call_sid: str | None
    requests: int = 0
    warnings: list[str] = field(default_factory=list)


class SalesforceCrm:
    """A CrmWriter for one Salesforce org (see the module docstring)."""

    name = "salesforce"

    def __init__(
        self,
        config: SalesforceConfig,
        *,
        session: requests.Session | None = None,
        schema_ttl: float = SCHEMA_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        schema: OrgSchema | None = None,
        ledger: PhoneLedger | None = None,
    ):
        """``schema``: a describe result to start from (treated as just loaded).
        ``ledger``: the records this service wrote by phone, found again while SOSL's
        index lags (a repeat caller within minutes matches their first call's Lead)."""
        self.config = config
        self.ledger = ledger
        self.session = session or TimeoutSession(config.timeout_seconds)
        self.auth = SalesforceAuth(config, self.session)
        self.schema_ttl = schema_ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._schema: OrgSchema | None = schema
        self._schema_loaded_at = clock() if schema is not None else 0.0
        self._client: tuple[AccessToken, Salesforce] | None = None

    # --- CrmWriter --------------------------------------------------------------------

    def deliver(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        """Write the call to the org; idempotent per ``summary.call_sid``."""
        ctx = _Delivery(call_sid=summary.call_sid)
        try:
            result = self._deliver(ctx, summary, profile)
        except CrmError as exc:
            if exc.call_sid is None:
                exc.call_sid = summary.call_sid
            raise
        with self._lock:
            instance_url = self._client[0].instance_url if self._client else ""
        return dataclasses.replace(result, instance_url=instance_url)

    def _deliver(self, ctx: _Delivery, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        schema = self.schema(ctx)
        try:
            previous = self._previous_delivery(ctx, summary.call_sid, schema)
            lookup = self._lookup(ctx, summary, schema) if previous is None else Lookup()
        except CrmRejectedError as exc:
            if exc.error_code != "INVALID_FIELD":
                raise
            # A field our cached describe lists is gone (an admin deleted it): describe again.
            log.warning("org schema changed since it was cached; describing again")
            schema = self.schema(ctx, refresh=True)
            previous = self._previous_delivery(ctx, summary.call_sid, schema)
            lookup = self._lookup(ctx, summary, schema) if previous is None else Lookup()
        if previous is not None:
            log.info("call %s already delivered to %s", summary.call_sid, previous.record_id)
            return previous
        today = summary.call_date or dt.date.today()
        plan = plan_delivery(summary, profile, lookup, schema, today=today)
        for _attempt in range(MAX_COMPOSITE_ATTEMPTS):
            outcome = self._send(ctx, plan)
            if isinstance(outcome, DeliveryResult):
                if self.ledger is not None and outcome.record_type in ("Lead", "Contact"):
                    self.ledger.remember(
                        ledger_phones(summary),
                        outcome.record_type,
                        outcome.record_id,
                        summary.call_sid,
                    )
                log.info(
                    "call %s delivered to %s %s in %d requests",
                    summary.call_sid,
                    outcome.record_type,
                    outcome.record_id,
                    outcome.api_requests,
                )
                return outcome
            if isinstance(outcome, FoundRecord):
                plan = plan_delivery(
                    summary, profile, lookup, schema, today=today, duplicate_of=outcome
                )
            else:
                plan = outcome
        raise CrmRejectedError("the org kept rejecting fields of this call's records")

    def amend(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        """Write an amendment onto the records the call's first delivery created: the call
        Task's summary, the whole transcript again, a callback Task if newly asked for."""
        ctx = _Delivery(call_sid=summary.call_sid)
        try:
            schema = self.schema(ctx)
            tasks = (self._query(ctx, call_task_soql(summary.call_sid)) or {}).get("records") or []
            if not tasks or not tasks[0].get("WhoId"):
                return self._deliver(ctx, summary, profile)
            task = tasks[0]
            check = amendment_check_soql(summary.call_sid, summary.amendment)
            if (self._query(ctx, check) or {}).get("records"):
                return DeliveryResult(
                    record_type=record_type_of(str(task["WhoId"])),
                    record_id=str(task["WhoId"]),
                    api_requests=ctx.requests,
                    already_delivered=True,
                )
            callbacks = (self._query(ctx, open_callback_soql(str(task["WhoId"]))) or {}).get(
                "records"
            )
            delivered = DeliveredCall(
                task_id=str(task["Id"]),
                record_id=str(task["WhoId"]),
                account_id=str(task["WhatId"]) if task.get("WhatId") else None,
            )
            plan = plan_amendment(
                summary,
                profile,
                delivered,
                schema,
                today=summary.call_date or dt.date.today(),
                callback_already=bool(callbacks),
            )
            for _attempt in range(MAX_COMPOSITE_ATTEMPTS):
                outcome = self._send(ctx, plan)
                if isinstance(outcome, DeliveryResult):
                    return outcome
                if not isinstance(outcome, Plan):
                    break
                plan = outcome  # re-sent without a field the org rejected
            raise CrmRejectedError("the org rejected the amendment of this call's records")
        except CrmError as exc:
            if exc.call_sid is None:
                exc.call_sid = summary.call_sid
            raise

    # --- schema -----------------------------------------------------------------------

    def schema(self, ctx: _Delivery | None = None, *, refresh: bool = False) -> OrgSchema:
        """The org's schema for the objects we write (describe, cached for ``schema_ttl``)."""
        ctx = ctx or _Delivery(call_sid=None)
        with self._lock:
            fresh = self.clock() - self._schema_loaded_at < self.schema_ttl
            if self._schema is not None and fresh and not refresh:
                return self._schema
        # One composite of describe GETs (allOrNone false): one API request, not six.
        base = f"/services/data/v{self.config.api_version}/sobjects"
        body = {
            "allOrNone": False,
            "compositeRequest": [
                {"method": "GET", "url": f"{base}/{name}/describe", "referenceId": name}
                for name in DESCRIBED_OBJECTS
            ],
        }
        response = self._request(ctx, lambda sf: sf.restful("composite", method="POST", json=body))
        objects = {}
        for sub in (response or {}).get("compositeResponse") or []:
            if int(sub.get("httpStatusCode", 500)) == 200 and isinstance(sub.get("body"), dict):
                described = parse_describe(sub["body"])
                objects[described.name] = described
            else:
                # Not visible to the integration user: writes to it go unfitted and
                # `receptionist check` names the missing fields.
                log.warning(
                    "describe of %s failed: HTTP %s",
                    sub.get("referenceId"),
                    sub.get("httpStatusCode"),
                )
        schema = OrgSchema(objects)
        with self._lock:
            self._schema = schema
            self._schema_loaded_at = self.clock()
        return schema

    # --- the steps --------------------------------------------------------------------

    def _previous_delivery(
        self, ctx: _Delivery, call_sid: str, schema: OrgSchema
    ) -> DeliveryResult | None:
        soql = delivered_check_soql(call_sid, schema)
        result = self._request(ctx, lambda sf: sf.query(soql))
        records = (result or {}).get("records") or []
        if not records:
            return None
        task = records[0]
        who = task.get("WhoId")
        record_id = str(who or task["Id"])
        return DeliveryResult(
            record_type=record_type_of(record_id),
            record_id=record_id,
            api_requests=ctx.requests,
            already_delivered=True,
        )

    def _lookup(self, ctx: _Delivery, summary: CallSummary, schema: OrgSchema) -> Lookup:
        lookup = Lookup()
        sosl = phone_search_sosl(lookup_phone_terms(summary), schema)
        if sosl:
            lookup = parse_search_result(self._request(ctx, lambda sf: sf.search(sosl)))
        lookup = lookup.merged(self._ledger_lookup(ctx, summary, schema, lookup))
        email_sosl = email_search_sosl(summary.email, schema)
        if lookup.empty and email_sosl:
            lookup = parse_search_result(self._request(ctx, lambda sf: sf.search(email_sosl)))
        if summary.missed_call and not lookup.empty:
            # Another hang-up from a known number: is a callback already open on it?
            tasks = (self._query(ctx, open_callbacks_soql(lookup.record_ids)) or {}).get(
                "records"
            ) or []
            open_ids = frozenset(str(t.get("WhoId")) for t in tasks if t.get("WhoId"))
            lookup = Lookup(lookup.contacts, lookup.leads, open_ids)
        return lookup

    def _query(self, ctx: _Delivery, soql: str) -> Any:
        return self._request(ctx, lambda sf: sf.query(soql))

    def _ledger_lookup(
        self, ctx: _Delivery, summary: CallSummary, schema: OrgSchema, found: Lookup
    ) -> Lookup:
        """Records we wrote for this caller that SOSL did not return (its index lags):
        fetched by id with SOQL, which sees them at once — so still open, not converted or
        deleted. No request at all when SOSL already returned them."""
        if self.ledger is None:
            return Lookup()
        seen = {r.id for r in (*found.contacts, *found.leads)}
        missing: dict[str, list[str]] = {}
        for sobject, record_id in self.ledger.recent(ledger_phones(summary)):
            if record_id not in seen:
                missing.setdefault(sobject, []).append(record_id)
        contacts: tuple[FoundRecord, ...] = ()
        leads: tuple[FoundRecord, ...] = ()
        for sobject, ids in missing.items():
            soql = records_by_id_soql(sobject, ids, schema)
            if soql is None:
                continue
            records = parse_query_records(sobject, self._query(ctx, soql))
            if sobject == "Contact":
                contacts = records
            else:
                leads = records
        return Lookup(contacts=contacts, leads=leads)

    def _send(self, ctx: _Delivery, plan: Plan) -> DeliveryResult | FoundRecord | Plan:
        """One composite attempt: the result, a duplicate match, or the plan to re-send."""
        body = {"allOrNone": True, "compositeRequest": self._subrequests(plan)}
        response = self._request(ctx, lambda sf: sf.restful("composite", method="POST", json=body))
        results = {r["referenceId"]: r for r in (response or {}).get("compositeResponse", [])}
        failed = [r for r in results.values() if int(r.get("httpStatusCode", 500)) >= 300]
        if not failed:
            return self._result(ctx, plan, results)
        ref, status, error = _root_failure(failed)
        action = plan.action(ref)
        code = str(error.get("errorCode") or "")
        message = str(error.get("message") or "")
        sobject = action.sobject if action else "record"
        if status in TRANSIENT_STATUSES:
            raise CrmTransientError(f"Salesforce failed writing the {sobject}", error_code=code)
        if code == "REQUEST_LIMIT_EXCEEDED":
            raise CrmRateLimitedError("the org's API request limit is exhausted", error_code=code)
        if code == "DUPLICATES_DETECTED" and isinstance(action, CreateRecord):
            match = _duplicate_match(error)
            if match is not None:
                return match
        if code in FIELD_ERRORS and action is not None:
            names = [str(f) for f in error.get("fields") or []]
            if not names:
                names = NO_SUCH_COLUMN.findall(message)
            names = [n for n in names if n in action.fields]
            essential = ESSENTIAL_FIELDS.get(action.sobject, frozenset())
            if names and not set(names) & essential:
                for name in names:
                    ctx.warnings.append(
                        # The org's message quotes the rejected value (caller data):
                        # only the code and the field name are kept.
                        f"{action.sobject}.{name} rejected by the org ({code}); written without it"
                    )
                return plan.without_fields(ref, names)
        fields = ", ".join(str(f) for f in error.get("fields") or []) or "no field named"
        raise CrmRejectedError(f"the org rejected the {sobject} ({fields})", error_code=code)

    def _subrequests(self, plan: Plan) -> list[dict[str, Any]]:
        base = f"/services/data/v{self.config.api_version}/sobjects"
        out: list[dict[str, Any]] = []
        for action in plan.actions:
            sub: dict[str, Any] = {"referenceId": action.ref, "body": _wire(action.fields)}
            if isinstance(action, CreateRecord):
                sub.update(method="POST", url=f"{base}/{action.sobject}")
                if action.auto_assign:
                    sub["httpHeaders"] = {"Sforce-Auto-Assign": "TRUE"}
            elif isinstance(action, UpdateRecord):
                sub.update(method="PATCH", url=f"{base}/{action.sobject}/{action.record_id}")
                if action.sobject == "Lead":
                    # The default is TRUE: an update would hand an owned Lead to the rules.
                    sub["httpHeaders"] = {"Sforce-Auto-Assign": "FALSE"}
            else:
                external = quote(action.external_id, safe="")
                sub.update(
                    method="PATCH",
                    url=f"{base}/{action.sobject}/{action.external_id_field}/{external}",
                )
            out.append(sub)
        return out

    def _result(
        self, ctx: _Delivery, plan: Plan, results: Mapping[str, Mapping[str, Any]]
    ) -> DeliveryResult:
        ids: dict[str, str] = {}
        created: list[tuple[str, str]] = []
        updated: list[tuple[str, str]] = []
        for action in plan.actions:
            body = results.get(action.ref, {}).get("body") or {}
            if isinstance(action, UpdateRecord):
                ids[action.ref] = action.record_id
                updated.append((action.sobject, action.record_id))
                continue
            record_id = str(body.get("id", ""))
            ids[action.ref] = record_id
            if isinstance(action, UpsertRecord) and body.get("created") is False:
                updated.append((action.sobject, record_id))
            else:
                created.append((action.sobject, record_id))
        record_id = ids[plan.record.name] if isinstance(plan.record, Ref) else plan.record
        return DeliveryResult(
            record_type=plan.record_type,
            record_id=record_id,
            created=tuple(created),
            updated=tuple(updated),
            api_requests=ctx.requests,
            warnings=(*plan.warnings, *ctx.warnings),
        )

    # --- transport --------------------------------------------------------------------

    def _connection(self) -> tuple[AccessToken, Salesforce]:
        token = self.auth.token()
        with self._lock:
            if self._client is None or self._client[0] != token:
                client = Salesforce(
                    instance_url=token.instance_url,
                    session_id=token.access_token,
                    version=self.config.api_version,
                    session=self.session,
                )
                self._client = (token, client)
            return self._client

    def _request(self, ctx: _Delivery, call: Callable[[Salesforce], T]) -> T:
        """Run one data request; a 401 renews the token once and retries."""
        for attempt in range(2):
            token, sf = self._connection()
            ctx.requests += 1
            try:
                return call(sf)
            except SalesforceExpiredSession as exc:
                if attempt == 1:
                    raise CrmAuthError(
                        "Salesforce still refused the session after renewing the token",
                        error_code=_error_code(exc) or "INVALID_SESSION_ID",
                    ) from None
                self.auth.renew(token)
            except SalesforceError as exc:
                raise map_salesforce_error(exc) from None
            except requests.exceptions.SSLError:
                raise CrmConfigurationError(
                    "TLS verification of the Salesforce instance failed; check REQUESTS_CA_BUNDLE"
                ) from None
            except requests.RequestException as exc:
                raise CrmTransientError(
                    f"Salesforce request failed: {type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover


def map_salesforce_error(exc: SalesforceError) -> CrmError:
    """The crm.errors exception for a simple-salesforce error (status + errorCode)."""
    code = _error_code(exc)
    message = _error_message(exc) or f"HTTP {exc.status}"
    if code == "REQUEST_LIMIT_EXCEEDED":
        return CrmRateLimitedError(
            f"the org's API request limit is exhausted: {message}", error_code=code
        )
    if isinstance(exc, SalesforceGeneralError) and exc.status in TRANSIENT_STATUSES:
        return CrmTransientError(f"Salesforce is unavailable: {message}", error_code=code)
    if isinstance(exc, SalesforceGeneralError) and exc.status == 429:
        return CrmRateLimitedError(f"Salesforce is throttling: {message}", error_code=code)
    if isinstance(exc, SalesforceRefusedRequest):
        return CrmConfigurationError(
            f"Salesforce refused the request (check the integration user's permissions): {message}",
            error_code=code,
        )
    if isinstance(
        exc, SalesforceResourceNotFound | SalesforceMalformedRequest | SalesforceMoreThanOneRecord
    ):
        return CrmRejectedError(message, error_code=code)
    if exc.status >= 500:
        return CrmTransientError(f"Salesforce error: {message}", error_code=code)
    return CrmRejectedError(message, error_code=code)


def _first_error(exc: SalesforceError) -> Mapping[str, Any]:
    content: Any = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return content[0]
    if isinstance(content, Mapping):
        return content
    return {}


def _error_code(exc: SalesforceError) -> str | None:
    code = _first_error(exc).get("errorCode")
    return str(code) if code else None


def _error_message(exc: SalesforceError) -> str:
    """The org's message, without what it quotes of the request (``org_message``)."""
    message = str(_first_error(exc).get("message") or "")
    return org_message(message) if message else ""


def _root_failure(
    failed: list[Mapping[str, Any]],
) -> tuple[str, int, Mapping[str, Any]]:
    """The subrequest that failed (with allOrNone the others say PROCESSING_HALTED)."""
    fallback: tuple[str, int, Mapping[str, Any]] | None = None
    for response in failed:
        body = response.get("body")
        error: Mapping[str, Any] = {}
        if isinstance(body, list) and body and isinstance(body[0], Mapping):
            error = body[0]
        elif isinstance(body, Mapping):
            error = body
        item = (str(response.get("referenceId")), int(response.get("httpStatusCode", 500)), error)
        if error.get("errorCode") != "PROCESSING_HALTED":
            return item
        fallback = fallback or item
    assert fallback is not None
    return fallback


def _duplicate_match(error: Mapping[str, Any]) -> FoundRecord | None:
    """The first record a DUPLICATES_DETECTED error says the new one duplicates."""
    duplicate = error.get("duplicateResult") or {}
    for match in duplicate.get("matchResults") or []:
        for candidate in match.get("matchRecords") or []:
            record = candidate.get("record") or {}
            record_id = record.get("Id")
            if not record_id:
                continue
            sobject = (record.get("attributes") or {}).get("type") or match.get("entityType")
            fields = {k: v for k, v in record.items() if k != "attributes"}
            return FoundRecord(str(sobject or record_type_of(record_id)), str(record_id), fields)
    return None


def _wire(fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, Ref):
            out[name] = f"@{{{value.name}.id}}"
        elif isinstance(value, dt.date | dt.datetime):
            out[name] = value.isoformat()
        elif isinstance(value, str):
            # Composite reads "@{x.y}" anywhere in a body as a reference to another
            # subrequest; a caller's words must stay plain data (there is no escape).
            out[name] = value.replace("@{", "@ {")
        else:
            out[name] = value
    return out
