"""Several CRM deliveries at once, never two for one caller.

A process delivers up to ``DELIVERY_CONCURRENCY`` jobs at a time, and several processes may
share one database. Two calls from one caller written at the same moment would each search
the org, find nothing (and Salesforce's search index lags: the stand-in's is on here) and
create a Lead each. A delivery holds its caller's keys while it writes; another delivery
for that caller waits its turn, spending no attempt, and then finds the first call's Lead
through the phone ledger. These tests hold the first delivery inside the CRM writer until
the second has been tried, so the overlap is forced, never left to scheduling.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from agent.summary import CallSummary, TranscriptTurn
from crm.config import CrmProfile, DeliveryResult, SalesforceConfig
from crm.delivery import WAITING, DeliveryWorker, Outcome, RetryPolicy, caller_keys
from crm.salesforce import SalesforceCrm
from crm.store import Store, StorePhoneLedger, utcnow
from tests.conftest import PUBLIC_BASE_URL, StartApp, wait_for
from tests.conversation_scripts import INTAKE_SPEECH
from tests.fault_rig import written_call_sid
from tests.standins.plugin_salesforce import INDEX_LAG_SECONDS
from tests.standins.salesforce import SalesforceStandin
from tests.standins.salesforce_http import Response
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_conversation_e2e import SPEED, salesforce_settings, twilio_settings

PHONE = "+14155550100"
HOLD_SECONDS = 30.0
"""Bounds a broken test only: a held delivery is released as soon as the test saw what it
waits for."""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.from_url(f"sqlite:///{tmp_path / 'outbox.db'}")
    store.create_schema()
    return store


@pytest.fixture
def standin(salesforce_standin: SalesforceStandin, salesforce_ca_env: None) -> SalesforceStandin:
    return salesforce_standin


def salesforce(store: Store, standin: SalesforceStandin) -> SalesforceCrm:
    """The writer as the service builds it: with the store's phone ledger."""
    config = SalesforceConfig(
        login_url=standin.login_url,
        client_id=standin.client_id,
        client_secret=standin.client_secret,
        timeout_seconds=5.0,
    )
    return SalesforceCrm(config, ledger=StorePhoneLedger(store, "salesforce"))


class HeldWriter:
    """A CRM writer that holds deliveries, in their threads, until ``until()`` is first true
    (polled; nothing is held after that), and keeps count of how many deliveries per caller
    are inside at once."""

    def __init__(
        self,
        inner: SalesforceCrm,
        until: Callable[[], bool],
        holds: Callable[[CallSummary], bool] = lambda _: True,
    ) -> None:
        """``holds``: which deliveries are held (the others go straight through)."""
        self.inner = inner
        self.name = inner.name
        self.until = until
        self.holds = holds
        self.entered = threading.Event()
        self._lock = threading.Lock()
        self.inside: dict[str, int] = {}
        self.most_inside = 0
        self.held_long_enough = False

    def deliver(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        if not self.holds(summary):
            return self.inner.deliver(summary, profile)
        key = ",".join(caller_keys(summary))
        with self._lock:
            self.inside[key] = self.inside.get(key, 0) + 1
            self.most_inside = max(self.most_inside, self.inside[key])
        self.entered.set()
        try:
            deadline = time.monotonic() + HOLD_SECONDS
            while not self.held_long_enough and time.monotonic() < deadline:
                if self.until():
                    self.held_long_enough = True  # from now on nothing is held
                time.sleep(0.01)
            return self.inner.deliver(summary, profile)
        finally:
            with self._lock:
                self.inside[key] -= 1

    def amend(self, summary: CallSummary, profile: CrmProfile) -> DeliveryResult:
        return self.deliver(summary, profile)


def summary(call_sid: str, *, phone: str = PHONE, email: str | None = None) -> CallSummary:
    return CallSummary(
        call_sid=call_sid,
        business="Bay Plumbing & Air",
        caller_phone=phone,
        first_name="Ana",
        last_name="Ruiz",
        email=email,
        need="Water heater replacement quote",
        urgency=2,
        transcript=[TranscriptTurn(speaker="caller", text="I need a quote.", start=1.0)],
    )


def sid(n: int) -> str:
    return f"CA{n:032d}"


def worker(store: Store, writer: object, **kwargs: object) -> DeliveryWorker:
    return DeliveryWorker(
        store,
        writer,  # type: ignore[arg-type]
        lambda name: CrmProfile(business=name),
        policy=RetryPolicy(busy_delay=0.2),
        **kwargs,  # type: ignore[arg-type]
    )


def waiting_its_turn(store: Store, call_sid: str) -> bool:
    """The job was claimed, found its caller taken and went back to the queue."""
    job = store.outbox_job(call_sid)
    return (
        job is not None
        and job.state == "pending"
        and job.attempts == 0
        # put back at least ``busy_delay`` (0.2 s here, 1 s in the service) after it began
        and job.next_attempt_at.replace(tzinfo=dt.UTC)
        > job.created_at.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=0.15)
    )


