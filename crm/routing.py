"""One Salesforce org per business: a CrmWriter that hands each call to its business's
CRM (its own ``SalesforceCrm``, with its own token and describe cache) and every other
call to the service-wide default (Salesforce or the local CRM)."""

from __future__ import annotations

from collections.abc import Mapping

from agent.summary import CallSummary
from crm.config import CrmProfile, CrmWriter, DeliveryResult


class CrmPerBusiness:
    """Routes ``deliver`` by ``profile.business``; the default takes unnamed businesses."""

    def __init__(self, default: CrmWriter, by_business: Mapping[str, CrmWriter]) -> None:
        self.default = default
        self.by_business = dict(by_business)
        names = sorted({default.name, *(w.name for w in self.by_business.values())})
        self.name = "+".join(names)[:32]

    def writer_for(self, business: str) -> CrmWriter:
        return self.by_business.get(business, self.default)

    def deliver(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        return self.writer_for(profile.business).deliver(summary, profile)

    def amend(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        return self.writer_for(profile.business).amend(summary, profile)
