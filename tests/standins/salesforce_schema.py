"""The Salesforce stand-in's org schema: standard objects with their real field names,
types, lengths, flags and stock picklist values, plus the describe JSON built from them.

Field facts follow the Salesforce Object Reference / Field Reference (e.g. Lead.LastName
string(80), Lead.Company string(255), Task.CallObject string(255), Opportunity.Name
string(120)). Where an org may differ (restricted vs unrestricted picklists) the stand-in
picks the stricter reading: every picklist here is restricted, so a value outside the
describe's ``picklistValues`` is rejected with INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST.

The REST describe's picklist entries carry only the documented keys (``active``,
``defaultValue``, ``label``, ``validFor``, ``value``). Opportunity stage semantics
(closed/won, default probability) are not on the describe: as in a real org they live on
the read-only ``OpportunityStage`` object (``IsClosed``, ``IsWon``, ``DefaultProbability``),
which the stand-in serves through SOQL, as it does ``LeadStatus``, ``TaskStatus`` and
``TaskPriority``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

API_VERSIONS = tuple(f"{major}.0" for major in range(50, 65))

# Key prefixes of the objects the stand-in stores, and of some it does not (so an id of
# another object's type is told apart from a malformed or unknown one).
KEY_PREFIXES: dict[str, str] = {
    "001": "Account",
    "003": "Contact",
    "005": "User",
    "006": "Opportunity",
    "00D": "Organization",
    "00G": "Group",
    "00K": "OpportunityContactRole",
    "00Q": "Lead",
    "00T": "Task",
    "00U": "Event",
    "01J": "PicklistMaster",
    "01t": "Product2",
    "02i": "Asset",
    "068": "ContentVersion",
    "069": "ContentDocument",
    "06A": "ContentDocumentLink",
    "0Q0": "Quote",
    "500": "Case",
    "501": "Solution",
    "701": "Campaign",
    "800": "Contract",
    "801": "Order",
}

_TEXT_TYPES = frozenset({"string", "textarea", "phone", "email", "url", "picklist", "combobox"})
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "base64": "xsd:base64Binary",
}


@dataclass(frozen=True, slots=True)
class PicklistValue:
    """One picklist entry as describe reports it."""

    value: str
    default: bool = False
    active: bool = True


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an sObject, with the describe flags the stand-in enforces."""

    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    picklist: tuple[PicklistValue, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    external_id: bool = False
    unique: bool = False
    custom: bool = False
    name_field: bool = False
    case_sensitive: bool = False

    @property
    def is_text(self) -> bool:
        return self.type in _TEXT_TYPES

    @property
    def is_long_text(self) -> bool:
        """Long text and blobs: not filterable, sortable or groupable in SOQL."""
        return self.type == "base64" or (self.type == "textarea" and self.length > 255)

    @property
    def is_number(self) -> bool:
        return self.type in {"double", "int", "currency", "percent"}

    @property
    def required_on_create(self) -> bool:
        """Must be given on create: not nillable, not defaulted, and writable."""
        return (
            not self.nillable
            and not self.defaulted_on_create
            and self.createable
            and self.type != "boolean"
        )

    def default_picklist_value(self) -> str | None:
        return next((p.value for p in self.picklist if p.default and p.active), None)

    def picklist_values(self) -> frozenset[str]:
        return frozenset(p.value for p in self.picklist if p.active)


@dataclass(frozen=True, slots=True)
class SObjectSpec:
    """An sObject type: its name, key prefix, fields and capabilities."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    searchable: bool = True
    _by_lower: dict[str, FieldSpec] = dataclasses.field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        self._by_lower.update({f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name`` (field names are case-insensitive in Salesforce)."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldSpec | None:
        """The reference field whose relationship name is ``name`` (e.g. Account)."""
        lowered = name.lower()
        return next(
            (
                f
                for f in self.fields
                if f.relationship_name and f.relationship_name.lower() == lowered
            ),
            None,
        )


# ---------------------------------------------------------------- field builders


def _pick(*values: str, default: str | None = None) -> tuple[PicklistValue, ...]:
    return tuple(PicklistValue(v, default=v == default) for v in values)


def _id() -> FieldSpec:
    return FieldSpec(
        "Id",
        "id",
        "Record ID",
        length=18,
        nillable=False,
        createable=False,
        updateable=False,
        defaulted_on_create=True,
    )


def _text(name: str, label: str, length: int, kind: str = "string", **kw: object) -> FieldSpec:
    return FieldSpec(name, kind, label, length=length, **kw)  # type: ignore[arg-type]


def _picklist(name: str, label: str, values: tuple[PicklistValue, ...], **kw: object) -> FieldSpec:
    return FieldSpec(name, "picklist", label, length=255, picklist=values, restricted=True, **kw)  # type: ignore[arg-type]


def _ref(name: str, label: str, to: tuple[str, ...], rel: str | None, **kw: object) -> FieldSpec:
    return FieldSpec(
        name,
        "reference",
        label,
        length=18,
        reference_to=to,
        relationship_name=rel,
        **kw,  # type: ignore[arg-type]
    )


def _readonly(spec: FieldSpec) -> FieldSpec:
    return FieldSpec(
        **{**_as_kwargs(spec), "createable": False, "updateable": False}  # type: ignore[arg-type]
    )


def _as_kwargs(spec: FieldSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in FieldSpec.__dataclass_fields__}


def _bool(name: str, label: str, **kw: object) -> FieldSpec:
    return FieldSpec(name, "boolean", label, nillable=False, defaulted_on_create=True, **kw)  # type: ignore[arg-type]


def _audit() -> tuple[FieldSpec, ...]:
    def stamp(name: str, label: str) -> FieldSpec:
        return FieldSpec(
            name,
            "datetime",
            label,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
        )

    def user(name: str, label: str, rel: str) -> FieldSpec:
        return _readonly(
            _ref(name, label, ("User",), rel, nillable=False, defaulted_on_create=True)
        )

    return (
        _bool("IsDeleted", "Deleted", createable=False, updateable=False),
        stamp("CreatedDate", "Created Date"),
        user("CreatedById", "Created By ID", "CreatedBy"),
        stamp("LastModifiedDate", "Last Modified Date"),
        user("LastModifiedById", "Last Modified By ID", "LastModifiedBy"),
        stamp("SystemModstamp", "System Modstamp"),
    )


def _owner(to: tuple[str, ...] = ("User",)) -> FieldSpec:
    return _ref("OwnerId", "Owner ID", to, "Owner", nillable=False, defaulted_on_create=True)


def _address(prefix: str, label: str) -> tuple[FieldSpec, ...]:
    return (
        _text(f"{prefix}Street", f"{label} Street", 255, "textarea"),
        _text(f"{prefix}City", f"{label} City", 40),
        _text(f"{prefix}State", f"{label} State/Province", 80),
        _text(f"{prefix}PostalCode", f"{label} Zip/Postal Code", 20),
        _text(f"{prefix}Country", f"{label} Country", 80),
    )


def _person_name() -> tuple[FieldSpec, ...]:
    return (
        _text("LastName", "Last Name", 80, nillable=False, name_field=False),
        _text("FirstName", "First Name", 40),
        _picklist("Salutation", "Salutation", _pick("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")),
        _readonly(_text("Name", "Full Name", 121, nillable=False, name_field=True)),
    )


def _description() -> FieldSpec:
    return _text("Description", "Description", 32000, "textarea")


# ---------------------------------------------------------------- stock picklists

STOCK_LEAD_SOURCES = (
    "Phone Call - AI Receptionist",
    "Phone Call - Emergency",
    "Phone Call - Inbound",
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
)

LEAD_STATUSES = (
    # (value, is_default, is_converted)
    ("Open - Not Contacted", True, False),
    ("Working - Contacted", False, False),
    ("Closed - Converted", False, True),
    ("Closed - Not Converted", False, False),
)

OPPORTUNITY_STAGES = (
    # (value, default probability, forecast category, closed, won)
    ("Prospecting", 10, "Pipeline", False, False),
    ("Qualification", 10, "Pipeline", False, False),
    ("Needs Analysis", 20, "Pipeline", False, False),
    ("Value Proposition", 50, "Pipeline", False, False),
    ("Id. Decision Makers", 60, "Pipeline", False, False),
    ("Perception Analysis", 70, "Pipeline", False, False),
    ("Proposal/Price Quote", 75, "Pipeline", False, False),
    ("Negotiation/Review", 90, "Pipeline", False, False),
    ("Closed Won", 100, "Closed", True, True),
    ("Closed Lost", 0, "Omitted", True, False),
)

TASK_STATUSES = (
    # (value, is_default, is_closed)
    ("Not Started", True, False),
    ("In Progress", False, False),
    ("Completed", False, True),
    ("Waiting on someone else", False, False),
    ("Deferred", False, False),
)

TASK_PRIORITIES = (
    # (value, is_default, is_high)
    ("High", False, True),
    ("Normal", True, False),
    ("Low", False, False),
)

INDUSTRIES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Other",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
)

ACTIVITY_WHAT_TYPES = (
    "Account",
    "Asset",
    "Campaign",
    "Case",
    "Contract",
    "Opportunity",
    "Order",
    "Product2",
    "Quote",
    "Solution",
)
FILE_PARENT_TYPES = ("Account", "Contact", "Lead", "Opportunity", "Task", "User")

# Custom fields the stand-in knows the shape of; any other name becomes Text(255).
KNOWN_CUSTOM_FIELDS: dict[str, FieldSpec] = {
    "Urgency_Level__c": FieldSpec(
        "Urgency_Level__c", "double", "Urgency Level", precision=1, scale=0, custom=True
    ),
    "Call_SID__c": FieldSpec(
        "Call_SID__c",
        "string",
        "Call SID",
        length=64,
        external_id=True,
        unique=True,
        custom=True,
    ),
}


def custom_field(name: str) -> FieldSpec:
    """The spec of custom field ``name`` (known shapes, else a Text(255) field)."""
    if not name.endswith("__c"):
        raise ValueError(f"custom field names end in __c: {name!r}")
    known = KNOWN_CUSTOM_FIELDS.get(name)
    if known is not None:
        return known
    return FieldSpec(name, "string", name[:-3].replace("_", " "), length=255, custom=True)


# ---------------------------------------------------------------- objects


def _lead(lead_sources: tuple[str, ...]) -> tuple[FieldSpec, ...]:
    return (
        _id(),
        *_person_name(),
        _text("Title", "Title", 128),
        _text("Company", "Company", 255, nillable=False),
        *_address("", ""),
        _text("Phone", "Phone", 40, "phone"),
        _text("MobilePhone", "Mobile Phone", 40, "phone"),
        _text("Fax", "Fax", 40, "phone"),
        _text("Email", "Email", 80, "email"),
        _text("Website", "Website", 255, "url"),
        _description(),
        _picklist("LeadSource", "Lead Source", _pick(*lead_sources)),
        _picklist(
            "Status",
            "Lead Status",
            _pick(*(s[0] for s in LEAD_STATUSES), default=LEAD_STATUSES[0][0]),
            nillable=False,
            defaulted_on_create=True,
        ),
        _picklist("Industry", "Industry", _pick(*INDUSTRIES)),
        _picklist("Rating", "Rating", _pick("Hot", "Warm", "Cold")),
        FieldSpec("AnnualRevenue", "currency", "Annual Revenue", precision=18, scale=0),
        FieldSpec("NumberOfEmployees", "int", "Employees", digits=8),
        _owner(("Group", "User")),
        _bool("HasOptedOutOfEmail", "Email Opt Out"),
        _bool("DoNotCall", "Do Not Call"),
        _bool("IsConverted", "Converted", createable=False, updateable=False),
        _readonly(FieldSpec("ConvertedDate", "date", "Converted Date")),
        _readonly(
            _ref("ConvertedAccountId", "Converted Account ID", ("Account",), "ConvertedAccount")
        ),
        _readonly(
            _ref("ConvertedContactId", "Converted Contact ID", ("Contact",), "ConvertedContact")
        ),
        _readonly(
            _ref(
                "ConvertedOpportunityId",
                "Converted Opportunity ID",
                ("Opportunity",),
                "ConvertedOpportunity",
            )
        ),
        _bool("IsUnreadByOwner", "Unread By Owner"),
        _readonly(FieldSpec("LastActivityDate", "date", "Last Activity")),
        *_audit(),
    )


def _contact(lead_sources: tuple[str, ...]) -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _ref("AccountId", "Account ID", ("Account",), "Account"),
        *_person_name(),
        *_address("Mailing", "Mailing"),
        *_address("Other", "Other"),
        _text("Phone", "Business Phone", 40, "phone"),
        _text("Fax", "Business Fax", 40, "phone"),
        _text("MobilePhone", "Mobile Phone", 40, "phone"),
        _text("HomePhone", "Home Phone", 40, "phone"),
        _text("OtherPhone", "Other Phone", 40, "phone"),
        _text("AssistantPhone", "Asst. Phone", 40, "phone"),
        _ref("ReportsToId", "Reports To ID", ("Contact",), "ReportsTo"),
        _text("Email", "Email", 80, "email"),
        _text("Title", "Title", 128),
        _text("Department", "Department", 80),
        _picklist("LeadSource", "Lead Source", _pick(*lead_sources)),
        FieldSpec("Birthdate", "date", "Birthdate"),
        _description(),
        _owner(),
        _bool("HasOptedOutOfEmail", "Email Opt Out"),
        _bool("DoNotCall", "Do Not Call"),
        _readonly(FieldSpec("LastActivityDate", "date", "Last Activity")),
        *_audit(),
    )


def _account(lead_sources: tuple[str, ...]) -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _text("Name", "Account Name", 255, nillable=False, name_field=True),
        _picklist(
            "Type",
            "Account Type",
            _pick(
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Channel Partner / Reseller",
                "Installation Partner",
                "Technology Partner",
                "Other",
            ),
        ),
        _ref("ParentId", "Parent Account ID", ("Account",), "Parent"),
        *_address("Billing", "Billing"),
        *_address("Shipping", "Shipping"),
        _text("Phone", "Account Phone", 40, "phone"),
        _text("Fax", "Account Fax", 40, "phone"),
        _text("Website", "Website", 255, "url"),
        _picklist("Industry", "Industry", _pick(*INDUSTRIES)),
        FieldSpec("AnnualRevenue", "currency", "Annual Revenue", precision=18, scale=0),
        FieldSpec("NumberOfEmployees", "int", "Employees", digits=8),
        _description(),
        _picklist("AccountSource", "Account Source", _pick(*lead_sources)),
        _owner(),
        _readonly(FieldSpec("LastActivityDate", "date", "Last Activity")),
        *_audit(),
    )


def _opportunity(lead_sources: tuple[str, ...]) -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _ref("AccountId", "Account ID", ("Account",), "Account"),
        _ref("ContactId", "Contact ID", ("Contact",), "Contact"),
        _text("Name", "Name", 120, nillable=False, name_field=True),
        _description(),
        _picklist("StageName", "Stage", _pick(*(s[0] for s in OPPORTUNITY_STAGES)), nillable=False),
        FieldSpec("Amount", "currency", "Amount", precision=18, scale=2),
        FieldSpec(
            "Probability",
            "percent",
            "Probability (%)",
            precision=3,
            scale=0,
            defaulted_on_create=True,
        ),
        FieldSpec("CloseDate", "date", "Close Date", nillable=False),
        _picklist(
            "Type",
            "Opportunity Type",
            _pick(
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "Existing Customer - Downgrade",
                "New Customer",
            ),
        ),
        _text("NextStep", "Next Step", 255),
        _picklist("LeadSource", "Lead Source", _pick(*lead_sources)),
        _bool("IsClosed", "Closed", createable=False, updateable=False),
        _bool("IsWon", "Won", createable=False, updateable=False),
        _picklist(
            "ForecastCategoryName",
            "Forecast Category",
            _pick("Omitted", "Pipeline", "Best Case", "Commit", "Closed"),
            defaulted_on_create=True,
        ),
        _owner(),
        _readonly(FieldSpec("LastActivityDate", "date", "Last Activity")),
        *_audit(),
    )


def _opportunity_contact_role() -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _ref(
            "OpportunityId",
            "Opportunity ID",
            ("Opportunity",),
            "Opportunity",
            nillable=False,
            updateable=False,
        ),
        _ref("ContactId", "Contact ID", ("Contact",), "Contact", nillable=False),
        _picklist(
            "Role",
            "Role",
            _pick(
                "Business User",
                "Decision Maker",
                "Economic Buyer",
                "Economic Decision Maker",
                "Evaluator",
                "Executive Sponsor",
                "Influencer",
                "Technical Buyer",
                "Other",
            ),
        ),
        _bool("IsPrimary", "Primary"),
        *_audit(),
    )


def _task() -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _ref("WhoId", "Name ID", ("Contact", "Lead"), "Who"),
        _ref("WhatId", "Related To ID", ACTIVITY_WHAT_TYPES, "What"),
        _text(
            "Subject",
            "Subject",
            255,
            "combobox",
            picklist=_pick("Call", "Send Letter", "Send Quote", "Other"),
        ),
        FieldSpec("ActivityDate", "date", "Due Date Only"),
        _picklist(
            "Status",
            "Status",
            _pick(*(s[0] for s in TASK_STATUSES), default=TASK_STATUSES[0][0]),
            nillable=False,
            defaulted_on_create=True,
        ),
        _picklist(
            "Priority",
            "Priority",
            _pick(*(p[0] for p in TASK_PRIORITIES), default="Normal"),
            nillable=False,
            defaulted_on_create=True,
        ),
        _bool("IsHighPriority", "High Priority", createable=False, updateable=False),
        _owner(("Group", "User")),
        _description(),
        _picklist("Type", "Type", _pick("Call", "Email", "Meeting", "Other")),
        _bool("IsClosed", "Closed", createable=False, updateable=False),
        _readonly(_ref("AccountId", "Account ID", ("Account",), "Account")),
        FieldSpec("CallDurationInSeconds", "int", "Call Duration", digits=9),
        _picklist("CallType", "Call Type", _pick("Internal", "Inbound", "Outbound")),
        _text("CallDisposition", "Call Result", 255),
        _text("CallObject", "Call Object Identifier", 255),
        FieldSpec("ReminderDateTime", "datetime", "Reminder Date/Time"),
        _bool("IsReminderSet", "Reminder Set"),
        _readonly(FieldSpec("CompletedDateTime", "datetime", "Completed Date/Time")),
        _picklist(
            "TaskSubtype",
            "Task Subtype",
            _pick("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"),
            updateable=False,
        ),
        *_audit(),
    )


def _content_version() -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _ref(
            "ContentDocumentId",
            "ContentDocument ID",
            ("ContentDocument",),
            "ContentDocument",
            updateable=False,
        ),
        _text("Title", "Title", 255, nillable=False),
        _text("PathOnClient", "Path On Client", 500, nillable=False, updateable=False),
        FieldSpec(
            "VersionData", "base64", "Version Data", length=0, nillable=False, updateable=False
        ),
        _text("Description", "Description", 1000, "textarea"),
        _text("ReasonForChange", "Reason For Change", 1000),
        _ref(
            "FirstPublishLocationId",
            "First Publish Location ID",
            FILE_PARENT_TYPES,
            "FirstPublishLocation",
            updateable=False,
        ),
        _picklist(
            "ContentLocation",
            "Content Location",
            _pick("S", "E", "L", default="S"),
            nillable=False,
            defaulted_on_create=True,
            updateable=False,
        ),
        _picklist(
            "Origin",
            "Content Origin",
            _pick("C", "H", default="C"),
            nillable=False,
            defaulted_on_create=True,
            updateable=False,
        ),
        _picklist(
            "SharingOption",
            "Prevent others from sharing and unsharing",
            _pick("A", "R", default="A"),
            nillable=False,
            defaulted_on_create=True,
        ),
        _picklist(
            "SharingPrivacy",
            "File Privacy on Records",
            _pick("N", "P", default="N"),
            nillable=False,
            defaulted_on_create=True,
        ),
        _bool("IsLatest", "Is Latest", createable=False, updateable=False),
        _readonly(_text("VersionNumber", "Version Number", 20)),
        _readonly(_text("FileType", "File Type", 20, nillable=False)),
        _readonly(_text("FileExtension", "File Extension", 40)),
        _readonly(FieldSpec("ContentSize", "int", "Size", digits=9)),
        _readonly(_text("Checksum", "Checksum", 50)),
        _owner(),
        *_audit(),
    )


def _content_document() -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _text("Title", "Title", 255, nillable=False, createable=False),
        _readonly(
            _ref(
                "LatestPublishedVersionId",
                "Latest Published Version ID",
                ("ContentVersion",),
                "LatestPublishedVersion",
            )
        ),
        _readonly(_text("FileType", "File Type", 20)),
        _readonly(_text("FileExtension", "File Extension", 40)),
        _readonly(FieldSpec("ContentSize", "int", "Size", digits=9)),
        _readonly(_ref("ParentId", "ContentWorkspace ID", ("ContentWorkspace",), None)),
        _ref("OwnerId", "Owner ID", ("User",), "Owner", nillable=False, createable=False),
        *_audit(),
    )


def _content_document_link() -> tuple[FieldSpec, ...]:
    return (
        _id(),
        _ref(
            "ContentDocumentId",
            "ContentDocument ID",
            ("ContentDocument",),
            "ContentDocument",
            nillable=False,
            updateable=False,
        ),
        _ref(
            "LinkedEntityId",
            "Linked Entity ID",
            FILE_PARENT_TYPES,
            "LinkedEntity",
            nillable=False,
            updateable=False,
        ),
        _picklist(
            "ShareType",
            "Share Type",
            _pick("V", "C", "I", default="V"),
            nillable=False,
            defaulted_on_create=True,
        ),
        _picklist(
            "Visibility",
            "Visibility",
            _pick("AllUsers", "InternalUsers", "SharedUsers", default="AllUsers"),
            nillable=False,
            defaulted_on_create=True,
        ),
        _bool("IsDeleted", "Deleted", createable=False, updateable=False),
        _readonly(FieldSpec("SystemModstamp", "datetime", "System Modstamp", nillable=False)),
    )


def _user() -> tuple[FieldSpec, ...]:
    return tuple(
        _readonly(f)
        for f in (
            _id(),
            _text("Username", "Username", 80, nillable=False),
            _text("LastName", "Last Name", 80, nillable=False),
            _text("FirstName", "First Name", 40),
            _text("Name", "Full Name", 121, nillable=False, name_field=True),
            _text("Email", "Email", 128, "email", nillable=False),
            _bool("IsActive", "Active"),
        )
    )


def _picklist_master(extra: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
    return tuple(
        _readonly(f)
        for f in (
            _id(),
            _text("MasterLabel", "Master Label", 255, nillable=False),
            _text("ApiName", "Api Name", 255, nillable=False),
            FieldSpec("SortOrder", "int", "Sort Order", digits=9),
            _bool("IsActive", "Is Active"),
            *extra,
            *_audit(),
        )
    )


def _spec(
    name: str, plural: str, prefix: str, fields: tuple[FieldSpec, ...], **kw: bool
) -> SObjectSpec:
    label = {
        "OpportunityContactRole": "Contact Role",
        "ContentDocumentLink": "Content Document Link",
    }
    return SObjectSpec(name, label.get(name, name), plural, prefix, fields, **kw)


# Read-only objects are never writable through the API.
_READ_ONLY = {"createable": False, "updateable": False, "deletable": False, "searchable": False}


def build_schema(
    custom_fields: dict[str, list[str]], lead_sources: list[str]
) -> dict[str, SObjectSpec]:
    """The org's objects by name, with ``custom_fields`` added to their objects."""
    key = tuple((name, tuple(fields)) for name, fields in sorted(custom_fields.items()))
    return dict(_build_schema(key, tuple(lead_sources)))


@functools.lru_cache(maxsize=32)
def _build_schema(
    custom_fields: tuple[tuple[str, tuple[str, ...]], ...], sources: tuple[str, ...]
) -> dict[str, SObjectSpec]:
    # Specs are immutable, so orgs with the same configuration share them.
    objects = {
        "Lead": _spec("Lead", "Leads", "00Q", _lead(sources)),
        "Contact": _spec("Contact", "Contacts", "003", _contact(sources)),
        "Account": _spec("Account", "Accounts", "001", _account(sources)),
        "Opportunity": _spec("Opportunity", "Opportunities", "006", _opportunity(sources)),
        "OpportunityContactRole": _spec(
            "OpportunityContactRole",
            "Contact Roles",
            "00K",
            _opportunity_contact_role(),
            searchable=False,
        ),
        "Task": _spec("Task", "Tasks", "00T", _task()),
        "ContentVersion": _spec(
            "ContentVersion", "Content Versions", "068", _content_version(), deletable=False
        ),
        "ContentDocument": _spec(
            "ContentDocument",
            "Content Documents",
            "069",
            _content_document(),
            createable=False,
            updateable=False,
        ),
        "ContentDocumentLink": _spec(
            "ContentDocumentLink",
            "Content Document Links",
            "06A",
            _content_document_link(),
            updateable=False,
            searchable=False,
        ),
        "User": _spec("User", "Users", "005", _user(), **_READ_ONLY),
        "OpportunityStage": _spec(
            "OpportunityStage",
            "Opportunity Stages",
            "01J",
            _picklist_master(
                (
                    _bool("IsClosed", "Closed"),
                    _bool("IsWon", "Won"),
                    FieldSpec(
                        "DefaultProbability", "percent", "Probability (%)", precision=3, scale=0
                    ),
                    _text("ForecastCategoryName", "Forecast Category Name", 40),
                )
            ),
            **_READ_ONLY,
        ),
        "LeadStatus": _spec(
            "LeadStatus",
            "Lead Status Values",
            "01J",
            _picklist_master(
                (_bool("IsDefault", "Is Default"), _bool("IsConverted", "Is Converted"))
            ),
            **_READ_ONLY,
        ),
        "TaskStatus": _spec(
            "TaskStatus",
            "Task Status Values",
            "01J",
            _picklist_master((_bool("IsDefault", "Is Default"), _bool("IsClosed", "Is Closed"))),
            **_READ_ONLY,
        ),
        "TaskPriority": _spec(
            "TaskPriority",
            "Task Priority Values",
            "01J",
            _picklist_master(
                (_bool("IsDefault", "Is Default"), _bool("IsHighPriority", "Is High"))
            ),
            **_READ_ONLY,
        ),
    }
    for sobject, names in custom_fields:
        base = objects[sobject]
        added = tuple(custom_field(n) for n in names if base.field(n) is None)
        objects[sobject] = SObjectSpec(
            base.name,
            base.label,
            base.label_plural,
            base.key_prefix,
            base.fields + added,
            base.createable,
            base.updateable,
            base.deletable,
            base.searchable,
        )
    return objects


# ---------------------------------------------------------------- describe JSON


def describe_field(spec: FieldSpec) -> dict[str, object]:
    """The describe JSON of one field (the keys of the REST DescribeFieldResult)."""
    text = spec.is_text or spec.type in {"id", "reference"}
    long_text = spec.is_long_text
    return {
        "aggregatable": not long_text,
        "autoNumber": False,
        "byteLength": spec.length * 3 if spec.is_text else spec.length,
        "calculated": False,
        "cascadeDelete": False,
        "caseSensitive": spec.case_sensitive,
        "controllerName": None,
        "createable": spec.createable,
        "custom": spec.custom,
        "defaultValue": None,
        "defaultValueFormula": None,
        "defaultedOnCreate": spec.defaulted_on_create,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": spec.digits,
        "externalId": spec.external_id,
        "filterable": not long_text,
        "groupable": not long_text and spec.type not in {"double", "currency", "percent"},
        "htmlFormatted": False,
        "idLookup": spec.type == "id" or spec.external_id or spec.name in {"Email", "Username"},
        "inlineHelpText": None,
        "label": spec.label,
        "length": spec.length if text else 0,
        "name": spec.name,
        "nameField": spec.name_field,
        "namePointing": spec.reference_to == ("Contact", "Lead")
        or spec.reference_to == ACTIVITY_WHAT_TYPES,
        "nillable": spec.nillable,
        "permissionable": spec.nillable and spec.updateable,
        "picklistValues": [
            {
                "active": p.active,
                "defaultValue": p.default,
                "label": p.value,
                "validFor": None,
                "value": p.value,
            }
            for p in spec.picklist
        ],
        "polymorphicForeignKey": len(spec.reference_to) > 1,
        "precision": spec.precision,
        "referenceTo": list(spec.reference_to),
        "relationshipName": spec.relationship_name,
        "relationshipOrder": None,
        "restrictedPicklist": spec.restricted,
        "scale": spec.scale,
        "soapType": _SOAP_TYPES.get(spec.type, "xsd:string"),
        "sortable": not long_text,
        "type": spec.type,
        "unique": spec.unique,
        "updateable": spec.updateable,
    }


def sobject_urls(name: str, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{name}"
    return {
        "sobject": base,
        "describe": f"{base}/describe",
        "rowTemplate": f"{base}/{{ID}}",
    }


def describe_global_entry(spec: SObjectSpec, version: str) -> dict[str, object]:
    """One entry of ``GET /sobjects`` (describeGlobal)."""
    return {
        "activateable": False,
        "createable": spec.createable,
        "custom": False,
        "customSetting": False,
        "deletable": spec.deletable,
        "deprecatedAndHidden": False,
        "feedEnabled": spec.name in {"Lead", "Contact", "Account", "Opportunity"},
        "hasSubtypes": False,
        "isSubtype": False,
        "keyPrefix": spec.key_prefix,
        "label": spec.label,
        "labelPlural": spec.label_plural,
        "layoutable": spec.createable,
        "mergeable": spec.name in {"Lead", "Contact", "Account"},
        "mruEnabled": spec.createable,
        "name": spec.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": spec.searchable,
        "triggerable": spec.createable,
        "undeletable": spec.deletable,
        "updateable": spec.updateable,
        "urls": sobject_urls(spec.name, version),
    }


def describe_sobject(spec: SObjectSpec, version: str) -> dict[str, object]:
    """The full ``GET /sobjects/{name}/describe`` body."""
    body = describe_global_entry(spec, version)
    body.update(
        {
            "actionOverrides": [],
            "childRelationships": [],
            "compactLayoutable": spec.createable,
            "fields": [describe_field(f) for f in spec.fields],
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": True,
                    "developerName": "Master",
                    "master": True,
                    "name": "Master",
                    "recordTypeId": "012000000000000AAA",
                    "urls": {
                        "layout": f"/services/data/v{version}/sobjects/{spec.name}"
                        "/describe/layouts/012000000000000AAA"
                    },
                }
            ]
            if spec.createable
            else [],
            "searchLayoutable": spec.searchable,
            "supportedScopes": [{"label": "All records", "name": "everything"}],
        }
    )
    return body
