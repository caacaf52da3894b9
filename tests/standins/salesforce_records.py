"""The Salesforce stand-in's data: 18-character record ids, the record store, and the
validation a real org applies on create/update, with the real error codes and messages.

No HTTP here: :class:`Org` is driven by the server (tests/standins/salesforce.py) and by
tests seeding data. It is not thread-safe on its own; the server holds its lock.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.standins.salesforce_schema import (
    KEY_PREFIXES,
    LEAD_STATUSES,
    OPPORTUNITY_STAGES,
    TASK_PRIORITIES,
    TASK_STATUSES,
    FieldSpec,
    SObjectSpec,
)

Record = dict[str, Any]

_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ORG_ID = "00D5g00000StandEAB"


# ---------------------------------------------------------------- ids


def id_suffix(id15: str) -> str:
    """The documented 3-character case-safe suffix of a 15-character id."""
    suffix = ""
    for chunk in range(3):
        flags = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                flags |= 1 << position
        suffix += _SUFFIX_CHARS[flags]
    return suffix


def make_id(prefix: str, number: int) -> str:
    """An 18-character id: key prefix, a fake pod/instance part, a counter, the suffix."""
    digits = ""
    for _ in range(6):
        number, rem = divmod(number, 62)
        digits = _ID_CHARS[rem] + digits
    id15 = f"{prefix}5g0000{digits}"
    return id15 + id_suffix(id15)


def normalize_id(value: object) -> str | None:
    """``value`` as an 18-character id, or None when it is not a well-formed id."""
    if not isinstance(value, str) or not value.isalnum() or not value.isascii():
        return None
    if len(value) == 15:
        return value + id_suffix(value)
    if len(value) == 18 and id_suffix(value[:15]) == value[15:].upper():
        return value[:15] + id_suffix(value[:15])
    return None


def phone_key(text: str) -> str:
    """The stand-in's phone-matching rule: digits only, and a leading US country code 1
    dropped from an 11-digit number; two phones match when their keys are equal. So
    "(415) 555-0100", "+1 415-555-0100" and "4155550100" all share the key 4155550100."""
    digits = re.sub(r"\D", "", text)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits


def sobject_of_id(record_id: str) -> str | None:
    return KEY_PREFIXES.get(record_id[:3])


def timestamp(moment: dt.datetime | None = None) -> str:
    """A datetime as the REST API renders it: ``2024-05-01T21:04:05.000+0000``."""
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


# ---------------------------------------------------------------- errors


class ApiError(Exception):
    """A REST API error response: an HTTP status and the documented error list."""

    def __init__(self, status: int, errors: list[dict[str, Any]]):
        super().__init__(errors[0].get("message", "") if errors else "")
        self.status = status
        self.errors = errors

    @classmethod
    def of(
        cls, status: int, code: str, message: str, fields: Iterable[str] | None = None
    ) -> ApiError:
        error: dict[str, Any] = {"message": message, "errorCode": code}
        if fields is not None:
            error["fields"] = list(fields)
        return cls(status, [error])

    @property
    def code(self) -> str:
        return str(self.errors[0]["errorCode"]) if self.errors else ""


def not_found() -> ApiError:
    return ApiError.of(404, "NOT_FOUND", "The requested resource does not exist")


def invalid_type(name: str) -> ApiError:
    return ApiError.of(
        400,
        "INVALID_TYPE",
        f"sObject type '{name}' is not supported. If you are attempting to use a custom object,"
        " be sure to append the '__c' after the entity name. Please reference your WSDL or the"
        " describe call for the appropriate names.",
    )


def _parser_error(kind: str, value: object) -> ApiError:
    token = "VALUE_STRING" if isinstance(value, str) else "VALUE_NUMBER_INT"
    if isinstance(value, bool):
        token = "VALUE_TRUE" if value else "VALUE_FALSE"
    elif isinstance(value, float):
        token = "VALUE_NUMBER_FLOAT"
    elif isinstance(value, dict):
        token = "START_OBJECT"
    elif isinstance(value, list):
        token = "START_ARRAY"
    elif value is None:
        token = "VALUE_NULL"
    return ApiError.of(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {token} value {value} or request may be"
        " missing a required field at [line:1, column:1]",
    )


# ---------------------------------------------------------------- the org


@dataclass(frozen=True, slots=True)
class WriteContext:
    """Request-level facts a write needs: the API version and the Sforce-Auto-Assign value."""

    version: str = "62.0"
    auto_assign: bool | str = True


# Called before a Lead/Contact create is committed; returns the matched record ids when an
# injected DUPLICATES_DETECTED fault fires, else None.
DuplicateHook = Callable[[str, Record], list[str] | None]


class Org:
    """The org's records and the validation rules of the REST API's writes."""

    def __init__(self, schema: dict[str, SObjectSpec]):
        self.schema = schema
        self._by_lower = {name.lower(): spec for name, spec in schema.items()}
        self.store: dict[str, dict[str, Record]] = {name: {} for name in schema}
        self._counter = 0
        self.duplicate_hook: DuplicateHook | None = None
        # Salesforce indexes new records for search (SOSL) asynchronously — seconds to
        # minutes later. Records created through the API stay invisible to SOSL for this
        # long (SOQL sees them at once); seeded records are indexed already.
        self.index_lag_seconds = 0.0
        self.clock: Callable[[], float] = time.monotonic
        self.user_id = self._seed_user()
        self._seed_picklist_masters()

    # ----- schema lookups

    def spec(self, name: str) -> SObjectSpec | None:
        """The sObject called ``name`` (sObject names are case-insensitive)."""
        return self._by_lower.get(name.lower())

    def require_spec(self, name: str) -> SObjectSpec:
        spec = self.spec(name)
        if spec is None:
            raise not_found()
        return spec

    # ----- snapshots (composite allOrNone rollback)

    def snapshot(self) -> tuple[dict[str, dict[str, Record]], int]:
        return copy.deepcopy(self.store), self._counter

    def restore(self, snapshot: tuple[dict[str, dict[str, Record]], int]) -> None:
        self.store, self._counter = copy.deepcopy(snapshot[0]), snapshot[1]

    # ----- reads

    def find(self, record_id: str) -> tuple[str, Record] | None:
        """The (sObject name, record) with this id, of any type."""
        normalized = normalize_id(record_id)
        if normalized is None:
            return None
        for name, records in self.store.items():
            if normalized in records:
                return name, records[normalized]
        return None

    def get(self, sobject: str, record_id: str) -> Record | None:
        normalized = normalize_id(record_id)
        if normalized is None:
            return None
        return self.store[self.require_spec(sobject).name].get(normalized)

    def rendered(
        self, spec: SObjectSpec, record: Record, version: str, fields: list[str] | None = None
    ) -> Record:
        """A record as ``GET sobjects/{type}/{id}`` returns it."""
        out: Record = {"attributes": self.attributes(spec.name, record["Id"], version)}
        chosen = spec.fields
        if fields:
            chosen = tuple(self._field_or_error(spec, f) for f in fields)
        for fspec in chosen:
            value = record.get(fspec.name)
            if fspec.type == "base64" and value is not None:
                value = (
                    f"/services/data/v{version}/sobjects/{spec.name}/{record['Id']}/{fspec.name}"
                )
            out[fspec.name] = value
        return out

    @staticmethod
    def attributes(sobject: str, record_id: str, version: str) -> dict[str, str]:
        return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}

    def find_by_external_id(self, spec: SObjectSpec, fspec: FieldSpec, value: str) -> list[Record]:
        wanted = value if fspec.case_sensitive else value.lower()
        matches = []
        for record in self.store[spec.name].values():
            stored = record.get(fspec.name)
            if stored is None:
                continue
            stored = str(stored) if fspec.case_sensitive else str(stored).lower()
            if stored == wanted:
                matches.append(record)
        return matches

    # ----- seeding (bypasses validation)

    def next_id(self, spec: SObjectSpec) -> str:
        self._counter += 1
        return make_id(spec.key_prefix, self._counter)

    def seed(self, sobject: str, fields: Record) -> str:
        """Store a record as given (defaults filled in), without validation."""
        spec = self.require_spec(sobject)
        record: Record = {}
        for key, value in fields.items():
            fspec = spec.field(key)
            record[fspec.name if fspec else key] = value
        record_id = normalize_id(record.get("Id")) or self.next_id(spec)
        record["Id"] = record_id
        self._fill_defaults(spec, record, WriteContext())
        self._derive(spec, record)
        self.store[spec.name][record_id] = record
        return record_id

    def _seed_user(self) -> str:
        return self.seed(
            "User",
            {
                "Username": "integration@standin.example",
                "FirstName": "Integration",
                "LastName": "User",
                "Name": "Integration User",
                "Email": "integration@standin.example",
                "IsActive": True,
            },
        )

    def _seed_picklist_masters(self) -> None:
        for order, (value, default, converted) in enumerate(LEAD_STATUSES, 1):
            self._seed_master("LeadStatus", value, order, IsDefault=default, IsConverted=converted)
        for order, (value, probability, category, closed, won) in enumerate(OPPORTUNITY_STAGES, 1):
            self._seed_master(
                "OpportunityStage",
                value,
                order,
                IsClosed=closed,
                IsWon=won,
                DefaultProbability=probability,
                ForecastCategoryName=category,
            )
        for order, (value, default, closed) in enumerate(TASK_STATUSES, 1):
            self._seed_master("TaskStatus", value, order, IsDefault=default, IsClosed=closed)
        for order, (value, default, high) in enumerate(TASK_PRIORITIES, 1):
            self._seed_master("TaskPriority", value, order, IsDefault=default, IsHighPriority=high)

    def _seed_master(self, sobject: str, value: str, order: int, **extra: object) -> None:
        self.seed(
            sobject,
            {"MasterLabel": value, "ApiName": value, "SortOrder": order, "IsActive": True, **extra},
        )

    # ----- writes

    def create(self, sobject: str, body: object, ctx: WriteContext) -> str:
        """Validate and insert a record; returns its id or raises :class:`ApiError`."""
        spec = self.require_spec(sobject)
        if not spec.createable:
            raise ApiError.of(
                400, "INVALID_TYPE", f"entity type {spec.name} does not support insert"
            )
        fields = self._check_body(body)
        if any(key.lower() == "id" for key in fields):
            raise ApiError.of(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                "cannot specify Id in an insert call",
                ["Id"],
            )
        record = self._coerce_all(spec, fields, creating=True)
        self._check_required(spec, record, creating=True)
        self._fill_defaults(spec, record, ctx)
        self._check_references(spec, record)
        self._check_object_rules(spec, record, None)
        self._check_unique(spec, record, None)
        if spec.name in {"Lead", "Contact"} and self.duplicate_hook is not None:
            matches = self.duplicate_hook(spec.name, record)
            if matches is not None:
                raise self._duplicates_error(spec.name, matches, ctx.version)
        record["Id"] = self.next_id(spec)
        if spec.name == "Lead":
            record["_auto_assign"] = ctx.auto_assign is not False
            if isinstance(ctx.auto_assign, str):
                record["_assignment_rule_id"] = ctx.auto_assign
        self._derive(spec, record)
        if self.index_lag_seconds > 0:
            record["_indexed_at"] = self.clock() + self.index_lag_seconds
        self.store[spec.name][record["Id"]] = record
        self._after_insert(spec, record)
        return str(record["Id"])

    def searchable_now(self, record: Record) -> bool:
        """Whether SOSL sees ``record`` yet (see ``index_lag_seconds``)."""
        return float(record.get("_indexed_at", 0.0)) <= self.clock()

    def update(self, sobject: str, record_id: str, body: object, ctx: WriteContext) -> None:
        """Validate and apply a partial update (PATCH semantics)."""
        spec = self.require_spec(sobject)
        existing = self.get(spec.name, record_id)
        if existing is None:
            raise not_found()
        if not spec.updateable:
            raise ApiError.of(
                400, "INVALID_TYPE", f"entity type {spec.name} does not support update"
            )
        fields = self._check_body(body)
        if spec.name == "Lead" and existing.get("IsConverted"):
            raise ApiError.of(
                400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"
            )
        changes = self._coerce_all(spec, fields, creating=False)
        self._check_required(spec, {**existing, **changes}, creating=False, only=changes)
        self._check_references(spec, changes)
        merged = {**existing, **changes}
        self._check_object_rules(spec, merged, existing)
        self._check_unique(spec, changes, existing["Id"])
        if spec.name == "Opportunity" and "StageName" in changes and "Probability" not in changes:
            merged.pop("Probability", None)
        merged["LastModifiedDate"] = merged["SystemModstamp"] = timestamp()
        self._derive(spec, merged)
        existing.clear()
        existing.update(merged)

    def delete(self, sobject: str, record_id: str) -> None:
        spec = self.require_spec(sobject)
        existing = self.get(spec.name, record_id)
        if existing is None:
            raise not_found()
        if not spec.deletable:
            raise ApiError.of(
                400, "INVALID_TYPE", f"entity type {spec.name} does not support delete"
            )
        del self.store[spec.name][existing["Id"]]
        if spec.name == "ContentDocument":
            for name in ("ContentVersion", "ContentDocumentLink"):
                self.store[name] = {
                    k: r
                    for k, r in self.store[name].items()
                    if r.get("ContentDocumentId") != existing["Id"]
                }

    # ----- validation steps, in the order the errors are reported

    @staticmethod
    def _check_body(body: object) -> Record:
        if not isinstance(body, dict):
            raise _parser_error("SObject", body)
        return {k: v for k, v in body.items() if k != "attributes"}

    def _field_or_error(self, spec: SObjectSpec, name: str) -> FieldSpec:
        fspec = spec.field(name)
        if fspec is None:
            raise ApiError.of(
                400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}", []
            )
        return fspec

    def _coerce_all(self, spec: SObjectSpec, fields: Record, *, creating: bool) -> Record:
        specs = {key: self._field_or_error(spec, key) for key in fields}
        locked = [
            f.name for f in specs.values() if not (f.createable if creating else f.updateable)
        ]
        if locked:
            raise ApiError.of(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(locked)}. Please check the security"
                " settings of this field and verify that it is read/write for your profile or"
                " permission set.",
                locked,
            )
        return {specs[key].name: coerce_value(specs[key], value) for key, value in fields.items()}

    @staticmethod
    def _check_required(
        spec: SObjectSpec, record: Record, *, creating: bool, only: Record | None = None
    ) -> None:
        missing = [
            f.name
            for f in spec.fields
            if (f.required_on_create if creating else (not f.nillable and f.updateable))
            and record.get(f.name) is None
            and (only is None or f.name in only)
        ]
        if missing:
            raise ApiError.of(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )

    def _check_references(self, spec: SObjectSpec, record: Record) -> None:
        for fspec in spec.fields:
            value = record.get(fspec.name)
            if (
                fspec.type != "reference"
                or value is None
                or fspec.name in {"CreatedById", "LastModifiedById"}
            ):
                continue
            normalized = normalize_id(value)
            if normalized is None:
                raise ApiError.of(
                    400,
                    "MALFORMED_ID",
                    f"{fspec.label}: id value of incorrect type: {value}",
                    [fspec.name],
                )
            if sobject_of_id(normalized) not in fspec.reference_to:
                raise ApiError.of(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{fspec.label}: id value of incorrect type: {value}",
                    [fspec.name],
                )
            found = self.find(normalized)
            if found is None or found[0] not in fspec.reference_to:
                raise ApiError.of(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [fspec.name]
                )
            record[fspec.name] = normalized

    def _check_object_rules(
        self, spec: SObjectSpec, record: Record, existing: Record | None
    ) -> None:
        if spec.name == "Task":
            who, what = record.get("WhoId"), record.get("WhatId")
            if who and what and sobject_of_id(who) == "Lead":
                # Documented: a Task whose WhoId is a Lead cannot also have a WhatId. The exact
                # message of the real org is not certain; the error code is.
                raise ApiError.of(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "Related To ID: a task related to a lead cannot be related to another record",
                    ["WhatId"],
                )
        elif spec.name == "ContentVersion" and existing is None:
            if record.get("ContentDocumentId") and record.get("FirstPublishLocationId"):
                raise ApiError.of(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "First Publish Location ID: you cannot set a first publish location on a new"
                    " version of an existing document",
                    ["FirstPublishLocationId"],
                )
        elif spec.name == "ContentDocumentLink" and existing is None:
            for link in self.store["ContentDocumentLink"].values():
                if (link["ContentDocumentId"], link["LinkedEntityId"]) == (
                    normalize_id(record["ContentDocumentId"]),
                    normalize_id(record["LinkedEntityId"]),
                ):
                    # The real message names the duplicated value loosely; the code is certain.
                    raise ApiError.of(
                        400,
                        "DUPLICATE_VALUE",
                        "duplicate value found: <unknown> duplicates value on record with id:"
                        f" {link['Id']}",
                        [],
                    )

    def _check_unique(self, spec: SObjectSpec, record: Record, own_id: str | None) -> None:
        for fspec in spec.fields:
            value = record.get(fspec.name)
            if not fspec.unique or value is None:
                continue
            for other in self.find_by_external_id(spec, fspec, str(value)):
                if other["Id"] != own_id:
                    raise ApiError.of(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {fspec.name} duplicates value on record with"
                        f" id: {other['Id']}",
                        [],
                    )

    def _duplicates_error(self, sobject: str, matches: list[str], version: str) -> ApiError:
        message = (
            "You're creating a duplicate record. We recommend you use an existing record instead."
        )
        by_type: dict[str, list[str]] = {}
        for match in matches:
            by_type.setdefault(sobject_of_id(match) or sobject, []).append(match)
        rules = {
            "Lead": "Standard_Lead_Match_Rule_v1_0",
            "Contact": "Standard_Contact_Match_Rule_v1_1",
        }
        result = {
            "allowSave": False,
            "duplicateRule": f"Standard_{sobject}_Duplicate_Rule",
            "duplicateRuleEntityType": sobject,
            "errorMessage": message,
            "matchResults": [
                {
                    "entityType": entity,
                    "errors": [],
                    "matchEngine": "FuzzyMatchEngine",
                    "matchRecords": [
                        {
                            "additionalInformation": [],
                            "fieldDiffs": [],
                            "matchConfidence": 100.0,
                            "record": {
                                "attributes": self.attributes(entity, rid, version),
                                "Id": rid,
                            },
                        }
                        for rid in ids
                    ],
                    "rule": rules.get(entity, f"Standard_{entity}_Match_Rule_v1_0"),
                    "size": len(ids),
                    "success": True,
                }
                for entity, ids in by_type.items()
            ],
        }
        return ApiError(
            400,
            [{"duplicateResult": result, "errorCode": "DUPLICATES_DETECTED", "message": message}],
        )

    def similar_records(self, sobject: str, record: Record) -> list[str]:
        """Ids a standard matching rule would plausibly flag: same email, phone or name."""
        email = str(record.get("Email") or "").lower()
        phone = phone_key(str(record.get("Phone") or ""))
        name = (
            str(record.get("FirstName") or "").lower(),
            str(record.get("LastName") or "").lower(),
        )
        found = []
        for kind in ("Lead", "Contact"):
            for other in self.store[kind].values():
                other_name = (
                    str(other.get("FirstName") or "").lower(),
                    str(other.get("LastName") or "").lower(),
                )
                if (
                    (email and str(other.get("Email") or "").lower() == email)
                    or (phone and phone_key(str(other.get("Phone") or "")) == phone)
                    or (name[1] and other_name == name)
                ):
                    found.append(other["Id"])
        return found

    # ----- defaults and derived fields

    def _fill_defaults(self, spec: SObjectSpec, record: Record, ctx: WriteContext) -> None:
        now = timestamp()
        for fspec in spec.fields:
            if record.get(fspec.name) is not None or not fspec.defaulted_on_create:
                continue
            if fspec.type == "boolean":
                record[fspec.name] = False
            elif fspec.type == "picklist" and fspec.default_picklist_value():
                record[fspec.name] = fspec.default_picklist_value()
            elif fspec.type == "datetime":
                record[fspec.name] = now
            elif fspec.name in {"OwnerId", "CreatedById", "LastModifiedById"}:
                record[fspec.name] = self.user_id
        for fspec in spec.fields:
            record.setdefault(fspec.name, None)

    def _derive(self, spec: SObjectSpec, record: Record) -> None:
        if spec.name in {"Lead", "Contact"}:
            parts = [record.get("FirstName"), record.get("LastName")]
            record["Name"] = " ".join(str(p) for p in parts if p) or None
        elif spec.name == "Opportunity":
            stage = next((s for s in OPPORTUNITY_STAGES if s[0] == record.get("StageName")), None)
            if stage is not None:
                record["IsClosed"], record["IsWon"] = stage[3], stage[4]
                record["ForecastCategoryName"] = stage[2]
                if record.get("Probability") is None:
                    record["Probability"] = stage[1]
        elif spec.name == "Task":
            record["IsClosed"] = any(s[0] == record.get("Status") and s[2] for s in TASK_STATUSES)
            record["IsHighPriority"] = any(
                p[0] == record.get("Priority") and p[2] for p in TASK_PRIORITIES
            )
            record["AccountId"] = self._task_account(record)

    def _task_account(self, record: Record) -> str | None:
        what, who = record.get("WhatId"), record.get("WhoId")
        if what and sobject_of_id(what) == "Account":
            return str(what)
        if what and sobject_of_id(what) == "Opportunity":
            opportunity = self.store["Opportunity"].get(what)
            return opportunity.get("AccountId") if opportunity else None
        if who and sobject_of_id(who) == "Contact":
            contact = self.store["Contact"].get(who)
            return contact.get("AccountId") if contact else None
        return None

    def _after_insert(self, spec: SObjectSpec, record: Record) -> None:
        if spec.name != "ContentVersion":
            return
        data = base64.b64decode(record["VersionData"])
        record["_version_data"] = data
        path = str(record.get("PathOnClient") or "")
        extension = path.rsplit(".", 1)[1].lower() if "." in path else ""
        file_types = {"txt": "TEXT", "pdf": "PDF", "csv": "CSV", "json": "UNKNOWN", "png": "PNG"}
        record.update(
            {
                "ContentSize": len(data),
                "Checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                "FileExtension": extension or None,
                "FileType": file_types.get(extension, "UNKNOWN"),
                "IsLatest": True,
            }
        )
        document_id = record.get("ContentDocumentId")
        if document_id is None:
            document_id = self.seed(
                "ContentDocument",
                {
                    "Title": record["Title"],
                    "LatestPublishedVersionId": record["Id"],
                    "FileType": record["FileType"],
                    "FileExtension": record["FileExtension"],
                    "ContentSize": record["ContentSize"],
                    "OwnerId": record["OwnerId"],
                },
            )
            record["ContentDocumentId"] = document_id
            record["VersionNumber"] = "1"
            # The owner always gets a link to a new document; the first publish location too.
            for entity in (record["OwnerId"], record.get("FirstPublishLocationId")):
                if entity:
                    self.seed(
                        "ContentDocumentLink",
                        {
                            "ContentDocumentId": document_id,
                            "LinkedEntityId": entity,
                            "ShareType": "I" if entity == record["OwnerId"] else "V",
                            "Visibility": "AllUsers",
                        },
                    )
            return
        versions = [
            v
            for v in self.store["ContentVersion"].values()
            if v.get("ContentDocumentId") == document_id and v["Id"] != record["Id"]
        ]
        for version in versions:
            version["IsLatest"] = False
        record["VersionNumber"] = str(len(versions) + 1)
        document = self.store["ContentDocument"][document_id]
        document.update({"LatestPublishedVersionId": record["Id"], "Title": record["Title"]})


# ---------------------------------------------------------------- value coercion


def coerce_value(fspec: FieldSpec, value: object) -> object:
    """A JSON value checked against a field's type; raises :class:`ApiError` like the org."""
    if value is None or (fspec.is_text and value == ""):
        # The platform stores empty text as null.
        return None
    if fspec.type == "boolean":
        if not isinstance(value, bool):
            raise _parser_error("boolean", value)
        return value
    if fspec.is_text or fspec.type in {"id", "reference"}:
        return _coerce_text(fspec, value)
    if fspec.is_number:
        return _coerce_number(fspec, value)
    if fspec.type == "date":
        if not isinstance(value, str) or not _DATE.match(value) or not _valid_date(value):
            raise _parser_error("date", value)
        return value
    if fspec.type == "datetime":
        return normalize_datetime(value)
    if fspec.type == "base64":
        if not isinstance(value, str):
            raise _parser_error("base64", value)
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ApiError.of(400, "JSON_PARSER_ERROR", f"Illegal base64 data: {exc}") from None
        return value
    return value


