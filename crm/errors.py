"""Exceptions raised by the CRM edge.

The tree::

    CrmError                       anything the CRM edge raises
    ├── CrmConfigurationError      we misconfigured it (missing credentials, bad key file)
    ├── CrmAuthError               the org refused our credentials (after one re-auth)
    ├── CrmTransientError          worth retrying: 5xx, timeouts, connection errors
    │   └── CrmRateLimitedError    REQUEST_LIMIT_EXCEEDED: retry, but back off longer
    └── CrmRejectedError           the org rejected the data for good (4xx with errorCode)

Every error carries the ``call_sid`` it was delivering when known, and Salesforce's
``error_code`` when the org gave one. Messages never contain transcript text.
"""

from __future__ import annotations

import re

# Schema notes in an org's error message: object and field names only, no caller data.
_SCHEMA_NOTE_RE = re.compile(
    r"No such column '\w+' on entity '\w+'"
    r"|sObject type '\w+' is not supported"
    r"|Didn't understand relationship '\w+'"
)
# What marks a message that quotes the request or a value: quotes, braces, line breaks
# (the failing SOQL/SOSL echoed with a caret), an e-mail address, a phone-like run of
# digits (with spaces, dots, dashes or brackets between them).
_QUOTES_RE = re.compile(r"['\"{}\n@]|\d[\d\s().-]{3,}\d")
WITHHELD = "the org's message is withheld: it quotes the request"


def org_message(message: str) -> str:
    """What of a Salesforce error message may go into our errors, which are logged and
    stored with the delivery. The org quotes the failing SOQL/SOSL (with the caller's phone
    digits or e-mail in it) and the values it refused, so a message that quotes anything
    keeps only its schema notes ("No such column 'X' on entity 'Lead'"), or nothing."""
    text = message.strip()
    if not _QUOTES_RE.search(text):
        return text
    notes = _SCHEMA_NOTE_RE.findall(text)
    return "; ".join(dict.fromkeys(notes)) if notes else WITHHELD


class CrmError(Exception):
    """Base class of every error the CRM edge raises."""

    def __init__(self, message: str, *, call_sid: str | None = None, error_code: str | None = None):
        super().__init__(message)
        self.call_sid = call_sid
        self.error_code = error_code

    def __str__(self) -> str:
        text = super().__str__()
        if self.error_code:
            text = f"{self.error_code}: {text}"
        if self.call_sid:
            text = f"{text} (call {self.call_sid})"
        return text


class CrmConfigurationError(CrmError):
    """Our side is misconfigured; retrying will not help until settings change."""


class CrmAuthError(CrmError):
    """The org refused our credentials even after re-authenticating once."""


class CrmTransientError(CrmError):
    """A failure worth retrying with backoff (5xx, timeout, connection refused)."""

    def __init__(
        self,
        message: str,
        *,
        call_sid: str | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, call_sid=call_sid, error_code=error_code)
        self.retry_after = retry_after


class CrmRateLimitedError(CrmTransientError):
    """The org's API request limit is exhausted; back off for minutes, not seconds."""


class CrmRejectedError(CrmError):
    """The org rejected the data permanently; the job is dead-lettered for staff."""
