"""The durable store: calls (transcript written as the call goes), summaries, and the
outbox of CRM deliveries. SQLite (WAL) by default, PostgreSQL through ``DATABASE_URL``.

A summary is committed here *before* any CRM is called; the outbox row is written in the
same transaction, so a crash between the two cannot lose a call.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from agent.summary import CallSummary, TranscriptTurn


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base shared by the store and the embedded local CRM."""


class CallRecord(Base):
    """One phone call, from the first webhook to its finalization."""

    __tablename__ = "calls"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    business: Mapped[str] = mapped_column(String(255))
    business_number: Mapped[str] = mapped_column(String(32), default="")
    caller_phone: Mapped[str] = mapped_column(String(32), default="")
    mode: Mapped[str] = mapped_column(String(16), default="realtime")
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    transcript: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notes: Mapped[str] = mapped_column(Text, default="")
    intake_json: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    # The emergency alert (see telephony.escalation): recorded before it is sent, sent
    # once by whichever process claims it first.
    emergency_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    emergency_reason: Mapped[str] = mapped_column(Text, default="")
    alert_sent_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    alert_claimed_until: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    alert_attempts: Mapped[int] = mapped_column(Integer, default=0)
    alert_error: Mapped[str] = mapped_column(Text, default="")
    transferred_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    duration_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)


class SummaryRecord(Base):
    """The final CallSummary of a call, as JSON (the contract of agent.summary)."""

    __tablename__ = "summaries"

    call_sid: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.call_sid"), primary_key=True
    )
    summary_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def summary(self) -> CallSummary:
        return CallSummary.model_validate_json(self.summary_json)


class PhoneLedgerEntry(Base):
    """A CRM record we wrote for a phone number: found again before the CRM's search index
    sees it (Salesforce indexes new records for SOSL asynchronously)."""

    __tablename__ = "crm_phone_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(32), index=True)
    sobject: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(18))
    call_sid: Mapped[str] = mapped_column(String(64), default="")
    written_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxJob(Base):
    """One CRM delivery to make; at most one per call."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.call_sid"), unique=True, index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    crm: Mapped[str] = mapped_column(String(32), default="")
    result_json: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


SQLITE_BUSY_TIMEOUT_SECONDS = 10.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
    _enable_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL once (the mode is stored in the file).

    Two processes opening a new database at the same moment can both try the switch; the
    loser gets "database is locked" at once — SQLite skips the busy handler there, since
    waiting could deadlock — so it retries until the other has finished the switch."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode not in ("wal", "memory"):
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def normalize_database_url(url: str) -> str:
    """Accept ``postgresql://`` as users write it and pick the installed psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The revision whose schema ``Base.metadata.create_all`` produced before migrations existed.
