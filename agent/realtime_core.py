"""The Realtime conversation, sans I/O: OpenAI Realtime events and Twilio playback marks in,
actions out.

The shell (``telephony.bridge``) feeds this object the server events it reads from the
Realtime websocket (as plain dicts) and the marks Twilio echoes back, and carries out the
actions it returns: send an event to the model, play audio to the caller (followed by a
mark every ``mark_every_ms`` of audio and at the end of each answer), clear the caller's
playback buffer, run a tool's side effects, hang up.
Time is passed in as seconds since the stream started.

Barge-in: when the caller starts speaking over the agent, the caller's buffer is cleared at
once and the agent's item is truncated to the audio the caller heard, known from the last
mark Twilio echoed (at most ``mark_every_ms`` short of it) — never more than was sent. One
mark per 100 ms instead of one per audio delta cuts the Twilio messages of an answer sent in
20 ms deltas from three per delta (media, mark, its echo) to 1.4, at no cost to barge-in
reaction time.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from agent.audio import PCMU_BYTES_PER_MS, chunks
from agent.details import CallerDetails
from agent.summary import TranscriptTurn
from agent.tools import (
    EndCall,
    FlagEmergency,
    RecordDetails,
    RequestCallback,
    ToolArgumentsError,
    ToolRequest,
    parse_tool_call,
    tool_result,
)


@dataclass(frozen=True, slots=True)
class SendToModel:
    """Send this client event to the Realtime API."""

    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """Send μ-law audio to the caller, then a mark named ``mark`` (none when it is empty).

    ``base64`` is the same audio as base64 text when the model sent it that way (validated),
    so the shell can pass it to Twilio without encoding it again."""

    audio: bytes
    mark: str
    base64: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MarkPlayback:
    """Send a mark named ``name`` after the audio already sent (the end of an answer)."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearPlayback:
    """Drop everything Twilio has buffered for the caller, now."""


@dataclass(frozen=True, slots=True)
class RunTool:
    """Carry out a tool's side effects (SMS, transfer); the model already has its answer."""

    call_id: str
    request: ToolRequest


@dataclass(frozen=True, slots=True)
class ToolRefused:
    """The model called a tool wrongly; it was told why. ``reason`` names fields, not values."""

    call_id: str
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call: the goodbye has played."""

    reason: str


@dataclass(frozen=True, slots=True)
class ModelError:
    """The Realtime API reported an error (logged; the call goes on)."""

    code: str
    message: str


Action = (
    SendToModel
    | PlayAudio
    | MarkPlayback
    | ClearPlayback
    | RunTool
    | ToolRefused
    | HangUp
    | ModelError
)


@dataclass(slots=True)
class _AgentItem:
    item_id: str
    started_at: float
    sent_ms: int = 0
    marked_ms: int = 0
    played_ms: int = 0
    truncated: bool = False
    text: str = ""
    local: bool = False  # played by us (the greeting), not an audio item of the model's


GREETING_ITEM = "greeting"
GREETING_CHUNK_MS = 200


@dataclass(slots=True)
class _CallerItem:
    item_id: str
    started_at: float
    text: str = ""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What the Realtime session is set up with at the start of the call."""

    instructions: str
    voice: str = "alloy"
    tools: tuple[dict[str, Any], ...] = ()
    transcription_model: str = "gpt-4o-mini-transcribe"
    greeting: str | None = None
    warm_transfer: bool = False  # an emergency connects the caller to the on-call phone
    on_call_alerts: bool = True  # an emergency can be texted to an on-call phone
    vad_silence_ms: int = 500
    vad_prefix_ms: int = 300
    vad_threshold: float = 0.5
    mark_every_ms: int = 100
    """Model audio is followed by a Twilio mark once this much of it is unmarked (and always
    at the end of an answer): a barge-in truncates to what was heard, known to this much."""


