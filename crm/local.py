"""The embedded local CRM: the same decision matrix as Salesforce, records kept in the
service's own database. Used when no Salesforce credentials are configured (and by the
demo), so a business can start with nothing but a phone number.

Records are stored Salesforce-shaped (sObject name, an 18-character id with the real key
prefix, the field values as JSON), so what staff see locally is what Salesforce would
hold. A delivery runs in one transaction; a row per delivered call makes a second
delivery of the same CallSid write nothing, even from two workers at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from agent.summary import CallSummary
from crm.config import CrmProfile, DeliveryResult
from crm.errors import CrmRejectedError
from crm.org_schema import OrgSchema, standard_org_schema
from crm.planner import (
    ID_PREFIXES,
    DeliveredCall,
    FoundRecord,
    Lookup,
    Plan,
    Ref,
    UpdateRecord,
    UpsertRecord,
    amendment_title,
    lookup_phone_terms,
    parse_phone,
    plan_amendment,
    plan_delivery,
)
from crm.store import Base, upgrade_schema, utcnow

KEY_PREFIXES = {sobject: prefix for prefix, sobject in ID_PREFIXES.items()}


_stamp_lock = threading.Lock()
_last_stamp = dt.datetime.min.replace(tzinfo=dt.UTC)


def creation_stamp() -> dt.datetime:
    """Now, but strictly later than the last stamp this process handed out: the records
    one delivery creates in one flush (a Lead, its Tasks, the transcript) can share a
    microsecond, and ``dump`` lists records oldest first."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(utcnow(), _last_stamp + dt.timedelta(microseconds=1))
        return _last_stamp


class LocalRecord(Base):
    """One record of the local CRM (a Lead, Contact, Task, ...)."""

    __tablename__ = "local_crm_records"

    id: Mapped[str] = mapped_column(String(18), primary_key=True)
    sobject: Mapped[str] = mapped_column(String(64), index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=creation_stamp)
    modified_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LocalDelivery(Base):
    """The result of delivering one call; its primary key makes delivery idempotent."""

    __tablename__ = "local_crm_deliveries"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    result_json: Mapped[str] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def new_id(sobject: str) -> str:
    """An 18-character id with the sObject's real key prefix (e.g. ``00Q`` for Lead)."""
    prefix = KEY_PREFIXES.get(sobject, "a00")
    return (prefix + uuid.uuid4().hex.upper())[:18]


def _digits(value: Any) -> str:
    return "".join(c for c in str(value or "") if c.isdigit())


