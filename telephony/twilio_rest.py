"""Twilio REST actions on a live call — hang up, redirect to new TwiML, send an SMS —
through the twilio library, sent to ``TWILIO_API_BASE_URL`` (so a stand-in can receive them).

The twilio client is blocking; every action runs in a worker thread with a timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class LoggedCall:
    """One inbound call as Twilio's call log (the Calls list) reports it."""

    sid: str
    from_: str
    to: str
    status: str
    direction: str
    duration_seconds: int | None
    start_time: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Voicemail:
    """A recording made on a call (a ``<Record>`` in the fallback TwiML), with its
    transcription text when Twilio made one."""

    sid: str
    url: str
    duration_seconds: int | None
    transcription: str


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


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

    async def list_inbound_calls(self, *, to: str, since: dt.datetime) -> list[LoggedCall]:
        """Every call to ``to`` started since ``since`` (the library follows Twilio's
        ``next_page_uri`` paging to the end)."""

        def fetch() -> list[LoggedCall]:
            calls = self._client.calls.list(to=to, start_time_after=since, page_size=100)
            return [
                LoggedCall(
                    sid=str(c.sid),
                    from_=str(c._from or ""),
                    to=str(c.to or ""),
                    status=str(c.status or ""),
                    direction=str(c.direction or ""),
                    duration_seconds=_int_or_none(c.duration),
                    start_time=c.start_time,
                )
                for c in calls
            ]

        result: list[LoggedCall] = await self._run("call log", None, fetch)
        return result

    async def voicemails_since(self, since: dt.datetime) -> dict[str, list[Voicemail]]:
        """Every recording made since ``since``, by CallSid (one paged list for all calls,
        not one request per call), each with its transcription text if any."""

        def fetch() -> dict[str, list[Voicemail]]:
            found: dict[str, list[Voicemail]] = {}
            for recording in self._client.recordings.list(date_created_after=since, page_size=100):
                texts = [
                    str(t.transcription_text or "")
                    for t in self._client.recordings(recording.sid).transcriptions.list()
                    if t.status == "completed"
                ]
                uri = str(recording.uri or "").removesuffix(".json")
                found.setdefault(str(recording.call_sid), []).append(
                    Voicemail(
                        sid=str(recording.sid),
                        url=f"{TWILIO_DEFAULT_API}{uri}" if uri else "",
                        duration_seconds=_int_or_none(recording.duration),
                        transcription=" ".join(t for t in texts if t),
                    )
                )
            return found

        result: dict[str, list[Voicemail]] = await self._run("recordings", None, fetch)
        return result

    async def send_sms(self, *, to: str, from_: str, body: str, call_sid: str | None = None) -> str:
        message = await self._run(
            "SMS", call_sid, self._client.messages.create, to=to, from_=from_, body=body[:1600]
        )
        log.info("SMS %s queued for call %s", message.sid, call_sid)
        return str(message.sid)

    def send_sms_blocking(self, to: str, from_: str, body: str) -> None:
        """An SMS from a worker thread (owner alerts); raises TwilioRestError."""
        try:
            self._client.messages.create(to=to, from_=from_, body=body[:1600])
        except TwilioRestException as exc:
            raise TwilioRestError(
                f"Twilio refused SMS: {exc.msg}", status=exc.status, code=exc.code
            ) from exc
        except (TwilioException, OSError) as exc:
            raise TwilioRestError(f"Twilio SMS failed: {type(exc).__name__}") from exc
