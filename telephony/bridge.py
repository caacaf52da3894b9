"""The per-call bridge: Twilio Media Stream ⇄ OpenAI Realtime, a thin shell around two
sans-I/O cores (``telephony.media_streams`` and ``agent.realtime_core``).

One ``asyncio.TaskGroup`` per call owns every task: the Twilio reader, the Realtime reader,
the progress saver (its saves are written with other calls', ``telephony.progress``) and
any tool side effects. Audio to the caller is written as soon as it
arrives (Twilio buffers it), so a ``clear`` is never stuck behind our own queue.

Failure paths:
- Realtime unreachable at call start, or dropped mid-call: what was said is saved, the
  stream is closed, and Twilio moves on to the ``<Redirect>`` after ``<Connect>`` — the
  scripted intake picks up with an apology and skips what is already known.
- Malformed, unknown or binary Twilio frames: logged (no contents), counted and ignored.
- A ``start`` without a valid token for a live call of that business (replayed, forged,
  finished, another business's, a second stream): closed with 1008 before any Realtime
  session opens (``BridgeContext.admit_stream``).
- A routine progress save fails (the database is locked or unreachable for a moment):
  logged and counted, the call goes on, and the save is retried on the next tick.
- Caller hangs up (``stop``) or the socket drops: the call is finalized from what was saved.
- An unexpected error inside the bridge: what was said is saved and the call is finalized
  (never left active and undelivered).
- ``flag_emergency``: the alert is *recorded* at once (``escalate``) and sent by the
  service's escalation loop, outside this call's task group — a takeover or a dropped
  socket right after the flag cannot cancel it (``telephony.escalation``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.types import Receive, Send
from starlette.websockets import WebSocketDisconnect

from agent.business import Business
from agent.realtime_core import (
    Action,
    ClearPlayback,
    Conversation,
    HangUp,
    MarkPlayback,
    ModelError,
    PlayAudio,
    RunTool,
    SendToModel,
    SessionConfig,
    ToolRefused,
    caller_audio_message,
)
from agent.tools import TOOLS, FlagEmergency, RequestCallback
from crm.store import ProgressSnapshot, Store
from telephony import metrics
from telephony.errors import StreamRefused, scrub_numbers
from telephony.media_streams import (
    AudioReceived,
    DtmfReceived,
    MarkEchoed,
    MediaStreamProtocol,
    ProtocolViolation,
    StreamStarted,
    StreamStopped,
)
from telephony.progress import ProgressWriter

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
"""A quiet call still marks itself live this often (well inside ``RECOVERY_IDLE_SECONDS``)."""

BRIDGE_FAILED = "bridge_failed"
"""The call's note when the bridge failed: Twilio's follow-up request gets an apology."""


class RealtimeConnection(Protocol):
    """The part of openai's ``AsyncRealtimeConnection`` the bridge uses."""

    async def send_raw(self, data: bytes | str) -> None: ...
    async def recv_bytes(self) -> bytes: ...
    async def close(self, *, code: int = 1000, reason: str = "") -> None: ...


ConnectRealtime = Callable[[], Awaitable[RealtimeConnection]]


class _CallOver(Exception):
    """Raised inside the TaskGroup to end the call's tasks; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BridgeContext:
    """Everything one call's bridge needs from the service."""

    store: Store
    progress: ProgressWriter
    connect_realtime: ConnectRealtime | None
    admit_stream: Callable[[StreamStarted], Business]
    instructions_for: Callable[[Business], str]
    greeting_audio_for: Callable[[Business], bytes | None]
    hang_up: Callable[[str], Awaitable[None]] | None
    escalate: Callable[[str, str], object]
    can_alert: bool
    transfer: Callable[[str, Business], Awaitable[object]] | None
    finalize: Callable[[str, str], Awaitable[Any]]
    live_calls: set[str]
    voice: str = "alloy"
    connect_timeout: float = 8.0
    max_frame_chars: int = 65536
    max_call_seconds: int = 1800
    progress_interval: float = 2.0
    start_timeout: float = 10.0
    audio_batch_frames: int = 1
    """Inbound 20 ms frames per ``input_audio_buffer.append`` (1: each frame as it comes)."""


