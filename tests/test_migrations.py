"""The Alembic migrations: ``Store.create_schema()`` (``alembic upgrade head``) on an empty
SQLite or PostgreSQL database gives exactly the schema the models describe; it is
idempotent, safe when several processes start at once, adopts a database made by
``create_all`` before migrations existed, and the initial revision downgrades cleanly.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select

import crm.local  # noqa: F401 - the local CRM's tables are part of Base.metadata
from crm.local import LocalCrm
from crm.store import (
    MIGRATION_LOCK_KEY,
    Base,
    CallRecord,
    Store,
    _enable_wal,
    alembic_config,
    make_engine,
)
from tests.test_postgres import fresh_database, psycopg, wait_until

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
TABLES = {
    "calls",
    "summaries",
    "outbox",
    "local_crm_records",
    "local_crm_deliveries",
    "outbound_sends",
    "crm_phone_ledger",
    "delivery_attempts",
    "crm_caller_locks",
    "staff_login_failures",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (PostgreSQL skips, saying why, when unreachable)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'receptionist.db'}"
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store.from_url(database_url)
    try:
        yield store
    finally:
        store.engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_of_an_empty_database_gives_exactly_the_models_schema(store: Store) -> None:
    assert HEAD is not None
    store.create_schema()
    assert current_revision(store.engine) == HEAD
    assert set(inspect(store.engine).get_table_names()) == TABLES | {"alembic_version"}
    assert schema_differences(store.engine) == []
    outbox_indexes = {i["name"]: i["unique"] for i in inspect(store.engine).get_indexes("outbox")}
    assert outbox_indexes["ix_outbox_call_sid"]  # one delivery job per call


def test_create_schema_again_changes_nothing_and_keeps_the_data(store: Store) -> None:
    store.create_schema()
    store.begin_call(
        "CA" + "1" * 32, business="B", business_number="+1", caller_phone="+2", mode="intake"
    )
    store.create_schema()
    assert current_revision(store.engine) == HEAD
    assert store.get_call("CA" + "1" * 32) is not None


RACE = """
import sys
from sqlalchemy.engine import Connection
from crm.store import Store

begin = Connection.exec_driver_sql


def announced(self, statement, *args, **kwargs):
    if statement == "BEGIN IMMEDIATE":  # SQLite: this process now waits for the lock
        print("waiting", flush=True)
    return begin(self, statement, *args, **kwargs)


Connection.exec_driver_sql = announced
store = Store.from_url(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
store.create_schema()
print("migrated", flush=True)
"""


@contextlib.contextmanager
def migration_lock_held(database_url: str) -> Iterator[Callable[[], None]]:
    """Hold the lock ``upgrade_schema`` takes (SQLite's write lock, or the PostgreSQL
    advisory lock); yields the function that releases it."""
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")  # as the store's engine sets it
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: connection.execute("ROLLBACK")
        finally:
            connection.close()
        return
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        yield lambda: connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def waiting_for_the_lock(database_url: str, procs: list[subprocess.Popen[str]]) -> int:
    """How many of ``procs`` are blocked on the migration lock."""
    if database_url.startswith("sqlite"):
        waiting = 0
        for proc in procs:  # each says so right before it blocks
            assert proc.stdout is not None and proc.stdout.readline() == "waiting\n"
            waiting += 1
        return waiting
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND objid = %s AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            (MIGRATION_LOCK_KEY,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_processes_starting_at_once_all_come_up_on_one_migrated_schema(database_url: str) -> None:
    """Two processes are both made to wait on the migration lock (the test holds it until
    both are blocked there), then released together onto an empty database; each one's
    ``create_schema()`` succeeds (without the lock, the loser fails with "table already
    exists" or a duplicate catalog entry; with it, it finds the schema at head)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        with migration_lock_held(database_url) as release:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            wait_until(lambda: waiting_for_the_lock(database_url, procs) == 2)
            release()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and out == "migrated\n", err[-2000:]
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == HEAD
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_a_database_created_before_migrations_is_adopted_not_recreated(tmp_path: Path) -> None:
    """A store made by ``Base.metadata.create_all`` before migrations existed (the initial
    revision's schema, no ``alembic_version``) is stamped with the initial revision and
    upgraded; its calls survive."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'old.db'}")
    # The schema create_all made then is revision 0001's: build it, then forget the version.
    with store.engine.connect() as connection:
        command.upgrade(alembic_config(connection=connection), "0001")
        connection.exec_driver_sql("DROP TABLE alembic_version")
        connection.exec_driver_sql(
            "INSERT INTO calls (call_sid, business, business_number, caller_phone, mode, state,"
            " started_at, transcript, details, notes, intake_json, updated_at) VALUES"
            " ('CA22222222222222222222222222222222', 'B', '+1', '+2', 'intake', 'active',"
            " '2026-01-01 00:00:00', '[]', '{}', '', '', '2026-01-01 00:00:00')"
        )
        connection.commit()
    store.create_schema()
    assert current_revision(store.engine) == HEAD
    assert schema_differences(store.engine) == []
    with store.sessions() as session:
        assert session.scalars(select(CallRecord.call_sid)).all() == ["CA" + "2" * 32]


def test_the_local_crm_on_a_fresh_database_gets_its_tables_from_the_migrations(
    tmp_path: Path,
) -> None:
    """Building the local CRM first (as ``receptionist demo`` may) leaves a migrated
    database the store can start on, not a half-made one the migrations would trip over."""
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    try:
        crm = LocalCrm(engine)
        assert crm.dump() == {}
        assert current_revision(engine) == HEAD
        Store(engine).create_schema()
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_the_initial_revision_downgrades_to_an_empty_database_and_back(store: Store) -> None:
    store.create_schema()
    with store.engine.connect() as connection:
        command.downgrade(alembic_config(connection=connection), "base")
        connection.commit()
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(store.engine) is None
    store.create_schema()
    assert schema_differences(store.engine) == []


class _SwitchLosesOnce:
    """A DB-API cursor whose first switch to WAL loses the race to another process, as
    SQLite reports it: "database is locked" at once, without waiting."""

    def __init__(self) -> None:
        self.mode = "delete"
        self.switch_attempts = 0
        self._row: tuple[str] = ("",)

    def execute(self, sql: str) -> _SwitchLosesOnce:
        if sql == "PRAGMA journal_mode=WAL":
            self.switch_attempts += 1
            if self.switch_attempts == 1:
                self.mode = "wal"  # the other process switched it meanwhile
                raise sqlite3.OperationalError("database is locked")
            self.mode = "wal"
        self._row = (self.mode,)
        return self

    def fetchone(self) -> tuple[str]:
        return self._row


def test_a_process_losing_the_switch_to_wal_retries_instead_of_failing() -> None:
    cursor = _SwitchLosesOnce()
    _enable_wal(cursor)
    # It tried once, lost, read the mode again and found the file already in WAL.
    assert (cursor.switch_attempts, cursor.mode) == (1, "wal")
