"""The capture ledger: every call Twilio reports for a business number ends up as exactly
one of a summary delivered to the CRM, a missed call, or a call the office took.

``reconcile()`` lists the calls to each business number through Twilio's REST API (the
Calls list, paged to the end) and, for every finished inbound CallSid the database has no
record of — the service was down, or a process died before the first webhook was stored —
records it as a missed call, with the voicemail recording's link and transcription when
the number's fallback TwiML (``<Record>``) took a message. A voicemail whose words say
what the caller needs becomes an ordinary summary from those words.

Exactly once: the CallSid is the call's primary key and finalization happens once per
call, so a second run (or two processes reconciling at once) records nothing new. Calls
the database already knows are left to their own paths (live, recovery, status callback).
Run by ``receptionist reconcile [--since]`` and periodically by the service.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from agent.caller_id import read_caller_id
from agent.summary import TranscriptTurn
from telephony.errors import TwilioRestError
from telephony.services import Services
from telephony.twilio_rest import LoggedCall, Voicemail

log = logging.getLogger(__name__)

FINISHED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
DEFAULT_LOOKBACK = dt.timedelta(days=1)


@dataclass(slots=True)
class ReconcileReport:
    """What one run saw and did."""

    listed: int = 0
    known: int = 0
    unfinished: int = 0
    recorded: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def reconcile(services: Services, *, since: dt.datetime | None = None) -> ReconcileReport:
    """Record every finished inbound call since ``since`` (default: a day ago) that the
    database has never seen, as a missed call (see the module docstring)."""
    report = ReconcileReport()
    twilio = services.twilio
    if twilio is None:
        report.errors.append("Twilio REST is not configured (TWILIO_ACCOUNT_SID/AUTH_TOKEN)")
        return report
    since = since or dt.datetime.now(dt.UTC) - DEFAULT_LOOKBACK
    voicemails: dict[str, list[Voicemail]] | None = None
    for business in services.businesses.businesses:
        try:
            calls = await twilio.list_inbound_calls(to=business.number, since=since)
        except TwilioRestError as exc:
            report.errors.append(f"{business.number}: {exc}")
            continue
        for logged in calls:
            report.listed += 1
            if logged.direction != "inbound" or logged.to != business.number:
                continue  # the office leg of a screened <Dial>, outbound calls
            if logged.status not in FINISHED:
                report.unfinished += 1
                continue
            if services.store.get_call(logged.sid) is not None:
                report.known += 1
                continue
            if voicemails is None:  # fetched once per run, only when there is a call to record
                try:
                    voicemails = await twilio.voicemails_since(since)
                except TwilioRestError as exc:
                    log.error("reconcile: recordings unavailable (%s)", exc)
                    voicemails = {}
            left = voicemails.get(logged.sid, [])
            if await _record_unseen_call(services, logged, business.name, business.number, left):
                report.recorded.append(logged.sid)
    if report.recorded:
        log.warning("reconcile: recorded %d call(s) the service never saw", len(report.recorded))
    return report


async def _record_unseen_call(
    services: Services,
    logged: LoggedCall,
    business_name: str,
    business_number: str,
    voicemails: list[Voicemail],
) -> bool:
    store = services.store
    caller_id = read_caller_id(logged.from_)  # sip:/client:/anonymous are not numbers
    store.begin_call(
        logged.sid,
        business=business_name,
        business_number=business_number,
        caller_phone=caller_id.e164 or "",
        caller_id=caller_id.raw,
        mode="ledger",
    )
    if logged.duration_seconds is not None:
        store.set_duration(logged.sid, logged.duration_seconds)
    transcript = [
        TranscriptTurn(speaker="caller", text=v.transcription, start=0.0)
        for v in voicemails
        if v.transcription
    ]
    notes = [
        f"Voicemail recording ({v.duration_seconds or '?'} s): {v.url}" for v in voicemails if v.url
    ]
    details = {"details": " ".join(notes)} if notes else {}
    store.save_progress(logged.sid, transcript, details)
    await services.finalize(logged.sid, "reconciled with Twilio's call log")
    return store.get_summary(logged.sid) is not None
