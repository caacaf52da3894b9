"""The summary contract between the conversation (``agent``) and the CRM (``crm``).

JSON field names are fixed by DESIGN.md; the CRM, the store and the staff pages all
read this shape. Rating is derived here from urgency, never chosen by a caller or a model.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Rating = Literal["Hot", "Warm", "Cold"]
Speaker = Literal["caller", "agent"]


class TranscriptTurn(BaseModel):
    """One turn of the conversation; ``start`` is seconds from the start of the stream."""

    model_config = ConfigDict(extra="forbid")

    speaker: Speaker
    text: str
    start: float = Field(ge=0)
    interrupted: bool = False


def rating_for(urgency: int) -> Rating:
    """Urgency ≥ 4 is Hot, 2–3 Warm, 1 Cold (DESIGN.md)."""
    if urgency >= 4:
        return "Hot"
    if urgency >= 2:
        return "Warm"
    return "Cold"


class CallSummary(BaseModel):
    """Everything the CRM needs to know about one call."""

    model_config = ConfigDict(extra="forbid")

    call_sid: str = Field(min_length=1, max_length=64)
    business: str = Field(min_length=1, max_length=255)
    caller_phone: str = Field(default="", max_length=32)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    company: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    service_address: str | None = Field(default=None, max_length=1000)
    callback_phone: str | None = Field(default=None, max_length=32)
    need: str = Field(default="", max_length=255)
    details: str = Field(default="", max_length=32000)
    urgency: int = Field(default=2, ge=1, le=5)
    is_emergency: bool = False
    callback_requested: bool = False
    callback_window: str | None = Field(default=None, max_length=255)
    callback_due: dt.date | None = None
    call_date: dt.date | None = None  # the call's day in the business's timezone
    existing_customer: bool | None = None
    new_project: bool = False
    language: str = Field(default="en", max_length=16)
    transcript: list[TranscriptTurn] = Field(default_factory=list)
    duration_seconds: int = Field(default=0, ge=0)
    extraction: Literal["model", "deterministic", "tools"] = "deterministic"
    # The caller hung up before giving anything usable (no name, no need): recorded as a
    # missed call (Rating Cold, a callback Task due today), never as a Warm Lead.
    missed_call: bool = False
    # 0 for the summary made when the call ended; n for its n-th amendment (turns that
    # arrived after the call had been finalized), delivered as an update of the same records.
    amendment: int = Field(default=0, ge=0)

    @field_validator("urgency", mode="before")
    @classmethod
    def _clamp_urgency(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return min(5, max(1, value))
        return value

    @property
    def rating(self) -> Rating:
        return rating_for(self.urgency)

    @property
    def display_name(self) -> str:
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) if parts else "Unknown caller"

    def transcript_text(self) -> str:
        """The transcript as plain text for staff, one line per turn."""
        lines = []
        for turn in self.transcript:
            mark = " [interrupted]" if turn.interrupted else ""
            who = "Caller" if turn.speaker == "caller" else "Receptionist"
            lines.append(f"[{turn.start:06.1f}s] {who}: {turn.text}{mark}")
        return "\n".join(lines)
