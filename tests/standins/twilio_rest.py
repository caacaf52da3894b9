"""The Twilio REST API (2010-04-01) as the app calls it: Calls update/fetch, Messages create,
and the call log: the Calls list, Recordings list and a recording's Transcriptions, paged
as Twilio pages them (``PageSize``/``Page``/``PageToken``, ``next_page_uri``).

Served from its own thread (see `ThreadedAsgiServer`); live calls are shared with the
caller's event loop through `LiveCall`, whose methods are thread-safe.

Error bodies follow Twilio's shape ``{"code","message","more_info","status"}``. Codes the
docs name are used as is (20003, 20404, 21211, 21212, 21220, 21266, 21602, 21603, 21617);
where the exact code for a rejection is not documented we still reject (stricter reading)
and say so next to it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import math
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse

from tests.standins.twilio_numbers import account_resource, list_numbers, update_number

API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_TWIML_MAX_CHARS = 4000
_BODY_MAX_CHARS = 1600


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def _rfc2822(ts: float) -> str:
    return formatdate(ts, usegmt=True)


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """A REST update of a live call: new TwiML, a new URL, or a hangup."""

    twiml: str | None = None
    url: str | None = None
    method: str = "POST"
    hang_up: bool = False


class CallNotInProgress(Exception):
    """The call cannot be redirected or hung up: it is not in progress."""


class LiveCall:
    """A call the stand-in caller is on, as the REST API sees it (thread-safe)."""

    def __init__(
        self, *, sid: str, account_sid: str, from_: str, to: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.sid = sid
        self.account_sid = account_sid
        self.from_ = from_
        self.to = to
        self.created = time.time()
        self.answered: float | None = None
        self.ended: float | None = None
        self.wake = asyncio.Event()  # set on the caller's loop when an update is pending
        self._loop = loop
        self._lock = threading.Lock()
        self._status = "ringing"
        self._pending: CallUpdate | None = None

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def mark_in_progress(self) -> None:
        with self._lock:
            if self._status == "ringing":
                self._status = "in-progress"
                self.answered = time.time()

    def force_status(self, status: str) -> None:
        """A final status other than completed (busy, no-answer, failed, canceled)."""
        with self._lock:
            self._status = status
            self.ended = self.ended or time.time()

    def mark_completed(self) -> None:
        with self._lock:
            self._status = "completed"
            self.ended = self.ended or time.time()

    def request_update(self, update: CallUpdate) -> None:
        """Queue an update for the caller (any thread); raises `CallNotInProgress`."""
        with self._lock:
            if self._status != "in-progress":
                raise CallNotInProgress(self.sid)
            if update.hang_up:
                # Twilio reports the call completed from this point on; later updates fail.
                self._status = "completed"
                self.ended = time.time()
            self._pending = update
        self._loop.call_soon_threadsafe(self.wake.set)

    def take_update(self) -> CallUpdate | None:
        """The pending update, if any (caller's loop)."""
        with self._lock:
            update, self._pending = self._pending, None
        self.wake.clear()
        return update

    def resource(self) -> dict[str, Any]:
        """The Call resource JSON, as ``GET/POST .../Calls/{sid}.json`` returns it."""
        with self._lock:
            status, answered, ended = self._status, self.answered, self.ended
        duration = None
        if answered is not None and ended is not None:
            duration = str(max(0, math.ceil(ended - answered)))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "parent_call_sid": None,
            "date_created": _rfc2822(self.created),
            "date_updated": _rfc2822(time.time()),
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": "PN" + "0" * 32,
            "status": status,
            "start_time": _rfc2822(answered) if answered else None,
            "end_time": _rfc2822(ended) if ended else None,
            "duration": duration,
            "price": None,
            "price_unit": "USD",
            "direction": "inbound",
            "answered_by": None,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": uri,
            "subresource_uris": {
                "notifications": uri.replace(".json", "/Notifications.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
            },
        }


@dataclass(slots=True)
class PastRecording:
    """A recording on a call in the log (a fallback ``<Record>``), with its transcription."""

    sid: str
    call_sid: str
    duration_s: int
    created: float
    transcription: str | None = None
    transcription_sid: str = ""


@dataclass(slots=True)
class RestState:
    """What the REST API knows and records; shared with the test through the stand-in."""

    account_sid: str
    auth_token: str
    calls: dict[str, LiveCall] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    call_updates: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    """(method, path, status) of every REST request, in order."""
    numbers: list[dict[str, Any]] = field(default_factory=list)
    """IncomingPhoneNumbers of the account (see `twilio_numbers`)."""
    account_type: str = "Full"
    recordings: list[PastRecording] = field(default_factory=list)
    failing_messages: int = 0
    """The next this-many Messages requests fail with Twilio's 500 (code 20500)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _authenticated(request: Request, state: RestState) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return False
    return bool(sep) and (
        hmac.compare_digest(user.encode(), state.account_sid.encode())
        & hmac.compare_digest(password.encode(), state.auth_token.encode())
    )


async def _form(request: Request) -> dict[str, str] | JSONResponse:
    if request.method == "GET":
        return {}
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # Twilio's API reads form bodies only; the exact code for this is undocumented.
        return _error(400, 20001, "Content-Type must be application/x-www-form-urlencoded")
    form = await request.form()
    return {key: str(value) for key, value in form.items()}


def build_rest_app(state: RestState) -> Starlette:
    """The Starlette app serving the stand-in's REST API."""

    async def guard(request: Request) -> JSONResponse | None:
        if not _authenticated(request, state):
            return _error(401, 20003, "Authenticate")
        if request.path_params["account_sid"] != state.account_sid:
            # Credentials for one account, a resource of another: Twilio refuses to
            # authenticate the request.
            return _error(401, 20003, "Authenticate")
        return None

    async def call_instance(request: Request) -> JSONResponse:
        response = await guard(request) or await _call_instance(request, state)
        _record(state, request, response)
        return response

    async def messages(request: Request) -> JSONResponse:
        response = await guard(request) or await _create_message(request, state)
        _record(state, request, response)
        return response

    async def account(request: Request) -> JSONResponse:
        response = await guard(request) or JSONResponse(
            account_resource(state.account_sid, state.auth_token, kind=state.account_type)
        )
        _record(state, request, response)
        return response

    async def numbers(request: Request) -> JSONResponse:
        response = await guard(request) or list_numbers(
            request, list(state.numbers), state.account_sid
        )
        _record(state, request, response)
        return response

    async def number_instance(request: Request) -> JSONResponse:
        response = await guard(request)
        if response is None:
            sid = request.path_params["number_sid"]
            found = next((n for n in state.numbers if n["sid"] == sid), None)
            if found is None:
                response = _error(
                    404, 20404, f"The requested resource {request.url.path} was not found"
                )
            elif request.method == "GET":
                response = JSONResponse(found)
            else:
                form = await _form(request)
                response = form if isinstance(form, JSONResponse) else update_number(found, form)
        _record(state, request, response)
        return response

    async def calls_list(request: Request) -> JSONResponse:
        response = await guard(request) or _list_calls(request, state)
        _record(state, request, response)
        return response

    async def recordings_list(request: Request) -> JSONResponse:
        response = await guard(request) or _list_recordings(request, state)
        _record(state, request, response)
        return response

    async def transcriptions_list(request: Request) -> JSONResponse:
        response = await guard(request) or _list_transcriptions(request, state)
        _record(state, request, response)
        return response

    async def not_found(request: Request) -> JSONResponse:
        if not _authenticated(request, state):
            response = _error(401, 20003, "Authenticate")
        else:
            response = _error(
                404, 20404, f"The requested resource {request.url.path} was not found"
            )
        _record(state, request, response)
        return response

    routes = [
        Route(f"/{API_VERSION}/Accounts/{{account_sid}}/Calls.json", calls_list, methods=["GET"]),
        Route(
            f"/{API_VERSION}/Accounts/{{account_sid}}/Recordings.json",
            recordings_list,
            methods=["GET"],
        ),
        Route(
            f"/{API_VERSION}/Accounts/{{account_sid}}/Recordings/{{recording_sid}}/Transcriptions.json",
            transcriptions_list,
            methods=["GET"],
        ),
        Route(
            f"/{API_VERSION}/Accounts/{{account_sid}}/Calls/{{call_sid}}.json",
            call_instance,
            methods=["GET", "POST"],
        ),
        Route(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", messages, methods=["POST"]),
        Route(f"/{API_VERSION}/Accounts/{{account_sid}}.json", account, methods=["GET"]),
        Route(
            f"/{API_VERSION}/Accounts/{{account_sid}}/IncomingPhoneNumbers.json",
            numbers,
            methods=["GET"],
        ),
        Route(
            f"/{API_VERSION}/Accounts/{{account_sid}}/IncomingPhoneNumbers/{{number_sid}}.json",
            number_instance,
            methods=["GET", "POST"],
        ),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    return Starlette(routes=routes)


# --- list resources, paged as Twilio's 2010-04-01 API pages them ---------------------
#
# ``PageSize`` (default 50, at most 1000), ``Page`` (0-based) and ``PageToken``; the body
# carries the list under its resource key plus ``page``, ``page_size``, ``start``, ``end``,
# ``uri``, ``first_page_uri``, ``previous_page_uri`` and ``next_page_uri`` (null on the last
# page). The next page's token is ``PA`` + the SID of the last record on this page, so a
# record created while a client pages does not shift the pages it reads. Calls are listed
# newest first.

_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000


def _page(request: Request, key: str, records: list[tuple[str, dict[str, Any]]]) -> JSONResponse:
    """One page of ``records`` ((sid, resource) in list order) for ``request``."""
    query = dict(request.query_params)
    try:
        size = int(query.get("PageSize", _DEFAULT_PAGE_SIZE))
        page = int(query.get("Page", 0))
    except ValueError:
        return _error(400, 20001, "PageSize and Page must be integers")
    if not 1 <= size <= _MAX_PAGE_SIZE or page < 0:
        return _error(400, 20001, f"PageSize must be 1..{_MAX_PAGE_SIZE} and Page >= 0")
    token = query.get("PageToken")
    start = page * size
    if token is not None:
        after = token.removeprefix("PA")
        sids = [sid for sid, _ in records]
        if not token.startswith("PA") or after not in sids:
            return _error(400, 20001, f"Invalid PageToken {token!r}")
        start = sids.index(after) + 1
    chunk = records[start : start + size]
    filters = {k: v for k, v in query.items() if k not in {"Page", "PageSize", "PageToken"}}
    path = request.url.path

    def uri(page_number: int, page_token: str | None = None) -> str:
        params = {**filters, "PageSize": str(size), "Page": str(page_number)}
        if page_token:
            params["PageToken"] = page_token
        return f"{path}?{urlencode(params)}"

    has_next = start + size < len(records)
    return JSONResponse(
        {
            key: [resource for _, resource in chunk],
            "page": page,
            "page_size": size,
            "start": start,
            "end": start + max(0, len(chunk) - 1),
            "uri": uri(page, token),
            "first_page_uri": uri(0),
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "next_page_uri": uri(page + 1, "PA" + chunk[-1][0]) if has_next and chunk else None,
        }
    )


def _parse_when(value: str, *, end_of_day: bool) -> float | None:
    """A Twilio date filter value (``YYYY-MM-DD`` or ISO 8601 date-time) as a timestamp."""
    try:
        if len(value) == 10:
            day = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
            return (
                day + (dt.timedelta(days=1, microseconds=-1) if end_of_day else dt.timedelta())
            ).timestamp()
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _list_calls(request: Request, state: RestState) -> JSONResponse:
    query = request.query_params
    with state.lock:
        calls = list(state.calls.values())
    after = query.get("StartTime>") or query.get("StartTime>=")
    before = query.get("StartTime<") or query.get("StartTime<=")
    on_day = query.get("StartTime")
    bounds: list[tuple[float, float]] = []
    for value, low in ((after, True), (before, False)):
        if value is None:
            continue
        when = _parse_when(value, end_of_day=not low)
        if when is None:
            return _error(400, 20001, f"Invalid date filter {value!r}")
        bounds.append((when, 1.0 if low else -1.0))
    selected = []
    for call in calls:
        resource = call.resource()
        started = call.answered or call.created
        if query.get("To") and resource["to"] != query["To"]:
            continue
        if query.get("From") and resource["from"] != query["From"]:
            continue
        if query.get("Status") and resource["status"] != query["Status"]:
            continue
        if any((started - when) * sign < 0 for when, sign in bounds):
            continue
        if on_day and dt.datetime.fromtimestamp(started, dt.UTC).date().isoformat() != on_day:
            continue
        selected.append((call.created, call.sid, resource))
    selected.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return _page(request, "calls", [(sid, resource) for _, sid, resource in selected])


def _recording_resource(state: RestState, recording: PastRecording) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{state.account_sid}/Recordings/{recording.sid}.json"
    return {
        "account_sid": state.account_sid,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": None,
        "date_created": _rfc2822(recording.created),
        "date_updated": _rfc2822(recording.created),
        "start_time": _rfc2822(recording.created),
        "duration": str(recording.duration_s),
        "sid": recording.sid,
        "price": None,
        "price_unit": "USD",
        "status": "completed",
        "channels": 1,
        "source": "RecordVerb",
        "error_code": None,
        "uri": uri,
        "encryption_details": None,
        "subresource_uris": {
            "add_on_results": uri.replace(".json", "/AddOnResults.json"),
            "transcriptions": uri.replace(".json", "/Transcriptions.json"),
        },
        "media_url": "https://api.twilio.com" + uri.removesuffix(".json"),
    }


def _list_recordings(request: Request, state: RestState) -> JSONResponse:
    query = request.query_params
    call_sid = query.get("CallSid")
    after = query.get("DateCreated>") or query.get("DateCreated>=")
    before = query.get("DateCreated<") or query.get("DateCreated<=")
    low = _parse_when(after, end_of_day=False) if after else None
    high = _parse_when(before, end_of_day=True) if before else None
    if (after and low is None) or (before and high is None):
        return _error(400, 20001, "Invalid DateCreated filter")
    with state.lock:
        recordings = [
            r
            for r in state.recordings
            if (call_sid is None or r.call_sid == call_sid)
            and (low is None or r.created >= low)
            and (high is None or r.created <= high)
        ]
    recordings.sort(key=lambda r: (r.created, r.sid), reverse=True)
    return _page(
        request, "recordings", [(r.sid, _recording_resource(state, r)) for r in recordings]
    )


def _list_transcriptions(request: Request, state: RestState) -> JSONResponse:
    sid = request.path_params["recording_sid"]
    with state.lock:
        recording = next((r for r in state.recordings if r.sid == sid), None)
    if recording is None:
        return _error(404, 20404, f"The requested resource {request.url.path} was not found")
    items: list[tuple[str, dict[str, Any]]] = []
    if recording.transcription is not None:
        tsid = recording.transcription_sid
        account = f"/{API_VERSION}/Accounts/{state.account_sid}"
        items.append(
            (
                tsid,
                {
                    "account_sid": state.account_sid,
                    "api_version": API_VERSION,
                    "date_created": _rfc2822(recording.created),
                    "date_updated": _rfc2822(recording.created),
                    "duration": str(recording.duration_s),
                    "price": None,
                    "price_unit": "USD",
                    "recording_sid": recording.sid,
                    "sid": tsid,
                    "status": "completed",
                    "transcription_text": recording.transcription,
                    "type": "fast",
                    "uri": f"{account}/Transcriptions/{tsid}.json",
                },
            )
        )
    return _page(request, "transcriptions", items)


def _record(state: RestState, request: Request, response: JSONResponse) -> None:
    state.requests.append((request.method, request.url.path, response.status_code))


async def _call_instance(request: Request, state: RestState) -> JSONResponse:
    sid = request.path_params["call_sid"]
    with state.lock:
        call = state.calls.get(sid)
    if call is None:
        return _error(404, 20404, f"The requested resource {request.url.path} was not found")
    if request.method == "GET":
        return JSONResponse(call.resource())
    form = await _form(request)
    if isinstance(form, JSONResponse):
        return form
    state.call_updates.append({"CallSid": sid, "params": dict(form)})
    update = _call_update(form)
    if isinstance(update, JSONResponse):
        return update
    if update is None:  # Status=canceled on an answered call: documented to have no effect
        return JSONResponse(call.resource())
    try:
        call.request_update(update)
    except CallNotInProgress:
        return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
    return JSONResponse(call.resource())


def _call_update(form: dict[str, str]) -> CallUpdate | JSONResponse | None:
    status = form.get("Status")
    twiml = form.get("Twiml")
    url = form.get("Url")
    method = form.get("Method", "POST").upper()
    # Codes below 21220 are our best reading; Twilio rejects these requests either way.
    if status is not None and status not in {"canceled", "completed"}:
        return _error(400, 20001, f"Status must be canceled or completed, not {status!r}")
    if twiml is not None and url is not None:
        return _error(400, 20001, "Twiml and Url parameters are mutually exclusive")
    if method not in {"GET", "POST"}:
        return _error(400, 20001, f"Method must be GET or POST, not {method!r}")
    if status == "completed":
        return CallUpdate(hang_up=True)
    if twiml is not None:
        if len(twiml) > _TWIML_MAX_CHARS:
            return _error(400, 20001, f"Twiml exceeds {_TWIML_MAX_CHARS} characters")
        try:
            ET.fromstring(twiml)  # noqa: S314 - the app under test is trusted
        except ET.ParseError:
            return _error(400, 12100, "Twiml is not valid XML")
        return CallUpdate(twiml=twiml)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            return _error(400, 21205, f"Url is not a valid URL: {url}")
        return CallUpdate(url=url, method=method)
    if status == "canceled":
        return None
    return _error(400, 20001, "Nothing to update: pass Url, Twiml or Status")


async def _create_message(request: Request, state: RestState) -> JSONResponse:
    with state.lock:
        failing = state.failing_messages > 0
        state.failing_messages -= 1 if failing else 0
    if failing:
        return _error(500, 20500, "Internal Server Error")
    form = await _form(request)
    if isinstance(form, JSONResponse):
        return form
    to = form.get("To", "")
    from_ = form.get("From")
    service = form.get("MessagingServiceSid")
    body = form.get("Body")
    if not to:
        return _error(400, 21604, "A 'To' phone number is required.")
    if not _E164.match(to):
        return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if from_ is None and service is None:
        return _error(400, 21603, "A 'From' phone number is required.")
    if from_ is not None and not _E164.match(from_):
        return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
    if service is not None and not _SERVICE_SID.match(service):
        return _error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
    if from_ == to:
        return _error(400, 21266, "'To' and 'From' number cannot be the same")
    if not body and not form.get("MediaUrl"):
        return _error(400, 21602, "Message body is required.")
    body = body or ""
    if len(body) > _BODY_MAX_CHARS:
        return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    sid = new_sid("SM")
    now = time.time()
    state.messages.append(
        {
            "To": to,
            "From": from_,
            "MessagingServiceSid": service,
            "Body": body,
            "sid": sid,
            "created_at": time.monotonic(),
        }
    )
    uri = f"/{API_VERSION}/Accounts/{state.account_sid}/Messages/{sid}.json"
    segments = 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    return JSONResponse(
        {
            "account_sid": state.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": _rfc2822(now),
            "date_sent": None,
            "date_updated": _rfc2822(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if from_ else "accepted",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        },
        status_code=201,
    )


class StandinTwilioHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The twilio library's own HTTP client, sent to the stand-in instead of api.twilio.com.

    ``twilio.rest.Client(sid, token, http_client=StandinTwilioHttpClient(api_base_url))``.
    The session ignores proxy/CA environment variables (plain http on 127.0.0.1).
    """

    def __init__(self, api_base_url: str) -> None:
        super().__init__()
        self._base = api_base_url.rstrip("/")
        if self.session is not None:
            self.session.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        for origin in ("https://api.twilio.com", "https://api.us1.twilio.com"):
            if url.startswith(origin):
                url = self._base + url[len(origin) :]
        return super().request(method, url, *args, **kwargs)
