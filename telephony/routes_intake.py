"""The scripted intake over Twilio ``<Gather input="speech">`` webhooks.

It answers when OpenAI is not configured, and takes over a live call when the Realtime
connection fails at start or drops mid-call (Twilio reaches ``/twilio/intake/resume``
through the ``<Redirect>`` that follows ``<Connect><Stream>``), skipping what the
conversation already learned.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from fastapi import APIRouter, BackgroundTasks, Request, Response

from agent.business import Business
from agent.caller_intents import detect_language
from agent.intake import Intake, IntakeStateError
from agent.screening import looks_like_robocall
from agent.summary import TranscriptTurn
from crm.store import CallRecord
from prompts import intake_script
from telephony import twiml
from telephony.bridge import BRIDGE_FAILED
from telephony.finalize import known_details, seconds_since_start
from telephony.routes_twilio import (
    ServicesDep,
    gather_response,
    goodbye_response,
    signed_form,
    twiml_response,
)
from telephony.services import Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/twilio/intake")

INTAKE_TURNS_KEY = "_intake_turns_recorded"


def _seconds_in(call: CallRecord) -> float:
    return seconds_since_start(call, dt.datetime.now(dt.UTC))


def _record(services: Services, call: CallRecord, intake: Intake) -> None:
    """Save the intake's state, the details so far, and the transcript with new turns (each
    at its own offset from the start of the call, as the intake placed it)."""
    transcript = [TranscriptTurn.model_validate(t) for t in call.transcript or []]
    details = dict(call.details or {})
    recorded = int(details.get(INTAKE_TURNS_KEY, 0))
    turns = intake.turns()
    for speaker, text, start in turns[recorded:]:
        if text:
            transcript.append(
                TranscriptTurn(
                    speaker="caller" if speaker == "caller" else "agent",
                    text=text,
                    start=max(0.0, start),
                )
            )
    details.update(intake.details().learned())
    details[INTAKE_TURNS_KEY] = len(turns)
    if call.state == "finalized":  # a late turn: kept for the amendment, never dropped
        services.store.save_late(call.call_sid, transcript, details, intake_json=intake.to_json())
        return
    services.store.save_intake(call.call_sid, intake.to_json(), details)
    services.store.save_progress(call.call_sid, transcript, details)


ALERT_WAIT_SECONDS = 5.0


async def _escalate_if_urgent(services: Services, call: CallRecord, intake: Intake) -> bool:
    """Urgency 5 heard in the intake: record the alert (durable) and send it now, so the
    on-call phone is texted while the caller is still answering questions. True when the
    on-call phone has been alerted (now or earlier, by any path)."""
    details = intake.details()
    if not (details.is_emergency or details.urgency == 5):
        return False
    if looks_like_robocall([text for who, text, _ in intake.turns() if who == "caller"]):
        log.info("call %s: an 'emergency' in machine-like speech; no alert", call.call_sid)
        return False
    reason = details.need or "emergency reported in the intake"
    await asyncio.to_thread(services.escalate, call.call_sid, reason)
    try:
        async with asyncio.timeout(ALERT_WAIT_SECONDS):
            return await services.escalation.send(call.call_sid)
    except TimeoutError:
        return await asyncio.to_thread(services.escalation.alerted, call.call_sid)


def _escalation_words(key: str, intake: Intake) -> str:
    """The telephony layer's own lines, in the language the intake speaks now."""
    section: dict[str, dict[str, str]] = intake_script().get(intake.language, {})
    return str(section.get("escalation", {}).get(key, ""))


def _goodbye(intake: Intake, *, alerted: bool) -> str:
    """The intake's goodbye, except that an emergency whose alert could not be sent is
    never told the on-call team was alerted."""
    if intake.details().is_emergency and not alerted:
        first = intake.details().first_name
        text = _escalation_words("not_alerted_goodbye", intake)
        thanks = str(intake_script()[intake.language]["goodbye"]["thanks"])
        if text:
            return text.replace("$thanks", f"{thanks}, {first}" if first else thanks)
    return intake.goodbye()


def _replace_last_agent_turn(services: Services, call_sid: str, said: str, instead: str) -> None:
    call = services.store.get_call(call_sid)
    if call is None:
        return
    transcript = [TranscriptTurn.model_validate(t) for t in call.transcript or []]
    for turn in reversed(transcript):
        if turn.speaker == "agent" and turn.text == said:
            turn.text = instead
            services.store.save_progress(call_sid, transcript, dict(call.details or {}))
            return


