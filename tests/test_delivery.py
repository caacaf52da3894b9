"""The outbox and its worker against the Salesforce stand-in: summaries stored before any
CRM call, retried with backoff on 5xx, backed off for minutes on REQUEST_LIMIT_EXCEEDED,
dead-lettered (and retryable) on rejections, never delivered twice."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.summary import CallSummary, TranscriptTurn
from crm.config import CrmProfile, SalesforceConfig
from crm.delivery import DeliveryWorker, RetryPolicy, retry_dead_job
from crm.salesforce import SalesforceCrm
from crm.store import Store, utcnow
from tests.standins.salesforce import SalesforceStandin


@pytest.fixture
def standin(
    salesforce_standin: SalesforceStandin, salesforce_ca_env: None
) -> Iterator[SalesforceStandin]:
    yield salesforce_standin


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.from_url(f"sqlite:///{tmp_path / 'outbox.db'}")
    store.create_schema()
    return store


POLICY = RetryPolicy(base_delay=2.0, rate_limit_delay=300.0, max_attempts=3)
SEED = 7


def make_worker(store: Store, standin: SalesforceStandin) -> DeliveryWorker:
    crm = SalesforceCrm(
        SalesforceConfig(
            login_url=standin.login_url,
            client_id=standin.client_id,
            client_secret=standin.client_secret,
            timeout_seconds=2.0,
        )
    )
    return DeliveryWorker(
        store,
        crm,
        lambda name: CrmProfile(business=name),
        policy=POLICY,
        rng=random.Random(SEED),
    )


def summary(call_sid: str = "CA" + "1" * 32) -> CallSummary:
    return CallSummary(
        call_sid=call_sid,
        business="Bay Plumbing & Air",
        caller_phone="+14155550100",
        first_name="Ana",
        last_name="Ruiz",
        need="Water heater replacement quote",
        urgency=2,
        transcript=[TranscriptTurn(speaker="caller", text="I need a quote.", start=1.0)],
    )


def later(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def next_attempt(store: Store) -> dt.datetime:
    job = store.outbox_job(summary().call_sid)
    assert job is not None and job.state == "pending"
    return job.next_attempt_at.replace(tzinfo=dt.UTC)


def seconds(delay: float) -> dt.timedelta:
    return dt.timedelta(seconds=delay)


def test_a_summary_is_finalized_once(store: Store) -> None:
    assert store.finalize(summary(), crm="salesforce") is True
    assert store.finalize(summary(), crm="salesforce") is False
    job = store.outbox_job(summary().call_sid)
    assert job is not None and job.state == "pending"


def test_503_is_retried_with_backoff_and_delivered_once(
    store: Store, standin: SalesforceStandin
) -> None:
    worker = make_worker(store, standin)
    store.finalize(summary(), crm="salesforce")
    standin.inject_fault("503", times=1)
    # The jittered delay the worker's seeded generator draws for a first retry (1-3 s).
    delay = POLICY.backoff(1, random.Random(SEED))
    assert 1.0 <= delay <= 3.0
    before = utcnow()
    outcome = worker.deliver_one()
    after = utcnow()
    assert outcome is not None and outcome.state == "pending"
    # Retried that long after the failure, not immediately (no hot loop): the bounds come
    # from the clock read around the attempt, so a slow machine cannot move them.
    retry_at = next_attempt(store)
    assert before + seconds(delay) <= retry_at <= after + seconds(delay)
    assert worker.deliver_one(now=retry_at - dt.timedelta(milliseconds=1)) is None  # not due
    outcome = worker.deliver_one(now=retry_at)
    assert outcome is not None and outcome.state == "delivered"
    assert len(standin.records("Lead")) == 1


def test_request_limit_backs_off_for_minutes(store: Store, standin: SalesforceStandin) -> None:
    worker = make_worker(store, standin)
    store.finalize(summary(), crm="salesforce")
    standin.inject_fault("403_limit", times=1)
    before = utcnow()
    outcome = worker.deliver_one()
    after = utcnow()
    assert outcome is not None and outcome.state == "pending"
    retry_at = next_attempt(store)
    assert before + seconds(300) <= retry_at <= after + seconds(300)
    assert worker.deliver_one(now=retry_at - seconds(240)) is None
    outcome = worker.deliver_one(now=retry_at)
    assert outcome is not None and outcome.state == "delivered"
    assert len(standin.records("Lead")) == 1


def test_repeated_failures_are_dead_lettered_with_a_reason_and_can_be_retried(
    store: Store, standin: SalesforceStandin
) -> None:
    worker = make_worker(store, standin)
    store.finalize(summary(), crm="salesforce")
    standin.inject_fault("500", times=3)
    states = [worker.deliver_one(now=later(1000 * i)) for i in range(3)]
    assert [o.state for o in states if o] == ["pending", "pending", "dead"]
    job = store.outbox_job(summary().call_sid)
    assert job is not None and job.state == "dead" and "3 attempts" in job.last_error
    assert standin.records("Lead") == []
    assert retry_dead_job(store, summary().call_sid)
    outcome = worker.deliver_one()
    assert outcome is not None and outcome.state == "delivered"
    assert len(standin.records("Lead")) == 1


def test_expired_lease_is_taken_again_without_duplicates(
    store: Store, standin: SalesforceStandin
) -> None:
    """A worker killed mid-delivery leaves a lease; another worker takes the job after it
    expires, and the idempotent delivery writes nothing twice."""
    worker = make_worker(store, standin)
    store.finalize(summary(), crm="salesforce")
    first = worker.claim()
    assert first is not None
    outcome = worker.writer.deliver(summary(), CrmProfile(business="Bay Plumbing & Air"))
    assert outcome.record_type == "Lead"
    # ... the process dies here, before recording the delivery.
    assert worker.claim() is None  # lease still held
    outcome2 = worker.deliver_one(now=later(RetryPolicy().lease_seconds + 5))
    assert outcome2 is not None and outcome2.state == "delivered"
    assert len(standin.records("Lead")) == 1
    assert (
        len([t for t in standin.records("Task") if t.get("CallObject") == summary().call_sid]) == 1
    )
