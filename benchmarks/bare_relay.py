"""The floor: the cheapest correct Twilio Media Streams ⇄ OpenAI Realtime relay we could write.

No transcript, no marks, no persistence, no CRM, no framework: a bare ASGI app under the
same uvicorn (same websocket implementation, same event loop) as ``receptionist serve``.
It checks Twilio's signatures on the webhook and the upgrade, answers with
``<Connect><Stream>``, configures the session (pcmu both ways, server VAD), greets through
``response.create``, passes caller audio and model audio through as the base64 text it
arrives as, and clears the caller's playback when the caller starts speaking.

The load benchmark runs it on the same rig in the same sitting as the service, so the
service's cost can be read as a ratio to this.

``--fast-frames`` gives it the service's own websocket framing (``telephony.ws_server`` for
Twilio's socket, ``telephony.ws_framing``'s masked frames to the model), so the floor can be
read with the same framing as the service too.

Usage: python benchmarks/bare_relay.py --port P [--fast-frames]  (settings from the same
environment variables as the service: PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN, OPENAI_API_KEY,
OPENAI_BASE_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.realtime_link import DirectFrames
from telephony.ws_server import WEBSOCKET_OPTIONS

FAST_FRAMES = False

PUBLIC = os.environ.get("PUBLIC_BASE_URL", "http://localhost:8080").rstrip("/")
WS_PUBLIC = "wss://" + PUBLIC.split("://", 1)[1]
VALIDATOR = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN", ""))
OPENAI_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_WS = (
    os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    .replace("https://", "wss://")
    .replace("http://", "ws://")
    .rstrip("/")
    + "/realtime?model="
    + os.environ.get("OPENAI_REALTIME_MODEL", "gpt-realtime")
)
SESSION = orjson.dumps(
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "instructions": "You answer the phone for a plumbing business after hours.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {"type": "server_vad"},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
            },
        },
    }
)
GREET = orjson.dumps({"type": "response.create"})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await webhook(scope, receive, send)
    elif scope["type"] == "websocket":
        await stream(scope, receive, send)


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


async def webhook(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    params = dict(parse_qsl(body.decode()))
    signature = _header(scope, b"x-twilio-signature")
    path = scope["path"]
    if not VALIDATOR.validate(PUBLIC + path, params, signature):
        await _respond(send, 403, b"")
        return
    if path != "/twilio/voice":
        await _respond(send, 204, b"")
        return
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f'<Stream url="{WS_PUBLIC}/twilio/stream">'
        f'<Parameter name="call_sid" value="{params.get("CallSid", "")}"/>'
        "</Stream></Connect></Response>"
    )
    await _respond(send, 200, twiml.encode(), b"application/xml")


async def _respond(send: Any, status: int, body: bytes, kind: bytes = b"text/plain") -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
    )
    await send({"type": "http.response.body", "body": body})


async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    if not VALIDATOR.validate(WS_PUBLIC + scope["path"], {}, _header(scope, b"x-twilio-signature")):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    stream_sid = ""
    while not stream_sid:  # connected, then start
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        event = orjson.loads(message.get("text") or "{}")
        if event.get("event") == "start":
            stream_sid = event["start"]["streamSid"]
    media_prefix = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
    clear = '{"event":"clear","streamSid":"' + stream_sid + '"}'
    async with connect(
        OPENAI_WS,
        additional_headers={"Authorization": f"Bearer {OPENAI_KEY}"},
        compression=None,
        max_size=None,
    ) as model:
        await model.send(SESSION, text=True)
        await model.send(GREET, text=True)
        to_model = _fast_sender(model) if FAST_FRAMES else model.send

        async def to_caller() -> None:
            async for raw in model:
                event = orjson.loads(raw)
                kind = event.get("type")
                if kind == "response.output_audio.delta":
                    text = media_prefix + event["delta"] + '"}}'
                    await send({"type": "websocket.send", "text": text})
                elif kind == "input_audio_buffer.speech_started":
                    await send({"type": "websocket.send", "text": clear})

        relay = asyncio.create_task(to_caller())
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    break
                event = orjson.loads(message.get("text") or "{}")
                kind = event.get("event")
                if kind == "media":
                    await to_model(
                        '{"type":"input_audio_buffer.append","audio":"'
                        + event["media"]["payload"]
                        + '"}'
                    )
                elif kind == "stop":
                    break
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": 1000})


def _fast_sender(model: ClientConnection) -> Any:
    """Frames written as the service's RealtimeLink writes them, websockets' ``send`` when
    that cannot be done."""
    writer = DirectFrames.for_socket(model)
    if writer is None:
        raise SystemExit("--fast-frames: the installed websockets lacks what it needs")

    async def send(text: str) -> None:
        if not writer.write(model, text.encode()):
            await model.send(text)

    return send


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fast-frames", action="store_true")
    args = parser.parse_args()
    FAST_FRAMES = args.fast_frames
    options: dict[str, Any] = WEBSOCKET_OPTIONS if FAST_FRAMES else {"ws": "websockets-sansio"}
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **options)
