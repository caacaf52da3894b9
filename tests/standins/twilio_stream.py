"""One bidirectional Media Stream from the caller's side, over a real websocket.

The shell around `twilio_media`: it sends ``connected`` and ``start``, then every 20 ms of
audio time (``speed`` × faster than real time; a tick the machine made late is caught up
only with ``catch_up``) plays 20 ms of queued agent audio and sends one inbound ``media``
frame; a reader task applies the app's media/mark/clear as they arrive. The stream ends
when the caller hangs up (``stop`` then close), the app closes the socket, or a REST
update takes the call elsewhere (``stop`` then close, as Twilio does).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.standins import audio
from tests.standins.twilio_media import (
    FRAME_MS,
    AppClear,
    AppMark,
    AppMedia,
    CallerVoice,
    Playback,
    ProtocolViolation,
    parse_app_message,
)
from tests.standins.twilio_rest import LiveCall
from tests.standins.twilio_script import CallResult

StreamEnd = Literal["caller_hangup", "gave_up", "app_closed", "rest_update"]


@dataclass(frozen=True, slots=True)
class StreamIdentity:
    account_sid: str
    call_sid: str
    stream_sid: str
    custom_parameters: dict[str, str]


class StreamSession:
    """Runs one stream to its end; everything observed goes into ``result``."""

    def __init__(
        self,
        *,
        ws: ClientConnection,
        identity: StreamIdentity,
        call: LiveCall,
        voice: CallerVoice,
        result: CallResult,
        speed: float,
        give_up_after_s: float,
        agent_busy: Callable[[], object] | None = None,
        catch_up: bool = False,
    ) -> None:
        self._ws = ws
        self._id = identity
        self._call = call
        self._voice = voice
        self._result = result
        self._speed = speed
        self._give_up_after_s = give_up_after_s
        self._agent_busy = agent_busy
        self._catch_up = catch_up
        self._playback = Playback()
        self._send_lock = asyncio.Lock()
        self._sequence = 0
        self._closing = False
        self._app_closed = asyncio.Event()
        self._cleared = asyncio.Event()
        self._playing_run_ms = 0
        self._utterance_end_tick: int | None = None
        self._heard = bytearray()

    async def run(self) -> StreamEnd:
        loop = asyncio.get_running_loop()
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "start": {
                    "accountSid": self._id.account_sid,
                    "streamSid": self._id.stream_sid,
                    "callSid": self._id.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": dict(self._id.custom_parameters),
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": audio.SAMPLE_RATE,
                        "channels": 1,
                    },
                },
                "streamSid": self._id.stream_sid,
            }
        )
        reader = asyncio.create_task(self._read(), name=f"stream-reader-{self._id.stream_sid}")
        try:
            return await self._tick_loop(loop)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._result.heard_audio += bytes(self._heard)

    async def _tick_loop(self, loop: asyncio.AbstractEventLoop) -> StreamEnd:
        start = loop.time()
        tick = 0
        exhausted_since: float | None = None
        while True:
            if self._app_closed.is_set():
                return "app_closed"
            if self._call.wake.is_set():
                await self._stop_and_close()
                return "rest_update"
            played = self._playback.advance(FRAME_MS * audio.BYTES_PER_MS)
            self._on_played(played.audio, played.stale_epochs, tick)
            for name in played.marks:
                await self._echo_mark(name)
            now = loop.time()
            caller = self._voice.tick(
                agent_playing=bool(played.audio),
                playing_run_ms=self._playing_run_ms,
                now=now,
                agent_queued=self._playback.queued_bytes > 0,
                agent_busy=self._agent_busy is not None and bool(self._agent_busy()),
            )
            if caller.timed_out:
                self._result.script_timeouts.append(caller.timed_out)
            if caller.hang_up:
                await self._stop_and_close()
                return "caller_hangup"
            if self._voice.exhausted:
                exhausted_since = exhausted_since if exhausted_since is not None else now
                if now - exhausted_since > self._give_up_after_s:
                    self._result.gave_up = True
                    await self._stop_and_close()
                    return "gave_up"
            if caller.digit is not None:
                await self._send(
                    {
                        "event": "dtmf",
                        "streamSid": self._id.stream_sid,
                        "dtmf": {"track": "inbound_track", "digit": caller.digit},
                    }
                )
            self._cleared.clear()
            await self._send_media(caller.frame, tick)
            if caller.utterance_ended:
                self._utterance_end_tick = tick + 1
            tick += 1
            if caller.await_clear_s is not None:
                # The audio clock stands still until the app reacts; then it runs on from
                # where it stopped (the wait is not caught up).
                stopped = loop.time()
                if not await self._wait_for_clear(caller.await_clear_s):
                    self._result.script_timeouts.append("InterruptAgent: the app never cleared")
                start += loop.time() - stopped
            # The app closing or a REST update is noticed at the next tick (<= 20 ms later).
            deadline = start + tick * FRAME_MS / 1000 / self._speed
            late = loop.time() - deadline
            if late > 0 and not self._catch_up:
                # A late tick is not caught up with a burst of ticks: after a stall of the
                # machine, the caller's audio clock never runs ahead of the app's loop.
                start += late
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def _wait_for_clear(self, timeout_s: float) -> bool:
        """Wait for the app's ``clear`` (True), the stream's end or ``timeout_s`` (False)."""
        waits = [
            asyncio.ensure_future(event.wait())
            for event in (self._cleared, self._app_closed, self._call.wake)
        ]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return self._cleared.is_set() or self._app_closed.is_set() or self._call.wake.is_set()

    def _on_played(self, played: bytes, stale_epochs: tuple[int, ...], tick: int) -> None:
        result = self._result
        if not played:
            self._playing_run_ms = 0
            return
        self._playing_run_ms += FRAME_MS
        if result.first_audio_ms is None:
            result.first_audio_ms = tick * FRAME_MS
        result.played_audio_ms += len(played) // audio.BYTES_PER_MS
        self._heard += played
        for epoch in stale_epochs:
            result.played_after_clear.append({"epoch": epoch, "tick": tick})
        if self._utterance_end_tick is not None:
            result.turn_latencies_ms.append((tick - self._utterance_end_tick) * FRAME_MS)
            self._utterance_end_tick = None

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                await self._on_app_message(raw)
        except ConnectionClosed:
            pass
        finally:
            if not self._closing:
                self._app_closed.set()

    async def _on_app_message(self, raw: str | bytes) -> None:
        result = self._result
        try:
            result.received.append(json.loads(raw) if isinstance(raw, str) else {"_binary": raw})
        except ValueError:
            result.received.append({"_raw": raw})
        if self._closing:
            return  # after our stop: Twilio has left the stream
        message = parse_app_message(raw, self._id.stream_sid)
        if isinstance(message, ProtocolViolation):
            result.protocol_errors.append(message.reason)
        elif isinstance(message, AppMedia):
            self._playback.add_audio(message.payload)
        elif isinstance(message, AppMark):
            for name in self._playback.add_mark(message.name):
                await self._echo_mark(name)
        elif isinstance(message, AppClear):
            dropped, marks = self._playback.clear()
            result.cleared_audio_ms += dropped // audio.BYTES_PER_MS
            for name in marks:
                await self._echo_mark(name)
            self._cleared.set()

    async def _echo_mark(self, name: str) -> None:
        self._result.marks_echoed.append(name)
        await self._send(
            {"event": "mark", "streamSid": self._id.stream_sid, "mark": {"name": name}}
        )

    async def _send_media(self, frame: bytes, tick: int) -> None:
        await self._send(
            {
                "event": "media",
                "media": {
                    "track": "inbound",
                    "chunk": str(tick + 1),
                    "timestamp": str(tick * FRAME_MS),
                    "payload": base64.b64encode(frame).decode("ascii"),
                },
                "streamSid": self._id.stream_sid,
            }
        )

    async def _send(self, message: dict[str, object]) -> None:
        async with self._send_lock:
            if message["event"] != "connected":
                self._sequence += 1
                message = {"event": message["event"], "sequenceNumber": str(self._sequence)} | {
                    k: v for k, v in message.items() if k != "event"
                }
            self._result.sent.append(message)
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(json.dumps(message))

    async def _stop_and_close(self) -> None:
        await self._send(
            {
                "event": "stop",
                "streamSid": self._id.stream_sid,
                "stop": {"accountSid": self._id.account_sid, "callSid": self._id.call_sid},
            }
        )
        self._closing = True
        await self._ws.close()
