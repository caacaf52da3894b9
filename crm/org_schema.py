"""What one org's objects look like (from ``describe()``) and fitting values to them.

Salesforce rejects a whole record for one field it does not like: a column the org does
not have, a string over the field's length, a value outside a restricted picklist. So
every record we write is fitted here first: unknown or read-only fields are dropped,
strings are truncated to the field's length, numbers are coerced, and a value a
restricted picklist would refuse is dropped — each dropped value reported as a warning.

Per-business overrides (``CrmProfile.field_overrides``) are applied before fitting, in
this format, per object::

    {"Lead": {"LeadSource": "=Phone Call",        # "=value": always this fixed value
              "Description": "@Call_Notes__c",    # "@Field": write the value to Field instead
              "Industry": "Residential"}}         # plain: a rename when the org has a field
                                                  # of that name on the object, else a value

Fixed values are set on records we create (never on updates of existing records);
renames apply to every write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TEXT_TYPES = frozenset(
    {
        "string",
        "textarea",
        "phone",
        "email",
        "url",
        "picklist",
        "multipicklist",
        "combobox",
        "encryptedstring",
    }
)
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
# Long text is expected to be cut (call notes); a cut name or phone is worth a warning.
QUIET_TRUNCATION_TYPES = frozenset({"textarea"})


@dataclass(frozen=True, slots=True)
class PicklistValue:
    value: str
    active: bool = True
    default: bool = False


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One field of one object as ``describe()`` reports it."""

    name: str
    type: str = "string"
    length: int = 0
    picklist: tuple[PicklistValue, ...] = ()
    restricted_picklist: bool = False
    createable: bool = True
    updateable: bool = True
    external_id: bool = False

    def active_values(self) -> tuple[str, ...]:
        return tuple(p.value for p in self.picklist if p.active)

    def default_value(self) -> str | None:
        for p in self.picklist:
            if p.active and p.default:
                return p.value
        return None


@dataclass(frozen=True, slots=True)
class ObjectSchema:
    """The fields of one sObject, by API name."""

    name: str
    fields: Mapping[str, FieldInfo]

    def has(self, field_name: str) -> bool:
        return field_name in self.fields

    def get(self, field_name: str) -> FieldInfo | None:
        return self.fields.get(field_name)


@dataclass(frozen=True, slots=True)
class OrgSchema:
    """The objects the CRM edge writes, as described by one org."""

    objects: Mapping[str, ObjectSchema] = field(default_factory=dict)

    def get(self, sobject: str) -> ObjectSchema | None:
        return self.objects.get(sobject)

    def has_field(self, sobject: str, field_name: str) -> bool:
        obj = self.objects.get(sobject)
        return obj is not None and obj.has(field_name)

    def field(self, sobject: str, field_name: str) -> FieldInfo | None:
        obj = self.objects.get(sobject)
        return obj.get(field_name) if obj else None

    def with_object(self, obj: ObjectSchema) -> OrgSchema:
        return OrgSchema({**self.objects, obj.name: obj})


@dataclass(frozen=True, slots=True)
class FitResult:
    fields: dict[str, Any]
    warnings: tuple[str, ...]


def parse_describe(describe: Mapping[str, Any]) -> ObjectSchema:
    """An ObjectSchema from the JSON of ``GET /sobjects/{name}/describe``."""
    fields: dict[str, FieldInfo] = {}
    for raw in describe.get("fields") or []:
        picklist = tuple(
            PicklistValue(
                value=str(p.get("value")),
                active=bool(p.get("active", True)),
                default=bool(p.get("defaultValue", False)),
            )
            for p in raw.get("picklistValues") or []
            if p.get("value") is not None
        )
        info = FieldInfo(
            name=str(raw["name"]),
            type=str(raw.get("type") or "string"),
            length=int(raw.get("length") or 0),
            picklist=picklist,
            restricted_picklist=bool(raw.get("restrictedPicklist", False)),
            createable=bool(raw.get("createable", True)),
            updateable=bool(raw.get("updateable", True)),
            external_id=bool(raw.get("externalId", False)),
        )
        fields[info.name] = info
    return ObjectSchema(name=str(describe["name"]), fields=fields)


