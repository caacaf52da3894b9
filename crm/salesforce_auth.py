"""OAuth 2.0 for the Salesforce adapter: getting, caching and renewing an access token.

Three ways in, picked from ``SalesforceConfig`` in this order:

- a given access token + instance URL (``access_token``/``instance_url``); when client
  credentials or a JWT key are configured too, they are used to renew it;
- JWT bearer (``username`` + ``private_key_file``): an RS256 assertion with iss = client
  id, sub = username, aud = the login server (see ``jwt_audience``), exp ≤ 3 minutes,
  posted to the token endpoint;
- client credentials (``client_id`` + ``client_secret``), the default.

simple-salesforce only builds ``*.salesforce.com`` login URLs, so the token request is
made here with ``requests`` against ``{login_url}/services/oauth2/token`` (a My Domain URL
in production, a stand-in in tests). Error responses become ``crm.errors`` with the
OAuth ``error`` code; secrets never appear in messages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from crm.config import SalesforceConfig
from crm.errors import (
    CrmAuthError,
    CrmConfigurationError,
    CrmRateLimitedError,
    CrmTransientError,
)

TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a URL path, not a secret
JWT_LIFETIME_SECONDS = 170  # Salesforce accepts at most 3 minutes; leave room for clock skew.
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# OAuth errors that mean "these credentials are not accepted" (RFC 6749 + Salesforce's own).
REFUSED_ERRORS = frozenset(
    {
        "invalid_client",
        "invalid_client_id",
        "invalid_client_credentials",
        "invalid_grant",
        "unauthorized_client",
        "inactive_user",
        "inactive_org",
        "invalid_app_access",
        "access_denied",
    }
)


class AuthFlow(Enum):
    ACCESS_TOKEN = "access token"  # noqa: S105 - a label, not a secret
    JWT_BEARER = "JWT bearer"
    CLIENT_CREDENTIALS = "client credentials"


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and the org's instance URL it is valid for."""

    access_token: str = field(repr=False)
    instance_url: str


def renewal_flow(config: SalesforceConfig) -> AuthFlow | None:
    """The flow that can get a new token, or None when only a fixed token is configured."""
    if config.username and config.private_key_file:
        return AuthFlow.JWT_BEARER
    if config.client_id and config.client_secret:
        return AuthFlow.CLIENT_CREDENTIALS
    return None


def initial_flow(config: SalesforceConfig) -> AuthFlow:
    """The flow the first token comes from; CrmConfigurationError when none is complete."""
    if config.access_token and config.instance_url:
        return AuthFlow.ACCESS_TOKEN
    flow = renewal_flow(config)
    if flow is None:
        raise CrmConfigurationError(
            "Salesforce credentials incomplete: set SALESFORCE_CLIENT_ID and "
            "SALESFORCE_CLIENT_SECRET (client credentials), or SALESFORCE_USERNAME and "
            "SALESFORCE_PRIVATE_KEY_FILE with SALESFORCE_CLIENT_ID (JWT bearer), or "
            "SALESFORCE_ACCESS_TOKEN and SALESFORCE_INSTANCE_URL"
        )
    if not config.login_url:
        raise CrmConfigurationError("SALESFORCE_LOGIN_URL is not set")
    if flow is AuthFlow.JWT_BEARER and not config.client_id:
        raise CrmConfigurationError("the JWT bearer flow needs SALESFORCE_CLIENT_ID")
    return flow


