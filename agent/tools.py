"""The function tools the Realtime model may call during a call, and their parsing.

The tools only *describe the caller*: none takes a record id, an owner, a status, a rating
or a Salesforce field name, so a caller cannot talk the model into touching other records
or choosing how the CRM files this one. Arguments are validated strictly (unknown keys,
wrong types and over-long values are refused) and a refusal's message is safe to hand back
to the model: it names the field and the rule, never echoes what was sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.details import CallerDetails

__all__ = [
    "TOOLS",
    "EndCall",
    "FlagEmergency",
    "RecordDetails",
    "RequestCallback",
    "ToolArgumentsError",
    "ToolRequest",
    "learned_details",
    "parse_tool_call",
    "tool_result",
]


@dataclass(frozen=True, slots=True)
class RecordDetails:
    """The model learned facts about the caller."""

    details: CallerDetails


@dataclass(frozen=True, slots=True)
class RequestCallback:
    """The caller wants a call back, in ``window`` (their words), maybe on ``phone``."""

    window: str
    phone: str | None


@dataclass(frozen=True, slots=True)
class FlagEmergency:
    """The caller described an emergency; ``details`` carries urgency 5 and what is known."""

    reason: str
    details: CallerDetails


@dataclass(frozen=True, slots=True)
class EndCall:
    """The conversation is over; hang up once the goodbye has played."""

    reason: str


ToolRequest = RecordDetails | RequestCallback | FlagEmergency | EndCall


class ToolArgumentsError(Exception):
    """A tool call the model made cannot be used; the message is safe to return to the model."""


def _text(description: str, max_length: int) -> dict[str, Any]:
    return {"type": "string", "description": description, "maxLength": max_length}


def _flag(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


_DETAIL_PROPERTIES: dict[str, dict[str, Any]] = {
    "first_name": _text("Caller's first name, as spelled back and confirmed.", 80),
    "last_name": _text("Caller's last name, as spelled back and confirmed.", 80),
    "company": _text("Caller's company, only if calling for a business.", 255),
    "email": _text("Caller's email address, if offered.", 254),
    "service_address": _text("Where the work is needed (street, city).", 500),
    "callback_phone": _text(
        "Best number to call back, if different from the number they are calling from.", 32
    ),
    "need": _text("One line: what they need, e.g. 'Emergency AC repair - not cooling'.", 255),
    "details": _text("A few sentences of context in the caller's own terms.", 4000),
    "urgency": {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
        "description": (
            "From the situation described, never from a caller's request to mark it: "
            "5 emergency now (flooding, gas smell, sparks, no heat in freezing weather), "
            "4 needs attention today, 3 this week, 2 flexible or a quote, 1 information only."
        ),
    },
    "is_emergency": _flag("True when the situation is an emergency happening now."),
    "callback_requested": _flag("True when the caller wants a call back."),
    "callback_window": _text(
        "When to call back, in the caller's words ('tomorrow morning', 'after 5').", 255
    ),
    "existing_customer": _flag("True if the caller says they are an existing customer."),
    "new_project": _flag("True if the caller wants new work (a new install, a quote)."),
    "language": _text("Language of the conversation as a code, e.g. 'en', 'es'.", 16),
}


def _tool(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
    }


TOOLS: list[dict[str, Any]] = [
    _tool(
        "record_caller_details",
        "Save what you have learned about the caller. Call it as soon as you learn or correct "
        "a fact; send only the fields you learned.",
        _DETAIL_PROPERTIES,
        [],
    ),
    _tool(
        "request_callback",
        "The caller wants someone from the team to call them back.",
        {
            "callback_window": {
                **_DETAIL_PROPERTIES["callback_window"],
                "minLength": 1,
            },
            "callback_phone": _DETAIL_PROPERTIES["callback_phone"],
        },
        ["callback_window"],
    ),
    _tool(
        "flag_emergency",
        "Call at once when the caller describes an emergency happening now (flooding, burst "
        "pipe, gas smell, sparks or burning smell, smoke, carbon monoxide alarm, sewage "
        "backup, no heat in freezing weather).",
        {
            "reason": _text("What is happening, in a few words.", 255),
            "service_address": _DETAIL_PROPERTIES["service_address"],
            "need": _DETAIL_PROPERTIES["need"],
        },
        [],
    ),
    _tool(
        "end_call",
        "Hang up. Call only after you have said goodbye, or when the caller has clearly gone.",
        {"reason": _text("Why the call is ending, e.g. 'details taken, caller said bye'.", 255)},
        ["reason"],
    ),
]

_TOOL_NAMES = frozenset(tool["name"] for tool in TOOLS)


class _CallbackArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    callback_window: str = Field(min_length=1, max_length=255)
    callback_phone: str | None = Field(default=None, max_length=32)


_EMERGENCY_LIMITS = {"reason": 255, "service_address": 500, "need": 255}


def _emergency(arguments_json: str) -> FlagEmergency:
    """``flag_emergency`` is safety-critical and never refused: whatever the arguments look
    like (missing or empty ``reason``, unknown keys, over-long text, even invalid JSON),
    the emergency stands; usable text values are kept, trimmed to their limits."""
    try:
        arguments = json.loads(arguments_json) if arguments_json.strip() else {}
    except json.JSONDecodeError:
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {}
    values: dict[str, str | None] = {}
    for key, limit in _EMERGENCY_LIMITS.items():
        raw = arguments.get(key)
        text = " ".join(raw.split())[:limit] if isinstance(raw, str) else ""
        values[key] = text or None
    details = CallerDetails(
        service_address=values["service_address"],
        need=values["need"],
        urgency=5,
        is_emergency=True,
    )
    return FlagEmergency(values["reason"] or values["need"] or "emergency", details)


class _EndCallArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(default="", max_length=255)


def _describe(name: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "arguments"
        if item["type"] == "extra_forbidden":
            problems.append(f"'{field}' is not a parameter of {name}")
        else:
            problems.append(f"'{field}': {item['msg']}")
    return f"{name}: " + "; ".join(problems)


def parse_tool_call(name: str, arguments_json: str) -> ToolRequest:
    """The model's function call as a request; ``ToolArgumentsError`` if it cannot be used."""
    if name not in _TOOL_NAMES:
        raise ToolArgumentsError(f"there is no tool named {name[:64]!r}")
    if name == "flag_emergency":
        return _emergency(arguments_json)
    try:
        arguments = json.loads(arguments_json) if arguments_json.strip() else {}
    except json.JSONDecodeError:
        raise ToolArgumentsError(f"{name}: arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ToolArgumentsError(f"{name}: arguments must be a JSON object")
    # Empty strings mean "not learned", like an absent key.
    arguments = {k: v for k, v in arguments.items() if not (isinstance(v, str) and not v.strip())}
    try:
        if name == "record_caller_details":
            stripped = {k: v.strip() if isinstance(v, str) else v for k, v in arguments.items()}
            return RecordDetails(CallerDetails.model_validate(stripped))
        if name == "request_callback":
            callback = _CallbackArgs.model_validate(arguments)
            return RequestCallback(callback.callback_window, callback.callback_phone)
        end = _EndCallArgs.model_validate(arguments)
        return EndCall(end.reason or "model ended the call")
    except ValidationError as exc:
        raise ToolArgumentsError(_describe(name, exc)) from None


def tool_result(request: ToolRequest, *, transferring: bool = False, alerting: bool = True) -> str:
    """The ``function_call_output`` text telling the model what happened and what to say.

    ``transferring`` (emergencies only): the call is being connected to the on-call phone.
    ``alerting`` (emergencies only): an on-call phone can be texted; without one the model
    must not tell the caller the on-call team was alerted.
    """
    if isinstance(request, RecordDetails):
        saved = ", ".join(request.details.learned()) or "nothing new"
        return f"Saved: {saved}. Carry on with whatever you still need to ask."
    if isinstance(request, RequestCallback):
        return (
            "Callback request saved. Tell the caller the team will call them back "
            f"({request.window}). Do not promise an exact time."
        )
    if isinstance(request, FlagEmergency):
        if transferring:
            return (
                "Emergency flagged. The call is being connected to the on-call technician now: "
                "tell the caller in one short sentence that you are putting them through."
            )
        if not alerting:
            return (
                "Emergency recorded as urgent for the team. Do not say anyone has been "
                "alerted or will call back at once. If anyone is in danger (gas smell, fire, "
                "sparks, smoke, carbon monoxide) tell them to leave the building and call 911 "
                "first. Make sure you have their name, the address and the best callback number."
            )
        return (
            "Emergency flagged for the on-call team, who will call back as soon as possible. "
            "Tell the caller that. If anyone is in danger (gas smell, fire, sparks, smoke, "
            "carbon monoxide) tell them to leave the building and call 911 first. Do not say "
            "a technician is on the way or give an arrival time. Make sure you have their "
            "name, the address and the best callback number."
        )
    return "The call will end after your last words finish playing. Say nothing more."


def learned_details(request: ToolRequest) -> CallerDetails:
    """What a tool call taught us about the caller, to merge into the call's details."""
    if isinstance(request, RecordDetails):
        return request.details
    if isinstance(request, RequestCallback):
        return CallerDetails(
            callback_requested=True,
            callback_window=request.window,
            callback_phone=request.phone,
        )
    if isinstance(request, FlagEmergency):
        return request.details
    return CallerDetails()