def run_until_delivered(
    runner: DeliveryWorker, store: Store, sids: list[str], *, poll_seconds: float
) -> None:
    """``runner.run`` until every call of ``sids`` is delivered (or ``HOLD_SECONDS`` pass)."""

    async def deliver_all() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop, poll_seconds=poll_seconds))
        try:
            for _ in range(int(HOLD_SECONDS / 0.05)):
                jobs = [store.outbox_job(s) for s in sids]
                if all(j is not None and j.state == "delivered" for j in jobs):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task

    asyncio.run(deliver_all())


def tasks_on(standin: SalesforceStandin, record_id: str) -> list[str]:
    """The calls logged on a record (its call Tasks; callback Tasks have no CallObject)."""
    return sorted(
        t["CallObject"]
        for t in standin.records("Task")
        if t.get("WhoId") == record_id and t.get("CallObject")
    )


def test_a_second_delivery_for_the_caller_waits_its_turn_and_lands_on_the_same_lead(
    store: Store, standin: SalesforceStandin
) -> None:
    """Two workers on one database (two processes): the first holds the caller while it
    writes; the second, claiming the caller's other call meanwhile, puts it back without
    spending an attempt, writing history or telling the owner; once due again it finds the
    first Lead (by the ledger; SOSL does not see it yet) and logs its call there."""
    first_sid, second_sid = sid(1), sid(2)
    assert store.finalize(summary(first_sid), crm="salesforce")
    assert store.finalize(summary(second_sid), crm="salesforce")
    told: list[Outcome] = []
    second_tried = threading.Event()
    held = HeldWriter(salesforce(store, standin), second_tried.is_set)
    one = worker(store, held)
    other = worker(store, salesforce(store, standin), on_outcome=told.append)

    result: list[Outcome | None] = []
    thread = threading.Thread(target=lambda: result.append(one.deliver_one()))
    thread.start()
    try:
        assert held.entered.wait(HOLD_SECONDS)
        before = utcnow()
        outcome = other.deliver_one()
        second_tried.set()
    finally:
        second_tried.set()
        thread.join(HOLD_SECONDS)
    assert outcome is not None and outcome.state == WAITING
    assert outcome.call_sid == second_sid
    assert waiting_its_turn(store, second_sid)
    job = store.outbox_job(second_sid)
    assert job is not None
    assert job.next_attempt_at.replace(tzinfo=dt.UTC) >= before + dt.timedelta(seconds=0.2)
    assert store.delivery_history(second_sid) == []
    assert told == []
    assert result and result[0] is not None and result[0].state == "delivered"
    assert held.held_long_enough

    # Not due before busy_delay has passed: no hot loop on a taken caller.
    assert other.deliver_one(now=before + dt.timedelta(seconds=0.1)) is None
    outcome = other.deliver_one(now=utcnow() + dt.timedelta(seconds=1))
    assert outcome is not None and outcome.state == "delivered"
    assert outcome.first_attempt  # the owner's after-call summary still goes out once
    assert [o.state for o in told] == ["delivered"]
    assert [a.attempt for a in store.delivery_history(second_sid)] == [1]

    leads = standin.records("Lead")
    assert len(leads) == 1
    assert tasks_on(standin, leads[0]["Id"]) == [first_sid, second_sid]
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM crm_caller_locks").scalar() == 0


