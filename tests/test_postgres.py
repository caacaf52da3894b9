"""The store and the outbox on a real PostgreSQL server (127.0.0.1:5432, or the URL in
``RECEPTIONIST_TEST_POSTGRES_URL``): each module gets a fresh database, dropped after it.

Proves: a call is finalized once even when two connections finalize it at the same moment;
progress is saved as the call goes; two ``receptionist worker --once`` processes draining
one outbox into the Salesforce stand-in deliver every job exactly once, and share the work.
The tests skip, saying why, when the server is unreachable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url

from agent.summary import CallSummary, TranscriptTurn
from crm.store import (
    AMENDMENT_PENDING,
    CallerLock,
    CallRecord,
    OutboxJob,
    ProgressSnapshot,
    Store,
    SummaryRecord,
    utcnow,
)
from tests.fault_rig import written_call_sid
from tests.standins.salesforce import SalesforceStandin
from tests.standins.salesforce_http import Response

try:
    import psycopg
    import psycopg.sql
except ImportError:  # without the [postgres] extra every test here skips, saying so
    psycopg = None

ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
BUSINESS = "Bay Plumbing & Air"


def admin_url() -> str:
    """The first reachable maintenance database URL; skips the test (with why) if none."""
    if psycopg is None:
        pytest.skip("PostgreSQL tests need psycopg: pip install -e '.[dev]'")
    configured = os.environ.get("RECEPTIONIST_TEST_POSTGRES_URL")
    candidates = (configured,) if configured else ADMIN_URLS
    errors = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            errors.append(f"{make_url(url).render_as_string()}: {str(exc).strip()}")
        else:
            return url
    pytest.skip("PostgreSQL unreachable: " + "; ".join(errors))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database ``receptionist_t_<random>``, dropped afterwards; yields its URL
    as users write it (``postgresql://…``)."""
    admin = admin_url()
    name = f"receptionist_t_{secrets.token_hex(6)}"
    ident = psycopg.sql.Identifier(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def lock_waiters(url: str, statement: str) -> int:
    """How many sessions of ``url``'s database wait for a lock in a statement containing
    ``statement`` (e.g. ``"FROM calls"``, ``"INSERT INTO calls"``)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query ILIKE %s",
            (f"%{statement}%",),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a condition only another process or connection can make true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store.from_url(pg_url)
    store.create_schema()
    try:
        yield store
    finally:
        store.engine.dispose()


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


def summary(call_sid: str, *, phone: str = "+14155550100", last_name: str = "Ruiz") -> CallSummary:
    return CallSummary(
        call_sid=call_sid,
        business=BUSINESS,
        caller_phone=phone,
        first_name="Ana",
        last_name=last_name,
        need="Water heater replacement quote",
        urgency=2,
        transcript=[TranscriptTurn(speaker="caller", text="I need a quote.", start=1.0)],
    )


def rows_for(store: Store, model: Any, call_sid: str) -> int:
    with store.sessions() as session:
        query = select(func.count()).select_from(model).where(model.call_sid == call_sid)
        return int(session.scalar(query) or 0)


# --- the store -------------------------------------------------------------------------


def test_two_connections_finalizing_the_same_call_at_once_write_it_once(
    pg_url: str, pg_store: Store
) -> None:
    """Both finalizers are made to wait on the call's row lock, then released together:
    exactly one commits the summary and its outbox job; the other returns False."""
    sid = new_sid()
    pg_store.begin_call(
        sid, business=BUSINESS, business_number="+14155559999", caller_phone="+1", mode="realtime"
    )
    other = Store.from_url(pg_url)  # its own engine: separate connections, like another node
    try:
        with ThreadPoolExecutor(max_workers=2) as pool, pg_store.engine.connect() as holder:
            holder.execute(select(CallRecord).where(CallRecord.call_sid == sid).with_for_update())
            futures = [
                pool.submit(s.finalize, summary(sid), crm="salesforce") for s in (pg_store, other)
            ]
            wait_until(lambda: lock_waiters(pg_url, "FROM calls") == 2)
            holder.rollback()
            results = sorted(f.result(timeout=30) for f in futures)
    finally:
        other.engine.dispose()
    assert results == [False, True]
    assert rows_for(pg_store, OutboxJob, sid) == 1
    assert rows_for(pg_store, SummaryRecord, sid) == 1
    call = pg_store.get_call(sid)
    assert call is not None and call.state == "finalized"


def test_concurrent_finalize_of_a_call_never_begun_writes_it_once(
    pg_url: str, pg_store: Store
) -> None:
    """The status-callback path: no call row yet, and both finalizers have looked for it
    and found none before either inserts it (the test holds a SHARE lock on ``calls``,
    which lets their ``SELECT … FOR UPDATE`` through but stops their ``INSERT``; it is
    released once both wait there). The primary key lets one win; the other's insert
    fails and it writes nothing."""
    sid = new_sid()
    other = Store.from_url(pg_url)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool, pg_store.engine.connect() as gate:
            gate.execute(text("LOCK TABLE calls IN SHARE MODE"))
            futures = [
                pool.submit(s.finalize, summary(sid), crm="salesforce") for s in (pg_store, other)
            ]
            try:
                wait_until(lambda: lock_waiters(pg_url, "INSERT INTO calls") == 2)
            finally:
                gate.rollback()
            results = sorted(f.result(timeout=30) for f in futures)
    finally:
        other.engine.dispose()
    assert results == [False, True]
    assert rows_for(pg_store, OutboxJob, sid) == 1
    assert rows_for(pg_store, SummaryRecord, sid) == 1


@pytest.mark.parametrize("left_by_a_dead_worker", [False, True])
def test_two_processes_taking_one_caller_at_once_get_it_once(
    pg_url: str, pg_store: Store, left_by_a_dead_worker: bool
) -> None:
    """Two deliveries for one caller, in two processes, take its lock at the same moment
    (the test's SHARE lock on ``crm_caller_locks`` stops both at their first statement and
    is released once both wait there): one gets it, the other is told no and takes none of
    its keys, whether the caller was free or held by an expired lease."""
    caller, other_key = secrets.token_hex(32), secrets.token_hex(32)
    lease = dt.timedelta(seconds=60)
    if left_by_a_dead_worker:
        assert pg_store.lock_callers([caller], new_sid(), lease=lease, now=utcnow() - 2 * lease)
    contenders = [(pg_store, new_sid()), (Store.from_url(pg_url), new_sid())]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool, pg_store.engine.connect() as gate:
            gate.execute(text("LOCK TABLE crm_caller_locks IN SHARE MODE"))
            futures = [
                pool.submit(store.lock_callers, [caller, other_key], sid, lease=lease)
                for store, sid in contenders
            ]
            try:
                wait_until(lambda: lock_waiters(pg_url, "crm_caller_locks") == 2)
            finally:
                gate.rollback()
            results = [f.result(timeout=30) for f in futures]
    finally:
        contenders[1][0].engine.dispose()
    assert sorted(results) == [False, True]
    winner = contenders[results.index(True)][1]
    with pg_store.sessions() as session:
        holders = session.execute(
            select(CallerLock.key, CallerLock.call_sid).where(
                CallerLock.key.in_([caller, other_key])
            )
        ).all()
    assert sorted(holders) == sorted([(caller, winner), (other_key, winner)])


def test_progress_is_saved_as_the_call_goes_and_frozen_once_finalized(pg_store: Store) -> None:
    sid = new_sid()
    pg_store.begin_call(
        sid, business=BUSINESS, business_number="+14155559999", caller_phone="+1", mode="realtime"
    )
    pg_store.begin_call(  # a repeated webhook changes nothing
        sid, business="Other", business_number="+1", caller_phone="+2", mode="intake"
    )
    first = TranscriptTurn(speaker="agent", text="How can I help?", start=0.0)
    second = TranscriptTurn(speaker="caller", text="My basement is flooding.", start=2.5)
    pg_store.save_progress(sid, [first], {"first_name": "Ana"})
    pg_store.save_progress(
        sid, [first, second], {"first_name": "Ana", "callback_due": dt.date(2030, 1, 2)}
    )
    call = pg_store.get_call(sid)
    assert call is not None and call.business == BUSINESS and call.mode == "realtime"
    assert [t["text"] for t in call.transcript] == ["How can I help?", "My basement is flooding."]
    assert call.details == {"first_name": "Ana", "callback_due": "2030-01-02"}

    assert pg_store.finalize(summary(sid), crm="salesforce") is True
    pg_store.save_progress(sid, [], {"late": True})  # a late write after the end is ignored
    call = pg_store.get_call(sid)
    assert call is not None and call.state == "finalized"
    assert [t["text"] for t in call.transcript] == ["I need a quote."]
    assert call.details == {"first_name": "Ana", "callback_due": "2030-01-02"}


def test_a_group_commit_that_meets_a_finalize_keeps_both(pg_url: str, pg_store: Store) -> None:
    """A group of progress saves (``save_progress_many``) reaches a call whose row another
    connection holds while finalizing it. The group waits on the row lock; once the call
    is finalized it keeps the turns said after the summary for an amendment instead of
    overwriting the summary's transcript, and still writes the group's other call."""
    finishing, live = new_sid(), new_sid()
    for sid in (finishing, live):
        pg_store.begin_call(
            sid,
            business=BUSINESS,
            business_number="+14155559999",
            caller_phone="+1",
            mode="realtime",
        )
    said = [
        TranscriptTurn(speaker="caller", text="I need a quote.", start=1.0),
        TranscriptTurn(speaker="caller", text="And my sink leaks too.", start=4.0),
    ]
    group = [ProgressSnapshot(finishing, said, {}), ProgressSnapshot(live, said[:1], {"a": 1})]
    with ThreadPoolExecutor(max_workers=1) as pool, pg_store.engine.connect() as finalizer:
        finalizer.execute(
            select(CallRecord).where(CallRecord.call_sid == finishing).with_for_update()
        )
        saving = pool.submit(pg_store.save_progress_many, group)
        wait_until(lambda: lock_waiters(pg_url, "FROM calls") == 1)
        finalizer.execute(
            update(CallRecord)
            .where(CallRecord.call_sid == finishing)
            .values(state="finalized", transcript=[said[0].model_dump(mode="json")])
        )
        finalizer.commit()
        saving.result(timeout=30)
    finished = pg_store.get_call(finishing)
    assert finished is not None and finished.state == "finalized"
    assert [t["text"] for t in finished.transcript] == [t.text for t in said]
    assert finished.details.get(AMENDMENT_PENDING) is True
    other = pg_store.get_call(live)
    assert other is not None and other.details == {"a": 1}
    assert [t["text"] for t in other.transcript] == ["I need a quote."]


# --- two worker processes ----------------------------------------------------------------

JOBS = 40


def worker_env(pg_url: str, standin: SalesforceStandin) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": pg_url,
        "SALESFORCE_LOGIN_URL": standin.login_url,
        "SALESFORCE_CLIENT_ID": standin.client_id,
        "SALESFORCE_CLIENT_SECRET": standin.client_secret,
        "SALESFORCE_TIMEOUT_SECONDS": "10",
        "REQUESTS_CA_BUNDLE": standin.ca_bundle,
        "SSL_CERT_FILE": standin.ca_bundle,
    }


class RendezvousSalesforceStandin(SalesforceStandin):
    """The Salesforce stand-in, holding the first request that writes a call's records
    (in the thread serving it) until a second such request arrives. A worker delivers
    one job at a time, so the second write is the other worker's: both are certainly
    delivering at once, however the two processes happen to be scheduled."""

    def __init__(self) -> None:
        super().__init__()
        self.rendezvous = threading.Barrier(2)
        self.writes = 0
        self.met = False

    def _data_request(
        self, method: str, path: str, query: str, raw: bytes, headers: Any
    ) -> Response:
        if written_call_sid(method, path, raw) is not None:
            with self._lock:
                self.writes += 1
                waits = self.writes <= 2
            if waits:
                try:
                    self.rendezvous.wait(timeout=30)  # bounds a broken worker only
                    self.met = True
                except threading.BrokenBarrierError:
                    pass  # the test fails on ``met``, saying why
        return super()._data_request(method, path, query, raw, headers)


@pytest.fixture
def rendezvous_standin() -> Iterator[RendezvousSalesforceStandin]:
    standin = RendezvousSalesforceStandin()
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


def test_two_worker_processes_drain_one_outbox_delivering_each_job_exactly_once(
    rendezvous_standin: RendezvousSalesforceStandin, tmp_path: Path
) -> None:
    """40 finalized calls, two ``receptionist worker --once`` processes released onto the
    outbox at the same moment (both first wait on a table lock the test holds): the org
    ends with 40 Leads, each CallSid logged once, 40 write composites and 40 "already
    delivered?" checks (a job claimed twice would be checked twice); the stand-in holds
    the first write until the other process writes too, so both processes deliver, and
    no job was reported by both."""
    with fresh_database() as pg_url:  # an outbox holding only this test's jobs
        pg_store = Store.from_url(pg_url)
        try:
            pg_store.create_schema()
            drain_with_two_processes(pg_url, pg_store, rendezvous_standin, tmp_path)
        finally:
            pg_store.engine.dispose()
    assert rendezvous_standin.met, "the two workers were never writing at the same time"


def drain_with_two_processes(
    pg_url: str, pg_store: Store, salesforce_standin: SalesforceStandin, tmp_path: Path
) -> None:
    sids = [new_sid() for _ in range(JOBS)]
    for i, sid in enumerate(sids):
        assert pg_store.finalize(
            summary(sid, phone=f"+1415555{1000 + i:04d}", last_name=f"Caller{i:02d}"),
            crm="salesforce",
        )
    receptionist = Path(sys.executable).with_name("receptionist")
    assert receptionist.exists(), "the package is not installed in this venv (pip install -e .)"

    with pg_store.engine.connect() as gate:
        gate.execute(text("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE"))
        workers = [
            subprocess.Popen(
                [str(receptionist), "worker", "--once"],
                cwd=tmp_path,  # no stray .env
                env=worker_env(pg_url, salesforce_standin),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:

            def both_waiting() -> bool:
                for proc in workers:
                    if proc.poll() is not None:
                        raise AssertionError(f"worker exited early: {proc.communicate()}")
                return lock_waiters(pg_url, "FROM outbox") == 2

            wait_until(both_waiting)
        finally:
            gate.rollback()  # release both workers at once
        outputs = [proc.communicate(timeout=120) for proc in workers]

    for proc, (_, err) in zip(workers, outputs, strict=True):
        assert proc.returncode == 0, err
    delivered_by = []
    for out, _ in outputs:
        lines = [line.split(":", 1) for line in out.splitlines() if line.startswith("CA")]
        assert all(state.strip() == "delivered" for _, state in lines), out
        delivered_by.append({sid for sid, _ in lines})
    first, second = delivered_by
    assert first and second, f"one process did all the work: {len(first)} / {len(second)}"
    assert not first & second
    assert first | second == set(sids)

    leads = salesforce_standin.records("Lead")
    assert len(leads) == JOBS
    logged = [t["CallObject"] for t in salesforce_standin.records("Task") if t.get("CallObject")]
    assert sorted(logged) == sorted(sids)
    describes = sum(
        1
        for m, p in salesforce_standin.composite_subrequests
        if m == "GET" and p.endswith("/Lead/describe")
    )
    composites = [
        r for r in salesforce_standin.api_requests if r[0] == "POST" and r[1].endswith("/composite")
    ]
    assert len(composites) - describes == JOBS
    checks = [q for q in salesforce_standin.soql_queries if "CallObject" in q]
    assert len(checks) == JOBS
    assert all(sum(sid in q for q in checks) == 1 for sid in sids)

    with pg_store.sessions() as session:
        jobs = list(session.scalars(select(OutboxJob).where(OutboxJob.call_sid.in_(sids))))
    assert sorted((j.state, j.attempts) for j in jobs) == [("delivered", 1)] * JOBS
