"""Exceptions raised by the phone edge.

The tree::

    TelephonyError                  anything the phone edge raises
    ├── MediaStreamStateError       we misused the Media Streams core (sent before start)
    ├── SignatureError              a request was not signed by Twilio with our auth token
    ├── StreamRefused               a Media Stream ``start`` that is not for a live call of ours
    └── TwilioRestError             Twilio's REST API refused or failed a call update / SMS

Errors carry the ``call_sid`` when known; messages never contain caller words.
"""

from __future__ import annotations

import re

_NUMBER_RE = re.compile(r"(?<![\w+])\+?\d[\d\s().-]{5,}\d(?!\w)")
_IDENTITY_RE = re.compile(r"\b(?:sips?|client):\S+", re.IGNORECASE)


def scrub_numbers(text: str) -> str:
    """``text`` with phone numbers and SIP/client identities replaced, for logs: Twilio's
    error messages quote the number they refused ("Invalid 'To' Phone Number: +7…")."""
    return _NUMBER_RE.sub("[number]", _IDENTITY_RE.sub("[caller id]", text))


class TelephonyError(Exception):
    """Base class of every error the phone edge raises."""

    def __init__(self, message: str, *, call_sid: str | None = None):
        super().__init__(message)
        self.call_sid = call_sid


class MediaStreamStateError(TelephonyError):
    """Our code asked the Media Streams core for something its state forbids."""


class SignatureError(TelephonyError):
    """X-Twilio-Signature missing or wrong."""


class StreamRefused(TelephonyError):
    """A Media Stream ``start`` without a valid token for a live Realtime call of that
    business (replayed, forged, finished, another business's, or a second stream)."""

    def __init__(self, reason: str, *, call_sid: str | None = None):
        super().__init__(reason, call_sid=call_sid)
        self.reason = reason


class TwilioRestError(TelephonyError):
    """A Twilio REST request failed; ``status`` and Twilio's ``code`` when it answered."""

    def __init__(
        self,
        message: str,
        *,
        call_sid: str | None = None,
        status: int | None = None,
        code: int | None = None,
    ):
        super().__init__(message, call_sid=call_sid)
        self.status = status
        self.code = code