class LocalCrm:
    """A CrmWriter over the service's own database (see the module docstring)."""

    name = "local"

    def __init__(self, engine: Engine, *, schema: OrgSchema | None = None):
        self.engine = engine
        self.schema = schema or standard_org_schema()
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        # The tables come from the migrations (a no-op when the schema is already at head).
        upgrade_schema(engine)

    # --- CrmWriter --------------------------------------------------------------------

    def deliver(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        """Write the call's records; a CallSid delivered before writes nothing."""
        previous = self._previous_result(summary.call_sid)
        if previous is not None:
            return previous
        try:
            with self.sessions.begin() as session:
                lookup = self._lookup(session, summary)
                plan = plan_delivery(
                    summary,
                    profile,
                    lookup,
                    self.schema,
                    today=summary.call_date or dt.date.today(),
                )
                result = self._execute(session, plan, summary.call_sid)
                session.add(
                    LocalDelivery(
                        call_sid=summary.call_sid, result_json=json.dumps(_result_json(result))
                    )
                )
        except IntegrityError:
            # Another worker delivered the same call between our check and our commit.
            again = self._previous_result(summary.call_sid)
            if again is None:
                raise CrmRejectedError(
                    "local CRM refused the records", call_sid=summary.call_sid
                ) from None
            return again
        return result

    def amend(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        """The amendment onto the records the first delivery wrote (see ``CrmWriter``)."""
        with self.sessions.begin() as session:
            task = self._call_task(session, summary.call_sid)
            if task is None or not task.fields.get("WhoId"):
                delivered_before = False
            else:
                delivered_before = True
                who = str(task.fields["WhoId"])
                title = amendment_title(summary.call_sid, summary.amendment)
                if self._has(session, "ContentVersion", lambda f: f.get("Title") == title):
                    return DeliveryResult(
                        record_type=ID_PREFIXES.get(who[:3], "Unknown"),
                        record_id=who,
                        already_delivered=True,
                    )
                callback_open = self._has(
                    session,
                    "Task",
                    lambda f: (
                        f.get("WhoId") == who
                        and str(f.get("Subject", "")).startswith("Call back")
                        and f.get("Status") != "Completed"
                    ),
                )
                what = task.fields.get("WhatId")
                plan = plan_amendment(
                    summary,
                    profile,
                    DeliveredCall(task.id, who, str(what) if what else None),
                    self.schema,
                    today=summary.call_date or dt.date.today(),
                    callback_already=callback_open,
                )
                return self._execute(session, plan, summary.call_sid)
        if not delivered_before:
            return self.deliver(summary, profile)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _call_task(session: Session, call_sid: str) -> LocalRecord | None:
        for row in session.scalars(select(LocalRecord).where(LocalRecord.sobject == "Task")):
            if row.fields.get("CallObject") == call_sid:
                return row
        return None

    @staticmethod
    def _has(session: Session, sobject: str, test: Callable[[dict[str, Any]], bool]) -> bool:
        rows = session.scalars(select(LocalRecord).where(LocalRecord.sobject == sobject))
        return any(test(row.fields) for row in rows)

    # --- seeding and inspection -------------------------------------------------------

    def add_contact(
        self,
        *,
        first_name: str,
        last_name: str,
        phone: str,
        email: str | None = None,
        account_name: str | None = None,
    ) -> str:
        """Add an existing customer (and their Account); returns the Contact id."""
        with self.sessions.begin() as session:
            account_id = None
            if account_name:
                account_id = new_id("Account")
                session.add(
                    LocalRecord(id=account_id, sobject="Account", fields={"Name": account_name})
                )
            contact_id = new_id("Contact")
            fields: dict[str, Any] = {
                "FirstName": first_name,
                "LastName": last_name,
                "Phone": phone,
            }
            if email:
                fields["Email"] = email
            if account_id:
                fields["AccountId"] = account_id
            session.add(LocalRecord(id=contact_id, sobject="Contact", fields=fields))
        return contact_id

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every local record by sObject, oldest first; transcripts decoded to text."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.sessions() as session:
            rows = session.scalars(
                select(LocalRecord).order_by(LocalRecord.created_at, LocalRecord.id)
            )
            for row in rows:
                fields = dict(row.fields)
                if row.sobject == "ContentVersion" and "VersionData" in fields:
                    raw = base64.b64decode(str(fields["VersionData"]))
                    fields["VersionData"] = raw.decode("utf-8", "replace")
                out.setdefault(row.sobject, []).append({"Id": row.id, **fields})
        return out

    # --- internals --------------------------------------------------------------------

    def _previous_result(self, call_sid: str) -> DeliveryResult | None:
        with self.sessions() as session:
            row = session.get(LocalDelivery, call_sid)
            if row is None:
                return None
            data = json.loads(row.result_json)
        return DeliveryResult(
            record_type=data["record_type"],
            record_id=data["record_id"],
            created=tuple((t, i) for t, i in data["created"]),
            updated=tuple((t, i) for t, i in data["updated"]),
            warnings=tuple(data["warnings"]),
            already_delivered=True,
        )

    def _lookup(self, session: Session, summary: CallSummary) -> Lookup:
        terms = set(lookup_phone_terms(summary))
        email = (summary.email or "").strip().casefold()
        contacts: list[FoundRecord] = []
        leads: list[FoundRecord] = []
        rows = session.scalars(
            select(LocalRecord).where(LocalRecord.sobject.in_(("Contact", "Lead")))
        )
        for row in rows:
            fields = row.fields
            if row.sobject == "Lead" and fields.get("IsConverted"):
                continue
            if not (self._phone_matches(fields, terms) or _email_matches(fields, email)):
                continue
            found = FoundRecord(
                sobject=row.sobject,
                id=row.id,
                fields={**fields, "Id": row.id, "LastModifiedDate": row.modified_at.isoformat()},
            )
            (contacts if row.sobject == "Contact" else leads).append(found)
        open_ids: frozenset[str] = frozenset()
        if summary.missed_call and (contacts or leads):
            matched = {r.id for r in (*contacts, *leads)}
            open_ids = frozenset(
                str(row.fields.get("WhoId"))
                for row in session.scalars(select(LocalRecord).where(LocalRecord.sobject == "Task"))
                if row.fields.get("WhoId") in matched
                and str(row.fields.get("Subject", "")).startswith("Call back")
                and row.fields.get("Status") != "Completed"
            )
        return Lookup(contacts=tuple(contacts), leads=tuple(leads), open_callbacks=open_ids)

    @staticmethod
    def _phone_matches(fields: dict[str, Any], terms: set[str]) -> bool:
        for name in ("Phone", "MobilePhone"):
            number = parse_phone(str(fields.get(name) or ""))
            if number is not None:
                if {
                    str(number.national_number),
                    f"{number.country_code}{number.national_number}",
                } & terms:
                    return True
            elif _digits(fields.get(name)) and _digits(fields.get(name)) in terms:
                return True
        return False

    def _execute(self, session: Session, plan: Plan, call_sid: str) -> DeliveryResult:
        ids: dict[str, str] = {}
        created: list[tuple[str, str]] = []
        updated: list[tuple[str, str]] = []
        now = utcnow()
        for action in plan.actions:
            values = {
                k: (ids[v.name] if isinstance(v, Ref) else _jsonable(v))
                for k, v in action.fields.items()
            }
            if isinstance(action, UpdateRecord):
                row = session.get(LocalRecord, action.record_id)
                if row is None:
                    raise CrmRejectedError(
                        f"{action.sobject} {action.record_id} no longer exists",
                        call_sid=call_sid,
                        error_code="ENTITY_IS_DELETED",
                    )
                row.fields = {**row.fields, **values}
                row.modified_at = now
                ids[action.ref] = row.id
                updated.append((action.sobject, row.id))
            else:
                if isinstance(action, UpsertRecord):
                    values[action.external_id_field] = action.external_id
                record_id = new_id(action.sobject)
                if action.sobject == "ContentVersion":
                    values["ContentDocumentId"] = new_id("ContentDocument")
                session.add(
                    LocalRecord(
                        id=record_id, sobject=action.sobject, fields=values, modified_at=now
                    )
                )
                ids[action.ref] = record_id
                created.append((action.sobject, record_id))
        record_id = ids[plan.record.name] if isinstance(plan.record, Ref) else plan.record
        return DeliveryResult(
            record_type=plan.record_type,
            record_id=record_id,
            created=tuple(created),
            updated=tuple(updated),
            warnings=plan.warnings,
        )


def _email_matches(fields: dict[str, Any], email: str) -> bool:
    return bool(email) and str(fields.get("Email") or "").strip().casefold() == email


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _result_json(result: DeliveryResult) -> dict[str, Any]:
    return {
        "record_type": result.record_type,
        "record_id": result.record_id,
        "created": [list(p) for p in result.created],
        "updated": [list(p) for p in result.updated],
        "warnings": list(result.warnings),
    }


__all__ = ["LocalCrm", "LocalDelivery", "LocalRecord", "new_id"]