class CallBridge:
    """Runs one Media Stream from ``start`` to its end.

    ``receive`` and ``send`` are the ASGI server's own callables for the accepted websocket:
    the 50-a-second frames go through them without a framework's per-message wrappers."""

    def __init__(self, receive: Receive, send: Send, context: BridgeContext) -> None:
        self._asgi_receive = receive
        self._asgi_send = send
        self.ctx = context
        self.stream = MediaStreamProtocol(max_frame_chars=context.max_frame_chars)
        self.call_sid = ""
        self.business: Business | None = None
        self.conversation: Conversation | None = None
        self.model: RealtimeConnection | None = None
        self.group: asyncio.TaskGroup | None = None
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._saved_revision = -1
        self._save_lock = asyncio.Lock()
        self._pending_audio: list[bytes] = []

    def now(self) -> float:
        return self._loop.time() - self._t0

    # -- entry point -----------------------------------------------------------------

    async def run(self) -> None:
        started = await self._await_start()
        if started is None:
            return
        try:
            # A database read and claim: in a thread, like every database call here.
            self.business = await asyncio.to_thread(self.ctx.admit_stream, started)
        except StreamRefused as exc:
            metrics.STREAMS_REFUSED.inc()
            log.warning("refused a media stream for call %r: %s", started.call_sid[:40], exc.reason)
            await self._close_stream(code=1008)
            return
        self.call_sid = started.call_sid
        self.ctx.live_calls.add(self.call_sid)  # no await between the admission and this
        self._t0 = self._loop.time()
        metrics.STREAMS.inc()
        try:
            reason = await self._converse()
        except Exception as exc:  # a bug or an unforeseen frame must not strand the call
            log.exception("call %s: the bridge failed (%s)", self.call_sid, type(exc).__name__)
            with contextlib.suppress(Exception):
                await self._save_progress()
            # Before the stream closes: the <Redirect> webhook reads it.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.ctx.store.set_notes, self.call_sid, BRIDGE_FAILED)
            reason = "bridge error"
        finally:
            self.ctx.live_calls.discard(self.call_sid)
        if reason == "takeover":
            await self._close_stream()  # Twilio follows the <Redirect> into the scripted intake
            return
        await self._close_stream()
        await self.ctx.finalize(self.call_sid, reason)

    async def _await_start(self) -> StreamStarted | None:
        try:
            async with asyncio.timeout(self.ctx.start_timeout):
                while True:
                    text = await self._receive()
                    for event in self.stream.receive(text):
                        if isinstance(event, StreamStarted):
                            return event
                        if isinstance(event, ProtocolViolation):
                            self._violation(event)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            log.warning("media stream ended before its start message")
            return None

    # -- the conversation ------------------------------------------------------------

    async def _converse(self) -> str:
        assert self.business is not None
        if self.ctx.connect_realtime is None:
            await self._takeover_note("OpenAI is not configured")
            return "takeover"
        config = SessionConfig(
            instructions=self.ctx.instructions_for(self.business),
            voice=self.ctx.voice,
            tools=tuple(TOOLS),
            greeting=self.business.greeting,
            warm_transfer=self.business.warm_transfer and self.ctx.transfer is not None,
            on_call_alerts=bool(self.business.on_call_phone) and self.ctx.can_alert,
        )
        self.conversation = Conversation(config)
        opening = self.conversation.start(self.ctx.greeting_audio_for(self.business))
        # The pre-rendered greeting plays while the Realtime session connects.
        try:
            await self._execute([a for a in opening if isinstance(a, PlayAudio)])
        except _CallOver as over:
            return over.reason
        try:
            async with asyncio.timeout(self.ctx.connect_timeout):
                self.model = await self.ctx.connect_realtime()
        except Exception as exc:  # any failure to connect means: hand over, never dead air
            metrics.REALTIME_FAILURES.labels(stage="connect").inc()
            log.error("call %s: Realtime connection failed (%s)", self.call_sid, type(exc).__name__)
            await self._takeover_note("Realtime connection failed at call start")
            await self._let_greeting_finish()
            return "takeover"
        reason = "ended"
        try:
            await self._execute([a for a in opening if not isinstance(a, PlayAudio)])
            async with asyncio.TaskGroup() as group:
                self.group = group
                group.create_task(self._read_twilio())
                group.create_task(self._read_model())
                group.create_task(self._save_progress_periodically())
                group.create_task(self._limit_call_length())
        except* _CallOver as over:
            reason = (
                over.exceptions[0].reason if isinstance(over.exceptions[0], _CallOver) else "ended"
            )
        finally:
            await self._save_progress()
            with contextlib.suppress(Exception):
                await self.model.close()
        if reason == "takeover":
            await self._takeover_note("Realtime connection dropped mid-call")
        return reason

    async def _let_greeting_finish(self, limit: float = 15.0) -> None:
        """Before handing over, let the caller hear the greeting out instead of cutting it."""
        conversation = self.conversation
        if conversation is None:
            return
        with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError):
            async with asyncio.timeout(limit):
                while conversation.audio_still_playing():
                    for event in self.stream.receive(await self._receive()):
                        if isinstance(event, MarkEchoed):
                            conversation.mark_echoed(event.name)
                        elif isinstance(event, StreamStopped):
                            return

    async def _read_twilio(self) -> None:
        assert self.conversation is not None and self.model is not None
        while True:
            try:
                text = await self._receive()
            except (WebSocketDisconnect, RuntimeError):
                raise _CallOver("stream closed") from None
            for event in self.stream.receive(text):
                if isinstance(event, AudioReceived):
                    await self._send_caller_audio(event)
                elif isinstance(event, MarkEchoed):
                    await self._execute(self.conversation.mark_echoed(event.name))
                elif isinstance(event, StreamStopped):
                    raise _CallOver("caller hung up")
                elif isinstance(event, ProtocolViolation):
                    self._violation(event)
                elif isinstance(event, DtmfReceived):
                    log.info("call %s: caller pressed a key", self.call_sid)

    async def _read_model(self) -> None:
        assert self.conversation is not None and self.model is not None
        while True:
            try:
                raw = await self.model.recv_bytes()
            except Exception as exc:  # the socket dropped: the intake takes over
                metrics.REALTIME_FAILURES.labels(stage="mid_call").inc()
                log.error(
                    "call %s: Realtime connection lost (%s)", self.call_sid, type(exc).__name__
                )
                raise _CallOver("takeover") from None
            try:
                event = orjson.loads(raw)
            except ValueError:
                log.warning("call %s: Realtime sent a non-JSON message", self.call_sid)
                continue
            if isinstance(event, dict):
                await self._execute(self.conversation.server_event(event, self.now()))

    async def _save_progress_periodically(self) -> None:
        quiet = 0.0
        while True:
            await asyncio.sleep(self.ctx.progress_interval)
            try:
                if await self._save_progress(now=False):
                    quiet = 0.0
                    continue
                # Nothing new was said: no transcript write, but still a heartbeat now and
                # then, so recovery (RECOVERY_IDLE_SECONDS) never takes a quiet live call for
                # a dead one.
                quiet += self.ctx.progress_interval
                if quiet >= HEARTBEAT_SECONDS:
                    await asyncio.to_thread(self.ctx.store.touch, self.call_sid)
                    quiet = 0.0
            except Exception as exc:  # the database hiccupped: the call goes on, retried next
                metrics.PROGRESS_SAVE_FAILURES.inc()
                log.error(
                    "call %s: saving progress failed (%s); retrying in %g s",
                    self.call_sid,
                    type(exc).__name__,
                    self.ctx.progress_interval,
                )

    async def _limit_call_length(self) -> None:
        await asyncio.sleep(self.ctx.max_call_seconds)
        log.warning("call %s reached the maximum call length", self.call_sid)
        # Noted before the stream closes: the TwiML after the stream must hang up, not start
        # the intake (finalizing, which also stops it, may still be running then).
        await asyncio.to_thread(self.ctx.store.mark_ended_by_agent, self.call_sid)
        raise _CallOver("maximum call length")

    # -- actions ---------------------------------------------------------------------

    async def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, PlayAudio):
                if action.base64:  # the model's own base64 text, passed through
                    await self._send_twilio(self.stream.media_base64(action.base64))
                else:
                    await self._send_twilio(self.stream.media(action.audio))
                if action.mark:
                    await self._send_twilio(self.stream.mark(action.mark))
            elif isinstance(action, MarkPlayback):
                await self._send_twilio(self.stream.mark(action.name))
            elif isinstance(action, SendToModel):
                await self._send_model(action.event)
            elif isinstance(action, ClearPlayback):
                await self._send_twilio(self.stream.clear())
                metrics.BARGE_INS.inc()
            elif isinstance(action, RunTool):
                await self._run_tool(action)
            elif isinstance(action, HangUp):
                await self._hang_up()
            elif isinstance(action, ToolRefused):
                log.warning(
                    "call %s: tool %r refused: %s", self.call_sid, action.name, action.reason
                )
            elif isinstance(action, ModelError):
                log.warning("call %s: Realtime error %s", self.call_sid, action.code)

    async def _receive(self) -> str | bytes:
        """The next frame; a binary frame (Twilio sends none) is counted and handed to the
        protocol core, which reports it as a violation (``receive_text`` would crash)."""
        message = await self._asgi_receive()
        if message["type"] != "websocket.receive":  # websocket.disconnect
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        text = message.get("text")
        if text is not None:
            return str(text)
        metrics.BINARY_FRAMES.inc()
        return bytes(message.get("bytes") or b"")

    async def _send_twilio(self, frame: str) -> None:
        try:
            await self._asgi_send({"type": "websocket.send", "text": frame})
        except (OSError, RuntimeError):  # uvicorn: ClientDisconnected (an OSError), or closed
            raise _CallOver("stream closed") from None

    async def _send_model(self, event: dict[str, Any]) -> None:
        await self._send_model_raw(orjson.dumps(event))

    async def _send_caller_audio(self, frame: AudioReceived) -> None:
        """The hot path: Twilio's base64 goes to the model as it came (or batched)."""
        if self.ctx.audio_batch_frames <= 1:
            await self._send_model_raw(caller_audio_message(frame.base64))
            return
        self._pending_audio.append(frame.payload)
        if len(self._pending_audio) >= self.ctx.audio_batch_frames:
            audio = b"".join(self._pending_audio)
            self._pending_audio.clear()
            await self._send_model_raw(caller_audio_message(base64.b64encode(audio).decode()))

    async def _send_model_raw(self, data: bytes | str) -> None:
        assert self.model is not None
        try:
            await self.model.send_raw(data)
        except Exception as exc:
            log.error("call %s: sending to Realtime failed (%s)", self.call_sid, type(exc).__name__)
            raise _CallOver("takeover") from None

    async def _run_tool(self, action: RunTool) -> None:
        assert self.business is not None
        request = action.request
        log.info("call %s: tool %s", self.call_sid, type(request).__name__)
        group = self.group
        if isinstance(request, FlagEmergency):
            # The alert text is built from the stored details: saved first (in a thread),
            # then the alert is recorded as owed, in order, before the next model event.
            await self._save_progress()
            await asyncio.to_thread(self.ctx.escalate, self.call_sid, request.reason)
            warm = self.business.warm_transfer and self.ctx.transfer is not None
            if warm and group is not None and self.ctx.transfer is not None:
                transfer, business = self.ctx.transfer, self.business
                group.create_task(self._guard(lambda: transfer(self.call_sid, business)))
        elif isinstance(request, RequestCallback):
            await self._save_progress()

    async def _guard(self, work: Callable[[], Awaitable[object]]) -> None:
        """Side effects never take the call down; failures are logged for staff. The work
        starts inside the task, so a call that ends first leaves no coroutine un-awaited."""
        try:
            await work()
        except Exception as exc:
            log.error(
                "call %s: tool side effect failed (%s: %s)",
                self.call_sid,
                type(exc).__name__,
                scrub_numbers(str(exc)),
            )

    async def _hang_up(self) -> None:
        await asyncio.to_thread(self.ctx.store.mark_ended_by_agent, self.call_sid)
        if self.ctx.hang_up is not None:
            try:
                await self.ctx.hang_up(self.call_sid)
            except Exception as exc:
                log.error("call %s: REST hangup failed (%s)", self.call_sid, type(exc).__name__)
        raise _CallOver("agent ended the call")

    # -- bookkeeping -----------------------------------------------------------------

    async def _save_progress(self, *, now: bool = True) -> bool:
        """Save the transcript and details if they changed since the last save, in a worker
        thread (never a blocking database call on the event loop); ``now=False`` (the
        periodic save) lets the process's progress writer group it with other calls'.
        Saves are serialized, so an older snapshot can never land after a newer one."""
        conversation = self.conversation
        if conversation is None:
            return False
        async with self._save_lock:
            revision = conversation.revision
            if revision == self._saved_revision:
                return False
            snapshot = ProgressSnapshot(
                self.call_sid, conversation.transcript(), conversation.details.learned()
            )
            await self.ctx.progress.save(snapshot, now=now)
            self._saved_revision = revision
            return True

    async def _takeover_note(self, why: str) -> None:
        log.warning("call %s: %s; the scripted intake takes over", self.call_sid, why)
        await asyncio.to_thread(self.ctx.store.set_mode, self.call_sid, "intake")

    def _violation(self, event: ProtocolViolation) -> None:
        metrics.STREAM_VIOLATIONS.inc()
        log.warning(
            "call %s: ignored a Media Streams frame: %s", self.call_sid or "?", event.reason
        )

    async def _close_stream(self, code: int = 1000) -> None:
        with contextlib.suppress(Exception):  # already closed or gone: nothing left to close
            await self._asgi_send({"type": "websocket.close", "code": code, "reason": ""})
