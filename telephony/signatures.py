"""X-Twilio-Signature checks for webhooks and the Media Stream upgrade.

Twilio signs the URL it requested (our ``PUBLIC_BASE_URL`` + path, including any query
string) plus the sorted POST parameters, with the account's auth token. The websocket
upgrade is signed over the ``wss://`` URL with no parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

from telephony.errors import SignatureError


class TwilioSignatures:
    """Validates requests against one auth token; without a token nothing is accepted."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None

    @property
    def configured(self) -> bool:
        return self._validator is not None

    def check(self, url: str, params: Mapping[str, str], signature: str | None) -> None:
        """Raise ``SignatureError`` unless ``signature`` is Twilio's for ``url`` + ``params``."""
        if self._validator is None:
            raise SignatureError("TWILIO_AUTH_TOKEN is not set: cannot verify Twilio requests")
        if not signature:
            raise SignatureError("missing X-Twilio-Signature")
        if not self._validator.validate(url, dict(params), signature):
            raise SignatureError("X-Twilio-Signature does not match")

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """Compute the signature Twilio would send (used by the demo's simulated caller)."""
        if self._validator is None:
            raise SignatureError("TWILIO_AUTH_TOKEN is not set")
        return str(self._validator.compute_signature(url, dict(params)))
