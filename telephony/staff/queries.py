"""What the staff pages show, gathered in SQL: filtered, searched and paged calls with
their summary columns and delivery state, the facet counts, and one call's full record."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from agent.business import BusinessDirectory
from agent.summary import CallSummary, rating_for
from crm.store import CallRecord, OutboxJob, Store, SummaryRecord
from telephony.escalation import CANNOT_SEND, HELD, MAX_ATTEMPTS

PAGE_SIZE = 25
DELIVERY_STATES = ("pending", "delivering", "delivered", "dead")
URGENCY_LABELS = {5: "Emergency", 4: "Urgent", 3: "This week", 2: "Flexible", 1: "Information"}


@dataclass(frozen=True, slots=True)
class CallFilters:
    """The list's query string: every filter optional; ``page`` counts from 1."""

    business: str = ""
    urgency: int | None = None
    callback: bool = False
    delivery: str = ""
    q: str = ""
    page: int = 1

    def query(self, **changes: object) -> dict[str, str]:
        """These filters (with ``changes``) as query parameters, for links."""
        values: dict[str, object] = {
            "business": self.business,
            "urgency": self.urgency,
            "callback": "1" if self.callback else "",
            "delivery": self.delivery,
            "q": self.q,
            "page": self.page if self.page > 1 else "",
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in ("", None, False)}


@dataclass(frozen=True, slots=True)
class CallRow:
    call_sid: str
    business: str
    caller_phone: str
    caller_name: str
    need: str
    urgency: int | None
    rating: str
    is_emergency: bool
    callback_requested: bool
    callback_due: dt.date | None
    local_time: str
    state: str
    delivery: str


@dataclass(slots=True)
class CallList:
    rows: list[CallRow]
    total: int
    page: int
    pages: int
    facets: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    dead: int = 0


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filtered(query: Any, filters: CallFilters, *, skip: str = "") -> Any:
    if filters.business and skip != "business":
        query = query.where(CallRecord.business == filters.business)
    if filters.urgency is not None and skip != "urgency":
        query = query.where(SummaryRecord.urgency == filters.urgency)
    if filters.callback:
        query = query.where(SummaryRecord.callback_requested.is_(True))
    if filters.delivery and skip != "delivery":
        if filters.delivery == "none":
            query = query.where(OutboxJob.id.is_(None))
        else:
            query = query.where(OutboxJob.state == filters.delivery)
    text = filters.q.strip()
    if text:
        conditions = [func.lower(SummaryRecord.caller_name).like(_like(text.lower()), escape="\\")]
        digits = _digits(text)
        if len(digits) >= 3:
            conditions.append(CallRecord.caller_phone.like(_like(digits), escape="\\"))
        query = query.where(or_(*conditions))
    return query


def _joined(query: Any) -> Any:
    return query.outerjoin(SummaryRecord, SummaryRecord.call_sid == CallRecord.call_sid).outerjoin(
        OutboxJob, OutboxJob.call_sid == CallRecord.call_sid
    )


def local_time(when: dt.datetime, timezone: str | None) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    zone = ZoneInfo(timezone) if timezone else dt.UTC
    local = when.astimezone(zone)
    return f"{local:%a %b} {local.day}, {local:%H:%M %Z}"


def list_calls(store: Store, directory: BusinessDirectory, filters: CallFilters) -> CallList:
    zones = {b.name: b.timezone for b in directory.businesses}
    columns = (CallRecord, SummaryRecord, OutboxJob.state)
    with store.sessions() as session:
        total = session.scalar(
            _filtered(_joined(select(func.count()).select_from(CallRecord)), filters)
        )
        total = int(total or 0)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(1, filters.page), pages)
        query = (
            _filtered(_joined(select(*columns)), filters)
            .order_by(CallRecord.started_at.desc(), CallRecord.call_sid)
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        )
        rows = []
        for call, summary, delivery in session.execute(query):
            rows.append(
                CallRow(
                    call_sid=call.call_sid,
                    business=call.business,
                    caller_phone=call.caller_phone,
                    caller_name=summary.caller_name if summary else "",
                    need=summary.need if summary else "",
                    urgency=summary.urgency if summary else None,
                    rating=rating_for(summary.urgency) if summary else "",
                    is_emergency=bool(summary and summary.is_emergency),
                    callback_requested=bool(summary and summary.callback_requested),
                    callback_due=summary.callback_due if summary else None,
                    local_time=local_time(call.started_at, zones.get(call.business)),
                    state=call.state,
                    delivery=delivery or "",
                )
            )
        facets = {
            "business": _facet(session, filters, "business", CallRecord.business),
            "urgency": _facet(session, filters, "urgency", SummaryRecord.urgency),
            "delivery": _facet(session, filters, "delivery", OutboxJob.state),
        }
        dead = session.scalar(select(func.count()).where(OutboxJob.state == "dead")) or 0
    return CallList(rows, total, page, pages, facets, int(dead))


