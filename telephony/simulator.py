"""A simulated phone line for ``receptionist demo`` and ``receptionist call``: it places a
call to the running service exactly as Twilio would — signed webhooks, then following the
TwiML it gets back (``<Say>``, ``<Gather input="speech">``, ``<Redirect>``, ``<Hangup>``) —
and ends with the status callback. Speech is text: the demo's script, or what you type.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from telephony.signatures import TwilioSignatures

Listener = Callable[[str], None]
Answerer = Callable[[str], Awaitable[str | None]]


@dataclass
class SimulatedCall:
    call_sid: str
    heard: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


class PhoneSimulator:
    """Drives one call through the service's real HTTP endpoints."""

    def __init__(self, *, app_url: str, public_base_url: str, auth_token: str) -> None:
        self.app_url = app_url.rstrip("/")
        self.public_base_url = public_base_url.rstrip("/")
        self.signatures = TwilioSignatures(auth_token)

    async def _post(
        self, client: httpx.AsyncClient, url: str, params: dict[str, str]
    ) -> httpx.Response:
        signature = self.signatures.sign(url, params)
        local = url.replace(self.public_base_url, self.app_url, 1)
        return await client.post(local, data=params, headers={"X-Twilio-Signature": signature})

    async def call(
        self, *, from_: str, to: str, answer: Answerer, listen: Listener, max_steps: int = 40
    ) -> SimulatedCall:
        call = SimulatedCall(call_sid="CA" + secrets.token_hex(16))
        base = {
            "CallSid": call.call_sid,
            "AccountSid": "AC" + "0" * 32,
            "From": from_,
            "To": to,
            "Caller": from_,
            "Called": to,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        async with httpx.AsyncClient(timeout=30) as client:
            url = self.public_base_url + "/twilio/voice"
            params = {**base, "CallStatus": "ringing"}
            for _ in range(max_steps):
                response = await self._post(client, url, params)
                call.statuses.append(response.status_code)
                if response.status_code != 200:
                    listen(
                        f"(the service answered HTTP {response.status_code}; Twilio would hang up)"
                    )
                    break
                next_request = await self._follow(response.text, call, answer, listen)
                if next_request is None:
                    break
                url, extra = next_request
                params = {**base, "CallStatus": "in-progress", **extra}
            await self._post(
                client,
                self.public_base_url + "/twilio/status",
                {**base, "CallStatus": "completed", "CallDuration": "60"},
            )
        return call

    async def _follow(
        self, document: str, call: SimulatedCall, answer: Answerer, listen: Listener
    ) -> tuple[str, dict[str, str]] | None:
        root = ET.fromstring(document)  # noqa: S314 - our own service's TwiML
        for verb in root:
            if verb.tag == "Say":
                text = (verb.text or "").strip()
                call.heard.append(text)
                listen(text)
            elif verb.tag == "Gather":
                for inner in verb:
                    if inner.tag == "Say":
                        text = (inner.text or "").strip()
                        call.heard.append(text)
                        listen(text)
                speech = await answer(call.heard[-1] if call.heard else "")
                action = verb.get("action", "")
                if speech:
                    return action, {"SpeechResult": speech, "Confidence": "0.92"}
                return action, {}
            elif verb.tag == "Redirect":
                return (verb.text or "").strip(), {}
            elif verb.tag == "Hangup":
                return None
            elif verb.tag == "Connect":
                listen(
                    "(the service asked for a Media Stream; the text simulator cannot stream audio)"
                )
                return None
        return None