def _coerce_text(fspec: FieldSpec, value: object) -> str:
    if isinstance(value, bool | dict | list):
        raise _parser_error("String", value)
    text = str(value)
    if fspec.is_text and fspec.length and len(text) > fspec.length:
        raise ApiError.of(
            400,
            "STRING_TOO_LONG",
            f"{fspec.label}: data value too large: {text} (max length={fspec.length})",
            [fspec.name],
        )
    if fspec.type == "email" and not _EMAIL.match(text):
        raise ApiError.of(
            400,
            "INVALID_EMAIL_ADDRESS",
            f"{fspec.label}: invalid email address: {text}",
            [fspec.name],
        )
    if fspec.type == "picklist" and fspec.restricted and text not in fspec.picklist_values():
        raise ApiError.of(
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{fspec.label}: bad value for restricted picklist field: {text}",
            [fspec.name],
        )
    return text


def _coerce_number(fspec: FieldSpec, value: object) -> int | float:
    kind = "int" if fspec.type == "int" else "double"
    # Stricter reading: numbers must be JSON numbers, not numeric strings.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _parser_error(kind, value)
    if fspec.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise _parser_error("int", value)
        number: int | float = int(value)
        limit = 10 ** (fspec.digits or 9)
    else:
        number = round(float(value), fspec.scale)
        limit = 10 ** (fspec.precision - fspec.scale)
    if abs(number) >= limit:
        raise ApiError.of(
            400,
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"{fspec.label}: value outside of valid range on numeric field: {value}",
            [fspec.name],
        )
    if fspec.type != "int" and fspec.scale == 0 and float(number).is_integer():
        return float(number)
    return number


def normalize_datetime(value: object) -> str:
    if not isinstance(value, str):
        raise _parser_error("datetime", value)
    text = value.replace("Z", "+00:00")
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _parser_error("datetime", value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return timestamp(moment.astimezone(dt.UTC))


def _valid_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True
