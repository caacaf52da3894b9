"""API requests per delivered call, against the Salesforce stand-in.

Runs the seed's three scenarios (new prospect asking for a quote, Jane the existing
customer wanting a smart thermostat, an unknown caller with a burst pipe) and a repeat
delivery of the first call, N times each on a fresh org with a warm describe cache, and
prints the median number of data API requests the stand-in counted (token requests are
not API requests) next to what a naive one-record-per-request integration needs.

    .venv/bin/python benchmarks/crm_requests.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.summary import CallSummary, TranscriptTurn
from crm.config import CrmProfile, SalesforceConfig
from crm.salesforce import SalesforceCrm
from tests.standins.salesforce import SalesforceStandin

CLIENT_ID = "3MVG9-benchmark"
CLIENT_SECRET = "benchmark-secret"
PROFILE = CrmProfile(business="Acme Home Services")

# A naive integration: SOQL for a Contact by phone, SOQL for a Lead by phone, then one
# POST per record (Lead or Opportunity + contact role, call Task, callback Task,
# ContentVersion), and on a repeat delivery it does it all again.
NAIVE = {
    "new prospect, quote (Lead)": 6,
    "existing customer, new project (Contact)": 6,
    "unknown caller, burst pipe (Lead)": 6,
    "same CallSid delivered again": 6,
}


def _turns(text: str) -> list[TranscriptTurn]:
    return [
        TranscriptTurn(speaker="agent", text="Acme Home Services, how can I help?", start=0.0),
        TranscriptTurn(speaker="caller", text=text, start=2.0),
    ]


def quote() -> CallSummary:
    return CallSummary(
        call_sid="CA" + "1" * 32,
        business=PROFILE.business,
        caller_phone="+14155550101",
        first_name="John",
        last_name="Doe",
        need="HVAC replacement quote",
        urgency=2,
        callback_requested=True,
        transcript=_turns("I need a quote for replacing my HVAC system."),
    )


def thermostat() -> CallSummary:
    return CallSummary(
        call_sid="CA" + "2" * 32,
        business=PROFILE.business,
        caller_phone="+14155550123",
        first_name="Jane",
        need="smart thermostat installation",
        service_address="123 Main Street",
        new_project=True,
        existing_customer=True,
        transcript=_turns("You installed our AC last summer; now a smart thermostat."),
    )


def burst_pipe() -> CallSummary:
    return CallSummary(
        call_sid="CA" + "3" * 32,
        business=PROFILE.business,
        caller_phone="+14155550199",
        need="Basement flooding, burst pipe",
        urgency=5,
        is_emergency=True,
        callback_requested=True,
        transcript=_turns("My basement is flooding! A pipe burst!"),
    )


def one_run() -> dict[str, int]:
    counts: dict[str, int] = {}
    with SalesforceStandin(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        custom_fields={"Lead": ["Urgency_Level__c"]},
    ) as org:
        os.environ["REQUESTS_CA_BUNDLE"] = str(org.ca_bundle)
        account = org.add_record("Account", {"Name": "Smith Household"})
        org.add_record(
            "Contact",
            {"FirstName": "Jane", "LastName": "Smith", "Phone": "4155550123", "AccountId": account},
        )
        crm = SalesforceCrm(
            SalesforceConfig(
                login_url=org.login_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
            )
        )
        crm.schema()
        steps: list[tuple[str, Callable[[], CallSummary]]] = [
            ("new prospect, quote (Lead)", quote),
            ("existing customer, new project (Contact)", thermostat),
            ("unknown caller, burst pipe (Lead)", burst_pipe),
            ("same CallSid delivered again", quote),
        ]
        for label, make in steps:
            org.reset_counts()
            result = crm.deliver(make(), PROFILE)
            counts[label] = len(org.api_requests)
            assert counts[label] == result.api_requests, (label, org.api_requests)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    print(f"API requests per delivered call (median of {args.runs} runs; describe cached)")
    print(f"{'scenario':44} {'ours':>5} {'naive':>6}")
    for label, naive in NAIVE.items():
        ours = statistics.median(run[label] for run in runs)
        print(f"{label:44} {ours:>5g} {naive:>6}")


if __name__ == "__main__":
    main()
