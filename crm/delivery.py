"""The outbox delivery worker: takes finalized summaries to the CRM, durably.

Each job is claimed with a lease (``state='delivering'``, ``locked_until``). On PostgreSQL
the claim uses ``FOR UPDATE SKIP LOCKED`` so several workers never take the same job; on
SQLite a conditional UPDATE does the same for the single node. A worker killed mid-delivery
leaves a lease that expires, and the job is taken again — deliveries are idempotent per
CallSid, so a retry never writes twice.

A process delivers up to ``concurrency`` jobs at once, each in its own thread. Deliveries
for one caller never overlap, in any process: both would search the CRM, find nothing and
create a Lead each. A job holds its caller's keys (``caller_keys``: the numbers and the
e-mail address, hashed) in ``crm_caller_locks`` while it is written; a job whose caller is
taken goes back to the queue for ``RetryPolicy.busy_delay`` without spending an attempt;
when the delivery holding its caller ends in the same process, the job is due at once and
the worker woken, so the caller's next call follows the first without that pause.

Outcomes: delivered; retried with exponential backoff and jitter (5xx, timeouts, connection
errors); retried after a long pause (``REQUEST_LIMIT_EXCEEDED``); dead-lettered with the
reason for staff (rejections, bad credentials, too many attempts) and retryable from the
staff pages; waiting (another delivery for the same caller is under way).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import or_, select, update

from agent.summary import CallSummary
from crm.config import CrmProfile, CrmWriter
from crm.errors import (
    CrmError,
    CrmRateLimitedError,
    CrmTransientError,
)
from crm.planner import ledger_phones
from crm.store import OutboxJob, Store, utcnow

log = logging.getLogger(__name__)


CLAIM_RACE_RETRIES = 10


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay: float = 2.0
    max_delay: float = 900.0
    rate_limit_delay: float = 300.0
    max_attempts: int = 15
    lease_seconds: float = 120.0
    busy_delay: float = 1.0
    """How long a job waits when its caller's delivery is under way elsewhere."""

    def backoff(self, attempts: int, rng: random.Random) -> float:
        """Exponential backoff with jitter: ~base·2^(n-1), spread ±50 %, capped."""
        raw = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return float(raw * rng.uniform(0.5, 1.5))


@dataclass(frozen=True, slots=True)
class Outcome:
    call_sid: str
    state: str
    detail: str = ""
    first_attempt: bool = False
    """This was the job's first attempt (not a retry, not a staff re-queue)."""


STAFF_RETRY_NOTE = "re-queued from the staff page"
WAITING = "waiting"
"""Outcome state: another delivery for the same caller is under way; no attempt spent."""


def caller_keys(summary: CallSummary) -> list[str]:
    """What the CRM lookup knows the caller by (numbers as E.164, the e-mail address),
    each as a SHA-256 hex digest: two deliveries sharing one are written one at a time."""
    values = [f"phone:{number}" for number in ledger_phones(summary)]
    if summary.email and summary.email.strip():
        values.append(f"email:{summary.email.strip().lower()}")
    return sorted({hashlib.sha256(v.encode()).hexdigest() for v in values})