def session_update(config: SessionConfig) -> dict[str, Any]:
    """The ``session.update`` for a phone call: pcmu both ways, server VAD, transcription."""
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "instructions": config.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": config.transcription_model},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": config.vad_threshold,
                        "prefix_padding_ms": config.vad_prefix_ms,
                        "silence_duration_ms": config.vad_silence_ms,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": config.voice},
            },
            "tools": list(config.tools),
            "tool_choice": "auto",
        },
    }


def caller_audio_message(audio_base64: str) -> str:
    """The ``input_audio_buffer.append`` text for one inbound frame, from Twilio's own base64.

    The hot path: 50 times a second per call. ``audio_base64`` must already be validated
    base64 (only ``A-Z a-z 0-9 + / =``, so nothing in it needs JSON escaping)."""
    return '{"type":"input_audio_buffer.append","audio":"' + audio_base64 + '"}'


class Conversation:
    """One call's Realtime conversation state."""

    def __init__(self, config: SessionConfig, *, known: CallerDetails | None = None) -> None:
        self.config = config
        self.revision = 0
        """Bumped whenever the transcript or the details change: the shell saves only then."""
        self.details = known or CallerDetails()
        self.tool_requests: list[ToolRequest] = []
        self.hangup_requested = False
        self.hung_up = False
        self._agent: dict[str, _AgentItem] = {}
        self._caller: dict[str, _CallerItem] = {}
        self._playing: _AgentItem | None = None
        self._response_active = False
        self._create_after_response = False

    # -- inputs ----------------------------------------------------------------------

    def start(self, greeting_audio: bytes | None = None) -> list[Action]:
        """Configure the session and greet the caller.

        With ``greeting_audio`` (pre-rendered), the greeting plays at once, in chunks each
        followed by a mark, and the model is told it was said; without it, the model says it.
        """
        actions: list[Action] = []
        if greeting_audio and self.config.greeting:
            item = _AgentItem(GREETING_ITEM, 0.0, text=self.config.greeting, local=True)
            self._agent[GREETING_ITEM] = item
            self._playing = item
            for chunk in chunks(greeting_audio, GREETING_CHUNK_MS):
                item.sent_ms += len(chunk) // PCMU_BYTES_PER_MS
                actions.append(PlayAudio(chunk, f"{GREETING_ITEM}:{item.sent_ms}"))
            actions.append(SendToModel(session_update(self.config)))
            actions.append(
                SendToModel(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": self.config.greeting}],
                        },
                    }
                )
            )
            return actions
        actions.append(SendToModel(session_update(self.config)))
        if self.config.greeting:
            actions.append(
                SendToModel(
                    {
                        "type": "response.create",
                        "response": {
                            "instructions": "Greet the caller with exactly these words, "
                            f"then listen: {self.config.greeting}"
                        },
                    }
                )
            )
        return actions

    @staticmethod
    def caller_audio(payload: bytes) -> SendToModel:
        """Forward one inbound Twilio frame (already pcmu: no transcoding)."""
        audio = base64.b64encode(payload).decode("ascii")
        return SendToModel({"type": "input_audio_buffer.append", "audio": audio})

    def mark_echoed(self, name: str) -> list[Action]:
        """Twilio played the audio up to ``name`` (or dropped it on clear)."""
        item_id, _, ms_text = name.rpartition(":")
        item = self._agent.get(item_id)
        if item is None or item.truncated or not ms_text.isdigit():
            # Marks echoed after a clear describe discarded audio, not heard audio.
            return []
        item.played_ms = max(item.played_ms, min(int(ms_text), item.sent_ms))
        return self._maybe_hang_up()

    def server_event(self, event: dict[str, Any], now: float) -> list[Action]:
        """One event from the Realtime API."""
        kind = event.get("type")
        handler = _SERVER_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return []
        return handler(self, event, now)

    # -- server event handlers -------------------------------------------------------

    def _on_speech_started(self, event: dict[str, Any], now: float) -> list[Action]:
        item_id = str(event.get("item_id", ""))
        start = max(0.0, float(event.get("audio_start_ms", now * 1000)) / 1000)
        if item_id:
            self._caller.setdefault(item_id, _CallerItem(item_id, start))
        return self._barge_in()

    def _barge_in(self) -> list[Action]:
        item = self._playing
        if item is None or item.truncated or item.played_ms >= item.sent_ms:
            return []
        item.truncated = True
        self.revision += 1
        if item.local:  # the model never had this audio: nothing to truncate on its side
            return [ClearPlayback()]
        return [
            ClearPlayback(),
            SendToModel(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item.item_id,
                    "content_index": 0,
                    "audio_end_ms": item.played_ms,
                }
            ),
        ]

    def _on_transcription(self, event: dict[str, Any], now: float) -> list[Action]:
        item_id = str(event.get("item_id", ""))
        caller = self._caller.setdefault(item_id, _CallerItem(item_id, now))
        caller.text = str(event.get("transcript", "")).strip()
        self.revision += 1
        return []

    def _on_audio_delta(self, event: dict[str, Any], now: float) -> list[Action]:
        item_id = str(event.get("item_id", ""))
        item = self._agent.get(item_id)
        if item is None:
            item = self._agent[item_id] = _AgentItem(item_id, now)
        if item.truncated:
            return []
        delta = event.get("delta", "")
        if not isinstance(delta, str):
            delta = str(delta)
        try:
            # Strict: the text goes on to Twilio inside a JSON string as it is.
            audio = binascii.a2b_base64(delta, strict_mode=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            return [ModelError("bad_audio", "audio delta is not base64")]
        if not audio:
            return []
        self._playing = item
        item.sent_ms += len(audio) // PCMU_BYTES_PER_MS
        mark = ""
        # Outside a response (a late delta) nothing else would mark it: marked at once.
        if not self._response_active or item.sent_ms - item.marked_ms >= self.config.mark_every_ms:
            item.marked_ms = item.sent_ms
            mark = f"{item_id}:{item.sent_ms}"
        return [PlayAudio(audio, mark, delta)]

    def _on_audio_done(self, event: dict[str, Any], now: float) -> list[Action]:
        item = self._agent.get(str(event.get("item_id", "")))
        return self._mark_rest(item) if item is not None else []

    @staticmethod
    def _mark_rest(item: _AgentItem) -> list[Action]:
        """A mark after the item's last audio, if that audio is not marked yet."""
        if item.truncated or item.local or item.marked_ms >= item.sent_ms:
            return []
        item.marked_ms = item.sent_ms
        return [MarkPlayback(f"{item.item_id}:{item.sent_ms}")]

    def _on_agent_transcript(self, event: dict[str, Any], now: float) -> list[Action]:
        item_id = str(event.get("item_id", ""))
        item = self._agent.setdefault(item_id, _AgentItem(item_id, now))
        if event.get("type", "").endswith(".done"):
            item.text = str(event.get("transcript", ""))
        else:
            item.text += str(event.get("delta", ""))
        self.revision += 1
        return []

    def _on_response_created(self, event: dict[str, Any], now: float) -> list[Action]:
        self._response_active = True
        return []

    def _on_response_done(self, event: dict[str, Any], now: float) -> list[Action]:
        self._response_active = False
        actions: list[Action] = []
        for item in self._agent.values():  # in case an item's audio.done was not sent
            actions.extend(self._mark_rest(item))
        if self._create_after_response:
            self._create_after_response = False
            actions.append(SendToModel({"type": "response.create"}))
        else:
            actions.extend(self._maybe_hang_up())
        return actions

    def _on_function_call(self, event: dict[str, Any], now: float) -> list[Action]:
        call_id = str(event.get("call_id", ""))
        name = str(event.get("name", ""))
        actions: list[Action] = []
        try:
            request = parse_tool_call(name, str(event.get("arguments", "")))
        except ToolArgumentsError as exc:
            output = json.dumps({"ok": False, "error": str(exc)})
            actions.append(ToolRefused(call_id, name[:64], str(exc)))
        else:
            self._apply_tool(request)
            self.tool_requests.append(request)
            actions.append(RunTool(call_id, request))
            output = tool_result(
                request,
                transferring=self.config.warm_transfer,
                alerting=self.config.on_call_alerts,
            )
        actions.append(
            SendToModel(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": call_id, "output": output},
                }
            )
        )
        if self._response_active:
            self._create_after_response = True
        else:
            actions.append(SendToModel({"type": "response.create"}))
        return actions

    def _apply_tool(self, request: ToolRequest) -> None:
        self.revision += 1
        if isinstance(request, RecordDetails):
            self.details = self.details.merged_with(request.details)
        elif isinstance(request, RequestCallback):
            update = CallerDetails(
                callback_requested=True,
                callback_window=request.window,
                callback_phone=request.phone,
            )
            self.details = self.details.merged_with(update)
        elif isinstance(request, FlagEmergency):
            update = request.details.merged_with(CallerDetails(is_emergency=True, urgency=5))
            self.details = self.details.merged_with(update)
        elif isinstance(request, EndCall):
            self.hangup_requested = True

    def _on_error(self, event: dict[str, Any], now: float) -> list[Action]:
        error = event.get("error") or {}
        if not isinstance(error, dict):
            error = {}
        return [
            ModelError(
                str(error.get("code") or error.get("type") or "error"),
                str(error.get("message", "")),
            )
        ]

    def _maybe_hang_up(self) -> list[Action]:
        if not self.hangup_requested or self.hung_up or self._response_active:
            return []
        if self._create_after_response:
            return []
        if self.audio_still_playing():
            return []
        self.hung_up = True
        return [HangUp("end_call")]

    # -- results ---------------------------------------------------------------------

    def audio_still_playing(self) -> bool:
        """Some agent audio sent to the caller has not been heard yet."""
        return any(not i.truncated and i.played_ms < i.sent_ms for i in self._agent.values())

    def transcript(self) -> list[TranscriptTurn]:
        """Turns in order of their start; interrupted agent turns cut to what was heard."""
        turns: list[TranscriptTurn] = []
        for caller in self._caller.values():
            if caller.text:
                turns.append(
                    TranscriptTurn(speaker="caller", text=caller.text, start=caller.started_at)
                )
        for item in self._agent.values():
            text = item.text.strip()
            if item.truncated and item.sent_ms:
                text = heard_part(text, item.played_ms / item.sent_ms)
            if text:
                turns.append(
                    TranscriptTurn(
                        speaker="agent",
                        text=text,
                        start=item.started_at,
                        interrupted=item.truncated,
                    )
                )
        turns.sort(key=lambda t: t.start)
        return turns


def heard_part(text: str, fraction: float) -> str:
    """The words of ``text`` the caller heard, assuming speech spread evenly over the audio."""
    words = text.split()
    keep = math.ceil(len(words) * max(0.0, min(1.0, fraction)))
    return " ".join(words[:keep])


_SERVER_HANDLERS = {
    "input_audio_buffer.speech_started": Conversation._on_speech_started,
    "conversation.item.input_audio_transcription.completed": Conversation._on_transcription,
    "response.output_audio.delta": Conversation._on_audio_delta,
    "response.output_audio.done": Conversation._on_audio_done,
    "response.output_audio_transcript.delta": Conversation._on_agent_transcript,
    "response.output_audio_transcript.done": Conversation._on_agent_transcript,
    "response.created": Conversation._on_response_created,
    "response.done": Conversation._on_response_done,
    "response.function_call_arguments.done": Conversation._on_function_call,
    "error": Conversation._on_error,
}