def test_the_worker_delivers_different_callers_at_once_and_one_caller_in_turn(
    store: Store, standin: SalesforceStandin
) -> None:
    """``run`` with two at a time: two calls from one caller and one from another. The
    first delivery is held until the caller's second call was tried and the other caller's
    call is inside the writer too: two at once, never the same caller twice."""
    same_first, same_second, stranger = sid(11), sid(12), sid(13)
    assert store.finalize(summary(same_first), crm="salesforce")
    assert store.finalize(summary(same_second), crm="salesforce")
    assert store.finalize(summary(stranger, phone="+14155550199"), crm="salesforce")

    held: HeldWriter

    def others_came() -> bool:
        waited = waiting_its_turn(store, same_second) or waiting_its_turn(store, same_first)
        return waited and sum(held.inside.values()) == 2

    held = HeldWriter(salesforce(store, standin), others_came)
    runner = worker(store, held, concurrency=2)

    run_until_delivered(runner, store, [same_first, same_second, stranger], poll_seconds=0.05)
    assert held.held_long_enough, "the deliveries never overlapped as the test arranged"
    assert held.most_inside == 1  # never two for one caller
    leads = {lead["Phone"]: lead["Id"] for lead in standin.records("Lead")}
    assert len(leads) == 2
    assert tasks_on(standin, leads[PHONE]) == [same_first, same_second]
    assert tasks_on(standin, leads["+14155550199"]) == [stranger]


def test_a_call_that_waited_for_its_caller_follows_as_soon_as_the_first_is_written(
    store: Store, standin: SalesforceStandin
) -> None:
    """One process: when the delivery holding the caller ends, the call that waited for it
    is due at once and the worker looks again, without sitting out ``busy_delay`` (60 s
    here, so only that path can deliver it while the test waits)."""
    first, second = sid(21), sid(22)
    assert store.finalize(summary(first), crm="salesforce")
    assert store.finalize(summary(second), crm="salesforce")
    held = HeldWriter(
        salesforce(store, standin),
        lambda: waiting_its_turn(store, second) or waiting_its_turn(store, first),
    )
    runner = DeliveryWorker(
        store,
        held,  # type: ignore[arg-type]
        lambda name: CrmProfile(business=name),
        policy=RetryPolicy(busy_delay=60),
        concurrency=2,
    )

    # A poll far longer than the test may wait: the wake is what makes the worker look.
    run_until_delivered(runner, store, [first, second], poll_seconds=600)
    assert held.held_long_enough, "the second call never waited for the first"
    states = [(j.state, j.attempts) for j in map(store.outbox_job, (first, second)) if j]
    assert states == [("delivered", 1), ("delivered", 1)]
    leads = standin.records("Lead")
    assert len(leads) == 1
    assert sorted(tasks_on(standin, leads[0]["Id"])) == [first, second]