class SalesforceAuth:
    """Hands out a cached token; ``renew`` replaces one the org refused (thread-safe)."""

    def __init__(self, config: SalesforceConfig, session: requests.Session):
        self.config = config
        self.session = session
        self.flow = initial_flow(config)
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        if self.flow is AuthFlow.ACCESS_TOKEN:
            self._token = AccessToken(config.access_token, config.instance_url.rstrip("/"))

    @property
    def can_renew(self) -> bool:
        return renewal_flow(self.config) is not None

    @property
    def token_endpoint(self) -> str:
        return self.config.login_url.rstrip("/") + TOKEN_PATH

    def token(self) -> AccessToken:
        """The cached token, requesting one on first use."""
        with self._lock:
            if self._token is None:
                self._token = self._request_token()
            return self._token

    def renew(self, refused: AccessToken) -> AccessToken:
        """A new token after ``refused`` got 401; another thread's renewal is reused."""
        with self._lock:
            if self._token is not None and self._token != refused:
                return self._token
            if not self.can_renew:
                raise CrmAuthError(
                    "Salesforce refused the configured access token and no client "
                    "credentials or JWT key are configured to get a new one",
                    error_code="INVALID_SESSION_ID",
                )
            self._token = None
            self._token = self._request_token()
            return self._token

    # --- the token request ------------------------------------------------------------

    def _request_token(self) -> AccessToken:
        flow = renewal_flow(self.config)
        if flow is AuthFlow.JWT_BEARER:
            form = {"grant_type": JWT_GRANT, "assertion": self._jwt_assertion()}
        elif flow is AuthFlow.CLIENT_CREDENTIALS:
            form = {
                "grant_type": "client_credentials",
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
            }
        else:  # pragma: no cover - guarded by initial_flow/renew
            raise CrmConfigurationError("no way to request a Salesforce token")
        assert flow is not None
        try:
            response = self.session.post(
                self.token_endpoint,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.config.timeout_seconds,
            )
        except requests.exceptions.SSLError:
            raise CrmConfigurationError(
                f"TLS verification failed for {self.token_endpoint}; check REQUESTS_CA_BUNDLE"
            ) from None
        except requests.RequestException as exc:
            raise CrmTransientError(
                f"could not reach the Salesforce token endpoint {self.token_endpoint}: "
                f"{type(exc).__name__}"
            ) from None
        return self._parse_token_response(response, flow)

    def _parse_token_response(self, response: requests.Response, flow: AuthFlow) -> AccessToken:
        body = _json_or_empty(response)
        if response.status_code == 200:
            token = body.get("access_token")
            instance_url = body.get("instance_url") or self.config.instance_url
            if not isinstance(token, str) or not token or not instance_url:
                raise CrmAuthError("the Salesforce token response had no access_token/instance_url")
            return AccessToken(token, str(instance_url).rstrip("/"))
        error = str(body.get("error") or f"http_{response.status_code}")
        description = str(body.get("error_description") or response.reason or "")
        message = f"Salesforce refused the {flow.value} token request: {description}"
        if response.status_code >= 500:
            raise CrmTransientError(message, error_code=error)
        if response.status_code == 429:
            raise CrmRateLimitedError(message, error_code=error)
        if error in REFUSED_ERRORS or response.status_code in (400, 401, 403):
            if error in ("unsupported_grant_type", "invalid_request"):
                raise CrmConfigurationError(message, error_code=error)
            raise CrmAuthError(message, error_code=error)
        raise CrmAuthError(message, error_code=error)

    def _jwt_assertion(self) -> str:
        path = self.config.private_key_file
        assert path is not None
        try:
            key = path.read_text()
        except OSError as exc:
            raise CrmConfigurationError(
                f"cannot read SALESFORCE_PRIVATE_KEY_FILE {path}: {exc.strerror}"
            ) from None
        claims = {
            "iss": self.config.client_id,
            "sub": self.config.username,
            "aud": jwt_audience(self.config.login_url),
            "exp": int(time.time()) + JWT_LIFETIME_SECONDS,
        }
        try:
            return jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise CrmConfigurationError(
                f"SALESFORCE_PRIVATE_KEY_FILE {path} is not a usable RSA private key "
                f"({type(exc).__name__})"
            ) from None


def jwt_audience(login_url: str) -> str:
    """The JWT ``aud``. Salesforce documents only https://login.salesforce.com and
    https://test.salesforce.com as audiences, so a My Domain URL maps to the one of its
    kind (sandbox or production; scratch orgs, ``*.scratch.my.salesforce.com``, are
    sandbox-kind); any other host (a stand-in, a proxy) gets its own URL."""
    url = login_url.rstrip("/")
    host = (urlsplit(url).hostname or "").lower()
    if host.endswith(".salesforce.com"):
        sandbox = host == "test.salesforce.com" or ".sandbox." in host or ".scratch." in host
        return "https://test.salesforce.com" if sandbox else "https://login.salesforce.com"
    return url


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
