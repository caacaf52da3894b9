"""Per-call stream tokens: what makes a Media Stream ``start`` believable.

Twilio signs the websocket upgrade over the fixed ``wss://…/twilio/stream`` URL with no
parameters, so that signature is the same for every call and a captured upgrade can be
replayed. The ``start`` message itself is not signed. So the TwiML that opens a stream
carries a token as a ``<Parameter>`` (Twilio echoes it in ``start.customParameters``):

    v1.<expires, unix seconds>.<base64url HMAC-SHA256(key, "v1|call_sid|business|expires")>

The key is derived from ``TWILIO_AUTH_TOKEN`` (nothing new to configure, rotated with
it). A token is good for one call of one business until it expires; the service also
refuses a ``start`` for a call that is not live, not in Realtime mode, or already
streaming, so a replay inside the lifetime cannot open a second session either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["StreamTokenError", "StreamTokens"]

_VERSION = "v1"
_KEY_LABEL = b"receptionist media-stream token v1"


class StreamTokenError(Exception):
    """The token is missing, malformed, expired or not for this call; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamTokens:
    """Issues and checks tokens; ``now`` is always passed in (unix seconds)."""

    def __init__(self, secret: str, *, ttl_seconds: int) -> None:
        self._key = (
            hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest() if secret else b""
        )
        self.ttl_seconds = ttl_seconds

    @property
    def configured(self) -> bool:
        return bool(self._key)

    def _mac(self, call_sid: str, business_number: str, expires: int) -> str:
        message = f"{_VERSION}|{call_sid}|{business_number}|{expires}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, call_sid: str, business_number: str, *, now: float) -> str:
        if not self._key:
            raise StreamTokenError("TWILIO_AUTH_TOKEN is not set")
        expires = int(now) + self.ttl_seconds
        return f"{_VERSION}.{expires}.{self._mac(call_sid, business_number, expires)}"

    def verify(self, token: str | None, call_sid: str, business_number: str, *, now: float) -> None:
        """Raise ``StreamTokenError`` unless ``token`` was issued for this call and business
        and has not expired."""
        if not self._key:
            raise StreamTokenError("TWILIO_AUTH_TOKEN is not set")
        if not token:
            raise StreamTokenError("missing stream token")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit() or len(parts[1]) > 12:
            raise StreamTokenError("malformed stream token")
        expires = int(parts[1])
        expected = self._mac(call_sid, business_number, expires)
        if not hmac.compare_digest(expected.encode(), parts[2].encode()):
            raise StreamTokenError("stream token is not for this call and business")
        if now > expires:
            raise StreamTokenError("stream token expired")
