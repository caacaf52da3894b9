"""Routes of the staff pages: the calls list (filters, search, paging; also as JSON), one
call's page, Retry and bulk retry of dead letters. The views gather data; the templates
(``templates/``) show it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from crm.delivery import retry_all_dead, retry_dead_job
from telephony.routes_twilio import ServicesDep
from telephony.staff.queries import (
    DELIVERY_STATES,
    URGENCY_LABELS,
    CallFilters,
    call_page,
    list_calls,
)
from telephony.staff.security import StaffUser, check_csrf, csrf_token

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
STATIC_DIR = HERE / "static"

router = APIRouter(prefix="/calls")


def _filters(
    business: str = "",
    urgency: Annotated[str, Query()] = "",
    callback: str = "",
    delivery: str = "",
    q: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> CallFilters:
    level = int(urgency) if urgency.isdigit() and 1 <= int(urgency) <= 5 else None
    state = delivery if delivery in (*DELIVERY_STATES, "none") else ""
    return CallFilters(
        business=business[:255],
        urgency=level,
        callback=callback in {"1", "on", "true"},
        delivery=state,
        q=q,
        page=page,
    )


@router.get("", response_class=HTMLResponse)
def calls_list(
    request: Request,
    services: ServicesDep,
    user: StaffUser,
    business: str = "",
    urgency: str = "",
    callback: str = "",
    delivery: str = "",
    q: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    format: str = "html",
) -> Response:
    filters = _filters(business, urgency, callback, delivery, q, page)
    listing = list_calls(services.store, services.businesses, filters)
    if format == "json":
        return JSONResponse(
            {
                "total": listing.total,
                "page": listing.page,
                "pages": listing.pages,
                "calls": [_row_json(row) for row in listing.rows],
                "facets": {k: [list(v) for v in vs] for k, vs in listing.facets.items()},
            }
        )
    return templates.TemplateResponse(
        request,
        "calls.html",
        {
            "listing": listing,
            "filters": filters,
            "businesses": [b.name for b in services.businesses.businesses],
            "urgency_labels": URGENCY_LABELS,
            "delivery_states": DELIVERY_STATES,
            "csrf": csrf_token(request, user),
            "user": user,
        },
    )


def _row_json(row: Any) -> dict[str, Any]:
    fields = row.__dataclass_fields__
    data = {name: getattr(row, name) for name in fields}
    data["callback_due"] = str(data["callback_due"] or "") or None
    return data


@router.post("/retry-dead")
def retry_dead_letters(
    request: Request,
    services: ServicesDep,
    user: StaffUser,
    csrf: Annotated[str, Form()] = "",
) -> RedirectResponse:
    check_csrf(request, user, csrf)
    count = retry_all_dead(services.store)
    services.worker.wake.set()
    return RedirectResponse(f"/calls?retried={count}", status_code=303)


@router.get("/{call_sid}", response_class=HTMLResponse)
def call_detail(
    call_sid: str, request: Request, services: ServicesDep, user: StaffUser, format: str = "html"
) -> Response:
    page = call_page(
        services.store,
        services.businesses,
        call_sid,
        alert_max_attempts=services.escalation.max_attempts,
    )
    if page is None:
        raise HTTPException(404, "No such call")
    if format == "json":
        job = page.job
        return JSONResponse(
            {
                "call_sid": call_sid,
                "business": page.call.business,
                "state": page.call.state,
                "local_time": page.local_time,
                "screening": None
                if page.screening is None
                else {"verdict": page.screening[0], "reasons": page.screening[1]},
                "summary": page.summary.model_dump(mode="json") if page.summary else None,
                "delivery": None
                if job is None
                else {
                    "crm": job.crm,
                    "state": job.state,
                    "attempts": job.attempts,
                    "last_error": job.last_error,
                    "delivered_at": job.delivered_at.isoformat() if job.delivered_at else None,
                },
                "history": [
                    {"at": when, "attempt": attempt, "outcome": outcome, "detail": detail}
                    for when, attempt, outcome, detail in page.history
                ],
                "records": [{"type": t, "id": i, "url": u or None} for t, i, u in page.links],
                "on_call_alert": None
                if page.alert is None
                else {
                    "state": page.alert.state,
                    "detail": page.alert.detail,
                    "transferred": page.alert.transferred or None,
                },
            }
        )
    return templates.TemplateResponse(
        request,
        "call.html",
        {"page": page, "csrf": csrf_token(request, user), "urgency_labels": URGENCY_LABELS},
    )


@router.post("/{call_sid}/retry")
def retry_call(
    call_sid: str,
    request: Request,
    services: ServicesDep,
    user: StaffUser,
    csrf: Annotated[str, Form()] = "",
) -> RedirectResponse:
    check_csrf(request, user, csrf)
    if not retry_dead_job(services.store, call_sid):
        raise HTTPException(409, "This call's delivery is not dead-lettered")
    services.worker.wake.set()
    return RedirectResponse(f"/calls/{call_sid}", status_code=303)
