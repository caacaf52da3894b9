"""The durable store: calls (transcript written as the call goes), summaries, and the
outbox of CRM deliveries. SQLite (WAL) by default, PostgreSQL through ``DATABASE_URL``.

A summary is committed here *before* any CRM is called; the outbox row is written in the
same transaction, so a crash between the two cannot lose a call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from pydantic import ValidationError
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    make_url,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from agent.summary import CallSummary, TranscriptTurn

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


AMENDMENT_PENDING = "_amendment_pending"
"""Key in a call's details: turns arrived after finalization and await an amendment."""


class Base(DeclarativeBase):
    """Declarative base shared by the store and the embedded local CRM."""


class CallRecord(Base):
    """One phone call, from the first webhook to its finalization."""

    __tablename__ = "calls"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    business: Mapped[str] = mapped_column(String(255))
    business_number: Mapped[str] = mapped_column(String(32), default="")
    # A valid E.164 number or "" (withheld, SIP, client...); ``caller_id`` is Twilio's
    # ``From`` as sent (bounded), for staff.
    caller_phone: Mapped[str] = mapped_column(String(32), default="")
    caller_id: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Set when a Media Stream is admitted: a call has one stream, ever, on any node.
    stream_started_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
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
    # Copies of summary fields the staff list filters and sorts on (in SQL).
    caller_name: Mapped[str] = mapped_column(String(255), default="")
    need: Mapped[str] = mapped_column(String(255), default="")
    urgency: Mapped[int] = mapped_column(Integer, default=2, index=True)
    is_emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_due: Mapped[dt.date | None] = mapped_column(Date, nullable=True)

    @classmethod
    def of(cls, summary: CallSummary) -> SummaryRecord:
        record = cls(call_sid=summary.call_sid)
        record.refresh_from(summary)
        return record

    def refresh_from(self, summary: CallSummary) -> None:
        """Store ``summary`` and its staff columns (a new, amended or redacted summary)."""
        name = " ".join(p for p in (summary.first_name, summary.last_name) if p)
        self.summary_json = summary.model_dump_json()
        self.caller_name = name[:255]
        self.need = summary.need[:255]
        self.urgency = summary.urgency
        self.is_emergency = summary.is_emergency
        self.callback_requested = summary.callback_requested
        self.callback_due = summary.callback_due

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


class CallerLock(Base):
    """A caller whose CRM delivery is under way in some process. Two calls from one caller
    written at once would each find no record and each create one; while a row here holds
    one of the caller's keys (a hash of a number or an e-mail address), no other delivery
    for that caller starts. Rows go when the delivery ends, or expire with its lease."""

    __tablename__ = "crm_caller_locks"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    locked_until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class StaffLoginFailure(Base):
    """A wrong staff login, by client address (a keyed hash of it, never the address): the
    staff pages' login throttle, counted by every process on the database and kept across
    restarts. Rows older than the throttle's window are deleted as new ones come."""

    __tablename__ = "staff_login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_key: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


SQLITE_BUSY_TIMEOUT_SECONDS = 10.0


