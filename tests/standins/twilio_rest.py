"""The Twilio REST API (2010-04-01) as the app calls it: Calls update/fetch, Messages create.

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
from urllib.parse import urlsplit

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
