"""Staff review pages under ``/calls`` (HTTP Basic, hashed password from the settings):
every call with its summary, transcript and CRM delivery state; dead-lettered deliveries
can be retried from here."""

from __future__ import annotations

import html
import json
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy import select

from crm.delivery import retry_dead_job
from crm.store import CallRecord, OutboxJob
from telephony.routes_twilio import ServicesDep
from telephony.staff_auth import verify_password

security = HTTPBasic(realm="receptionist staff")


def require_staff(
    request: Request, credentials: Annotated[HTTPBasicCredentials, Depends(security)]
) -> str:
    settings = request.app.state.services.settings
    encoded = settings.staff_password_hash.get_secret_value()
    if not encoded:
        raise HTTPException(503, "Staff pages are closed: set STAFF_PASSWORD_HASH")
    user_ok = secrets.compare_digest(credentials.username, settings.staff_username)
    if not (verify_password(credentials.password, encoded) and user_ok):
        raise HTTPException(
            401, "Wrong username or password", headers={"WWW-Authenticate": "Basic"}
        )
    return credentials.username


StaffDep = Annotated[str, Depends(require_staff)]

router = APIRouter(prefix="/calls")

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}
pre{{white-space:pre-wrap;background:#f5f5f5;padding:1em}}</style></head><body>{body}</body></html>"""


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body))


@router.get("", response_class=HTMLResponse)
def list_calls(services: ServicesDep, _staff: StaffDep) -> HTMLResponse:
    with services.store.sessions() as session:
        calls = list(
            session.scalars(select(CallRecord).order_by(CallRecord.started_at.desc()).limit(200))
        )
        jobs = {j.call_sid: j for j in session.scalars(select(OutboxJob))}
    rows = []
    for call in calls:
        job = jobs.get(call.call_sid)
        state = job.state if job else call.state
        sid = html.escape(call.call_sid)
        rows.append(
            f"<tr><td><a href='/calls/{sid}'>{sid}</a></td>"
            f"<td>{call.started_at:%Y-%m-%d %H:%M}</td><td>{html.escape(call.business)}</td>"
            f"<td>{html.escape(call.caller_phone)}</td><td>{html.escape(call.mode)}</td>"
            f"<td>{html.escape(state)}</td></tr>"
        )
    body = (
        "<h1>Calls</h1><table><tr><th>Call</th><th>Started</th><th>Business</th><th>Caller</th>"
        "<th>Mode</th><th>CRM</th></tr>" + "".join(rows) + "</table>"
    )
    return _page("Calls", body)


@router.get("/{call_sid}", response_class=HTMLResponse)
def show_call(call_sid: str, services: ServicesDep, _staff: StaffDep) -> HTMLResponse:
    call = services.store.get_call(call_sid)
    if call is None:
        raise HTTPException(404, "No such call")
    summary = services.store.get_summary(call_sid)
    job = services.store.outbox_job(call_sid)
    parts = [f"<h1>Call {html.escape(call_sid)}</h1>"]
    screening = (call.details or {}).get("_screening")
    if isinstance(screening, dict) and screening.get("verdict") != "clean":
        reasons = "; ".join(str(r) for r in screening.get("reasons") or [])
        parts.append(
            f"<p><b>Spam screening: {html.escape(str(screening.get('verdict')))}</b> "
            f"({html.escape(reasons)})</p>"
        )
    if summary is not None:
        fields = summary.model_dump(mode="json", exclude={"transcript"})
        parts.append(
            f"<h2>Summary ({summary.rating})</h2>"
            f"<pre>{html.escape(json.dumps(fields, indent=2))}</pre>"
        )
        parts.append(f"<h2>Transcript</h2><pre>{html.escape(summary.transcript_text())}</pre>")
    else:
        parts.append("<p>Not finalized yet.</p>")
    if job is not None:
        parts.append(
            f"<h2>CRM delivery</h2><p>{html.escape(job.crm)}: <b>{html.escape(job.state)}</b> "
            f"after {job.attempts} attempt(s). {html.escape(job.last_error)}</p>"
        )
        if job.result_json:
            parts.append(f"<pre>{html.escape(job.result_json)}</pre>")
        if job.state == "dead":
            parts.append(
                f"<form method='post' action='/calls/{html.escape(call_sid)}/retry'>"
                "<button>Retry delivery</button></form>"
            )
    return _page(f"Call {call_sid}", "".join(parts))


@router.post("/{call_sid}/retry")
def retry_call(call_sid: str, services: ServicesDep, _staff: StaffDep) -> RedirectResponse:
    if not retry_dead_job(services.store, call_sid):
        raise HTTPException(409, "This call's delivery is not dead-lettered")
    services.worker.wake.set()
    return RedirectResponse(f"/calls/{call_sid}", status_code=303)
