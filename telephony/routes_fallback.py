"""``POST /twilio/fallback``: the number's "Primary handler fails" URL (set by
``receptionist check --fix-twilio``). Twilio fetches it when ``/twilio/voice`` errs or
times out; it answers without touching the database — an apology and a voicemail
``<Record>`` — so the caller still leaves a message, which ``receptionist reconcile`` later
finds in Twilio's Recordings and records as a missed call."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from twilio.twiml.voice_response import VoiceResponse

from telephony import twiml
from telephony.routes_twilio import ServicesDep, signed_form, twiml_response

log = logging.getLogger(__name__)

router = APIRouter(prefix="/twilio")

VOICEMAIL_SECONDS = 120


def voicemail(business_name: str | None) -> str:
    response = VoiceResponse()
    who = f"Thanks for calling {business_name}. " if business_name else "Thanks for calling. "
    response.say(
        twiml.xml_safe(
            who + "We can't take your call right now. After the tone, please leave your name, "
            "your number and what you need, and we will call you back."
        ),
        voice=twiml.VOICE,
    )
    response.record(max_length=VOICEMAIL_SECONDS, play_beep=True, timeout=5, transcribe=True)
    response.say("We did not get a message. Please call again. Goodbye.", voice=twiml.VOICE)
    response.hangup()
    return str(response)


@router.post("/fallback")
async def fallback(request: Request, services: ServicesDep) -> Response:
    params = await signed_form(request, services)
    business = services.business_for(params.get("To", ""))
    log.warning(
        "call %s reached the fallback URL (Twilio error %s): voicemail offered",
        params.get("CallSid", "?"),
        params.get("ErrorCode", "-"),
    )
    return twiml_response(voicemail(business.name if business else None))