class DeliveryWorker:
    """Delivers outbox jobs through one CRM writer."""

    def __init__(
        self,
        store: Store,
        writer: CrmWriter,
        profile_for: Callable[[str], CrmProfile],
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_wait: Callable[[str], None] | None = None,
        concurrency: int = 1,
    ) -> None:
        """``on_outcome`` is called (in the delivering thread) after every attempt; it must
        not raise (exceptions are logged and ignored). ``on_wait`` is called with the CallSid
        of a job put back because its caller was taken (not an attempt: ``on_outcome`` is
        not called for it). ``concurrency``: how many jobs ``run`` delivers at once."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.store = store
        self.writer = writer
        self.profile_for = profile_for
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.on_outcome = on_outcome
        self.on_wait = on_wait
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, set[int]] = {}
        """Caller key → jobs put back because a delivery held that key (delivery threads)."""
        self._waiting_lock = threading.Lock()

    # -- claiming --------------------------------------------------------------------

    def claim(self, now: dt.datetime | None = None) -> OutboxJob | None:
        """Take the next due job (or one whose lease expired) and lease it to this worker."""
        now = now or utcnow()
        due = or_(
            (OutboxJob.state == "pending") & (OutboxJob.next_attempt_at <= now),
            (OutboxJob.state == "delivering") & (OutboxJob.locked_until < now),
        )
        lease = now + dt.timedelta(seconds=self.policy.lease_seconds)
        # Another worker may take the row between our read and our conditional update
        # (SQLite has no SKIP LOCKED): then try the next due job instead of giving up.
        for _ in range(CLAIM_RACE_RETRIES):
            with self.store.sessions.begin() as session:
                query = select(OutboxJob).where(due).order_by(OutboxJob.next_attempt_at).limit(1)
                if self.store.engine.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                job = session.scalars(query).first()
                if job is None:
                    return None
                claimed = session.execute(
                    update(OutboxJob)
                    .where(OutboxJob.id == job.id, OutboxJob.state == job.state)
                    .where(
                        or_(
                            OutboxJob.locked_until.is_(None),
                            OutboxJob.locked_until == job.locked_until,
                        )
                    )
                    .values(state="delivering", locked_until=lease, attempts=OutboxJob.attempts + 1)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    session.refresh(job)
                    return job
        return None

    # -- delivering ------------------------------------------------------------------

    def deliver_one(self, now: dt.datetime | None = None) -> Outcome | None:
        """Claim and deliver one job (blocking). ``None`` when nothing is due."""
        job = self.claim(now)
        if job is None:
            return None
        return self.deliver(job, now)

    def deliver(self, job: OutboxJob, now: dt.datetime | None = None) -> Outcome:
        """Deliver a job this worker claimed (blocking), and record the attempt."""
        outcome = self._deliver_claimed(job, now or utcnow())
        if outcome.state == WAITING:  # not an attempt: no history line, nobody told
            return outcome
        try:
            self.store.record_attempt(job.call_sid, job.attempts, outcome.state, outcome.detail)
        except Exception:  # the history is for people; a failure must not stop deliveries
            log.exception("call %s: delivery history not written", job.call_sid)
        if job.attempts == 1 and not job.last_error:
            outcome = dataclasses.replace(outcome, first_attempt=True)
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # an observer must not stop deliveries
                log.exception("call %s: outcome observer failed", job.call_sid)
        return outcome

    def _deliver_claimed(self, job: OutboxJob, now: dt.datetime) -> Outcome:
        summary = self.store.get_summary(job.call_sid)
        if summary is None:
            return self._finish(job, "dead", "no summary stored for this call")
        keys = caller_keys(summary)
        lease = dt.timedelta(seconds=self.policy.lease_seconds)
        if not self.store.lock_callers(keys, job.call_sid, lease=lease, now=now):
            self._note_waiting(keys, job.id)
            return self._wait_turn(job, now)
        try:
            return self._write(job, summary)
        finally:
            try:
                self.store.unlock_callers(keys, job.call_sid)
            except Exception:  # the lock then expires with the lease; the caller waits
                log.exception("call %s: caller lock not released", job.call_sid)
            else:
                self._release_waiting(keys)

    def _note_waiting(self, keys: list[str], job_id: int) -> None:
        with self._waiting_lock:
            if len(self._waiting) > 10_000:
                self._waiting.clear()  # keys another process held: their jobs just wait
            for key in keys:
                self._waiting.setdefault(key, set()).add(job_id)

    def _release_waiting(self, keys: list[str]) -> None:
        """Jobs that waited for these keys are due now, and the worker looks at once. A job
        not yet put back (still being refused) keeps its ``busy_delay``: never lost."""
        with self._waiting_lock:
            ids: set[int] = set().union(*(self._waiting.pop(key, set()) for key in keys))
        if not ids:
            return
        now = utcnow()
        try:
            with self.store.sessions.begin() as session:
                session.execute(
                    update(OutboxJob)
                    .where(
                        OutboxJob.id.in_(ids),
                        OutboxJob.state == "pending",
                        OutboxJob.next_attempt_at > now,
                    )
                    .values(next_attempt_at=now)
                )
        except Exception:  # they are due after busy_delay all the same
            log.exception("waiting deliveries not made due")
            return
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: run() has returned
                loop.call_soon_threadsafe(self.wake.set)

    def _write(self, job: OutboxJob, summary: CallSummary) -> Outcome:
        try:
            profile = self.profile_for(summary.business)
            if summary.amendment:
                result = self.writer.amend(summary, profile)
            else:
                result = self.writer.deliver(summary, profile)
        except CrmRateLimitedError as exc:
            delay = max(self.policy.rate_limit_delay, exc.retry_after or 0.0)
            return self._retry(job, exc, delay)
        except CrmTransientError as exc:
            delay = max(self.policy.backoff(job.attempts, self.rng), exc.retry_after or 0.0)
            return self._retry(job, exc, delay)
        except CrmError as exc:
            return self._finish(job, "dead", str(exc))
        payload = json.dumps(dataclasses.asdict(result))
        outcome = self._finish(job, "delivered", "", result_json=payload)
        log.info(
            "call %s delivered to %s as %s %s (%d API requests%s)",
            job.call_sid,
            self.writer.name,
            result.record_type,
            result.record_id,
            result.api_requests,
            ", already there" if result.already_delivered else "",
        )
        for warning in result.warnings:
            log.warning("call %s: %s", job.call_sid, warning)
        return outcome

    def _retry(self, job: OutboxJob, exc: CrmError, delay: float) -> Outcome:
        if job.attempts >= self.policy.max_attempts:
            return self._finish(job, "dead", f"gave up after {job.attempts} attempts: {exc}")
        self._put_back(job, utcnow() + dt.timedelta(seconds=delay), last_error=str(exc))
        log.warning(
            "call %s delivery attempt %d failed (%s); retrying in %.0fs",
            job.call_sid,
            job.attempts,
            type(exc).__name__,
            delay,
        )
        return Outcome(job.call_sid, "pending", str(exc))

    def _wait_turn(self, job: OutboxJob, now: dt.datetime) -> Outcome:
        """Put the job back for ``busy_delay``, giving back the attempt its claim counted."""
        next_at = now + dt.timedelta(seconds=self.policy.busy_delay)
        self._put_back(job, next_at, attempts=OutboxJob.attempts - 1)
        log.info(
            "call %s: another delivery for the same caller is under way; next try in %.1fs",
            job.call_sid,
            self.policy.busy_delay,
        )
        if self.on_wait is not None:
            try:
                self.on_wait(job.call_sid)
            except Exception:  # an observer must not stop deliveries
                log.exception("call %s: wait observer failed", job.call_sid)
        return Outcome(job.call_sid, WAITING)

    def _put_back(self, job: OutboxJob, next_at: dt.datetime, **values: object) -> None:
        """Release the job's lease; it is due again at ``next_at``."""
        with self.store.sessions.begin() as session:
            session.execute(
                update(OutboxJob)
                .where(OutboxJob.id == job.id)
                .values(state="pending", locked_until=None, next_attempt_at=next_at, **values)
            )

    def _finish(self, job: OutboxJob, state: str, error: str, result_json: str = "") -> Outcome:
        values: dict[str, object] = {"state": state, "locked_until": None, "last_error": error}
        if state == "delivered":
            values["delivered_at"] = utcnow()
            values["result_json"] = result_json
        with self.store.sessions.begin() as session:
            session.execute(update(OutboxJob).where(OutboxJob.id == job.id).values(**values))
        if state == "dead":
            log.error("call %s dead-lettered: %s", job.call_sid, error)
        return Outcome(job.call_sid, state, error)

    def drain(self, now: dt.datetime | None = None) -> list[Outcome]:
        """Deliver every job due now (blocking); used by tests, the demo and the CLI."""
        outcomes = []
        while (outcome := self.deliver_one(now)) is not None:
            outcomes.append(outcome)
        return outcomes

    async def run(self, stop: asyncio.Event, *, poll_seconds: float = 2.0) -> None:
        """Deliver until ``stop`` is set, ``concurrency`` jobs at once, each in a thread of
        the worker's own (a slow CRM never takes the threads live calls save through).

        One loop claims, and only when a delivery thread is free, so an idle worker looks
        once per ``poll_seconds`` or per ``wake`` (set when a call is finalized), however
        many threads it has. Returns once the deliveries under way have finished."""
        loop = self._loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="crm-delivery")
        free = asyncio.Semaphore(self.concurrency)
        under_way: set[asyncio.Task[None]] = set()

        async def deliver(job: OutboxJob) -> None:
            try:
                await loop.run_in_executor(executor, self.deliver, job)
            except Exception:  # a database hiccup: the job's lease runs out, it is taken again
                log.exception("call %s: delivery failed", job.call_sid)
            finally:
                free.release()

        try:
            while not stop.is_set():
                await free.acquire()
                if stop.is_set():
                    free.release()
                    break
                # Cleared before looking, so a call finalized while we look still wakes us.
                self.wake.clear()
                try:
                    job = await loop.run_in_executor(executor, self.claim)
                except Exception:  # a database hiccup must not kill the worker
                    log.exception("delivery worker: claiming a job failed")
                    job = None
                if job is not None:
                    task = asyncio.create_task(deliver(job))
                    under_way.add(task)
                    task.add_done_callback(under_way.discard)
                    continue
                free.release()
                waiters = {
                    asyncio.ensure_future(self.wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                }
                _, pending = await asyncio.wait(
                    waiters, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in pending:
                    waiter.cancel()
            if under_way:
                await asyncio.gather(*under_way, return_exceptions=True)
        finally:
            self._loop = None
            executor.shutdown(wait=False, cancel_futures=True)


def retry_dead_job(store: Store, call_sid: str) -> bool:
    """Put a dead-lettered job back in the queue (staff action)."""
    with store.sessions.begin() as session:
        result = session.execute(
            update(OutboxJob)
            .where(OutboxJob.call_sid == call_sid, OutboxJob.state == "dead")
            .values(
                state="pending", next_attempt_at=utcnow(), attempts=0, last_error=STAFF_RETRY_NOTE
            )
        )
        retried = bool(result.rowcount)  # type: ignore[attr-defined]
    if retried:
        store.record_attempt(call_sid, 0, "requeued", STAFF_RETRY_NOTE)
    return retried


def retry_all_dead(store: Store) -> int:
    """Put every dead-lettered job back in the queue (staff bulk action); how many."""
    with store.sessions.begin() as session:
        dead = list(session.scalars(select(OutboxJob.call_sid).where(OutboxJob.state == "dead")))
        result = session.execute(
            update(OutboxJob)
            .where(OutboxJob.state == "dead", OutboxJob.call_sid.in_(dead))
            .values(
                state="pending", next_attempt_at=utcnow(), attempts=0, last_error=STAFF_RETRY_NOTE
            )
        )
        count = int(result.rowcount)  # type: ignore[attr-defined]
    for call_sid in dead:
        store.record_attempt(call_sid, 0, "requeued", STAFF_RETRY_NOTE)
    return count
