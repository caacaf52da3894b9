"""A local Salesforce org over real HTTPS, faithful to the documented REST API (v50.0-v64.0).

Tests start it on 127.0.0.1 with an ephemeral port; its certificate is issued by a test CA
(``trustme``) whose PEM is at :attr:`SalesforceStandin.ca_bundle`. It serves:

- ``POST /services/oauth2/token`` (client_credentials, and the JWT bearer grant);
- ``/services/data/``: versions, resources, limits, describeGlobal, sObject describe,
  sObject create/get/update/delete, upsert/get/delete by external id, blob download,
  ``query`` (SOQL subset), ``search`` (SOSL subset), ``composite`` and ``composite/sobjects``
  (sObject Collections), with the documented error bodies;
- injectable faults (:meth:`SalesforceStandin.inject_fault`) and token expiry.

Describe data lives in ``salesforce_schema``, records and write validation in
``salesforce_records``, SOQL/SOSL in ``salesforce_query``, composite and collections in
``salesforce_composite``, the HTTPS server in ``salesforce_http``. One lock serializes
requests, so a composite or collection request is atomic with respect to other clients.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import hmac
import json
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import jwt
import trustme

from tests.standins.salesforce_composite import Batches
from tests.standins.salesforce_http import (
    NO_BODY,
    HttpsServer,
    Response,
    error_response,
    method_not_allowed,
)
from tests.standins.salesforce_query import run_soql, run_sosl
from tests.standins.salesforce_records import (
    ORG_ID,
    ApiError,
    Org,
    Record,
    WriteContext,
    normalize_id,
    not_found,
)
from tests.standins.salesforce_schema import (
    API_VERSIONS,
    STOCK_LEAD_SOURCES,
    build_schema,
    describe_global_entry,
    describe_sobject,
)

__all__ = ["FAULT_KINDS", "SalesforceStandin"]

FAULT_KINDS = frozenset(
    {"401", "403_limit", "500", "503", "timeout", "timeout_after_processing", "duplicates"}
)
API_LIMIT = 15000
JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
# Documented: the JWT's exp must be within 3 minutes of the current time.
JWT_MAX_LIFETIME_SECONDS = 180 + 5

_FAULT_BODIES: dict[str, tuple[int, str, str]] = {
    "401": (401, "INVALID_SESSION_ID", "Session expired or invalid"),
    "403_limit": (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    "500": (
        500,
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support:"
        " 1935437186-52311 (-1243491867)",
    ),
    "503": (
        503,
        "SERVER_UNAVAILABLE",
        "Server is temporarily unavailable. Please try again later.",
    ),
}
_VERSION_PATH = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")


@dataclass
class _Fault:
    kind: str
    remaining: int
    path_contains: str | None
    match_ids: tuple[str, ...] | None

    def applies_to(self, path: str) -> bool:
        return self.path_contains is None or self.path_contains in path


def _release_label(version: str) -> str:
    index = int(float(version)) - 50
    return f"{('Winter', 'Spring', 'Summer')[index % 3]} '{21 + index // 3}"


@functools.cache
def _test_ca() -> tuple[trustme.CA, ssl.SSLContext]:
    """One test CA and server TLS context per process (issuing them is the slow part)."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return ca, context


