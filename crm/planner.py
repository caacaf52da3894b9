"""The CRM decision matrix: a call summary, what the lookup found and the org's schema in;
the records to write out. Pure: no I/O, no clock (``today`` is an argument).

The matrix (DESIGN.md, "The CRM decision matrix")::

    lookup by phone (caller ID and callback number) and by email
    ├── a Contact matched  → call Task on the Contact (WhatId = its Account);
    │                        new project → Opportunity on the Account + contact role
    ├── an open Lead matched → update it (Rating only goes up, Description appended)
    │                          and log the call Task on it
    └── nobody             → new Lead (auto-assigned), call Task on it
    always: the call Task (completed), the transcript as a ContentVersion on the record,
            an open callback Task when the caller asked for one

Both the Salesforce adapter and the local CRM execute the same plan, so the rules live
here once. The lookup queries are built here too, with values escaped, never spliced.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import phonenumbers

from agent.summary import CallSummary
from crm.config import CrmProfile
from crm.org_schema import OrgSchema, apply_overrides, fit_fields

RATING_ORDER: Mapping[str, int] = {"Cold": 1, "Warm": 2, "Hot": 3}
NO_LAST_NAME = "(not given)"
MISSED_CALL_NOTE = "Missed call"
OPPORTUNITY_CLOSE_DAYS = 30
CALL_SID_FIELD = "Call_SID__c"
URGENCY_FIELD = "Urgency_Level__c"
ID_PREFIXES: Mapping[str, str] = {
    "00Q": "Lead",
    "003": "Contact",
    "001": "Account",
    "00T": "Task",
    "006": "Opportunity",
    "00K": "OpportunityContactRole",
    "068": "ContentVersion",
    "069": "ContentDocument",
}
# Reserved characters in a SOSL FIND clause; each must be escaped with a backslash.
SOSL_RESERVED = frozenset("?&|!{}[]()^~*:\\\"'+-")
STREET_ABBREVIATIONS: Mapping[str, str] = {
    "street": "St",
    "avenue": "Ave",
    "road": "Rd",
    "drive": "Dr",
    "boulevard": "Blvd",
    "lane": "Ln",
    "court": "Ct",
    "place": "Pl",
    "terrace": "Ter",
    "circle": "Cir",
    "highway": "Hwy",
    "parkway": "Pkwy",
}


@dataclass(frozen=True, slots=True)
class Ref:
    """The id of the record another action of the same plan creates."""

    name: str


@dataclass(frozen=True, slots=True)
class CreateRecord:
    ref: str
    sobject: str
    fields: Mapping[str, Any]
    auto_assign: bool = False


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    ref: str
    sobject: str
    record_id: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UpsertRecord:
    """Create or update by an external-id field (the call Task by ``Call_SID__c``)."""

    ref: str
    sobject: str
    external_id_field: str
    external_id: str
    fields: Mapping[str, Any]


Action = CreateRecord | UpdateRecord | UpsertRecord


@dataclass(frozen=True, slots=True)
class FoundRecord:
    """A Contact or Lead the lookup returned, with the fields it was asked for."""

    sobject: str
    id: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the phone/email lookup found (converted Leads already excluded)."""

    contacts: tuple[FoundRecord, ...] = ()
    leads: tuple[FoundRecord, ...] = ()
    open_callbacks: frozenset[str] = frozenset()
    """Found records that already have an open callback Task (looked up for missed calls)."""

    def merged(self, other: Lookup) -> Lookup:
        seen = {r.id for r in (*self.contacts, *self.leads)}
        return Lookup(
            contacts=self.contacts + tuple(r for r in other.contacts if r.id not in seen),
            leads=self.leads + tuple(r for r in other.leads if r.id not in seen),
            open_callbacks=self.open_callbacks | other.open_callbacks,
        )

    @property
    def record_ids(self) -> list[str]:
        return [r.id for r in (*self.contacts, *self.leads)]

    @property
    def empty(self) -> bool:
        return not self.contacts and not self.leads


@dataclass(frozen=True, slots=True)
class Plan:
    """What to write for one call. ``record`` is the Lead/Contact everything hangs off."""

    record_type: str
    record: str | Ref
    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()

    def action(self, ref: str) -> Action | None:
        for action in self.actions:
            if action.ref == ref:
                return action
        return None

    def without_fields(self, ref: str, names: Iterable[str]) -> Plan:
        """This plan with ``names`` removed from action ``ref`` (the org rejected them)."""
        drop = set(names)
        actions = tuple(
            replace(a, fields={k: v for k, v in a.fields.items() if k not in drop})
            if a.ref == ref
            else a
            for a in self.actions
        )
        return replace(self, actions=actions)


