"""Fuzzing the Twilio Media Streams core (``telephony.media_streams``) with hypothesis.

What a user would notice if these failed: one odd frame from the network (or from anyone
who got hold of the stream) would crash the call's bridge — the caller meets dead air and
the call is only finalized by the status callback — or would wedge the stream so that the
real ``start`` is refused. The properties:

- ``receive`` never raises on any text or bytes, and returns exactly one known event;
- the state machine stays consistent (AWAITING_START → STREAMING → STOPPED only forward,
  a ``stream_sid`` exactly when a stream started, ``violations`` counts the violations);
- garbage interleaved in a real stream changes nothing about the real frames' events;
- outbound frames are possible exactly while streaming.

Examples are bounded and the search is derandomized, so the file runs in seconds and the
same inputs are tried on every run.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from telephony.errors import MediaStreamStateError
from telephony.media_streams import (
    AudioReceived,
    DtmfReceived,
    MarkEchoed,
    MediaStreamProtocol,
    ProtocolViolation,
    StreamConnected,
    StreamStarted,
    StreamState,
    StreamStopped,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SID = "MZ" + "2" * 32
CALL_SID = "CA" + "3" * 32
EVENT_TYPES = (
    StreamConnected,
    StreamStarted,
    AudioReceived,
    MarkEchoed,
    DtmfReceived,
    StreamStopped,
    ProtocolViolation,
)
ORDER = {StreamState.AWAITING_START: 0, StreamState.STREAMING: 1, StreamState.STOPPED: 2}

CONNECTED: dict[str, Any] = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START: dict[str, Any] = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC" + "1" * 32,
        "streamSid": SID,
        "callSid": CALL_SID,
        "tracks": ["inbound"],
        "customParameters": {"business_number": "+15005550006", "caller": "+14155550100"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
    "streamSid": SID,
}
MEDIA: dict[str, Any] = {
    "event": "media",
    "sequenceNumber": "3",
    "media": {
        "track": "inbound",
        "chunk": "2",
        "timestamp": "40",
        "payload": base64.b64encode(b"\xff" * 160).decode(),
    },
    "streamSid": SID,
}
MARK: dict[str, Any] = {"event": "mark", "streamSid": SID, "mark": {"name": "item_1:120"}}
DTMF: dict[str, Any] = {
    "event": "dtmf",
    "streamSid": SID,
    "dtmf": {"track": "inbound_track", "digit": "7"},
}
STOP: dict[str, Any] = {
    "event": "stop",
    "sequenceNumber": "9",
    "streamSid": SID,
    "stop": {"accountSid": "AC" + "1" * 32, "callSid": CALL_SID},
}
REAL_FRAMES = [CONNECTED, START, MEDIA, MARK, DTMF, STOP]

# Any JSON value, including what Python's json module reads beyond the standard
# (Infinity, NaN) and numbers too large for an int conversion to be harmless.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e400, -1e400, 10**30]),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with some members kept, some dropped, some replaced by any JSON value."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, member in value.items():
            choice = draw(st.sampled_from(["keep", "keep", "mutate", "drop", "replace"]))
            if choice == "keep":
                out[key] = member
            elif choice == "mutate":
                out[key] = draw(mutated(member))
            elif choice == "replace":
                out[key] = draw(json_values)
        if draw(st.booleans()):
            out[draw(st.text(max_size=10))] = draw(json_values)
        return out
    if isinstance(value, list):
        return [draw(mutated(v)) for v in value]
    return draw(st.one_of(st.just(value), json_values))


@st.composite
def mutated_frame(draw: st.DrawFn) -> str:
    """A real Twilio frame, mutated as JSON, sometimes also damaged as text."""
    frame = draw(mutated(draw(st.sampled_from(REAL_FRAMES))))
    text = json.dumps(frame)
    damage = draw(st.sampled_from(["none", "none", "truncate", "insert"]))
    if damage == "truncate" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif damage == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at:]
    return text


any_message = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    mutated_frame(),
    st.sampled_from([json.dumps(f) for f in REAL_FRAMES]),
    st.sampled_from(["[" * 5000 + "]" * 5000, '{"event": ' * 3000, "x" * 70_000]),
)


def check_invariants(protocol: MediaStreamProtocol, before: StreamState, events: list[Any]) -> None:
    assert len(events) == 1 and isinstance(events[0], EVENT_TYPES), events
    (event,) = events
    after = protocol.state
    assert ORDER[after] >= ORDER[before], f"state went back from {before} to {after}"
    if after is StreamState.AWAITING_START:
        assert protocol.stream_sid is None and protocol.call_sid is None
    else:
        assert protocol.stream_sid and protocol.call_sid is not None
    moved = (before, after)
    assert isinstance(event, StreamStarted) == (
        moved == (StreamState.AWAITING_START, StreamState.STREAMING)
    ), (moved, event)
    assert isinstance(event, StreamStopped) == (
        moved == (StreamState.STREAMING, StreamState.STOPPED)
    ), (moved, event)
    if isinstance(event, StreamStarted):
        assert event.stream_sid == protocol.stream_sid and event.call_sid == protocol.call_sid


def check_outbound(protocol: MediaStreamProtocol) -> None:
    if protocol.state is StreamState.STREAMING:
        frame = json.loads(protocol.media(b"\x01\x02"))
        assert frame["streamSid"] == protocol.stream_sid
        assert json.loads(protocol.clear()) == {"event": "clear", "streamSid": protocol.stream_sid}
    else:
        with pytest.raises(MediaStreamStateError):
            protocol.mark("x:0")


@FUZZ
@given(st.lists(any_message, min_size=1, max_size=12))
@example([json.dumps(START), json.dumps({**MEDIA, "media": "payload"})])
def test_any_sequence_of_messages_never_raises_and_keeps_the_state_consistent(
    messages: list[str | bytes],
) -> None:
    """Arbitrary text, bytes and mutated real frames, in any order: one event each, never
    an exception, and the state machine's invariants hold after every message."""
    protocol = MediaStreamProtocol(max_frame_chars=65536)
    violations = 0
    for message in messages:
        before = protocol.state
        events = protocol.receive(message)
        check_invariants(protocol, before, events)
        violations += isinstance(events[0], ProtocolViolation)
        assert protocol.violations == violations
        check_outbound(protocol)