def test_a_caller_with_many_calls_queued_does_not_hold_up_another_caller(
    store: Store, standin: SalesforceStandin
) -> None:
    """Someone rings five times from one number before the first call is written; a
    different caller's call, queued after all five, is written while the first of the five
    is still held in the writer (the hold lasts until the other caller is delivered). The
    five land one at a time on one Lead, each with one attempt."""
    flood = [sid(40 + i) for i in range(5)]
    for call_sid in flood:
        assert store.finalize(summary(call_sid), crm="salesforce")
    other = sid(49)
    assert store.finalize(summary(other, phone="+14155550199"), crm="salesforce")

    def other_delivered() -> bool:
        job = store.outbox_job(other)
        return job is not None and job.state == "delivered"

    held = HeldWriter(
        salesforce(store, standin),
        other_delivered,
        holds=lambda call: call.caller_phone == PHONE,  # the other caller is never held
    )
    runner = worker(store, held, concurrency=2)
    everyone = [*flood, other]

    run_until_delivered(runner, store, everyone, poll_seconds=0.05)
    assert held.held_long_enough, "the other caller waited behind the flood"
    assert held.most_inside == 1
    leads = {lead["Phone"]: lead["Id"] for lead in standin.records("Lead")}
    assert tasks_on(standin, leads[PHONE]) == sorted(flood)
    assert tasks_on(standin, leads["+14155550199"]) == [other]
    for call_sid in everyone:
        assert [a.attempt for a in store.delivery_history(call_sid)] == [1]


def test_a_lock_left_by_a_dead_worker_expires_with_its_lease(
    store: Store, standin: SalesforceStandin
) -> None:
    """A process died mid-delivery holding the caller: the caller's next call waits until
    that lease runs out, then is delivered (the clock is the worker's ``now``)."""
    assert store.finalize(summary(sid(21)), crm="salesforce")
    lease = dt.timedelta(seconds=RetryPolicy().lease_seconds)
    assert store.lock_callers(caller_keys(summary(sid(20))), sid(20), lease=lease)
    runner = worker(store, salesforce(store, standin))
    outcome = runner.deliver_one()
    assert outcome is not None and outcome.state == WAITING
    outcome = runner.deliver_one(now=utcnow() + lease + dt.timedelta(seconds=5))
    assert outcome is not None and outcome.state == "delivered"
    assert len(standin.records("Lead")) == 1


def test_expired_caller_locks_are_purged(store: Store) -> None:
    lease = dt.timedelta(seconds=60)
    assert store.lock_callers(["dead"], sid(1), lease=lease, now=utcnow() - 2 * lease)
    assert store.lock_callers(["live"], sid(2), lease=lease)
    assert store.forget_expired_caller_locks() == 1
    assert not store.lock_callers(["live"], sid(3), lease=lease)  # still held
    assert store.lock_callers(["dead"], sid(3), lease=lease)


def test_lock_callers_takes_all_keys_or_none(store: Store) -> None:
    lease = dt.timedelta(seconds=60)
    assert store.lock_callers(["a", "b"], sid(1), lease=lease)
    assert not store.lock_callers(["b", "c"], sid(2), lease=lease)
    assert store.lock_callers(["c"], sid(3), lease=lease)  # "c" was not kept by the failure
    assert store.lock_callers(["a", "b"], sid(1), lease=lease)  # the holder again: renewed
    store.unlock_callers(["a", "b"], sid(2))  # not the holder: nothing given back
    assert not store.lock_callers(["a"], sid(2), lease=lease)
    store.unlock_callers(["a", "b"], sid(1))
    assert store.lock_callers(["a", "b"], sid(2), lease=lease)
    assert store.lock_callers([], sid(4), lease=lease)  # a caller with no number or e-mail


def test_caller_keys_are_what_the_crm_lookup_matches_on() -> None:
    plain = caller_keys(summary(sid(1)))
    assert len(plain) == 1 and len(plain[0]) == 64 and PHONE[1:] not in plain[0]
    # The same number as the caller ID or written another way is the same caller.
    assert caller_keys(summary(sid(2), phone="(415) 555-0100")) == plain
    by_mail = caller_keys(summary(sid(3), phone="+14155550199", email="Ana@Example.com "))
    other_phone = caller_keys(summary(sid(4), phone="+14155550188", email="ana@example.com"))
    assert len(set(by_mail) & set(other_phone)) == 1  # the e-mail address, in any case
    assert caller_keys(summary(sid(5), phone="")) == []  # withheld, no e-mail: nothing to match


