"""The Twilio REST resources ``receptionist check`` reads and ``--fix-twilio`` writes:
the Account (fetch) and its IncomingPhoneNumbers (list with the ``PhoneNumber`` filter,
fetch, update of the voice/fallback/status-callback URLs).

Shapes follow the 2010-04-01 API reference: the list is the classic paged envelope
(``incoming_phone_numbers`` plus ``page``/``page_size``/``next_page_uri``/...), the instance
carries ``voice_url``/``voice_method``/``voice_fallback_url``/``voice_fallback_method``/
``status_callback``/``status_callback_method`` and ``voice_application_sid`` (when an
application is set, Twilio uses its URLs and ignores the number's own). ``PhoneNumber``
filters match partial numbers with ``*`` as a one-digit wildcard, as documented.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

API_VERSION = "2010-04-01"
_METHODS = {"GET", "POST"}
# Update parameter -> resource field, for the voice settings this service manages.
_URL_PARAMS = {
    "VoiceUrl": "voice_url",
    "VoiceFallbackUrl": "voice_fallback_url",
    "StatusCallback": "status_callback",
}
_METHOD_PARAMS = {
    "VoiceMethod": "voice_method",
    "VoiceFallbackMethod": "voice_fallback_method",
    "StatusCallbackMethod": "status_callback_method",
}
_OTHER_PARAMS = {"FriendlyName": "friendly_name", "VoiceApplicationSid": "voice_application_sid"}


def new_number(
    *, account_sid: str, sid: str, phone_number: str, friendly_name: str | None = None
) -> dict[str, Any]:
    """A freshly bought number as Twilio shows it: the demo URL, no fallback, no callback."""
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    uri = f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json"
    return {
        "account_sid": account_sid,
        "address_requirements": "none",
        "address_sid": None,
        "api_version": API_VERSION,
        "beta": False,
        "bundle_sid": None,
        "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
        "date_created": now,
        "date_updated": now,
        "emergency_address_sid": None,
        "emergency_address_status": "unregistered",
        "emergency_status": "Inactive",
        "friendly_name": friendly_name or phone_number,
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": phone_number,
        "sid": sid,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": "https://demo.twilio.com/welcome/sms/reply",
        "status": "in-use",
        "status_callback": "",
        "status_callback_method": "POST",
        "subresource_uris": {"assigned_add_ons": uri.replace(".json", "/AssignedAddOns.json")},
        "trunk_sid": None,
        "type": "local",
        "uri": uri,
        "voice_application_sid": "",
        "voice_caller_id_lookup": False,
        "voice_fallback_method": "POST",
        "voice_fallback_url": "",
        "voice_method": "POST",
        "voice_receive_mode": "voice",
        "voice_url": "https://demo.twilio.com/welcome/voice/",
    }


def account_resource(account_sid: str, auth_token: str, *, kind: str = "Full") -> dict[str, Any]:
    """``GET /2010-04-01/Accounts/{Sid}.json``."""
    uri = f"/{API_VERSION}/Accounts/{account_sid}.json"
    base = uri.removesuffix(".json")
    return {
        "auth_token": auth_token,
        "date_created": "Thu, 01 Jan 2026 00:00:00 +0000",
        "date_updated": "Thu, 01 Jan 2026 00:00:00 +0000",
        "friendly_name": "My first Twilio account",
        "owner_account_sid": account_sid,
        "sid": account_sid,
        "status": "active",
        "subresource_uris": {
            "calls": f"{base}/Calls.json",
            "incoming_phone_numbers": f"{base}/IncomingPhoneNumbers.json",
            "messages": f"{base}/Messages.json",
        },
        "type": kind,
        "uri": uri,
    }


def _pattern(filter_value: str) -> re.Pattern[str]:
    """``PhoneNumber`` filter: partial numbers match anywhere, ``*`` is any one digit."""
    escaped = "".join(r"\d" if c == "*" else re.escape(c) for c in filter_value)
    return re.compile(escaped)


def list_numbers(request: Request, numbers: list[dict[str, Any]], account_sid: str) -> JSONResponse:
    """The paged list, filtered by ``PhoneNumber`` / ``FriendlyName``."""
    query = request.query_params
    wanted = query.get("PhoneNumber")
    friendly = query.get("FriendlyName")
    rows = [
        n
        for n in numbers
        if (wanted is None or _pattern(wanted.strip()).search(n["phone_number"]))
        and (friendly is None or n["friendly_name"] == friendly)
    ]
    try:
        page = int(query.get("Page", "0"))
        page_size = min(1000, max(1, int(query.get("PageSize", "50"))))
    except ValueError:
        return error(400, 20001, "Page and PageSize must be integers")
    start = page * page_size
    chunk = rows[start : start + page_size]
    path = f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers.json"

    def uri(p: int) -> str:
        extra = f"&PhoneNumber={wanted}" if wanted else ""
        return f"{path}?PageSize={page_size}&Page={p}{extra}"

    has_next = start + page_size < len(rows)
    return JSONResponse(
        {
            "end": start + max(0, len(chunk) - 1),
            "first_page_uri": uri(0),
            "incoming_phone_numbers": chunk,
            "next_page_uri": uri(page + 1) if has_next else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": uri(page),
        }
    )


def update_number(number: dict[str, Any], form: dict[str, str]) -> JSONResponse:
    """``POST .../IncomingPhoneNumbers/{Sid}.json``: only the given parameters change."""
    for param in _URL_PARAMS:
        if param in form:
            value = form[param]
            parts = urlsplit(value)
            if value and (parts.scheme not in {"http", "https"} or not parts.netloc):
                # 21502 "Invalid callback url" is what Twilio answers for a malformed URL.
                return error(400, 21502, f"{param} is not a valid URL: {value}")
    for param in _METHOD_PARAMS:
        if param in form and form[param].upper() not in _METHODS:
            return error(400, 20001, f"{param} must be GET or POST")
    for param, key in _URL_PARAMS.items():
        if param in form:
            number[key] = form[param]
    for param, key in _METHOD_PARAMS.items():
        if param in form:
            number[key] = form[param].upper()
    for param, key in _OTHER_PARAMS.items():
        if param in form:
            number[key] = form[param]
    number["date_updated"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return JSONResponse(number)


def error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )
