"""Turning a finished call into a stored summary and an outbox job.

The order is the point: the transcript and details are already in the database (written
as the call went); extraction runs; the summary and its outbox job are committed in one
transaction; only then is the delivery worker woken. A call finalized twice (``stop`` and
the status callback, or two status callbacks) is finalized once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from agent.business import Business, BusinessDirectory
from agent.caller_id import read_caller_id
from agent.details import CallerDetails
from agent.extraction import extract_details
from agent.screening import Screening, screen_finished
from agent.summary import CallSummary, TranscriptTurn
from agent.summary_builder import build_summary
from crm.store import AMENDMENT_PENDING, SCREENING_KEY, CallRecord, Store

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)


def known_details(call: CallRecord) -> CallerDetails:
    """What the call has learned so far, as stored (bookkeeping keys ignored)."""
    stored = call.details or {}
    return CallerDetails.model_validate(
        {k: v for k, v in stored.items() if k in CallerDetails.model_fields}
    )


def note_missing_caller_id(summary: CallSummary, call: CallRecord) -> CallSummary:
    """Say in the details why a call has no caller phone (withheld, SIP, app), so the CRM
    record is honest about it; the raw identity stays in the database, not the CRM."""
    if call.caller_phone or not call.caller_id or summary.missed_call:
        return summary  # a missed call's details already say the number was withheld
    note = f"No caller phone number: {read_caller_id(call.caller_id).describe()}."
    if note in summary.details:
        return summary
    details = f"{summary.details} {note}".strip()
    return summary.model_copy(update={"details": details[:32000]})


def seconds_since_start(call: CallRecord, now: dt.datetime) -> float:
    """Seconds from the call's first webhook to ``now`` (SQLite returns naive UTC)."""
    started = call.started_at
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    return max(0.0, (now - started).total_seconds())


def screen_call(call: CallRecord, summary: CallSummary) -> Screening:
    """The call's final spam screening: what the webhook saw plus what was (not) said."""
    inbound = Screening.from_json((call.details or {}).get(SCREENING_KEY))
    return screen_finished(
        inbound,
        caller_texts=[t.text for t in summary.transcript if t.speaker == "caller"],
        agent_turns=sum(1 for t in summary.transcript if t.speaker == "agent"),
        duration_seconds=summary.duration_seconds,
    )


