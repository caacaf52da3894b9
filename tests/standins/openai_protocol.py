"""Realtime wire checks for the stand-in, using the openai library's own types.

- ``check_client_event``: what the real API would reject in a client event's *shape*
  (unknown event type, pydantic validation failure, unknown parameters), as the real
  error body (type, code, message, param).
- ``check_server_event``: the stand-in never sends what the real API would not.
- ``error_event``: the real ``error`` server event.

Messages follow the real API's wording where it is known (``Unknown parameter: '...'.``,
``Missing required parameter: '...'.``, ``Invalid value: '...'. Supported values are: ...``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

from tests.standins.openai_script import new_id


@dataclass(frozen=True, slots=True)
class ApiError:
    """An ``invalid_request_error`` as the real API reports it."""

    code: str | None
    message: str
    param: str | None = None
    type: str = "invalid_request_error"


def _union_members(alias: Any) -> list[type[pydantic.BaseModel]]:
    union = typing.get_args(alias)[0]
    return list(typing.get_args(union))


def _type_literal(model: type[pydantic.BaseModel]) -> str:
    return str(typing.get_args(model.model_fields["type"].annotation)[0])


CLIENT_EVENT_MODELS: dict[str, type[pydantic.BaseModel]] = {
    _type_literal(m): m for m in _union_members(RealtimeClientEvent)
}
_SERVER_EVENTS = pydantic.TypeAdapter(RealtimeServerEvent)
_SERVER_EVENT_TYPES = {_type_literal(m) for m in _union_members(RealtimeServerEvent)}


class StandinBug(AssertionError):
    """The stand-in built a server event the real API would never send."""


def check_server_event(event: dict[str, Any]) -> None:
    """Raise ``StandinBug`` unless ``event`` validates as a ``RealtimeServerEvent``."""
    if event.get("type") not in _SERVER_EVENT_TYPES:
        raise StandinBug(f"unknown server event type {event.get('type')!r}")
    try:
        _SERVER_EVENTS.validate_python(event)
    except pydantic.ValidationError as exc:
        raise StandinBug(f"invalid {event.get('type')} event: {exc}") from exc


def error_event(error: ApiError, client_event_id: str | None) -> dict[str, Any]:
    """The ``error`` server event for ``error`` caused by the client event ``client_event_id``."""
    return {
        "type": "error",
        "event_id": new_id("event"),
        "error": {
            "type": error.type,
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "event_id": client_event_id,
        },
    }


def check_client_event(raw: Any) -> tuple[pydantic.BaseModel | None, ApiError | None]:
    """Validate one parsed client event; return its model or the real API's error."""
    if not isinstance(raw, dict):
        return None, ApiError("invalid_json", "The event must be a JSON object.")
    event_type = raw.get("type")
    if event_type is None:
        return None, ApiError(
            "missing_required_parameter", "Missing required parameter: 'type'.", "type"
        )
    model = CLIENT_EVENT_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        supported = ", ".join(f"'{t}'" for t in CLIENT_EVENT_MODELS)
        return None, ApiError(
            "invalid_value",
            f"Invalid value: '{event_type}'. Supported values are: {supported}.",
            "type",
        )
    try:
        validated = model.model_validate(raw)
    except pydantic.ValidationError as exc:
        return None, _error_from_validation(raw, exc)
    unknown = _first_unknown_parameter(validated, "")
    if unknown is not None:
        return None, ApiError("unknown_parameter", f"Unknown parameter: '{unknown}'.", unknown)
    return validated, None


def _first_unknown_parameter(value: Any, path: str) -> str | None:
    if isinstance(value, pydantic.BaseModel):
        for key in value.__pydantic_extra__ or {}:
            return _join(path, key)
        for name in type(value).model_fields:
            found = _first_unknown_parameter(getattr(value, name), _join(path, name))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, element in enumerate(value):
            found = _first_unknown_parameter(element, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _error_from_validation(raw: dict[str, Any], exc: pydantic.ValidationError) -> ApiError:
    errors = [e for e in exc.errors() if not _wrong_union_branch(e, exc.errors())]
    error = (errors or exc.errors())[0]
    param, value = _param_path(raw, error["loc"])
    kind = error["type"]
    if kind == "missing":
        return ApiError(
            "missing_required_parameter", f"Missing required parameter: '{param}'.", param
        )
    if kind in {"literal_error", "enum", "union_tag_invalid"}:
        expected = error.get("ctx", {}).get("expected", "")
        return ApiError(
            "invalid_value",
            f"Invalid value: '{value}'. Supported values are: {expected}.",
            param,
        )
    return ApiError("invalid_type", f"Invalid type for '{param}': {error['msg'].lower()}.", param)


def _wrong_union_branch(error: Any, all_errors: list[Any]) -> bool:
    """True for errors from union members whose ``type`` literal did not match the input."""
    loc = error["loc"]
    for index, part in enumerate(loc):
        if isinstance(part, str) and part[:1].isupper():
            branch = loc[: index + 1]
            if any(
                e["type"] == "literal_error"
                and tuple(e["loc"]) in {(*branch, "type"), (*branch, "role")}
                for e in all_errors
            ):
                return True
    return False


def _param_path(raw: Any, loc: tuple[Any, ...]) -> tuple[str, Any]:
    """The dotted parameter path of ``loc`` in the raw JSON (union branch names skipped)."""
    path = ""
    current = raw
    for part in loc:
        if isinstance(current, dict) and isinstance(part, str) and not part[:1].isupper():
            path = _join(path, part)
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int):
            path = f"{path}[{part}]"
            current = current[part] if part < len(current) else None
    return path, current