class DeliveryAttempt(Base):
    """One CRM delivery attempt (or a staff re-queue), for the call page's history."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(String(64), ForeignKey("calls.call_sid"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")


class OutboundSend(Base):
    """One text or call the service placed on a caller's behalf, for rate limits shared by
    every process on the database. ``destination_key`` is a keyed hash of the number, not
    the number; rows older than a day are deleted by the retention purge."""

    __tablename__ = "outbound_sends"
    __table_args__ = (UniqueConstraint("call_sid", "purpose", name="uq_outbound_sends_call"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    business: Mapped[str] = mapped_column(String(255))
    destination_key: Mapped[str] = mapped_column(String(64))
    call_sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    purpose: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


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


def _create_private_file(url: str) -> None:
    """Create a SQLite database file readable by its owner only (0600) before SQLite
    creates it with the umask's mode; the -wal and -shm files SQLite makes beside it take
    the same mode. An existing file is left as the operator set it (with a warning when
    other users can read it)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "the database file %s is readable by other users (mode %o): run chmod 600 on it",
                path,
                mode,
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys, and a new
    database file is created 0600."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        _create_private_file(url)
        memory = url.rstrip("/").endswith((":memory:", "sqlite:", "sqlite+pysqlite:"))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            # An in-memory database exists once per connection: the service's database work
            # runs in threads, so they must all share the one connection.
            **({"poolclass": StaticPool} if memory else {}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The revision whose schema ``Base.metadata.create_all`` produced before migrations existed.
INITIAL_REVISION = "0001"
# pg_advisory_xact_lock key serializing schema upgrades across processes ("rcpt").
MIGRATION_LOCK_KEY = 0x72637074
# ... and the outbound-send rate limit check across processes ("rcps").
OUTBOUND_LOCK_KEY = 0x72637073


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


SCREENING_KEY = "_screening"


def _keep_bookkeeping(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` details, keeping the bookkeeping keys (``_…``) the writer did not send."""
    kept = {k: v for k, v in (old or {}).items() if k.startswith("_") and k not in new}
    return {**kept, **json.loads(json.dumps(new, default=str))}


def _keep_late(call: CallRecord, transcript: list[TranscriptTurn], details: dict[str, Any]) -> None:
    """Turns (and details) for a finalized call, kept and marked for an amendment."""
    call.transcript = [t.model_dump(mode="json") for t in transcript]
    values = json.loads(json.dumps(details, default=str))
    values[AMENDMENT_PENDING] = True
    call.details = values
    call.updated_at = utcnow()


_TAKE_WRITE_LOCK = text("UPDATE calls SET call_sid = call_sid WHERE 0")


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """A live call's transcript and captured details at one moment."""

    call_sid: str
    transcript: list[TranscriptTurn]
    details: dict[str, Any]


_SAVE_LIVE_PROGRESS = (
    update(CallRecord)
    .where(CallRecord.call_sid == bindparam("sid"), CallRecord.state == "active")
    .values(transcript=bindparam("transcript"), details=bindparam("details"))
)
"""One statement for every live call of a group commit (``updated_at`` is the heartbeat)."""


class Store:
    """Calls, summaries and the outbox over one engine. Every method is one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @contextlib.contextmanager
    def _read_for_write(self) -> Iterator[Session]:
        """A transaction that reads rows and writes them back, with nobody writing between.

        SQLite has no ``SELECT … FOR UPDATE``, and pysqlite begins a transaction only at its
        first write: rows read before it may be changed by another connection by the time
        they are written. So on SQLite the transaction starts with a write that changes
        nothing, which takes the database's write lock (waiting up to the busy timeout); what
        follows reads the newest state. On PostgreSQL the reads' ``FOR UPDATE`` does this."""
        with self.sessions.begin() as session:
            if session.get_bind().dialect.name == "sqlite":
                session.execute(_TAKE_WRITE_LOCK)
            yield session

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
        caller_id: str = "",
    ) -> None:
        """Record a call as it starts; a repeated webhook for the same call changes nothing.

        ``caller_phone`` must be E.164 or empty (it is a ``String(32)``); ``caller_id`` is
        Twilio's ``From`` as sent, of any length.
        """
        with self.sessions.begin() as session:
            if session.get(CallRecord, call_sid) is not None:
                return
            session.add(
                CallRecord(
                    call_sid=call_sid,
                    business=business,
                    business_number=business_number,
                    caller_phone=caller_phone[:32],
                    caller_id=caller_id,
                    mode=mode,
                    transcript=[],
                    details={},
                )
            )

    def check_health(self) -> None:
        """Read one row of every table the service writes; raises ``SQLAlchemyError`` when
        the database is unreachable, corrupt or not migrated."""
        with self.sessions() as session:
            for model in (CallRecord, SummaryRecord, OutboxJob):
                session.execute(select(model).limit(1)).first()

    def get_call(self, call_sid: str) -> CallRecord | None:
        with self.sessions() as session:
            return session.get(CallRecord, call_sid)

    def claim_stream(self, call_sid: str, business_number: str) -> bool:
        """Admit the call's one Media Stream: True for the first claim of a live Realtime
        call of that business, False otherwise — one atomic UPDATE, so two processes
        (or a replay racing the real stream) cannot both win."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(CallRecord)
                .where(
                    CallRecord.call_sid == call_sid,
                    CallRecord.business_number == business_number,
                    CallRecord.state == "active",
                    CallRecord.mode == "realtime",
                    CallRecord.stream_started_at.is_(None),
                )
                .values(stream_started_at=utcnow())
            )
            return result.rowcount == 1

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
        """Write the transcript and captured details so far (crash recovery reads these).
        On a call already finalized, turns beyond the summary's are kept for an amendment
        (``save_late``), never dropped."""
        self.save_progress_many([ProgressSnapshot(call_sid, transcript, details)])

    def save_progress_many(self, snapshots: Sequence[ProgressSnapshot]) -> None:
        """``save_progress`` for several calls in one transaction (the live calls' group
        commit): one read of the rows, locked, then one batched UPDATE of the live ones."""
        if not snapshots:
            return
        by_sid = {s.call_sid: s for s in snapshots}  # one call once: its newest snapshot
        now = utcnow()
        with self._read_for_write() as session:
            rows = session.execute(
                select(CallRecord.call_sid, CallRecord.state, CallRecord.details)
                .where(CallRecord.call_sid.in_(sorted(by_sid)))
                .order_by(CallRecord.call_sid)
                .with_for_update()
            ).all()
            live: list[dict[str, Any]] = []
            for sid, state, old_details in rows:
                snapshot = by_sid[sid]
                if state == "active":
                    live.append(
                        {
                            "sid": sid,
                            "transcript": [t.model_dump(mode="json") for t in snapshot.transcript],
                            "details": _keep_bookkeeping(old_details, snapshot.details),
                        }
                    )
                elif state == "finalized":
                    call = session.get(CallRecord, sid)
                    if call is not None and len(snapshot.transcript) > len(call.transcript or []):
                        _keep_late(call, snapshot.transcript, snapshot.details)
            if live:
                session.connection().execute(_SAVE_LIVE_PROGRESS.values(updated_at=now), live)

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

    # -- caller locks (one delivery per caller at a time) -------------------------------

    def lock_callers(
        self,
        keys: Sequence[str],
        call_sid: str,
        *,
        lease: dt.timedelta,
        now: dt.datetime | None = None,
    ) -> bool:
        """Take every one of ``keys`` for ``call_sid`` until ``lease`` from ``now``, or none
        of them: False when another call's delivery holds one that has not expired. The
        keys' primary key decides between processes racing for the same caller."""
        wanted = sorted(set(keys))
        if not wanted:
            return True
        now = now or utcnow()
        stale = or_(CallerLock.locked_until < now, CallerLock.call_sid == call_sid)
        try:
            with self.engine.begin() as connection:
                connection.execute(delete(CallerLock).where(CallerLock.key.in_(wanted), stale))
                connection.execute(
                    insert(CallerLock),
                    [{"key": k, "call_sid": call_sid, "locked_until": now + lease} for k in wanted],
                )
        except IntegrityError:
            return False
        return True

    def unlock_callers(self, keys: Sequence[str], call_sid: str) -> None:
        """Give back what ``lock_callers`` took for ``call_sid``."""
        if not keys:
            return
        with self.engine.begin() as connection:
            connection.execute(
                delete(CallerLock).where(
                    CallerLock.key.in_(sorted(set(keys))), CallerLock.call_sid == call_sid
                )
            )

    def forget_expired_caller_locks(self, now: dt.datetime | None = None) -> int:
        """Delete caller locks whose lease ran out (left by a process that died while
        delivering; a live delivery renews nothing, it finishes within its lease)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(CallerLock).where(CallerLock.locked_until < (now or utcnow()))
            )
            return int(result.rowcount or 0)

    # -- the staff login throttle ------------------------------------------------------

    def login_failures(self, client_key: str, *, since: dt.datetime) -> list[dt.datetime]:
        """When ``client_key``'s wrong staff logins since ``since`` happened, oldest first."""
        query = (
            select(StaffLoginFailure.at)
            .where(StaffLoginFailure.client_key == client_key, StaffLoginFailure.at >= since)
            .order_by(StaffLoginFailure.at)
        )
        with self.sessions() as session:
            return [a if a.tzinfo else a.replace(tzinfo=dt.UTC) for a in session.scalars(query)]

    def note_login_failure(
        self, client_key: str, *, at: dt.datetime, forget_before: dt.datetime
    ) -> None:
        """Record a wrong login; forget everyone's older than ``forget_before``."""
        with self.engine.begin() as connection:
            connection.execute(
                delete(StaffLoginFailure).where(StaffLoginFailure.at < forget_before)
            )
            connection.execute(insert(StaffLoginFailure).values(client_key=client_key, at=at))

    def clear_login_failures(self, client_key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(StaffLoginFailure).where(StaffLoginFailure.client_key == client_key)
            )

    def note_screening(self, call_sid: str, screening: dict[str, Any]) -> None:
        """Keep the call's spam screening (``agent.screening``) with its details."""
        with self._read_for_write() as session:
            call = session.get(CallRecord, call_sid, with_for_update=True)
            if call is None:
                return
            call.details = {**(call.details or {}), SCREENING_KEY: screening}

    def screen_out(self, call_sid: str, reason: str) -> None:
        """A call refused as spam at the door: it will have no summary and no CRM record."""
        self._end_without_summary(call_sid, "screened", reason)

    def _end_without_summary(self, call_sid: str, state: str, reason: str) -> None:
        """End an active call in ``state`` with no summary: nothing will finalize it."""
        with self._read_for_write() as session:
            call = session.get(CallRecord, call_sid, with_for_update=True)
            if call is not None and call.state == "active":
                call.state = state
                call.ended_at = utcnow()
                call.notes = reason

    def save_intake(self, call_sid: str, intake_json: str, details: dict[str, Any]) -> None:
        """Keep the scripted intake's state between Twilio's webhooks."""
        with self._read_for_write() as session:
            call = session.get(CallRecord, call_sid, with_for_update=True)
            if call is None or call.state != "active":
                return
            call.mode = "intake"
            call.intake_json = intake_json
            call.details = _keep_bookkeeping(call.details, details)

    def save_late(
        self,
        call_sid: str,
        transcript: list[TranscriptTurn],
        details: dict[str, Any],
        *,
        intake_json: str | None = None,
    ) -> bool:
        """Keep turns that arrived after the call was finalized (never dropped); the call
        is marked for an amendment. False when the call is not a finalized one."""
        with self._read_for_write() as session:
            call = session.get(CallRecord, call_sid, with_for_update=True)
            if call is None or call.state != "finalized":
                return False
            _keep_late(call, transcript, details)
            if intake_json is not None:
                call.intake_json = intake_json
            return True

    def amend(self, summary: CallSummary) -> bool:
        """Replace the call's summary with its amendment and queue its delivery: a job not
        delivered yet simply delivers the amended summary; a delivered one is queued again
        (the CRM updates the records it wrote). False when the call has no summary."""
        with self._read_for_write() as session:
            record = session.get(SummaryRecord, summary.call_sid, with_for_update=True)
            call = session.get(CallRecord, summary.call_sid, with_for_update=True)
            if record is None or call is None:
                return False
            record.refresh_from(summary)
            details = dict(call.details or {})
            details.pop(AMENDMENT_PENDING, None)
            call.details = details
            job = session.scalars(
                select(OutboxJob).where(OutboxJob.call_sid == summary.call_sid)
            ).first()
            if job is not None and job.state in ("delivered", "dead"):
                job.state = "pending"
                job.attempts = 0
                job.next_attempt_at = utcnow()
                job.locked_until = None
                job.last_error = ""
            return True

    def close_unsummarized(self, call_sid: str, reason: str) -> None:
        """The call needs no summary (the office picked up): nothing will finalize it."""
        self._end_without_summary(call_sid, "closed", reason)

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

    def finalize(self, summary: CallSummary, *, crm: str, spam: bool = False) -> bool:
        """Commit the summary and its outbox job in one transaction.

        Returns False (and writes nothing) when the call was already finalized, so a
        duplicate ``stop`` or status callback cannot create a second delivery. ``spam``:
        the call was screened as spam — its summary is kept for the staff pages (state
        ``screened``) but no CRM delivery is queued.
        """
        try:
            return self._finalize(summary, crm=crm, spam=spam)
        except (IntegrityError, OperationalError):
            # A concurrent finalization won the race; the primary keys kept it single.
            if self.get_summary(summary.call_sid) is not None:
                return False
            raise

    def _finalize(self, summary: CallSummary, *, crm: str, spam: bool = False) -> bool:
        with self._read_for_write() as session:
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
            call.state = "screened" if spam else "finalized"
            call.ended_at = utcnow()
            call.transcript = [t.model_dump(mode="json") for t in summary.transcript]
            session.add(SummaryRecord.of(summary))
            if not spam:
                session.add(OutboxJob(call_sid=summary.call_sid, crm=crm))
            return True

    def get_summary(self, call_sid: str) -> CallSummary | None:
        with self.sessions() as session:
            record = session.get(SummaryRecord, call_sid)
            return record.summary() if record else None

    def claim_outbound(
        self,
        *,
        kind: str,
        business: str,
        destination_key: str,
        purpose: str,
        call_sid: str | None,
        now: dt.datetime,
        window: dt.timedelta,
        per_number: int,
        per_business: int,
        repeat_ok: bool = False,
    ) -> str | None:
        """Record one outbound send and return ``None``, or return why it is refused
        (nothing recorded): ``per_number`` sends of ``kind`` to ``destination_key`` and
        ``per_business`` from ``business`` within ``window`` before ``now``, and one send
        of ``purpose`` per ``call_sid`` — with ``repeat_ok``, a send of ``purpose`` already
        recorded for ``call_sid`` is allowed again without being counted a second time (a
        retry of the same alert). Serialized across processes (SQLite's write lock, a
        PostgreSQL advisory lock), so the limits hold for every node on the database."""
        since = now - window
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif connection.dialect.name == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(OUTBOUND_LOCK_KEY)))
            sends = OutboundSend
            if call_sid is not None:
                done = connection.execute(
                    select(func.count())
                    .select_from(sends)
                    .where(sends.call_sid == call_sid, sends.purpose == purpose)
                ).scalar_one()
                if done:
                    connection.rollback()
                    return None if repeat_ok else f"already sent a {purpose} for this call"
            recent = (sends.kind == kind) & (sends.sent_at > since)
            checks = (
                (sends.destination_key == destination_key, per_number, "per-number"),
                (sends.business == business, per_business, "per-business"),
            )
            for scope, limit, label in checks:
                count = connection.execute(
                    select(func.count()).select_from(sends).where(recent & scope)
                ).scalar_one()
                if count >= limit:
                    connection.rollback()
                    return f"{label} {kind} limit ({limit} an hour) reached"
            connection.execute(
                insert(OutboundSend).values(
                    kind=kind,
                    business=business,
                    destination_key=destination_key,
                    call_sid=call_sid,
                    purpose=purpose,
                    sent_at=now,
                )
            )
            connection.commit()
        return None

    def forget_outbound(self, *, before: dt.datetime) -> int:
        """Delete outbound-send rows older than ``before`` (they only serve rate limits)."""
        with self.engine.begin() as connection:
            result = connection.execute(delete(OutboundSend).where(OutboundSend.sent_at < before))
            return int(result.rowcount or 0)

    def forget_phone_ledger(self, *, before: dt.datetime) -> int:
        """Delete CRM phone-ledger rows (they hold numbers) written before ``before``."""
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(PhoneLedgerEntry).where(PhoneLedgerEntry.written_at < before)
            )
            return int(result.rowcount or 0)

    def outbox_job(self, call_sid: str) -> OutboxJob | None:
        with self.sessions() as session:
            return session.scalars(select(OutboxJob).where(OutboxJob.call_sid == call_sid)).first()

    def record_attempt(self, call_sid: str, attempt: int, outcome: str, detail: str = "") -> None:
        """Add a line to the call's delivery history."""
        with self.sessions.begin() as session:
            session.add(
                DeliveryAttempt(
                    call_sid=call_sid, attempt=attempt, outcome=outcome, detail=detail[:2000]
                )
            )

    def delivery_history(self, call_sid: str) -> list[DeliveryAttempt]:
        with self.sessions() as session:
            query = (
                select(DeliveryAttempt)
                .where(DeliveryAttempt.call_sid == call_sid)
                .order_by(DeliveryAttempt.id)
            )
            return list(session.scalars(query))

    def outbox_counts(self) -> dict[str, int]:
        """Outbox jobs per state (pending, delivering, delivered, dead)."""
        with self.sessions() as session:
            rows = session.execute(select(OutboxJob.state, func.count()).group_by(OutboxJob.state))
            return {str(state): int(count) for state, count in rows}

    def oldest_undelivered(self) -> dt.datetime | None:
        """When the oldest job still waiting (pending or delivering) was created."""
        with self.sessions() as session:
            oldest = session.scalar(
                select(func.min(OutboxJob.created_at)).where(
                    OutboxJob.state.in_(("pending", "delivering"))
                )
            )
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        return oldest


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


REDACTED = "(removed after the retention period)"


def _redacted_summary(summary_json: str, call_sid: str, business: str) -> str:
    """The summary without personal data: ids, business, urgency and outcome stay."""
    try:
        summary = CallSummary.model_validate_json(summary_json)
    except ValidationError:  # unreadable: keep nothing of it rather than stop the purge
        return CallSummary(
            call_sid=call_sid, business=business or "unknown", need=REDACTED
        ).model_dump_json()
    kept = CallSummary(
        call_sid=summary.call_sid,
        business=summary.business,
        need=REDACTED,
        urgency=summary.urgency,
        is_emergency=summary.is_emergency,
        callback_requested=summary.callback_requested,
        callback_due=summary.callback_due,
        call_date=summary.call_date,
        new_project=summary.new_project,
        language=summary.language,
        duration_seconds=summary.duration_seconds,
        extraction=summary.extraction,
    )
    return kept.model_dump_json()


def purge_personal_data(store: Store, *, delivered_before: dt.datetime, limit: int = 500) -> int:
    """Remove the personal data of calls delivered to the CRM before ``delivered_before``:
    transcript, details, caller numbers, intake state and the summary's contents. The call
    row, its outcome and the outbox row stay (idempotency and the capture ledger need
    them); the CRM keeps its own copy. Returns how many calls were purged (at most
    ``limit`` per run; run it again until it returns 0)."""
    with store.sessions.begin() as session:
        sids = list(
            session.scalars(
                select(CallRecord.call_sid)
                .join(OutboxJob, OutboxJob.call_sid == CallRecord.call_sid)
                .where(
                    OutboxJob.state == "delivered",
                    OutboxJob.delivered_at < delivered_before,
                    CallRecord.notes != PURGED_NOTE,
                )
                .limit(limit)
            )
        )
        if not sids:
            return 0
        session.execute(
            update(CallRecord)
            .where(CallRecord.call_sid.in_(sids))
            .values(
                transcript=[],
                details={},
                caller_phone="",
                caller_id="",
                intake_json="",
                emergency_reason="",
                notes=PURGED_NOTE,
            )
        )
        rows = session.execute(
            select(SummaryRecord, CallRecord.business)
            .join(CallRecord, CallRecord.call_sid == SummaryRecord.call_sid)
            .where(SummaryRecord.call_sid.in_(sids))
        ).all()
        for record, business in rows:
            redacted = _redacted_summary(record.summary_json, record.call_sid, business)
            record.refresh_from(CallSummary.model_validate_json(redacted))
        # The CRM phone ledger holds numbers too; it is only read for a day after a write.
        session.execute(
            delete(PhoneLedgerEntry).where(
                PhoneLedgerEntry.call_sid.in_(sids),
                PhoneLedgerEntry.written_at
                < min(delivered_before, utcnow() - dt.timedelta(days=1)),
            )
        )
        return len(sids)


PURGED_NOTE = "personal data purged"