def apply_overrides(
    sobject: str,
    values: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, str]],
    schema: OrgSchema,
    *,
    creating: bool,
) -> dict[str, Any]:
    """``values`` with the business's overrides for ``sobject`` applied (format above)."""
    result = dict(values)
    for field_name, spec in (overrides.get(sobject) or {}).items():
        if spec.startswith("="):
            if creating:
                result[field_name] = spec[1:]
            continue
        if spec.startswith("@"):
            target = spec[1:]
        elif spec != field_name and schema.has_field(sobject, spec):
            target = spec
        else:
            if creating:
                result[field_name] = spec
            continue
        if field_name in result:
            result[target] = result.pop(field_name)
    return result


def fit_fields(
    sobject: str,
    values: Mapping[str, Any],
    schema: OrgSchema,
    *,
    creating: bool,
    keep: Iterable[str] = (),
) -> FitResult:
    """Make ``values`` acceptable to the org's ``sobject`` (see the module docstring).

    Values that are not plain data (references to records created in the same request)
    pass through untouched. Fields in ``keep`` are never dropped for not being
    createable/updateable (relationship ids the describe may mark oddly).
    """
    obj = schema.get(sobject)
    if obj is None:
        return FitResult({k: v for k, v in values.items() if v is not None}, ())
    keep_set = set(keep)
    fitted: dict[str, Any] = {}
    warnings: list[str] = []
    for name, value in values.items():
        if value is None:
            continue
        info = obj.get(name)
        if info is None:
            warnings.append(f"{sobject}.{name} does not exist in this org; value not written")
            continue
        allowed = info.createable if creating else info.updateable
        if not allowed and name not in keep_set:
            verb = "created" if creating else "updated"
            warnings.append(f"{sobject}.{name} cannot be {verb} by the integration user; skipped")
            continue
        fitted_value, warning = _fit_value(sobject, info, value)
        if warning:
            warnings.append(warning)
        if fitted_value is not None:
            fitted[name] = fitted_value
    return FitResult(fitted, tuple(warnings))


def _fit_value(sobject: str, info: FieldInfo, value: Any) -> tuple[Any, str | None]:
    label = f"{sobject}.{info.name}"
    if info.type in TEXT_TYPES:
        if not isinstance(value, str):
            value = str(value)
        restricted = info.type == "picklist" and info.restricted_picklist
        if restricted and value not in info.active_values():
            return None, f"{label}: {value!r} is not one of the org's picklist values; dropped"
        if info.length and len(value) > info.length:
            cut = value[: info.length]
            if info.type in QUIET_TRUNCATION_TYPES:
                return cut, None
            return cut, f"{label} truncated to {info.length} characters"
        return value, None
    if info.type in NUMBER_TYPES:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            return (int(value) if info.type == "int" else value), None
        try:
            number = float(str(value))
        except ValueError:
            return None, f"{label}: {value!r} is not a number; dropped"
        return (int(number) if info.type == "int" else number), None
    if info.type == "boolean":
        return bool(value), None
    if info.type == "date" and isinstance(value, dt.date):
        return value.isoformat(), None
    if info.type == "datetime" and isinstance(value, dt.datetime):
        return value.isoformat(), None
    return value, None


# ---------------------------------------------------------------------------------------
# A standard org, for the local CRM and tests: the standard fields our writes touch, with
# the lengths and default picklists of a new Salesforce org (Enterprise edition).


def _text(name: str, length: int, kind: str = "string") -> FieldInfo:
    return FieldInfo(name=name, type=kind, length=length)


def _picklist(
    name: str, values: Iterable[str], default: str | None = None, restricted: bool = False
) -> FieldInfo:
    return FieldInfo(
        name=name,
        type="picklist",
        length=255,
        picklist=tuple(PicklistValue(v, default=(v == default)) for v in values),
        restricted_picklist=restricted,
    )


def _ref(name: str) -> FieldInfo:
    return FieldInfo(name=name, type="reference", length=18)


def _readonly(name: str, kind: str) -> FieldInfo:
    return FieldInfo(name=name, type=kind, createable=False, updateable=False)


