"""Twilio REST actions on a live call — hang up, redirect to new TwiML, send an SMS —
through the twilio library, sent to ``TWILIO_API_BASE_URL`` (so a stand-in can receive them).

The twilio client is blocking; every action runs in a worker thread with a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from telephony.errors import TwilioRestError, scrub_numbers

log = logging.getLogger(__name__)

TWILIO_DEFAULT_API = "https://api.twilio.com"


class _RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Sends what the library addresses to api.twilio.com to the configured base URL."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_DEFAULT_API):
            url = self._base_url + url[len(TWILIO_DEFAULT_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioActions:
    """The REST actions the bridge and the intake need."""

    def __init__(
        self, *, account_sid: str, auth_token: str, api_base_url: str, timeout: float = 10.0
    ) -> None:
        http_client = _RebasedHttpClient(api_base_url, timeout)
        self._client = Client(account_sid, auth_token, http_client=http_client)
        self.timeout = timeout

    async def _run(self, what: str, call_sid: str | None, fn: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, **kwargs), self.timeout + 2)
        except TwilioRestException as exc:
            raise TwilioRestError(
                f"Twilio refused {what}: {scrub_numbers(str(exc.msg))}",
                call_sid=call_sid,
                status=exc.status,
                code=exc.code,
            ) from exc
        except (TwilioException, OSError, TimeoutError) as exc:
            raise TwilioRestError(
                f"Twilio {what} failed: {type(exc).__name__}", call_sid=call_sid
            ) from exc

    async def hang_up(self, call_sid: str) -> None:
        await self._run("hangup", call_sid, self._client.calls(call_sid).update, status="completed")
        log.info("call %s hung up through the REST API", call_sid)

    async def redirect(self, call_sid: str, twiml: str) -> None:
        await self._run("call update", call_sid, self._client.calls(call_sid).update, twiml=twiml)
        log.info("call %s moved to new TwiML through the REST API", call_sid)

    async def send_sms(self, *, to: str, from_: str, body: str, call_sid: str | None = None) -> str:
        message = await self._run(
            "SMS", call_sid, self._client.messages.create, to=to, from_=from_, body=body[:1600]
        )
        log.info("SMS %s queued for call %s", message.sid, call_sid)
        return str(message.sid)
