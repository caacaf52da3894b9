"""Who may use the staff pages and how the browser must treat them.

- HTTP Basic against ``STAFF_PASSWORD_HASH`` (PBKDF2), with login throttling: after
  ``MAX_FAILURES`` wrong logins from one client address within ``WINDOW_SECONDS`` that
  address gets 429 and no password is hashed until the window has passed (so bogus logins
  cannot burn the CPU the phone webhooks need). The count is in the database, shared by
  every process and kept across restarts.
- CSRF: a browser re-sends Basic credentials on a cross-site POST, so every state change
  carries a token bound to the user and a time, HMAC-keyed by the password hash (stable
  across processes and restarts, changed when the password changes), and a cross-origin
  ``Origin`` header is refused.
- Headers: a strict CSP (no scripts, styles from this origin), no framing, nosniff, no
  referrer, and ``Cache-Control: no-store`` on every staff page (personal data).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from crm.store import Store
from telephony.staff_auth import verify_password

MAX_FAILURES = 5
WINDOW_SECONDS = 300.0
CSRF_LIFETIME_SECONDS = 12 * 3600
STAFF_PREFIXES = ("/calls", "/static/staff")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

basic = HTTPBasic(realm="receptionist staff", auto_error=False)


class LoginThrottle:
    """Wrong logins per client address in a sliding window, kept in the database: every
    process on it counts them together, and a restart forgets none. The address is stored
    as an HMAC keyed by a secret (``key``), never as it is."""

    def __init__(
        self,
        store: Store,
        key: bytes,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.key = key
        self.max_failures = max_failures
        self.window = dt.timedelta(seconds=window)
        self.clock = clock

    def client_key(self, client: str) -> str:
        return hmac.new(self.key, client.encode(), hashlib.sha256).hexdigest()

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0 when it may now."""
        now = self.clock()
        failures = self.store.login_failures(self.client_key(client), since=now - self.window)
        if len(failures) < self.max_failures:
            return 0
        return max(1, int((failures[0] + self.window - now).total_seconds()) + 1)

    def failed(self, client: str) -> None:
        now = self.clock()
        self.store.note_login_failure(
            self.client_key(client), at=now, forget_before=now - self.window
        )

    def succeeded(self, client: str) -> None:
        self.store.clear_login_failures(self.client_key(client))


def _throttle(request: Request) -> LoginThrottle:
    throttle = getattr(request.app.state, "staff_throttle", None)
    if throttle is None:
        key = hashlib.sha256(b"receptionist-login-throttle|" + _password_hash(request)).digest()
        services = request.app.state.services
        throttle = request.app.state.staff_throttle = LoginThrottle(services.store, key)
    assert isinstance(throttle, LoginThrottle)
    return throttle


def require_staff(
    request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]
) -> str:
    """The logged-in staff user; 503 when no hash is set, 429 when throttled, else 401."""
    settings = request.app.state.services.settings
    encoded = settings.staff_password_hash.get_secret_value()
    if not encoded:
        raise HTTPException(503, "Staff pages are closed: set STAFF_PASSWORD_HASH")
    challenge = {"WWW-Authenticate": 'Basic realm="receptionist staff"'}
    if credentials is None:
        raise HTTPException(401, "Log in", headers=challenge)
    client = request.client.host if request.client else "unknown"
    throttle = _throttle(request)
    wait = throttle.retry_after(client)
    if wait:
        raise HTTPException(
            429, "Too many wrong logins: try again later", headers={"Retry-After": str(wait)}
        )
    user_ok = secrets.compare_digest(credentials.username, settings.staff_username)
    if not (verify_password(credentials.password, encoded) and user_ok):
        throttle.failed(client)
        raise HTTPException(401, "Wrong username or password", headers=challenge)
    throttle.succeeded(client)
    return credentials.username


StaffUser = Annotated[str, Depends(require_staff)]


def _password_hash(request: Request) -> bytes:
    """The staff password's hash: the secret the CSRF and throttle keys derive from."""
    encoded: str = request.app.state.services.settings.staff_password_hash.get_secret_value()
    return encoded.encode()


def _csrf_key(request: Request) -> bytes:
    return hashlib.sha256(b"receptionist-csrf|" + _password_hash(request)).digest()


def csrf_token(request: Request, user: str, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    mac = hmac.new(_csrf_key(request), f"{user}|{issued}".encode(), hashlib.sha256)
    return f"{issued}.{mac.hexdigest()}"


def check_csrf(request: Request, user: str, token: str | None) -> None:
    """Refuse a state change without a fresh token of this user, or from another origin."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "").lower()
    if origin and origin != "null" and urlsplit(origin).netloc.lower() != host:
        raise HTTPException(403, "Cross-site request refused")
    issued_text, _, mac = (token or "").partition(".")
    try:
        issued = int(issued_text)
    except ValueError:
        raise HTTPException(403, "Missing or malformed form token: reload the page") from None
    expected = csrf_token(request, user, now=issued).partition(".")[2]
    fresh = 0 <= time.time() - issued <= CSRF_LIFETIME_SECONDS
    if not (hmac.compare_digest(mac, expected) and fresh):
        raise HTTPException(403, "Expired or invalid form token: reload the page")


def install_security_headers(app: FastAPI) -> None:
    """nosniff everywhere; the full set on the staff pages."""

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.url.path.startswith(STAFF_PREFIXES):
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Referrer-Policy"] = "no-referrer"
            if request.url.path.startswith("/calls"):
                response.headers["Cache-Control"] = "no-store"
        return response
