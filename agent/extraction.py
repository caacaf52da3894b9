"""The post-call structured extraction: the transcript → ``CallerDetails`` through openai
structured outputs (``OPENAI_SUMMARY_MODEL``). Any failure returns ``None``; the summary
builder then relies on the tool calls and the deterministic extractor, and says so.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from agent.details import CallerDetails
from agent.summary import TranscriptTurn
from prompts import render

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)


class ExtractedCall(BaseModel):
    """The schema the model fills (strict structured outputs: every key present, null allowed)."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None
    last_name: str | None
    company: str | None
    email: str | None
    service_address: str | None
    callback_phone: str | None
    need: str | None
    details: str | None
    urgency: int | None
    is_emergency: bool | None
    callback_requested: bool | None
    callback_window: str | None
    existing_customer: bool | None
    new_project: bool | None
    language: str | None


def _fit(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:limit] or None


def to_details(extracted: ExtractedCall) -> CallerDetails:
    """Fit the model's answer to the contract (lengths, urgency 1..5)."""
    urgency = extracted.urgency
    if urgency is not None:
        urgency = min(5, max(1, urgency))
    return CallerDetails(
        first_name=_fit(extracted.first_name, 80),
        last_name=_fit(extracted.last_name, 80),
        company=_fit(extracted.company, 255),
        email=_fit(extracted.email, 254),
        service_address=_fit(extracted.service_address, 500),
        callback_phone=_fit(extracted.callback_phone, 32),
        need=_fit(extracted.need, 255),
        details=_fit(extracted.details, 4000),
        urgency=urgency,
        is_emergency=extracted.is_emergency,
        callback_requested=extracted.callback_requested,
        callback_window=_fit(extracted.callback_window, 255),
        existing_customer=extracted.existing_customer,
        new_project=extracted.new_project,
        language=_fit(extracted.language, 16),
    )


def transcript_for_model(transcript: list[TranscriptTurn]) -> str:
    lines = []
    for turn in transcript:
        who = "Caller" if turn.speaker == "caller" else "Receptionist"
        cut = " (interrupted)" if turn.interrupted else ""
        lines.append(f"{who}{cut}: {turn.text}")
    return "\n".join(lines)


async def extract_details(
    client: AsyncOpenAI,
    *,
    model: str,
    business_name: str,
    transcript: list[TranscriptTurn],
    call_sid: str,
    today: dt.date,
    request_timeout: float = 30.0,
) -> CallerDetails | None:
    """Ask the summary model for the caller's details; ``None`` when it cannot answer."""
    if not any(turn.speaker == "caller" for turn in transcript):
        return None
    import openai  # already loaded by whoever built ``client``; not at import (startup cost)

    instructions = render("extraction", business_name=business_name, today=today.isoformat())
    try:
        completion = await client.chat.completions.parse(
            model=model,
            messages=[
                {"role": "system", "content": instructions},
                {"role": "user", "content": transcript_for_model(transcript)},
            ],
            response_format=ExtractedCall,
            timeout=request_timeout,
        )
    except (openai.OpenAIError, ValueError) as exc:
        log.warning("extraction failed for call %s: %s", call_sid, type(exc).__name__)
        return None
    message = completion.choices[0].message if completion.choices else None
    if message is None or message.parsed is None:
        log.warning("extraction for call %s returned no parsed content", call_sid)
        return None
    return to_details(message.parsed)