# -- end to end: the running service ------------------------------------------------------


class HoldingSalesforce(SalesforceStandin):
    """The Salesforce stand-in (search index lagging), holding every request that writes a
    call's records, in the thread serving it, until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(index_lag_seconds=INDEX_LAG_SECONDS)
        self.org.clock = lambda: 0.0  # the index never catches up during the test
        self.release = threading.Event()
        self.held: list[str] = []

    def _data_request(
        self, method: str, path: str, query: str, raw: bytes, headers: Mapping[str, str]
    ) -> Response:
        call_sid = written_call_sid(method, path, raw)
        if call_sid is not None:
            with self._lock:
                self.held.append(call_sid)
            self.release.wait(HOLD_SECONDS)  # bounds a broken test only
        return super()._data_request(method, path, query, raw, headers)


@pytest.fixture
def holding_salesforce(monkeypatch: pytest.MonkeyPatch) -> Iterator[HoldingSalesforce]:
    standin = HoldingSalesforce()
    standin.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", standin.ca_bundle)
    monkeypatch.setenv("SSL_CERT_FILE", standin.ca_bundle)
    try:
        yield standin
    finally:
        standin.release.set()
        standin.stop()


async def test_the_service_writes_two_callers_at_once_and_one_callers_calls_in_turn(
    start_app: StartApp, twilio_standin: TwilioStandin, holding_salesforce: HoldingSalesforce
) -> None:
    """Three calls end together on the running service, which delivers three at once
    (``DELIVERY_CONCURRENCY=3``, so each job is taken at once, whatever order they end
    in): two from Dana's number, one from another caller. Salesforce holds the record
    writes until two are inside it at once — one of Dana's calls and the other caller's —
    and Dana's other call has been put back to wait its turn. Then: two Leads, both of
    Dana's calls on hers, though SOSL never saw it."""
    sf = holding_salesforce
    app = await start_app(
        **twilio_settings(twilio_standin), **salesforce_settings(sf), delivery_concurrency=3
    )
    store = app.services.store
    dana, other = "+14155550100", "+14155550177"

    async def call(caller: str) -> str:
        result = await twilio_standin.place_call(
            app_url=app.url,
            public_base_url=PUBLIC_BASE_URL,
            from_=caller,
            script=CallerScript(speech=list(INTAKE_SPEECH)),
            speed=SPEED,
        )
        return result.call_sid

    waits_before = REGISTRY.get_sample_value("receptionist_delivery_waits_total") or 0.0
    first, second, third = await asyncio.gather(call(dana), call(dana), call(other))

    def overlapped() -> bool:
        inside = set(sf.held)
        waited = waiting_its_turn(store, first) or waiting_its_turn(store, second)
        return waited and third in inside and len(inside & {first, second}) == 1

    try:
        await wait_for(overlapped, timeout=HOLD_SECONDS)
    finally:
        sf.release.set()
    for call_sid in (first, second, third):  # delivered, and its history line written
        await wait_for(
            lambda sid=call_sid: (
                (job := store.outbox_job(sid)) is not None  # type: ignore[misc]
                and job.state == "delivered"
                and store.delivery_history(sid)
            )
        )
    leads = {lead["Phone"]: lead["Id"] for lead in sf.records("Lead")}
    assert sorted(leads) == [dana, other]
    assert tasks_on(sf, leads[dana]) == sorted([first, second])
    assert tasks_on(sf, leads[other]) == [third]
    for call_sid in (first, second, third):  # waiting spent no attempt
        assert [a.attempt for a in store.delivery_history(call_sid)] == [1]
    # Counted for whoever watches /metrics (a caller flooding the line shows here).
    waits = REGISTRY.get_sample_value("receptionist_delivery_waits_total") or 0.0
    assert waits >= waits_before + 1
