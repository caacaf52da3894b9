"""``POST /v1/chat/completions`` of the OpenAI stand-in, sans I/O: structured outputs only.

``answer_chat_completion(body, extraction)`` returns ``(status, json_body)``. The request
must ask for ``response_format`` ``json_schema`` with ``strict: true`` and a schema the real
API accepts in strict mode (every object: ``additionalProperties: false`` and all its
properties ``required``). The answer's message content is ``json.dumps(extraction)``,
provided every scripted key is a property of the schema (the real model could not have
produced any other).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

SERVER_ERROR = {
    "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


def invalid_api_key(key: str) -> dict[str, Any]:
    shown = (key[:3] + "*" * 4 + key[-4:]) if len(key) > 8 else "*" * len(key)
    return {
        "error": {
            "message": f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def missing_api_key() -> dict[str, Any]:
    return {
        "error": {
            "message": "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def bad_request(message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def answer_chat_completion(
    body: Any, extraction: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    """The real API's status and body for a structured-output chat completion request."""
    if not isinstance(body, dict):
        return 400, bad_request("We could not parse the JSON body of your request.")
    for name in ("model", "messages"):
        if name not in body:
            return 400, bad_request(
                f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
            )
    if not isinstance(body["messages"], list) or not body["messages"]:
        return 400, bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but "
            "got an empty array instead.",
            "messages",
            "empty_array",
        )
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return 400, bad_request(
            "The stand-in answers only structured outputs: response_format must be of type "
            "'json_schema'.",
            "response_format",
        )
    spec = response_format.get("json_schema") or {}
    name = spec.get("name", "")
    if spec.get("strict") is not True:
        return 400, bad_request(
            "The stand-in requires 'response_format.json_schema.strict' to be true.",
            "response_format",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        return 400, bad_request(
            f"Invalid schema for response_format '{name}': schema must be a JSON Schema object.",
            "response_format",
        )
    problem = _strict_schema_problem(schema, schema, ())
    if problem is not None:
        return 400, bad_request(
            f"Invalid schema for response_format '{name}': {problem}", "response_format"
        )
    if extraction is None:
        return 500, SERVER_ERROR
    properties = schema.get("properties") or {}
    unknown = sorted(set(extraction) - set(properties))
    if unknown:
        return 400, bad_request(
            f"The scripted extraction has keys the schema '{name}' does not define: {unknown}.",
            "response_format",
        )
    return 200, _completion(str(body["model"]), json.dumps(extraction))


def unscripted_required_keys(body: dict[str, Any], extraction: dict[str, Any]) -> list[str]:
    """Schema-required keys the scripted extraction lacks (strict mode always fills them)."""
    schema = body["response_format"]["json_schema"]["schema"]
    return [key for key in schema.get("required") or [] if key not in extraction]


def _strict_schema_problem(node: Any, root: dict[str, Any], context: tuple[str, ...]) -> str | None:
    if not isinstance(node, dict):
        return None
    if "$ref" in node:
        return None  # definitions are checked where they are defined
    if node.get("type") == "object" or "properties" in node:
        properties = node.get("properties") or {}
        where = f"In context={context}, "
        if node.get("additionalProperties") is not False:
            return where + "'additionalProperties' is required to be supplied and to be false."
        missing = [key for key in properties if key not in (node.get("required") or [])]
        if missing:
            return (
                where + "'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
        for key, child in properties.items():
            found = _strict_schema_problem(child, root, (*context, "properties", key))
            if found:
                return found
    found = _strict_schema_problem(node.get("items"), root, (*context, "items"))
    if found:
        return found
    for key in ("anyOf", "allOf"):
        for index, child in enumerate(node.get(key) or []):
            found = _strict_schema_problem(child, root, (*context, key, str(index)))
            if found:
                return found
    for key in ("$defs", "definitions"):
        for def_name, child in (node.get(key) or {}).items():
            found = _strict_schema_problem(child, root, (*context, key, def_name))
            if found:
                return found
    return None


def _completion(model: str, content: str) -> dict[str, Any]:
    words = len(content.split())
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 200,
            "completion_tokens": words,
            "total_tokens": 200 + words,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_standin",
    }