STANDARD_LEAD_SOURCES = (
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
    "Phone Call - AI Receptionist",
    "Phone Call - Emergency",
)


def standard_org_schema(*, urgency_field: bool = True) -> OrgSchema:
    """The schema of a fresh org plus our optional custom field ``Lead.Urgency_Level__c``."""
    common = [_readonly("Id", "id"), _readonly("LastModifiedDate", "datetime")]
    lead = [
        *common,
        _text("FirstName", 40),
        _text("LastName", 80),
        _text("Company", 255),
        _text("Phone", 40, "phone"),
        _text("MobilePhone", 40, "phone"),
        _text("Email", 80, "email"),
        _text("Street", 255, "textarea"),
        _text("Description", 32000, "textarea"),
        _picklist("LeadSource", STANDARD_LEAD_SOURCES),
        _picklist(
            "Status",
            ["Open - Not Contacted", "Working - Contacted", "Closed - Converted"],
            default="Open - Not Contacted",
        ),
        _picklist("Rating", ["Hot", "Warm", "Cold"]),
        FieldInfo(name="IsConverted", type="boolean", createable=False, updateable=False),
    ]
    if urgency_field:
        lead.append(FieldInfo(name="Urgency_Level__c", type="double", length=0))
    contact = [
        *common,
        _text("FirstName", 40),
        _text("LastName", 80),
        _ref("AccountId"),
        _text("Phone", 40, "phone"),
        _text("MobilePhone", 40, "phone"),
        _text("Email", 80, "email"),
        _text("Description", 32000, "textarea"),
    ]
    account = [*common, _text("Name", 255), _text("Phone", 40, "phone")]
    task = [
        *common,
        _text("Subject", 255, "combobox"),
        _text("Description", 32000, "textarea"),
        _ref("WhoId"),
        _ref("WhatId"),
        FieldInfo(name="ActivityDate", type="date"),
        _picklist(
            "Status",
            ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"],
            default="Not Started",
            restricted=True,
        ),
        _picklist("Priority", ["High", "Normal", "Low"], default="Normal", restricted=True),
        FieldInfo(
            name="TaskSubtype",
            type="picklist",
            length=40,
            picklist=(PicklistValue("Task"), PicklistValue("Email"), PicklistValue("Call")),
            restricted_picklist=True,
            updateable=False,
        ),
        _picklist("CallType", ["Internal", "Inbound", "Outbound"], restricted=True),
        FieldInfo(name="CallDurationInSeconds", type="int"),
        _text("CallObject", 255),
    ]
    opportunity = [
        *common,
        _text("Name", 120),
        _ref("AccountId"),
        _picklist(
            "StageName",
            [
                "Prospecting",
                "Qualification",
                "Needs Analysis",
                "Value Proposition",
                "Proposal/Price Quote",
                "Negotiation/Review",
                "Closed Won",
                "Closed Lost",
            ],
            restricted=True,
        ),
        FieldInfo(name="CloseDate", type="date"),
        _picklist("LeadSource", STANDARD_LEAD_SOURCES),
        _text("Description", 32000, "textarea"),
    ]
    contact_role = [
        *common,
        _ref("ContactId"),
        FieldInfo(name="OpportunityId", type="reference", length=18, updateable=False),
        FieldInfo(name="IsPrimary", type="boolean"),
        _picklist("Role", ["Decision Maker", "Economic Buyer", "Influencer", "Other"]),
    ]
    content_version = [
        *common,
        _text("Title", 255),
        _text("PathOnClient", 500),
        FieldInfo(name="VersionData", type="base64"),
        FieldInfo(name="FirstPublishLocationId", type="reference", length=18, updateable=False),
        _readonly("ContentDocumentId", "reference"),
    ]
    objects = {
        "Lead": lead,
        "Contact": contact,
        "Account": account,
        "Task": task,
        "Opportunity": opportunity,
        "OpportunityContactRole": contact_role,
        "ContentVersion": content_version,
    }
    return OrgSchema(
        {
            name: ObjectSchema(name=name, fields={f.name: f for f in fields})
            for name, fields in objects.items()
        }
    )