def _transfer_if_configured(
    services: Services, call: CallRecord, business: Business, intake: Intake
) -> Response | None:
    """``warm_transfer``: an emergency caller in the intake is connected to the on-call
    phone at once (the alert text has gone out first), once per call, within the
    emergency budget (past it the intake goes on; ``Escalation.may_transfer``)."""
    if not (business.warm_transfer and business.on_call_phone and services.twilio):
        return None
    if not services.escalation.may_transfer(call.call_sid, business):
        return None
    log.info("call %s: emergency in the intake; transferring to the on-call phone", call.call_sid)
    return twiml_response(
        twiml.transfer(
            number=business.on_call_phone,
            message=_escalation_words("transfer", intake)
            or "Connecting you to our on-call technician.",
            caller_id=business.number,
        )
    )


def _business(services: Services, call: CallRecord) -> Business | None:
    return services.businesses.by_number(call.business_number) or services.businesses.default()


@router.post("/resume")
async def resume(request: Request, services: ServicesDep, background: BackgroundTasks) -> Response:
    """Reached when the Media Stream ends while the caller is still on the line."""
    params = await signed_form(request, services)
    call = await asyncio.to_thread(services.store.get_call, params.get("CallSid", ""))
    if call is None or call.notes == "ended_by_agent":
        return twiml_response(twiml.hang_up())
    if call.notes == BRIDGE_FAILED or call.state != "active":
        if call.notes != BRIDGE_FAILED:
            return twiml_response(twiml.hang_up())
        # A bridge failure while the caller is still on (the bridge finalizes the call,
        # before or after this webhook arrives): never silence
        return twiml_response(
            twiml.say_and_hang_up(
                "Sorry, we had a technical problem. The team has what you told us and will "
                "call you back. Goodbye."
            )
        )
    business = _business(services, call)
    if business is None:
        return twiml_response(twiml.hang_up())
    known = known_details(call)
    if known.language is None:  # a Spanish conversation continues in Spanish
        said = " ".join(
            str(t.get("text", "")) for t in call.transcript or [] if t.get("speaker") == "caller"
        )
        known = known.model_copy(update={"language": detect_language(said)})
    intake = Intake(business, call.caller_phone, known=known, resumed=True, at=_seconds_in(call))
    log.info("call %s: scripted intake takes over the live call", call.call_sid)
    await asyncio.to_thread(_record, services, call, intake)
    # An emergency flagged before the drop: its alert is owed already; make sure it is out.
    alerted = await _escalate_if_urgent(services, call, intake)
    if intake.done:  # the conversation had already learned everything
        background.add_task(services.finalize, call.call_sid, "intake after drop")
        return goodbye_response(intake, _goodbye(intake, alerted=alerted))
    return gather_response(services, intake)


@router.post("/answer")
async def answer(request: Request, services: ServicesDep, background: BackgroundTasks) -> Response:
    """One ``<Gather>`` result: record it and ask the next question, or say goodbye."""
    params = await signed_form(request, services)
    call = await asyncio.to_thread(services.store.get_call, params.get("CallSid", ""))
    # A call finalized under a live caller (it looked idle to another process) goes on:
    # its later answers are kept and amend the summary (see CallFinalizer.amend).
    if call is None or call.state not in ("active", "finalized") or not call.intake_json:
        return twiml_response(twiml.hang_up())
    business = _business(services, call)
    if business is None:
        return twiml_response(twiml.hang_up())
    try:
        intake = Intake.from_json(call.intake_json, business)
    except IntakeStateError:
        log.error(
            "call %s: stored intake state is unreadable; finalizing what we have", call.call_sid
        )
        background.add_task(services.finalize, call.call_sid, "intake state lost")
        return twiml_response(
            twiml.say_and_hang_up("Thank you. The team will call you back as soon as possible.")
        )
    speech = params.get("SpeechResult") or None
    confidence = params.get("Confidence")
    try:
        conf = float(confidence) if confidence else None
    except ValueError:
        conf = None
    if not intake.done:
        intake.answer(
            speech, confidence=conf, digits=params.get("Digits") or None, at=_seconds_in(call)
        )
    await asyncio.to_thread(_record, services, call, intake)
    already = call.alert_sent_at is not None
    alerted = await _escalate_if_urgent(services, call, intake)
    if alerted:
        transfer = await asyncio.to_thread(
            _transfer_if_configured, services, call, business, intake
        )
        if transfer is not None:
            return transfer
    if intake.done:
        goodbye = _goodbye(intake, alerted=alerted)
        if goodbye != intake.goodbye():  # the transcript says what the caller really heard
            await asyncio.to_thread(
                _replace_last_agent_turn, services, call.call_sid, intake.goodbye(), goodbye
            )
        background.add_task(services.finalize, call.call_sid, "scripted intake complete")
        return goodbye_response(intake, goodbye)
    news = _escalation_words("alerted", intake) if alerted and not already else ""
    return gather_response(services, intake, news=news)