def _facet(
    session: Any, filters: CallFilters, name: str, column: Any
) -> list[tuple[str, str, int]]:
    """(value, label, count) for each value of ``column`` under the other filters."""
    query = _filtered(
        _joined(select(column, func.count()).select_from(CallRecord)), filters, skip=name
    ).group_by(column)
    out = []
    for value, count in session.execute(query):
        if value is None:
            continue
        label = str(value)
        if name == "urgency":
            label = f"{value} {URGENCY_LABELS.get(int(value), '')}".strip()
        out.append((str(value), label, int(count)))
    if name == "urgency":
        out.sort(key=lambda item: -int(item[0]))
    else:
        out.sort()
    return out


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """An emergency's text to the on-call phone, as staff see it."""

    state: str  # sent, sending, retrying, gave up, held, not sent
    detail: str
    transferred: str = ""  # when the caller was put through to the on-call phone (local)


def alert_status(call: CallRecord, zone: str | None, max_attempts: int) -> AlertStatus | None:
    """What became of the call's on-call alert; None when the call was no emergency."""
    if call.emergency_at is None:
        return None
    transferred = local_time(call.transferred_at, zone) if call.transferred_at else ""
    return AlertStatus(*_alert_outcome(call, zone, max_attempts), transferred)


def _alert_outcome(call: CallRecord, zone: str | None, max_attempts: int) -> tuple[str, str]:
    attempts, error = call.alert_attempts, call.alert_error
    if call.alert_sent_at is not None:
        after = f" (attempt {attempts})" if attempts > 1 else ""
        return "sent", f"Texted to the on-call phone {local_time(call.alert_sent_at, zone)}{after}."
    if error.startswith(HELD):
        return "held", f"Held by the {error}; it is sent as soon as the rolling hour allows."
    if error in CANNOT_SEND:
        return "not sent", f"Not sent: {error}."
    if error and attempts >= max_attempts:
        return "gave up", f"Not delivered: gave up after {attempts} attempts (last error: {error})."
    if error:
        return "retrying", f"Attempt {attempts} failed ({error}); it is retried until it goes out."
    return "sending", "Recorded; being sent."


@dataclass(slots=True)
class CallPage:
    call: CallRecord
    summary: CallSummary | None
    job: OutboxJob | None
    local_time: str
    result: dict[str, Any]
    links: list[tuple[str, str, str]]  # (object type, record id, URL or "")
    history: list[tuple[str, int, str, str]] = field(default_factory=list)
    """(local time, attempt, outcome, detail) of every delivery attempt, oldest first."""
    alert: AlertStatus | None = None

    @property
    def screening(self) -> tuple[str, list[str]] | None:
        """The spam-screening verdict and its reasons, unless the call was clean."""
        found = (self.call.details or {}).get("_screening")
        if not isinstance(found, dict) or found.get("verdict") in (None, "clean"):
            return None
        return str(found["verdict"]), [str(r) for r in found.get("reasons") or []]


def call_page(
    store: Store,
    directory: BusinessDirectory,
    call_sid: str,
    *,
    alert_max_attempts: int = MAX_ATTEMPTS,
) -> CallPage | None:
    call = store.get_call(call_sid)
    if call is None:
        return None
    summary = store.get_summary(call_sid)
    job = store.outbox_job(call_sid)
    zones = {b.name: b.timezone for b in directory.businesses}
    result: dict[str, Any] = {}
    if job is not None and job.result_json:
        try:
            result = json.loads(job.result_json)
        except ValueError:
            result = {}
    links = record_links(result)
    zone = zones.get(call.business)
    history = [
        (local_time(a.at, zone), a.attempt, a.outcome, a.detail)
        for a in store.delivery_history(call_sid)
    ]
    return CallPage(
        call=call,
        summary=summary,
        job=job,
        local_time=local_time(call.started_at, zones.get(call.business)),
        result=result,
        links=links,
        history=history,
        alert=alert_status(call, zone, alert_max_attempts),
    )


def record_links(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The CRM records a delivery wrote, with Lightning URLs when the org is known."""
    instance = str(result.get("instance_url") or "").rstrip("/")
    seen: list[tuple[str, str]] = []
    if result.get("record_id"):
        seen.append((str(result.get("record_type", "")), str(result["record_id"])))
    for kind in ("created", "updated"):
        for pair in result.get(kind) or []:
            if isinstance(pair, list | tuple) and len(pair) == 2:
                item = (str(pair[0]), str(pair[1]))
                if item not in seen:
                    seen.append(item)
    links = []
    for sobject, record_id in seen:
        url = f"{instance}/lightning/r/{sobject}/{record_id}/view" if instance else ""
        links.append((sobject, record_id, url))
    return links