class CallFinalizer:
    """Builds, stores and queues the summary of a finished call."""

    def __init__(
        self,
        *,
        store: Store,
        businesses: BusinessDirectory,
        crm_name: str,
        openai_client: Callable[[], AsyncOpenAI] | None,
        summary_model: str,
        on_finalized: Callable[[CallSummary], None] = lambda _summary: None,
        on_emergency: Callable[[str, str], object] = lambda _sid, _need: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.clock = clock
        self.store = store
        self.businesses = businesses
        self.crm_name = crm_name
        self.openai_client = openai_client
        self.summary_model = summary_model
        self.on_finalized = on_finalized
        """Called on the event loop: nothing in it may block."""
        self.on_emergency = on_emergency
        """Called in a worker thread for an emergency summary (it writes to the database)."""
        self._locks: dict[str, asyncio.Lock] = {}

    def business_for(self, call: CallRecord) -> Business | None:
        return self.businesses.by_number(call.business_number) or self.businesses.default()

    async def finalize(self, call_sid: str, *, reason: str) -> CallSummary | None:
        """Finalize ``call_sid`` from what the store holds; ``None`` if already done or unknown."""
        lock = self._locks.setdefault(call_sid, asyncio.Lock())
        try:
            async with lock:
                return await self._finalize(call_sid, reason=reason)
        finally:
            if not lock.locked():
                self._locks.pop(call_sid, None)

    async def _finalize(self, call_sid: str, *, reason: str) -> CallSummary | None:
        call = await asyncio.to_thread(self.store.get_call, call_sid)
        if call is None or call.state != "active":
            return None
        summary = await self._summarize(call)
        business = self.business_for(call)
        if summary is None or business is None:
            return None
        screening = await asyncio.to_thread(screen_call, call, summary)
        if screening != Screening.from_json((call.details or {}).get(SCREENING_KEY)):
            await asyncio.to_thread(self.store.note_screening, call_sid, screening.to_json())
        spam = screening.is_spam and not business.spam_to_crm
        if not await asyncio.to_thread(self.store.finalize, summary, crm=self.crm_name, spam=spam):
            return None
        if spam:
            log.info(
                "call %s screened as spam (%s): kept for staff, not sent to the CRM",
                call_sid,
                "; ".join(screening.reasons),
            )
            return summary
        log.info(
            "call %s finalized (%s): urgency %d, %s extraction, %d turns",
            call_sid,
            reason,
            summary.urgency,
            summary.extraction,
            len(summary.transcript),
        )
        await self._hand_on(summary)
        return summary

    async def _hand_on(self, summary: CallSummary) -> None:
        """A summary stored (finalized or amended): delivery is told, and an emergency is
        recorded for the on-call alert (in a thread: it writes to the database)."""
        self.on_finalized(summary)
        if summary.is_emergency:
            await asyncio.to_thread(self.on_emergency, summary.call_sid, summary.need)

    async def amend(self, call_sid: str) -> CallSummary | None:
        """The amendment rule: turns that arrived after the call was finalized are kept
        (``Store.save_late``); when the call really ends, the summary is rebuilt from the
        whole call and replaces the stored one — delivered as is if the CRM has not been
        written yet, else as an update of the same records (``amendment`` counts them)."""
        lock = self._locks.setdefault(call_sid, asyncio.Lock())
        try:
            async with lock:
                call = await asyncio.to_thread(self.store.get_call, call_sid)
                previous = await asyncio.to_thread(self.store.get_summary, call_sid)
                pending = call is not None and (call.details or {}).get(AMENDMENT_PENDING)
                if call is None or previous is None or not pending:
                    return None
                summary = await self._summarize(call)
                if summary is None:
                    return None
                summary = summary.model_copy(update={"amendment": previous.amendment + 1})
                if not await asyncio.to_thread(self.store.amend, summary):
                    return None
                log.info(
                    "call %s amended (%d): %d turns",
                    call_sid,
                    summary.amendment,
                    len(summary.transcript),
                )
                await self._hand_on(summary)
                return summary
        finally:
            if not lock.locked():
                self._locks.pop(call_sid, None)

    async def _summarize(self, call: CallRecord) -> CallSummary | None:
        call_sid = call.call_sid
        business = self.business_for(call)
        if business is None:
            log.error(
                "call %s: no business for %s; cannot build a summary",
                call_sid,
                call.business_number,
            )
            return None
        transcript = [TranscriptTurn.model_validate(t) for t in call.transcript or []]
        details = known_details(call)
        now = self.clock()  # the business's "today" and "tomorrow" come from this
        model_details = None
        if self.openai_client is not None and transcript:
            model_details = await extract_details(
                self.openai_client(),
                model=self.summary_model,
                business_name=business.name,
                transcript=transcript,
                call_sid=call_sid,
                today=now.astimezone(business.tz).date(),
            )
        # Reading the caller's words (keywords, urgency, phone numbers) is milliseconds of
        # CPU: in a thread, so the other live calls' audio is not held up meanwhile.
        summary = await asyncio.to_thread(
            build_summary,
            call_sid=call_sid,
            business=business,
            caller_phone=call.caller_phone,
            transcript=transcript,
            tool_details=details,
            model_details=model_details,
            now=now,
            duration_seconds=(
                call.duration_seconds
                if call.duration_seconds is not None
                else int(seconds_since_start(call, dt.datetime.now(dt.UTC)))
            ),
        )
        return note_missing_caller_id(summary, call)

    async def recover(self, *, idle_for: dt.timedelta | None, serving: Collection[str] = ()) -> int:
        """Finalize calls a crashed process left behind (all of them when ``idle_for`` is None),
        never one in ``serving``: this process's own live calls, however late their heartbeat."""
        count = 0
        for call in await asyncio.to_thread(self.store.active_calls, idle_for=idle_for):
            if call.call_sid in serving:
                continue
            if await self.finalize(call.call_sid, reason="recovered after restart") is not None:
                count += 1
        return count