class SalesforceStandin:
    """A Salesforce org for tests: HTTPS on 127.0.0.1, started with :meth:`start` or ``with``.

    Public state tests read: :attr:`api_requests` (``(method, path)`` of every
    ``/services/data`` request, path without query string or trailing slash; a composite
    is one), :attr:`token_requests`,
    :attr:`soql_queries`, :attr:`sosl_searches`, :attr:`composite_subrequests`.
    """

    def __init__(
        self,
        *,
        client_id: str = "standin-client-id",
        client_secret: str = "standin-client-secret",  # noqa: S107 - a test credential
        custom_fields: dict[str, list[str]] | None = None,
        lead_sources: list[str] | None = None,
        jwt_public_key_pem: bytes | None = None,
        jwt_username: str | None = None,
        index_lag_seconds: float = 0.0,
    ):
        """``index_lag_seconds``: records created through the API are invisible to SOSL
        for this long, as with Salesforce's asynchronous search indexing."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.jwt_public_key_pem = jwt_public_key_pem
        self.jwt_username = jwt_username
        fields = (
            {"Lead": ["Urgency_Level__c"], "Task": []} if custom_fields is None else custom_fields
        )
        self.org = Org(build_schema(fields, list(lead_sources or STOCK_LEAD_SOURCES)))
        self.org.duplicate_hook = self._duplicate_hook
        self.org.index_lag_seconds = index_lag_seconds
        self.timeout_seconds = 3.0
        self.api_requests: list[tuple[str, str]] = []
        self.token_requests = 0
        self.soql_queries: list[str] = []
        self.sosl_searches: list[str] = []
        self.composite_subrequests: list[tuple[str, str]] = []
        self.login_url = ""
        self.instance_url = ""
        self.ca_bundle = ""
        self._api_usage = 0
        self._tokens: set[str] = set()
        self._faults: list[_Fault] = []
        self._current_path = ""
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: HttpsServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None
        self._batches = Batches(self.org, self._route, self._on_subrequest)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Listen on an ephemeral 127.0.0.1 port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the Salesforce stand-in is already running")
        ca, context = _test_ca()
        self._tmpdir = tempfile.mkdtemp(prefix="sf-standin-")
        bundle = Path(self._tmpdir) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        self.ca_bundle = str(bundle)
        self._stopping.clear()
        self._server = HttpsServer(context, self._token_endpoint, self._data_request)
        port = self._server.server_address[1]
        self.login_url = self.instance_url = f"https://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"salesforce-standin-{port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, drop open connections and delete the CA bundle. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> SalesforceStandin:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ test controls

    def add_record(self, sobject: str, fields: dict[str, Any]) -> str:
        """Seed a record without validation (defaults filled in); returns its 18-char Id."""
        with self._lock:
            if self.org.spec(sobject) is None:
                raise ValueError(f"unknown sObject type {sobject!r}")
            return self.org.seed(sobject, fields)

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of the current records of a type, in creation order. Hidden test-only
        attributes start with ``_`` (``_auto_assign`` on Leads, ``_version_data`` bytes on
        ContentVersions)."""
        with self._lock:
            spec = self.org.spec(sobject)
            if spec is None:
                raise ValueError(f"unknown sObject type {sobject!r}")
            return copy.deepcopy(list(self.org.store[spec.name].values()))

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of one record, or None."""
        with self._lock:
            return copy.deepcopy(self.org.get(sobject, record_id))

    def reset_counts(self) -> None:
        """Forget the request logs (the org's api-usage figure keeps counting)."""
        with self._lock:
            self.api_requests.clear()
            self.token_requests = 0
            self.soql_queries.clear()
            self.sosl_searches.clear()
            self.composite_subrequests.clear()

    def inject_fault(
        self,
        kind: str,
        *,
        times: int = 1,
        path_contains: str | None = None,
        match_ids: list[str] | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail; faults are consumed in order.

        Kinds: ``401`` (INVALID_SESSION_ID), ``403_limit`` (REQUEST_LIMIT_EXCEEDED), ``500``
        (UNKNOWN_EXCEPTION), ``503`` (SERVER_UNAVAILABLE), ``timeout`` (stall
        :attr:`timeout_seconds`, then drop the connection unanswered; nothing is written),
        ``timeout_after_processing`` (the request is carried out, then the answer is lost
        the same way), ``duplicates`` (DUPLICATES_DETECTED on the next Lead/Contact create,
        including inside composite/collections; matched ids are ``match_ids`` or records
        with the same email, phone or name). ``path_contains`` limits the fault to request
        paths (for ``duplicates``: sObject create paths) containing that text.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(
                _Fault(
                    kind, times, path_contains, tuple(match_ids) if match_ids is not None else None
                )
            )

    def expire_tokens(self) -> None:
        """Invalidate every access token issued so far (401 INVALID_SESSION_ID)."""
        with self._lock:
            self._tokens.clear()

    def issue_token(self) -> str:
        """A valid access token, minted without a token request (not counted)."""
        with self._lock:
            token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
            self._tokens.add(token)
            return token

    # ------------------------------------------------------------ faults

    def _take_fault(self, path: str, *, duplicates: bool) -> _Fault | None:
        for fault in self._faults:
            if (fault.kind == "duplicates") == duplicates and fault.applies_to(path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _duplicate_hook(self, sobject: str, record: Record) -> list[str] | None:
        fault = self._take_fault(self._current_path, duplicates=True)
        if fault is None:
            return None
        if fault.match_ids is not None:
            return [normalize_id(i) or i for i in fault.match_ids]
        similar = self.org.similar_records(sobject, record)
        if similar:
            return similar
        existing = list(self.org.store[sobject])
        return existing[-1:]

    # ------------------------------------------------------------ token endpoint

    def _token_endpoint(self, method: str, raw: bytes, headers: Mapping[str, str]) -> Response:
        with self._lock:
            self.token_requests += 1
        if method != "POST":
            return Response(
                400, {"error": "invalid_request", "error_description": "must use HTTP POST"}
            )
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            client_id, secret = form.get("client_id"), form.get("client_secret")
            basic = headers.get("authorization", "")
            if basic.lower().startswith("basic "):
                try:
                    client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    client_id = secret = None
            if client_id != self.client_id:
                return _oautherror_response("invalid_client_id", "client identifier invalid")
            if secret is None or not hmac.compare_digest(secret, self.client_secret):
                return _oautherror_response("invalid_client", "invalid client credentials")
            return self._token_response("api")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            failure = self._check_assertion(form.get("assertion", ""))
            return failure or self._token_response("api")
        return _oautherror_response("unsupported_grant_type", "grant type not supported")

    def _check_assertion(self, assertion: str) -> Response | None:
        if self.jwt_public_key_pem is None or not assertion:
            return _oautherror_response("invalid_grant", "invalid assertion")
        try:
            claims = jwt.decode(
                assertion,
                self.jwt_public_key_pem,
                algorithms=["RS256"],
                audience=[self.login_url, *JWT_AUDIENCES],
                # exp is checked below: Salesforce accepts it as a numeric string too
                # (simple-salesforce sends one), which PyJWT's own check rejects.
                options={"verify_exp": False, "require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            return _oautherror_response("invalid_grant", "audience is invalid")
        except jwt.PyJWTError:
            return _oautherror_response("invalid_grant", "invalid assertion")
        try:
            expires = float(claims["exp"])
        except (TypeError, ValueError):
            return _oautherror_response("invalid_grant", "invalid assertion")
        now = time.time()
        if expires <= now:
            return _oautherror_response("invalid_grant", "expired authorization code")
        if expires > now + JWT_MAX_LIFETIME_SECONDS:
            return _oautherror_response("invalid_grant", "invalid assertion")
        if claims["iss"] != self.client_id:
            return _oautherror_response("invalid_client_id", "client identifier invalid")
        if claims["sub"] != self.jwt_username:
            return _oautherror_response("invalid_grant", "user hasn't approved this consumer")
        return None

    def _token_response(self, scope: str) -> Response:
        token = self.issue_token()
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.login_url}/id/{ORG_ID}/{self.org.user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        return Response(
            200,
            {
                "access_token": token,
                "signature": signature,
                "scope": scope,
                "instance_url": self.instance_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
            },
        )

    # ------------------------------------------------------------ /services/data

    def _data_request(
        self, method: str, path: str, query: str, raw: bytes, headers: Mapping[str, str]
    ) -> Response:
        with self._lock:
            self.api_requests.append((method, path.rstrip("/") or path))
            self._api_usage += 1
            fault = self._take_fault(path, duplicates=False)
        response = self._serve_data(method, path, query, raw, headers, fault)
        if fault is not None and fault.kind == "timeout_after_processing":
            self._stopping.wait(self.timeout_seconds)
            return Response(0, drop=True)
        if response.drop:
            return response
        return Response(
            response.status,
            response.body,
            {**response.headers, "Sforce-Limit-Info": f"api-usage={self._api_usage}/{API_LIMIT}"},
            response.raw,
        )

    def _serve_data(
        self,
        method: str,
        path: str,
        query: str,
        raw: bytes,
        headers: Mapping[str, str],
        fault: _Fault | None,
    ) -> Response:
        if fault is not None and fault.kind == "timeout":
            self._stopping.wait(self.timeout_seconds)
            return Response(0, drop=True)
        if fault is not None and fault.kind in _FAULT_BODIES:
            return error_response(*_FAULT_BODIES[fault.kind])
        if path.rstrip("/") == "/services/data":
            # Documented: listing versions needs no authentication.
            if method != "GET":
                return method_not_allowed(method, "GET,HEAD")
            return Response(
                200,
                [
                    {"label": _release_label(v), "url": f"/services/data/v{v}", "version": v}
                    for v in API_VERSIONS
                ],
            )
        if not self._authorized(headers.get("authorization", "")):
            return error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
        match = _VERSION_PATH.match(path.rstrip("/"))
        if match is None or match.group(1) not in API_VERSIONS:
            return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        version, rest = match.group(1), match.group(2) or ""
        body: Any = NO_BODY
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                return error_response(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}")
        with self._lock:
            self._current_path = path
            return self._route(method, version, rest, query, body, headers)

    def _on_subrequest(self, method: str, path: str) -> None:
        self.composite_subrequests.append((method, path))
        self._current_path = path

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        with self._lock:
            return scheme.lower() in {"bearer", "oauth"} and token.strip() in self._tokens

    def _route(
        self,
        method: str,
        version: str,
        rest: str,
        query: str,
        body: Any,
        headers: Mapping[str, str],
        *,
        in_composite: bool = False,
        force_all_or_none: bool = False,
    ) -> Response:
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        segments = [s for s in rest.split("/") if s]
        ctx = WriteContext(version, _auto_assign(headers.get("sforce-auto-assign")))
        payload = None if body is NO_BODY else body
        try:
            match segments:
                case []:
                    return self._resources(method, version)
                case ["limits"]:
                    if method != "GET":
                        return method_not_allowed(method, "GET,HEAD")
                    remaining = API_LIMIT - self._api_usage
                    return Response(
                        200, {"DailyApiRequests": {"Max": API_LIMIT, "Remaining": remaining}}
                    )
                case ["sobjects"]:
                    if method != "GET":
                        return method_not_allowed(method, "GET,HEAD")
                    entries = [describe_global_entry(s, version) for s in self.org.schema.values()]
                    return Response(
                        200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": entries}
                    )
                case ["sobjects", name]:
                    return self._sobject_root(method, name, payload, ctx)
                case ["sobjects", name, "describe"]:
                    if method != "GET":
                        return method_not_allowed(method, "GET,HEAD")
                    return Response(200, describe_sobject(self.org.require_spec(name), version))
                case ["sobjects", name, record_id]:
                    return self._sobject_row(method, name, record_id, params, payload, ctx)
                case ["sobjects", name, first, second]:
                    return self._sobject_pair(method, name, first, second, payload, ctx)
                case ["query"]:
                    return self._query(method, params, version)
                case ["search"]:
                    return self._search(method, params, version)
                case ["composite"] if not in_composite:
                    if method != "POST":
                        return method_not_allowed(method, "POST")
                    return self._batches.composite(payload, version)
                case ["composite", "sobjects"]:
                    return self._batches.collections(
                        method, params, payload, ctx, force_all_or_none
                    )
                case _:
                    return error_response(404, "NOT_FOUND", "The requested resource does not exist")
        except ApiError as exc:
            return Response(exc.status, exc.errors)

    def _resources(self, method: str, version: str) -> Response:
        if method != "GET":
            return method_not_allowed(method, "GET,HEAD")
        base = f"/services/data/v{version}"
        names = ("sobjects", "query", "search", "composite", "limits")
        return Response(200, {name: f"{base}/{name}" for name in names})

    # ----- sObject rows

    def _sobject_root(self, method: str, name: str, body: Any, ctx: WriteContext) -> Response:
        spec = self.org.require_spec(name)
        if method == "GET":
            return Response(
                200, {"objectDescribe": describe_global_entry(spec, ctx.version), "recentItems": []}
            )
        if method != "POST":
            return method_not_allowed(method, "GET,HEAD,POST")
        record_id = self.org.create(spec.name, body, ctx)
        return Response(
            201,
            {"id": record_id, "success": True, "errors": []},
            {"Location": f"/services/data/v{ctx.version}/sobjects/{spec.name}/{record_id}"},
        )

    def _sobject_row(
        self,
        method: str,
        name: str,
        record_id: str,
        params: dict[str, str],
        body: Any,
        ctx: WriteContext,
    ) -> Response:
        spec = self.org.require_spec(name)
        if normalize_id(record_id) is None:
            raise ApiError.of(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {record_id}",
            )
        if method == "GET":
            record = self.org.get(spec.name, record_id)
            if record is None:
                raise not_found()
            fields = [f for f in params.get("fields", "").split(",") if f.strip()]
            return Response(
                200, self.org.rendered(spec, record, ctx.version, [f.strip() for f in fields])
            )
        if method == "PATCH":
            self.org.update(spec.name, record_id, body, ctx)
            return Response(204)
        if method == "DELETE":
            self.org.delete(spec.name, record_id)
            return Response(204)
        return method_not_allowed(method, "GET,PATCH,DELETE,HEAD")

    def _sobject_pair(
        self, method: str, name: str, first: str, second: str, body: Any, ctx: WriteContext
    ) -> Response:
        spec = self.org.require_spec(name)
        blob = spec.field(second)
        if normalize_id(first) is not None and blob is not None and blob.type == "base64":
            if method != "GET":
                return method_not_allowed(method, "GET,HEAD")
            record = self.org.get(spec.name, first)
            if record is None:
                raise not_found()
            data = record.get("_version_data") or base64.b64decode(record.get(blob.name) or "")
            return Response(200, raw=data, headers={"Content-Type": "application/octet-stream"})
        ext = spec.field(first)
        if ext is None or not ext.external_id:
            raise ApiError.of(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {first}",
            )
        matches = self.org.find_by_external_id(spec, ext, second)
        urls = [f"/services/data/v{ctx.version}/sobjects/{spec.name}/{r['Id']}" for r in matches]
        if len(matches) > 1:
            return Response(300, urls)
        if method == "GET":
            if not matches:
                raise not_found()
            return Response(200, self.org.rendered(spec, matches[0], ctx.version))
        if method == "DELETE":
            if not matches:
                raise not_found()
            self.org.delete(spec.name, matches[0]["Id"])
            return Response(204)
        if method != "PATCH":
            return method_not_allowed(method, "GET,PATCH,DELETE,HEAD")
        if not isinstance(body, dict):
            return Response(
                400, [{"message": "JSON body expected", "errorCode": "JSON_PARSER_ERROR"}]
            )
        fields = {k: v for k, v in body.items() if k.lower() != ext.name.lower()}
        if not matches:
            record_id = self.org.create(spec.name, {**fields, ext.name: second}, ctx)
            return Response(
                201,
                {"id": record_id, "success": True, "errors": [], "created": True},
                {"Location": f"/services/data/v{ctx.version}/sobjects/{spec.name}/{record_id}"},
            )
        self.org.update(spec.name, matches[0]["Id"], fields, ctx)
        return Response(
            200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}
        )

    # ----- query and search

    def _query(self, method: str, params: dict[str, str], version: str) -> Response:
        if method != "GET":
            return method_not_allowed(method, "GET,HEAD")
        soql = params.get("q")
        if not soql:
            return error_response(400, "MALFORMED_QUERY", "A query string has to be specified")
        self.soql_queries.append(soql)
        return Response(200, run_soql(self.org, soql, version))

    def _search(self, method: str, params: dict[str, str], version: str) -> Response:
        if method != "GET":
            return method_not_allowed(method, "GET,HEAD")
        sosl = params.get("q")
        if not sosl:
            return error_response(
                400,
                "MALFORMED_SEARCH",
                "No search term found. The search term must be enclosed in braces.",
            )
        self.sosl_searches.append(sosl)
        return Response(200, run_sosl(self.org, sosl, version))

    # ----- composite


# ---------------------------------------------------------------- helpers


def _oautherror_response(error: str, description: str) -> Response:
    return Response(400, {"error": error, "error_description": description})


def _auto_assign(value: str | None) -> bool | str:
    """The Sforce-Auto-Assign header: absent means TRUE (documented); an id names a rule."""
    if value is None:
        return True
    text = value.strip()
    if text.lower() in {"false", "0"}:
        return False
    if text.lower() in {"true", "1"}:
        return True
    return normalize_id(text) or True
