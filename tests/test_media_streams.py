"""The Media Streams core replayed with literal Twilio JSON (no sockets)."""

from __future__ import annotations

import base64
import json

import pytest

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

CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
START = json.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC" + "1" * 32,
            "streamSid": "MZ" + "2" * 32,
            "callSid": "CA" + "3" * 32,
            "tracks": ["inbound"],
            "customParameters": {"business_number": "+15005550006", "caller": "+14155550100"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": "MZ" + "2" * 32,
    }
)
SID = "MZ" + "2" * 32


def media(payload: bytes, ts: int = 20, sid: str = SID) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": "3",
            "media": {
                "track": "inbound",
                "chunk": "2",
                "timestamp": str(ts),
                "payload": base64.b64encode(payload).decode(),
            },
            "streamSid": sid,
        }
    )


def started() -> MediaStreamProtocol:
    protocol = MediaStreamProtocol()
    assert protocol.receive(CONNECTED) == [StreamConnected("Call", "1.0.0")]
    (event,) = protocol.receive(START)
    assert isinstance(event, StreamStarted)
    return protocol


def test_start_carries_call_and_custom_parameters() -> None:
    protocol = MediaStreamProtocol()
    (event,) = protocol.receive(START)
    assert event == StreamStarted(
        stream_sid=SID,
        call_sid="CA" + "3" * 32,
        account_sid="AC" + "1" * 32,
        custom_parameters={"business_number": "+15005550006", "caller": "+14155550100"},
    )
    assert protocol.state is StreamState.STREAMING


def test_media_mark_dtmf_stop() -> None:
    protocol = started()
    assert protocol.receive(media(b"\xff" * 160, ts=40)) == [AudioReceived(b"\xff" * 160, 40)]
    mark = json.dumps(
        {"event": "mark", "streamSid": SID, "sequenceNumber": "4", "mark": {"name": "it:100"}}
    )
    assert protocol.receive(mark) == [MarkEchoed("it:100")]
    dtmf = json.dumps(
        {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "5"}}
    )
    assert protocol.receive(dtmf) == [DtmfReceived("5")]
    stop = json.dumps({"event": "stop", "streamSid": SID, "stop": {"callSid": "CA" + "3" * 32}})
    assert protocol.receive(stop) == [StreamStopped("CA" + "3" * 32)]
    assert protocol.state is StreamState.STOPPED


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '{"event": "telepathy"}',
        '{"event": "media", "streamSid": "MZwrong", "media": {"payload": "AAAA"}}',
        json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "***"}}),
        json.dumps({"event": "media", "streamSid": SID}),
        json.dumps({"event": "mark", "streamSid": SID, "mark": {}}),
        b"\x00\x01",
        "x" * 70000,
    ],
)
def test_bad_frames_become_violations_and_the_stream_goes_on(frame: str | bytes) -> None:
    protocol = started()
    (event,) = protocol.receive(frame)
    assert isinstance(event, ProtocolViolation)
    assert protocol.state is StreamState.STREAMING
    assert protocol.receive(media(b"\x00" * 160)) == [AudioReceived(b"\x00" * 160, 20)]


def test_media_before_start_is_a_violation() -> None:
    protocol = MediaStreamProtocol()
    (event,) = protocol.receive(media(b"\xff" * 160))
    assert isinstance(event, ProtocolViolation)


def test_outbound_frames() -> None:
    protocol = started()
    assert json.loads(protocol.media(b"\x01\x02")) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": "AQI="},
    }
    assert json.loads(protocol.mark("x:20")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "x:20"},
    }
    assert json.loads(protocol.clear()) == {"event": "clear", "streamSid": SID}


def test_outbound_frames_escape_what_the_stream_and_the_model_named() -> None:
    """The frames are built by concatenation around a JSON-escaped streamSid and mark name:
    quotes, backslashes and control characters in either still give valid JSON."""
    odd_sid = 'MZ"},"event":"clear\\\n'
    protocol = MediaStreamProtocol()
    start = {"event": "start", "start": {"streamSid": odd_sid, "callSid": "CA1"}}
    (event,) = protocol.receive(json.dumps(start))
    assert not isinstance(event, ProtocolViolation)
    odd_name = 'item"1\\:\u2028\t:120'
    assert json.loads(protocol.media_base64("AQI=")) == {
        "event": "media",
        "streamSid": odd_sid,
        "media": {"payload": "AQI="},
    }
    assert json.loads(protocol.mark(odd_name)) == {
        "event": "mark",
        "streamSid": odd_sid,
        "mark": {"name": odd_name},
    }


def test_sending_before_start_is_our_bug() -> None:
    with pytest.raises(MediaStreamStateError):
        MediaStreamProtocol().media(b"\xff")