@settings(FUZZ, max_examples=80)
@given(st.lists(mutated_frame(), min_size=1, max_size=6))
@example([json.dumps({**START, "start": "not an object"})])
def test_garbage_inside_a_live_stream_changes_nothing_for_the_real_frames(
    garbage: list[str],
) -> None:
    """A real stream with mutated frames inserted after ``start``: every real frame still
    yields exactly its event, and garbage never stops or restarts the stream."""
    protocol = MediaStreamProtocol()
    assert protocol.receive(json.dumps(CONNECTED)) == [StreamConnected("Call", "1.0.0")]
    (started,) = protocol.receive(json.dumps(START))
    assert isinstance(started, StreamStarted) and started.call_sid == CALL_SID
    real = [
        (json.dumps(MEDIA), AudioReceived(b"\xff" * 160, 40)),
        (json.dumps(MARK), MarkEchoed("item_1:120")),
        (json.dumps(DTMF), DtmfReceived("7")),
    ]
    for i, text in enumerate(garbage):
        # Garbage never speaks for this stream: a frame naming our streamSid with a valid
        # "stop" would legitimately end it.
        frame: Any = None
        with contextlib.suppress(ValueError):
            frame = json.loads(text)
        if isinstance(frame, dict) and frame.get("streamSid") == SID:
            frame["streamSid"] = "MZ" + "9" * 32
            text = json.dumps(frame)
        events = protocol.receive(text)
        assert len(events) == 1 and not isinstance(events[0], StreamStarted | StreamStopped)
        assert protocol.state is StreamState.STREAMING and protocol.stream_sid == SID
        message, expected = real[i % len(real)]
        assert protocol.receive(message) == [expected]
    assert protocol.receive(json.dumps(STOP)) == [StreamStopped(CALL_SID)]
    assert protocol.state is StreamState.STOPPED


@FUZZ
@given(st.text(max_size=500) | st.binary(max_size=500))
def test_plain_text_and_bytes_never_raise(message: str | bytes) -> None:
    """Unstructured input (no JSON object) is one ProtocolViolation, in any state."""
    protocol = MediaStreamProtocol()
    for state_frames in ([], [json.dumps(START)], [json.dumps(START), json.dumps(STOP)]):
        protocol = MediaStreamProtocol()
        for frame in state_frames:
            protocol.receive(frame)
        before = protocol.state
        events = protocol.receive(message)
        check_invariants(protocol, before, events)


@FUZZ
@given(st.integers(min_value=1024, max_value=100_000), st.integers(0, 200_000))
def test_frames_over_the_limit_are_refused_before_parsing(limit: int, size: int) -> None:
    """``MAX_FRAME_BYTES``: a frame longer than the limit is a violation, whatever it holds."""
    protocol = MediaStreamProtocol(max_frame_chars=limit)
    protocol.receive(json.dumps(START))
    padding = " " * max(0, size - len(json.dumps(MEDIA)))
    frame = json.dumps(MEDIA) + padding
    (event,) = protocol.receive(frame)
    if len(frame) > limit:
        assert isinstance(event, ProtocolViolation) and "exceeds the limit" in event.reason
    else:
        assert event == AudioReceived(b"\xff" * 160, 40)
    assert protocol.state is StreamState.STREAMING


# --- regression examples hypothesis found (each one a product bug until fixed) -----------

NOT_AN_OBJECT = [
    {**MEDIA, "media": "payload"},
    {**MEDIA, "media": ["payload"]},
    {**START, "start": [1]},
    {**START, "start": {**START["start"], "mediaFormat": [8000]}},
]


@pytest.mark.parametrize("frame", NOT_AN_OBJECT, ids=lambda f: f["event"])
def test_a_member_that_is_not_an_object_is_a_violation(frame: dict[str, Any]) -> None:
    protocol = MediaStreamProtocol()
    if frame["event"] != "start":
        protocol.receive(json.dumps(START))
    before = protocol.state
    (event,) = protocol.receive(json.dumps(frame))
    assert isinstance(event, ProtocolViolation)
    assert protocol.state is before


@pytest.mark.parametrize(
    "frame",
    [
        {**MEDIA, "media": {**MEDIA["media"], "timestamp": 1e400}},
        {**START, "start": {**START["start"], "mediaFormat": {"sampleRate": 1e400}}},
    ],
    ids=["media-timestamp", "start-sample-rate"],
)
def test_an_infinite_number_is_a_violation(frame: dict[str, Any]) -> None:
    protocol = MediaStreamProtocol()
    if frame["event"] != "start":
        protocol.receive(json.dumps(START))
    (event,) = protocol.receive(json.dumps(frame))
    assert isinstance(event, ProtocolViolation)


def test_a_malformed_start_does_not_wedge_the_stream() -> None:
    protocol = MediaStreamProtocol()
    bad = {**START, "start": {**START["start"], "mediaFormat": {"sampleRate": "fast"}}}
    (event,) = protocol.receive(json.dumps(bad))
    assert isinstance(event, ProtocolViolation)
    assert protocol.state is StreamState.AWAITING_START and protocol.stream_sid is None
    (event,) = protocol.receive(json.dumps(START))
    assert isinstance(event, StreamStarted)
