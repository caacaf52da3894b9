"""Plain values the CRM edge is configured with (the telephony settings build them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.summary import CallSummary


@dataclass(frozen=True, slots=True)
class SalesforceConfig:
    """How to reach one Salesforce org. Secrets are plain strings here: never log this."""

    login_url: str
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    username: str = ""
    private_key_file: Path | None = None
    access_token: str = field(default="", repr=False)
    instance_url: str = ""
    api_version: str = "62.0"
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class CrmProfile:
    """What the CRM needs to know about the business a call was for."""

    business: str
    lead_source: str = "Phone Call - AI Receptionist"
    emergency_lead_source: str = "Phone Call - Emergency"
    company_name: str | None = None
    field_overrides: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a delivery wrote: the main record and everything attached to it."""

    record_type: str
    record_id: str
    created: tuple[tuple[str, str], ...] = ()
    updated: tuple[tuple[str, str], ...] = ()
    api_requests: int = 0
    warnings: tuple[str, ...] = ()
    already_delivered: bool = False
    instance_url: str = ""  # the Salesforce org's URL, for links to the records


class PhoneLedger(Protocol):
    """Records this service wrote to the CRM, by phone number (E.164): found again while
    the CRM's search index has not caught up with them yet."""

    def recent(self, phones: list[str]) -> list[tuple[str, str]]:
        """(sObject, record id) written for any of ``phones`` recently, newest first."""
        ...

    def remember(self, phones: list[str], sobject: str, record_id: str, call_sid: str) -> None: ...


class CrmWriter(Protocol):
    """A CRM that takes call summaries. ``deliver`` is blocking and idempotent per call_sid."""

    name: str

    def deliver(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult: ...

    def amend(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        """Update the records an earlier delivery of ``summary.call_sid`` wrote with its
        amendment (``summary.amendment`` ≥ 1); idempotent per amendment. When nothing was
        delivered yet, a plain delivery."""
        ...
