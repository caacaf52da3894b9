"""The Realtime function tools: schemas, strict parsing, results the model can act on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.details import CallerDetails
from agent.tools import (
    TOOLS,
    EndCall,
    FlagEmergency,
    RecordDetails,
    RequestCallback,
    ToolArgumentsError,
    learned_details,
    parse_tool_call,
    tool_result,
)

jsonschema = pytest.importorskip("jsonschema")


def tool(name: str) -> dict[str, Any]:
    return next(t for t in TOOLS if t["name"] == name)


def test_the_four_tools_are_offered() -> None:
    assert [t["name"] for t in TOOLS] == [
        "record_caller_details",
        "request_callback",
        "flag_emergency",
        "end_call",
    ]
    for entry in TOOLS:
        assert set(entry) == {"type", "name", "description", "parameters"}
        assert entry["type"] == "function"
        assert entry["description"]


@pytest.mark.parametrize("entry", TOOLS, ids=lambda t: t["name"])
def test_parameters_are_closed_json_schemas(entry: dict[str, Any]) -> None:
    schema = entry["parameters"]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) <= set(schema["properties"])
    for prop in schema["properties"].values():
        assert prop["description"]
        if prop["type"] == "string":
            assert prop["maxLength"] <= 4000


def test_record_caller_details_covers_every_caller_detail() -> None:
    properties = tool("record_caller_details")["parameters"]["properties"]
    assert set(properties) == set(CallerDetails.model_fields)
    assert tool("record_caller_details")["parameters"]["required"] == []


def test_no_tool_touches_records_owners_or_statuses() -> None:
    forbidden = ("id", "owner", "status", "rating", "field", "record", "object", "sobject")
    for entry in TOOLS:
        for name in entry["parameters"]["properties"]:
            words = name.lower().split("_")
            assert not any(word in forbidden for word in words), (entry["name"], name)


def test_record_caller_details() -> None:
    request = parse_tool_call(
        "record_caller_details",
        json.dumps({"first_name": " Maria ", "last_name": "Lopez", "urgency": 4, "email": ""}),
    )
    assert request == RecordDetails(CallerDetails(first_name="Maria", last_name="Lopez", urgency=4))
    assert tool_result(request).startswith("Saved: first_name, last_name, urgency.")
    assert learned_details(request) == request.details


def test_arguments_accepted_by_the_schema_parse() -> None:
    validator = jsonschema.Draft202012Validator(tool("record_caller_details")["parameters"])
    arguments = {
        "first_name": "Ana",
        "callback_phone": "+14155550100",
        "urgency": 5,
        "is_emergency": True,
        "existing_customer": False,
        "language": "es",
    }
    validator.validate(arguments)
    assert isinstance(
        parse_tool_call("record_caller_details", json.dumps(arguments)), RecordDetails
    )


def test_request_callback() -> None:
    request = parse_tool_call(
        "request_callback",
        '{"callback_window": "tomorrow morning", "callback_phone": "415-555-0100"}',
    )
    assert request == RequestCallback(window="tomorrow morning", phone="415-555-0100")
    assert "tomorrow morning" in tool_result(request)
    assert learned_details(request) == CallerDetails(
        callback_requested=True, callback_window="tomorrow morning", callback_phone="415-555-0100"
    )


def test_flag_emergency_sets_urgency_five() -> None:
    request = parse_tool_call(
        "flag_emergency", '{"reason": "basement flooding", "service_address": "12 Oak St"}'
    )
    assert isinstance(request, FlagEmergency)
    assert request.reason == "basement flooding"
    assert request.details == CallerDetails(
        service_address="12 Oak St", urgency=5, is_emergency=True
    )
    text = tool_result(request)
    assert "911" in text
    assert "Do not say a technician is on the way" in text
    assert "putting them through" in tool_result(request, transferring=True)


@pytest.mark.parametrize(
    "arguments",
    [
        "",
        "{}",
        '{"reason": ""}',
        '{"reason": "   ", "need": "flood"}',
        '{"need": "flood", "severity": "high"}',
        json.dumps({"reason": "x" * 400}),
        "{not json",
        "[1, 2]",
    ],
)
def test_flag_emergency_is_never_refused(arguments: str) -> None:
    """Safety first: a missing/empty reason, an unknown key, an over-long value or broken
    JSON still flags the emergency (urgency 5) instead of refusing the tool call."""
    request = parse_tool_call("flag_emergency", arguments)
    assert isinstance(request, FlagEmergency)
    assert request.details.urgency == 5 and request.details.is_emergency
    assert request.reason and len(request.reason) <= 255


def test_end_call() -> None:
    assert parse_tool_call("end_call", '{"reason": "caller said bye"}') == EndCall(
        "caller said bye"
    )
    assert parse_tool_call("end_call", "") == EndCall("model ended the call")
    assert learned_details(EndCall("x")) == CallerDetails()


BAD_CALLS = [
    ("delete_lead", "{}", "no tool named"),
    ("record_caller_details", "{not json", "not valid JSON"),
    ("record_caller_details", "[1, 2]", "must be a JSON object"),
    ("record_caller_details", '{"lead_id": "00Q000000000001"}', "'lead_id' is not a parameter"),
    ("record_caller_details", '{"owner": "005000000000001"}', "'owner' is not a parameter"),
    ("record_caller_details", '{"rating": "Hot"}', "'rating' is not a parameter"),
    ("record_caller_details", '{"urgency": 9}', "'urgency'"),
    ("record_caller_details", '{"urgency": "very"}', "'urgency'"),
    ("record_caller_details", json.dumps({"need": "x" * 300}), "'need'"),
    ("request_callback", "{}", "'callback_window'"),
    ("request_callback", '{"callback_window": "   "}', "'callback_window'"),
    ("request_callback", '{"callback_window": "now", "status": "Closed"}', "'status'"),
    ("end_call", '{"reason": "bye", "transfer_to": "+15550000000"}', "'transfer_to'"),
]


@pytest.mark.parametrize(("name", "arguments", "message"), BAD_CALLS)
def test_bad_arguments_are_refused(name: str, arguments: str, message: str) -> None:
    with pytest.raises(ToolArgumentsError, match=message) as caught:
        parse_tool_call(name, arguments)
    # safe to hand back to the model: the caller's values are not echoed
    assert "00Q000000000001" not in str(caught.value)
    assert "x" * 50 not in str(caught.value)


def test_flag_emergency_never_claims_an_alert_that_cannot_be_sent() -> None:
    """Without an on-call phone the model is told not to say anyone was alerted."""
    request = parse_tool_call("flag_emergency", '{"reason": "gas smell"}')
    text = tool_result(request, alerting=False)
    assert "Do not say anyone has been alerted" in text and "911" in text
    assert "on-call team, who will call back" not in text