INITIAL_REVISION = "0001"
# pg_advisory_xact_lock key serializing schema upgrades across processes ("rcpt").
MIGRATION_LOCK_KEY = 0x72637074


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code: the migrations shipped in this package, run
    on ``connection`` (in its transaction) or on a new engine for ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade_schema(engine: Engine) -> None:
    """``alembic upgrade head`` on ``engine``, safe when several processes start at once.

    The whole upgrade is one transaction that first takes a lock: SQLite's write lock
    (``BEGIN IMMEDIATE``; the busy timeout makes the others wait) or a PostgreSQL
    transaction-level advisory lock. A process that waited finds the schema at head and
    does nothing. A database made by ``create_all`` before migrations existed (the store's
    tables and no ``alembic_version``) is stamped with the initial revision, not recreated.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        config = alembic_config(connection=connection)
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and "calls" in tables:
            command.stamp(config, INITIAL_REVISION)
        command.upgrade(config, "head")
        connection.commit()


class Store:
    """Calls, summaries and the outbox over one engine. Every method is one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(make_engine(url))

    def create_schema(self) -> None:
        """Create or upgrade the schema by running the migrations (see ``upgrade_schema``)."""
        upgrade_schema(self.engine)

    def begin_call(
        self,
        call_sid: str,
        *,
        business: str,
        business_number: str,
        caller_phone: str,
        mode: str,
    ) -> None:
        """Record a call as it starts; a repeated webhook for the same call changes nothing."""
        with self.sessions.begin() as session:
            if session.get(CallRecord, call_sid) is not None:
                return
            session.add(
                CallRecord(
                    call_sid=call_sid,
                    business=business,
                    business_number=business_number,
                    caller_phone=caller_phone,
                    mode=mode,
                    transcript=[],
                    details={},
                )
            )

    def get_call(self, call_sid: str) -> CallRecord | None:
        with self.sessions() as session:
            return session.get(CallRecord, call_sid)

    def set_mode(self, call_sid: str, mode: str) -> None:
        with self.sessions.begin() as session:
            call = session.get(CallRecord, call_sid)
            if call is not None:
                call.mode = mode

    def save_progress(
        self,
        call_sid: str,
        transcript: list[TranscriptTurn],
        details: dict[str, Any],
    ) -> None:
        """Write the transcript and captured details so far (crash recovery reads these)."""
        with self.sessions.begin() as session:
            call = session.get(CallRecord, call_sid)
            if call is None or call.state != "active":
                return
            call.transcript = [t.model_dump(mode="json") for t in transcript]
            call.details = json.loads(json.dumps(details, default=str))
            call.updated_at = utcnow()  # a heartbeat even when nothing new was said

    def touch(self, call_sid: str) -> None:
        """The call is still being served (recovery leaves calls with a recent heartbeat)."""
        with self.sessions.begin() as session:
            session.execute(
                update(CallRecord)
                .where(CallRecord.call_sid == call_sid, CallRecord.state == "active")
                .values(updated_at=utcnow())
            )

    def set_duration(self, call_sid: str, seconds: int) -> None:
        """Twilio's ``CallDuration`` for the call, when a status callback reports it."""
        with self.sessions.begin() as session:
            session.execute(
                update(CallRecord)
                .where(CallRecord.call_sid == call_sid)
                .values(duration_seconds=max(0, seconds))
            )

    # -- the emergency alert -----------------------------------------------------------

    def record_emergency(self, call_sid: str, reason: str) -> bool:
        """Mark the call as an emergency whose alert is owed; True the first time only."""
        with self.sessions.begin() as session:
            result = session.execute(
                update(CallRecord)
                .where(CallRecord.call_sid == call_sid, CallRecord.emergency_at.is_(None))
                .values(emergency_at=utcnow(), emergency_reason=reason[:255])
            )
            return bool(getattr(result, "rowcount", 0))

    def claim_alert(self, call_sid: str, *, lease: dt.timedelta) -> bool:
        """Take the right to send the call's alert for ``lease``; False when it was sent
        already or another process holds an unexpired claim."""
        now = utcnow()
        with self.sessions.begin() as session:
            result = session.execute(
                update(CallRecord)
                .where(
                    CallRecord.call_sid == call_sid,
                    CallRecord.emergency_at.is_not(None),
                    CallRecord.alert_sent_at.is_(None),
                    or_(
                        CallRecord.alert_claimed_until.is_(None),
                        CallRecord.alert_claimed_until < now,
                    ),
                )
                .values(
                    alert_claimed_until=now + lease,
                    alert_attempts=CallRecord.alert_attempts + 1,
                )
            )
            return bool(getattr(result, "rowcount", 0))

    def alert_sent(self, call_sid: str) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(CallRecord)
                .where(CallRecord.call_sid == call_sid)
                .values(alert_sent_at=utcnow(), alert_claimed_until=None, alert_error="")
            )

    def alert_failed(self, call_sid: str, error: str, *, retry_after: dt.timedelta) -> None:
        """Keep the alert owed; the claim now expires after ``retry_after``."""
        with self.sessions.begin() as session:
            session.execute(
                update(CallRecord)
                .where(CallRecord.call_sid == call_sid)
                .values(alert_claimed_until=utcnow() + retry_after, alert_error=error[:500])
            )

    def unsent_alerts(self, *, max_attempts: int) -> list[str]:
        """Calls whose alert is owed and not claimed by anyone right now."""
        now = utcnow()
        query = select(CallRecord.call_sid).where(
            CallRecord.emergency_at.is_not(None),
            CallRecord.alert_sent_at.is_(None),
            CallRecord.alert_attempts < max_attempts,
            or_(CallRecord.alert_claimed_until.is_(None), CallRecord.alert_claimed_until < now),
        )
        with self.sessions() as session:
            return list(session.scalars(query.order_by(CallRecord.emergency_at)))

    def claim_transfer(self, call_sid: str) -> bool:
        """The warm transfer happens once per call; True for the one caller that may do it."""
        with self.sessions.begin() as session:
            result = session.execute(
                update(CallRecord)
                .where(CallRecord.call_sid == call_sid, CallRecord.transferred_at.is_(None))
                .values(transferred_at=utcnow())
            )
            return bool(getattr(result, "rowcount", 0))

    # -- the phone ledger --------------------------------------------------------------

    def remember_record(
        self, *, crm: str, phones: list[str], sobject: str, record_id: str, call_sid: str
    ) -> None:
        """Note that ``record_id`` was written for these phone numbers (E.164 or digits)."""
        with self.sessions.begin() as session:
            for phone in dict.fromkeys(p for p in phones if p):
                session.add(
                    PhoneLedgerEntry(
                        crm=crm,
                        phone=phone[:32],
                        sobject=sobject,
                        record_id=record_id,
                        call_sid=call_sid,
                    )
                )

    def records_for_phones(
        self, *, crm: str, phones: list[str], since: dt.datetime
    ) -> list[tuple[str, str]]:
        """(sobject, record id) written for any of ``phones`` since ``since``, newest first."""
        if not phones:
            return []
        query = (
            select(PhoneLedgerEntry.sobject, PhoneLedgerEntry.record_id)
            .where(
                PhoneLedgerEntry.crm == crm,
                PhoneLedgerEntry.phone.in_(phones),
                PhoneLedgerEntry.written_at >= since,
            )
            .order_by(PhoneLedgerEntry.written_at.desc(), PhoneLedgerEntry.id.desc())
        )
        with self.sessions() as session:
            rows = session.execute(query).all()
        return list(dict.fromkeys((str(r[0]), str(r[1])) for r in rows))

    def save_intake(self, call_sid: str, intake_json: str, details: dict[str, Any]) -> None:
        """Keep the scripted intake's state between Twilio's webhooks."""
        with self.sessions.begin() as session:
            call = session.get(CallRecord, call_sid)
            if call is None or call.state != "active":
                return
            call.mode = "intake"
            call.intake_json = intake_json
            call.details = json.loads(json.dumps(details, default=str))

    def close_unsummarized(self, call_sid: str, reason: str) -> None:
        """The call needs no summary (the office picked up): nothing will finalize it."""
        with self.sessions.begin() as session:
            call = session.get(CallRecord, call_sid)
            if call is not None and call.state == "active":
                call.state = "closed"
                call.ended_at = utcnow()
                call.notes = reason

    def set_notes(self, call_sid: str, notes: str) -> None:
        with self.sessions.begin() as session:
            call = session.get(CallRecord, call_sid)
            if call is not None:
                call.notes = notes[:500]

    def mark_ended_by_agent(self, call_sid: str) -> None:
        """The agent hung up: whatever TwiML follows the stream must not restart the call."""
        with self.sessions.begin() as session:
            call = session.get(CallRecord, call_sid)
            if call is not None:
                call.notes = "ended_by_agent"

    def active_calls(self, *, idle_for: dt.timedelta | None = None) -> list[CallRecord]:
        """Calls not finalized yet; with ``idle_for``, only those with no progress (no
        webhook, no saved turn, no bridge heartbeat) for that long."""
        query = select(CallRecord).where(CallRecord.state == "active")
        if idle_for is not None:
            query = query.where(CallRecord.updated_at < utcnow() - idle_for)
        with self.sessions() as session:
            return list(session.scalars(query))

    def finalize(self, summary: CallSummary, *, crm: str) -> bool:
        """Commit the summary and its outbox job in one transaction.

        Returns False (and writes nothing) when the call was already finalized, so a
        duplicate ``stop`` or status callback cannot create a second delivery.
        """
        try:
            return self._finalize(summary, crm=crm)
        except (IntegrityError, OperationalError):
            # A concurrent finalization won the race; the primary keys kept it single.
            if self.get_summary(summary.call_sid) is not None:
                return False
            raise

    def _finalize(self, summary: CallSummary, *, crm: str) -> bool:
        with self.sessions.begin() as session:
            call = session.get(CallRecord, summary.call_sid, with_for_update=True)
            if call is None:
                call = CallRecord(
                    call_sid=summary.call_sid,
                    business=summary.business,
                    caller_phone=summary.caller_phone,
                    transcript=[],
                    details={},
                )
                session.add(call)
                session.flush()
            elif call.state != "active":
                return False
            call.state = "finalized"
            call.ended_at = utcnow()
            call.transcript = [t.model_dump(mode="json") for t in summary.transcript]
            session.add(
                SummaryRecord(call_sid=summary.call_sid, summary_json=summary.model_dump_json())
            )
            session.add(OutboxJob(call_sid=summary.call_sid, crm=crm))
            return True

    def get_summary(self, call_sid: str) -> CallSummary | None:
        with self.sessions() as session:
            record = session.get(SummaryRecord, call_sid)
            return record.summary() if record else None

    def outbox_job(self, call_sid: str) -> OutboxJob | None:
        with self.sessions() as session:
            return session.scalars(select(OutboxJob).where(OutboxJob.call_sid == call_sid)).first()


class StorePhoneLedger:
    """The ``PhoneLedger`` of one CRM kept in the store's database (``crm_phone_ledger``)."""

    def __init__(self, store: Store, crm: str, *, window: dt.timedelta = dt.timedelta(days=1)):
        self.store = store
        self.crm = crm
        self.window = window

    def recent(self, phones: list[str]) -> list[tuple[str, str]]:
        return self.store.records_for_phones(
            crm=self.crm, phones=phones, since=utcnow() - self.window
        )

    def remember(self, phones: list[str], sobject: str, record_id: str, call_sid: str) -> None:
        self.store.remember_record(
            crm=self.crm, phones=phones, sobject=sobject, record_id=record_id, call_sid=call_sid
        )