# --- lookup queries ---------------------------------------------------------------------


def escape_sosl(term: str) -> str:
    """``term`` with every SOSL reserved character backslash-escaped."""
    return "".join("\\" + c if c in SOSL_RESERVED else c for c in term)


def escape_soql(value: str) -> str:
    """``value`` safe inside a single-quoted SOQL string literal."""
    escapes = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "".join(escapes.get(c, c) for c in value)


def parse_phone(raw: str | None, default_region: str = "US") -> phonenumbers.PhoneNumber | None:
    """A phone number from E.164 or a national format; None for anonymous/garbage."""
    if not raw or not any(c.isdigit() for c in raw):
        return None
    try:
        number = phonenumbers.parse(raw, None if raw.strip().startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def to_e164(raw: str | None, default_region: str = "US") -> str | None:
    """``raw`` as E.164 when it parses; the caller's words otherwise; None when empty."""
    if not raw or not raw.strip():
        return None
    number = parse_phone(raw, default_region)
    if number is None:
        return raw.strip()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def valid_email(raw: str | None) -> str | None:
    """``raw`` when it is an address Salesforce's Email field accepts (one ``@``, a dotted
    domain, no spaces, at most 80 characters); None otherwise — never sent to be rejected."""
    if not raw:
        return None
    email = raw.strip()
    if len(email) > 80 or ".." in email or not _EMAIL.match(email):
        return None
    return email


def dialable(number: str | None) -> str | None:
    """A phone number fit for a record's Phone field: E.164 only — never "anonymous",
    a cut-off ``sip:`` URI or other caller-ID junk."""
    return number if number and number.startswith("+") and number[1:].isdigit() else None


def caller_region(summary: CallSummary) -> str:
    number = parse_phone(summary.caller_phone)
    region = phonenumbers.region_code_for_number(number) if number else None
    return region or "US"


def callback_number(summary: CallSummary) -> str | None:
    """The number the caller wants to be called back on (E.164 when it parses)."""
    return to_e164(summary.callback_phone, caller_region(summary)) or to_e164(summary.caller_phone)


def lookup_phone_terms(summary: CallSummary) -> tuple[str, ...]:
    """Digit strings to search: national and international forms of caller ID and callback."""
    region = caller_region(summary)
    terms: list[str] = []
    for raw in (summary.caller_phone, summary.callback_phone):
        number = parse_phone(raw, region)
        if number is None:
            continue
        national = str(number.national_number)
        full = f"{number.country_code}{national}"
        for term in (national, full):
            if term not in terms:
                terms.append(term)
    return tuple(terms)


def _returning(schema: OrgSchema) -> str:
    contact_fields = "Id, FirstName, LastName, AccountId, Phone, MobilePhone, Email"
    lead_fields = "Id, FirstName, LastName, Company, Rating, Status, Phone, Email, Description"
    if schema.has_field("Contact", "LastModifiedDate"):
        contact_fields += ", LastModifiedDate"
    if schema.has_field("Lead", "LastModifiedDate"):
        lead_fields += ", LastModifiedDate"
    if schema.has_field("Lead", URGENCY_FIELD):
        lead_fields += f", {URGENCY_FIELD}"
    return f"Contact({contact_fields}), Lead({lead_fields} WHERE IsConverted = false)"


def phone_search_sosl(terms: Iterable[str], schema: OrgSchema) -> str | None:
    """The SOSL phone lookup for ``terms``; None when there is nothing to search.

    Only ASCII digit strings are searched (``lookup_phone_terms`` makes nothing else), so
    no term can carry a word such as ``OR``/``AND``/``NOT`` or a wildcard into the query.
    """
    # SOSL refuses a one-character term; a phone term is longer anyway.
    digits = [t for t in terms if len(t) >= 2 and t.isascii() and t.isdigit()]
    if not digits:
        return None
    return f"FIND {{{' OR '.join(digits)}}} IN PHONE FIELDS RETURNING {_returning(schema)}"


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_RE = re.compile(rf"[^\s@]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")


def email_search_sosl(email: str | None, schema: OrgSchema) -> str | None:
    """The SOSL e-mail lookup: one address (no spaces, one ``@``, a host name after it) as
    a quoted phrase with
    every reserved character escaped, so ``OR``/``AND``/``NOT`` or wildcards in what a
    caller spelled stay literal text. None when it is not an address."""
    address = (email or "").strip()
    if not _EMAIL_RE.fullmatch(address):
        return None
    phrase = escape_sosl(address)
    return f'FIND {{"{phrase}"}} IN EMAIL FIELDS RETURNING {_returning(schema)}'


def ledger_phones(summary: CallSummary) -> list[str]:
    """The caller's numbers as E.164, the keys of the phone ledger."""
    numbers = (dialable(to_e164(summary.caller_phone)), dialable(callback_number(summary)))
    return list(dict.fromkeys(n for n in numbers if n is not None))


def records_by_id_soql(sobject: str, ids: Iterable[str], schema: OrgSchema) -> str | None:
    """The exact SOQL fetch of records the phone ledger knows but SOSL did not return yet
    (the search index lags): the same fields as the SOSL lookup; converted Leads excluded."""
    wanted = [i for i in ids if re.fullmatch(r"[A-Za-z0-9]{15,18}", i)]
    if not wanted or sobject not in ("Lead", "Contact"):
        return None
    returning = _returning(schema)
    start = returning.index(f"{sobject}(") + len(sobject) + 1
    fields = returning[start : returning.index(")", start)].split(" WHERE ")[0]
    quoted = ", ".join(f"'{escape_soql(i)}'" for i in wanted)
    where = f"Id IN ({quoted})" + (" AND IsConverted = false" if sobject == "Lead" else "")
    return f"SELECT {fields} FROM {sobject} WHERE {where}"  # noqa: S608 - escaped ids


def parse_query_records(sobject: str, result: Mapping[str, Any] | None) -> tuple[FoundRecord, ...]:
    """FoundRecords from a SOQL response (``{"records": [...]}``)."""
    found = []
    for raw in (result or {}).get("records") or []:
        fields = {k: v for k, v in raw.items() if k != "attributes"}
        found.append(FoundRecord(sobject=sobject, id=str(raw["Id"]), fields=fields))
    return tuple(found)


def call_task_soql(call_sid: str) -> str:
    """The call's Task with the records it hangs off (an amendment updates them)."""
    sid = escape_soql(call_sid)
    return f"SELECT Id, WhoId, WhatId FROM Task WHERE CallObject = '{sid}'"  # noqa: S608


def amendment_check_soql(call_sid: str, amendment: int) -> str:
    """Finds the amended transcript if this amendment was written already."""
    title = escape_soql(amendment_title(call_sid, amendment))
    return f"SELECT Id FROM ContentVersion WHERE Title = '{title}'"  # noqa: S608


def open_callback_soql(record_id: str) -> str:
    """Finds an open callback Task on the record (an amendment adds none twice)."""
    return open_callbacks_soql([record_id])


def open_callbacks_soql(record_ids: Iterable[str]) -> str:
    """The open callback Tasks on these records (a missed call adds none twice)."""
    quoted = ", ".join(f"'{escape_soql(i)}'" for i in record_ids)
    return (
        "SELECT Id, WhoId FROM Task WHERE WhoId IN "  # noqa: S608 - ids are escaped
        f"({quoted}) AND Subject LIKE 'Call back%' AND IsClosed = false"
    )


def delivered_check_soql(call_sid: str, schema: OrgSchema) -> str:
    """The query that finds this call's Task if an earlier delivery wrote it."""
    column = CALL_SID_FIELD if uses_call_sid_upsert(schema) else "CallObject"
    # The value is escaped for a SOQL string literal; the column is one of two constants.
    return f"SELECT Id, WhoId FROM Task WHERE {column} = '{escape_soql(call_sid)}'"  # noqa: S608


def uses_call_sid_upsert(schema: OrgSchema) -> bool:
    info = schema.field("Task", CALL_SID_FIELD)
    return info is not None and info.external_id


def parse_search_result(result: Mapping[str, Any] | None) -> Lookup:
    """A Lookup from a SOSL response (``{"searchRecords": [...]}``)."""
    contacts: list[FoundRecord] = []
    leads: list[FoundRecord] = []
    for raw in (result or {}).get("searchRecords") or []:
        sobject = str((raw.get("attributes") or {}).get("type", ""))
        fields = {k: v for k, v in raw.items() if k != "attributes"}
        record = FoundRecord(sobject=sobject, id=str(raw["Id"]), fields=fields)
        if sobject == "Contact":
            contacts.append(record)
        elif sobject == "Lead" and not fields.get("IsConverted"):
            leads.append(record)
    return Lookup(contacts=tuple(contacts), leads=tuple(leads))


def record_type_of(record_id: str) -> str:
    return ID_PREFIXES.get(record_id[:3], "Unknown")


# --- the decision matrix ----------------------------------------------------------------


def choose(candidates: Iterable[FoundRecord], last_name: str | None) -> FoundRecord:
    """Deterministic pick: same last name first, then most recently modified, then id."""
    wanted = (last_name or "").strip().casefold()
    ordered = sorted(candidates, key=lambda r: r.id)
    ordered.sort(key=lambda r: r.text("LastModifiedDate"), reverse=True)
    ordered.sort(key=lambda r: 0 if wanted and r.text("LastName").casefold() == wanted else 1)
    return ordered[0]


def plan_delivery(
    summary: CallSummary,
    profile: CrmProfile,
    lookup: Lookup,
    schema: OrgSchema,
    *,
    today: dt.date,
    duplicate_of: FoundRecord | None = None,
) -> Plan:
    """The records to write for ``summary``. ``duplicate_of``: the org's duplicate rules
    matched this record when we tried to create a Lead — attach the call to it instead."""
    return _Planner(summary, profile, schema, today).plan(lookup, duplicate_of)


@dataclass(frozen=True, slots=True)
class DeliveredCall:
    """Where an earlier delivery of the call put it: its call Task and the record it is on."""

    task_id: str
    record_id: str
    account_id: str | None = None


def amendment_title(call_sid: str, amendment: int) -> str:
    """The amended transcript's title; its existence marks the amendment as written."""
    return f"Call transcript {call_sid} (amended {amendment})"


def plan_amendment(
    summary: CallSummary,
    profile: CrmProfile,
    delivered: DeliveredCall,
    schema: OrgSchema,
    *,
    today: dt.date,
    callback_already: bool,
) -> Plan:
    """The records an amendment updates: the call Task's summary (what the whole call
    said), the whole transcript attached again to the same record, and a callback Task
    when the later turns asked for one (``callback_already``: the first delivery had it)."""
    planner = _Planner(summary, profile, schema, today)
    planner.notes.append(
        f"Amended: the caller went on after the call was first recorded ({summary.amendment})."
    )
    description = planner._call_description()
    planner._add(
        UpdateRecord(
            "callTask",
            "Task",
            delivered.task_id,
            {
                "Description": description,
                "CallDurationInSeconds": summary.duration_seconds,
                "Priority": "High" if summary.urgency >= 4 else "Normal",
            },
        )
    )
    text = summary.transcript_text()
    sid = summary.call_sid
    planner._add(
        CreateRecord(
            "transcript",
            "ContentVersion",
            {
                "Title": amendment_title(sid, summary.amendment),
                "PathOnClient": f"transcript-{sid}-amended-{summary.amendment}.txt",
                "VersionData": base64.b64encode((text or "(no transcript)").encode("utf-8")).decode(
                    "ascii"
                ),
                "FirstPublishLocationId": delivered.record_id,
            },
        )
    )
    if summary.callback_requested and not callback_already:
        planner._place_callback_task(delivered.record_id, delivered.account_id)
    return Plan(
        record_type_of(delivered.record_id),
        delivered.record_id,
        tuple(planner.actions),
        tuple(planner.warnings),
    )


class _Planner:
    def __init__(
        self, summary: CallSummary, profile: CrmProfile, schema: OrgSchema, today: dt.date
    ):
        self.summary = summary
        self.profile = profile
        self.schema = schema
        self.today = today
        self.actions: list[Action] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []

    # the branches

    def plan(self, lookup: Lookup, duplicate_of: FoundRecord | None) -> Plan:
        account_id: str | None = None
        record: str | Ref
        if self.summary.missed_call:
            self.notes.append(MISSED_CALL_NOTE)
        if duplicate_of is not None:
            record_type, record = duplicate_of.sobject, duplicate_of.id
            account_id = duplicate_of.text("AccountId") or None
            self.notes.append(
                f"The org's duplicate rules matched {record_type} {record}; "
                "the call is attached to it."
            )
            self.warnings.append(f"duplicate rule matched {record_type} {record}; attached to it")
        elif lookup.contacts:
            contact = self._pick("Contact", lookup.contacts)
            record_type, record = "Contact", contact.id
            account_id = contact.text("AccountId") or None
            if self.summary.new_project:
                self._open_opportunity(contact, account_id)
        elif lookup.leads:
            lead = self._pick("Lead", lookup.leads)
            record_type, record = "Lead", lead.id
            self._update_lead(lead)
        else:
            record_type, record = "Lead", Ref("lead")
            self._create_lead()
        self._log_call(record, account_id)
        self._attach_transcript(record)
        if self.summary.callback_requested and not self._missed_callback_already_open(lookup):
            self._place_callback_task(record, account_id)
        return Plan(record_type, record, tuple(self.actions), tuple(self.warnings))

    def _missed_callback_already_open(self, lookup: Lookup) -> bool:
        """Repeated hang-ups from one number merge into one record: a missed call adds no
        callback Task where one is open already (the adapters look that up for missed
        calls), nor on a Lead a missed call created today (its Description is dated)."""
        if not self.summary.missed_call or lookup.empty:
            return False
        if lookup.contacts:
            return choose(lookup.contacts, None).id in lookup.open_callbacks
        lead = choose(lookup.leads, self.summary.last_name)
        if lead.id in lookup.open_callbacks:
            return True
        return f"[{self.today.isoformat()}] {MISSED_CALL_NOTE}" in lead.text("Description")

    def _pick(self, sobject: str, candidates: tuple[FoundRecord, ...]) -> FoundRecord:
        chosen = choose(candidates, self.summary.last_name)
        if len(candidates) > 1:
            others = ", ".join(r.id for r in candidates if r.id != chosen.id)
            self.notes.append(
                f"{len(candidates)} {sobject}s match this caller; chose {chosen.id} "
                f"({_name_of(chosen)}) by same last name, then most recently modified. "
                f"Also matched: {others}."
            )
        return chosen

    def _create_lead(self) -> None:
        s = self.summary
        description = self._lead_description()
        if s.missed_call:  # dated, so a second hang-up today finds and merges into it
            description = f"[{self.today.isoformat()}] {description}"
        values: dict[str, Any] = {
            "FirstName": s.first_name,
            "LastName": s.last_name or NO_LAST_NAME,
            "Company": self._company(),
            "Phone": dialable(callback_number(s)),
            "Email": valid_email(s.email),
            "Street": s.service_address,
            "Description": description,
            "LeadSource": self._lead_source(),
            "Status": self._picklist_default("Lead", "Status"),
            "Rating": s.rating,
        }
        if self.schema.has_field("Lead", URGENCY_FIELD):
            values[URGENCY_FIELD] = s.urgency
        self._add(CreateRecord("lead", "Lead", values, auto_assign=True))

    def _update_lead(self, lead: FoundRecord) -> None:
        s = self.summary
        values: dict[str, Any] = {}
        current = lead.text("Rating")
        if RATING_ORDER.get(s.rating, 0) > RATING_ORDER.get(current, 0):
            values["Rating"] = s.rating
        if self.schema.has_field("Lead", URGENCY_FIELD) and URGENCY_FIELD in lead.fields:
            previous = lead.fields.get(URGENCY_FIELD)
            if not isinstance(previous, int | float) or s.urgency > previous:
                values[URGENCY_FIELD] = s.urgency
        if valid_email(s.email) and not lead.text("Email"):
            values["Email"] = valid_email(s.email)
        values["Description"] = self._appended(
            lead.text("Description"), f"[{self.today.isoformat()}] {self._lead_description()}"
        )
        self._add(UpdateRecord("leadUpdate", "Lead", lead.id, values))

    def _open_opportunity(self, contact: FoundRecord, account_id: str | None) -> None:
        s = self.summary
        values: dict[str, Any] = {
            "Name": opportunity_name(s.need, s.service_address),
            "AccountId": account_id,
            "StageName": self._first_open_stage(),
            "CloseDate": self.today + dt.timedelta(days=OPPORTUNITY_CLOSE_DAYS),
            "LeadSource": self._lead_source(),
            "Description": self._lead_description(),
        }
        self._add(CreateRecord("opportunity", "Opportunity", values))
        self._add(
            CreateRecord(
                "contactRole",
                "OpportunityContactRole",
                {"ContactId": contact.id, "OpportunityId": Ref("opportunity"), "IsPrimary": True},
            )
        )

    def _log_call(self, record: str | Ref, account_id: str | None) -> None:
        s = self.summary
        subject = call_subject(s)
        if s.missed_call:
            subject = (
                f"{MISSED_CALL_NOTE} from {dialable(callback_number(s)) or 'a withheld number'}"
            )
        values: dict[str, Any] = {
            "Subject": subject,
            "TaskSubtype": "Call",
            "CallType": "Inbound",
            "CallDurationInSeconds": s.duration_seconds,
            "CallObject": s.call_sid,
            "Status": self._completed_status(),
            "Priority": "High" if s.urgency >= 4 else "Normal",
            "ActivityDate": self.today,
            "Description": self._call_description(),
            "WhoId": record,
            "WhatId": account_id,
        }
        if uses_call_sid_upsert(self.schema):
            self._add(UpsertRecord("callTask", "Task", CALL_SID_FIELD, s.call_sid, values))
        else:
            self._add(CreateRecord("callTask", "Task", values))

    def _attach_transcript(self, record: str | Ref) -> None:
        text = self.summary.transcript_text()
        if not text:
            return
        sid = self.summary.call_sid
        values = {
            "Title": f"Call transcript {sid}",
            "PathOnClient": f"transcript-{sid}.txt",
            "VersionData": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            "FirstPublishLocationId": record,
        }
        self._add(CreateRecord("transcript", "ContentVersion", values))

    def _place_callback_task(self, record: str | Ref, account_id: str | None) -> None:
        s = self.summary
        name = s.display_name if s.first_name or s.last_name else callback_number(s) or "caller"
        lines = [f"Call back {name} on {callback_number(s) or 'the number on the record'}."]
        if s.callback_window:
            lines.append(f"Caller asked for: {s.callback_window}")
        if s.need:
            lines.append(f"About: {s.need}")
        values: dict[str, Any] = {
            "Subject": f"Call back {name}",
            "ActivityDate": s.callback_due or self.today,
            "Priority": "High" if s.urgency >= 4 else "Normal",
            "Status": self._picklist_default("Task", "Status"),
            "Description": "\n".join(lines),
            "WhoId": record,
            "WhatId": account_id,
        }
        self._add(CreateRecord("callbackTask", "Task", values))

    # values

    def _company(self) -> str:
        s = self.summary
        if s.company:
            return s.company
        if self.profile.company_name:
            return self.profile.company_name
        if s.last_name:
            return f"{s.last_name} Household"
        if s.first_name:
            return f"{s.first_name} Household"
        return "Household (name not given)"

    def _lead_source(self) -> str:
        if self.summary.is_emergency:
            return self.profile.emergency_lead_source
        return self.profile.lead_source

    def _lead_description(self) -> str:
        s = self.summary
        if s.missed_call:
            number = dialable(callback_number(s)) or "a withheld number"
            return f"{MISSED_CALL_NOTE} from {number}. {s.details}".strip()
        parts = []
        if s.is_emergency:
            parts.append("EMERGENCY")
        if s.need:
            parts.append(s.need)
        text = " - ".join(parts) if parts else "Inbound call"
        lines = [text]
        if s.details and not _repeats(s.need, s.details):
            lines.append(s.details)
        if s.callback_requested:
            window = f" ({s.callback_window})" if s.callback_window else ""
            lines.append(f"Callback requested{window} on {callback_number(s) or 'unknown number'}.")
        caller_id = to_e164(s.caller_phone)
        if caller_id and callback_number(s) != caller_id:
            lines.append(f"Caller ID: {caller_id}.")
        lines.extend(self._language_note())
        return "\n".join(lines)

    def _language_note(self) -> list[str]:
        """Staff calling back need to know when the caller did not speak English."""
        language = self.summary.language.strip().lower()
        if not language or language.startswith("en"):
            return []
        return [f"Caller's language: {language} (call back in that language if possible)."]

    def _call_description(self) -> str:
        s = self.summary
        caller_id = to_e164(s.caller_phone) or "unknown number"
        lines = [f"Caller: {s.display_name} ({caller_id})"]
        number = callback_number(s)
        if number and number != caller_id:
            lines.append(f"Callback number: {number} (differs from caller ID)")
        lines.append(f"Need: {s.need or 'not stated'}")
        emergency = " - EMERGENCY" if s.is_emergency else ""
        lines.append(f"Urgency: {s.urgency}/5 ({s.rating}){emergency}")
        if s.service_address:
            lines.append(f"Address: {s.service_address}")
        if valid_email(s.email):
            lines.append(f"Email: {s.email}")
        elif s.email:
            lines.append("Email: what the caller gave is not a valid address (not saved)")
        if s.callback_requested:
            due = s.callback_due.isoformat() if s.callback_due else self.today.isoformat()
            lines.append(
                f"Callback requested: {s.callback_window or 'no window given'} (due {due})"
            )
        if s.details and not _repeats(s.need, s.details):
            lines.append(f"Details: {s.details}")
        lines.extend(self._language_note())
        lines.extend(self.notes)
        if s.transcript:
            lines.append("Full transcript attached as a file.")
        return "\n".join(lines)

    def _appended(self, previous: str, entry: str) -> str:
        text = f"{previous}\n\n{entry}" if previous else entry
        info = self.schema.field("Lead", "Description")
        if info and info.length and len(text) > info.length:
            # Keep the newest notes: drop the oldest text from the front.
            text = text[len(text) - info.length :]
        return text

    def _picklist_default(self, sobject: str, name: str) -> str | None:
        info = self.schema.field(sobject, name)
        if info is None:
            return None
        return info.default_value() or next(iter(info.active_values()), None)

    def _completed_status(self) -> str:
        info = self.schema.field("Task", "Status")
        if info is None:
            return "Completed"
        values = info.active_values()
        if "Completed" in values:
            return "Completed"
        return next((v for v in values if "complet" in v.casefold()), "Completed")

    def _first_open_stage(self) -> str | None:
        # describe() does not say which stages are closed (OpportunityStage.IsClosed does);
        # the standard closed stages are named "Closed ...", so skip those.
        info = self.schema.field("Opportunity", "StageName")
        if info is None:
            return "Prospecting"
        values = info.active_values()
        return next((v for v in values if not v.casefold().startswith("closed")), None)

    def _add(self, action: Action) -> None:
        creating = not isinstance(action, UpdateRecord)
        overridden = apply_overrides(
            action.sobject,
            action.fields,
            self.profile.field_overrides,
            self.schema,
            creating=creating,
        )
        fitted = fit_fields(
            action.sobject,
            overridden,
            self.schema,
            creating=creating,
            keep=("WhoId", "WhatId", "FirstPublishLocationId", "OpportunityId", "ContactId"),
        )
        self.warnings.extend(fitted.warnings)
        self.actions.append(replace(action, fields=fitted.fields))


def _name_of(record: FoundRecord) -> str:
    parts = [record.text("FirstName"), record.text("LastName")]
    return " ".join(p for p in parts if p) or "no name"


SUBJECT_NEED_CHARS = 80


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _repeats(need: str, details: str) -> bool:
    """The details say nothing the need line does not (staff should not read it twice)."""
    return bool(details.strip()) and _words(details) in {_words(need), ""}


def call_subject(summary: CallSummary) -> str:
    """ "Call: burst pipe in basement — EMERGENCY": the need as a short line, never the
    caller's whole sentence."""
    need = " ".join((summary.need or "inbound call").split())
    if len(need) > SUBJECT_NEED_CHARS:
        need = need[: SUBJECT_NEED_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;-") + "…"
    suffix = " — EMERGENCY" if summary.is_emergency else ""
    return f"Call: {need}{suffix}"


def opportunity_name(need: str, address: str | None) -> str:
    """E.g. "Smart Thermostat Installation - 123 Main St" from the need and the address."""
    title = re.sub(r"\s+", " ", need).strip() or "New project"
    title = " ".join(w[:1].upper() + w[1:] if w.islower() else w for w in title.split(" "))
    if not address:
        return title
    street = address.split(",")[0].strip()
    words = street.split(" ")
    if words and words[-1].casefold().rstrip(".") in STREET_ABBREVIATIONS:
        words[-1] = STREET_ABBREVIATIONS[words[-1].casefold().rstrip(".")]
    return f"{title} - {' '.join(words)}"
