"""What the receptionist has learned about a caller so far.

Filled by the model's ``record_caller_details`` tool calls during the call, by the post-call
extraction, by the scripted intake and by the deterministic extractor; merged into the final
``CallSummary``. Every field is optional: a caller may hang up after one sentence.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CallerDetails(BaseModel):
    """Caller facts as learned; ``None`` means not learned (never "learned to be empty")."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(default=None, max_length=80)
    last_name: str | None = Field(default=None, max_length=80)
    company: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=254)
    service_address: str | None = Field(default=None, max_length=500)
    callback_phone: str | None = Field(default=None, max_length=32)
    need: str | None = Field(default=None, max_length=255)
    details: str | None = Field(default=None, max_length=4000)
    urgency: int | None = Field(default=None, ge=1, le=5)
    is_emergency: bool | None = None
    callback_requested: bool | None = None
    callback_window: str | None = Field(default=None, max_length=255)
    existing_customer: bool | None = None
    new_project: bool | None = None
    language: str | None = Field(default=None, max_length=16)

    def merged_with(self, newer: CallerDetails) -> CallerDetails:
        """Fields the newer record learned win; what it did not learn is kept."""
        values: dict[str, Any] = self.model_dump()
        for key, value in newer.model_dump().items():
            if value is not None and value != "":
                values[key] = value
        return CallerDetails.model_validate(values)

    def learned(self) -> dict[str, Any]:
        """Only the fields that were learned (for storage and logs of *which* fields)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}
