"""Picks the CRM a service writes to: Salesforce when configured, else the local CRM."""

from __future__ import annotations

from crm.config import CrmWriter, SalesforceConfig
from crm.local import LocalCrm
from crm.store import Store, StorePhoneLedger


def build_crm(salesforce: SalesforceConfig | None, store: Store) -> CrmWriter:
    """``SalesforceCrm(salesforce)`` (with the store's phone ledger) when given, else a
    ``LocalCrm`` on the store's database.

    No request is made here: credentials are first used by the first delivery (or by
    ``receptionist check``), so the service starts even while Salesforce is unreachable.
    """
    if salesforce is None:
        return LocalCrm(store.engine)
    # Imported here: simple-salesforce (and zeep under it) is a third of a second of startup
    # that a service on the local CRM never uses.
    from crm.salesforce import SalesforceCrm

    # The phone ledger finds records we wrote while Salesforce's search index lags.
    return SalesforceCrm(salesforce, ledger=StorePhoneLedger(store, "salesforce"))
