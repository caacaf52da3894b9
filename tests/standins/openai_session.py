"""One Realtime session of the stand-in: the conversation state machine, sans I/O.

``RealtimeSession.receive(text)`` takes one client websocket message and returns the
server events it causes; ``next_step()`` hands the shell the active response's next
events. Every client event the real API would reject gets the real ``error`` event and a
line in ``SessionLog.violations``.

Turn state (per session; the script cursor itself is shared by the stand-in):

    IDLE --utterance committed--> UTTERANCE --response--> IDLE (reply played)
                                            \\--response with tool calls--> TOOL_OUTPUTS
    TOOL_OUTPUTS --response.create--> IDLE (reply played)
"""

from __future__ import annotations

import base64
import binascii
import copy
import enum
import json
import time
from collections.abc import Callable
from typing import Any

from tests.standins import audio
from tests.standins.openai_protocol import ApiError, check_client_event, error_event
from tests.standins.openai_responses import ResponseKind, ResponseRun, Step, cut_transcript
from tests.standins.openai_script import ScriptedTurn, SessionLog, new_id
from tests.standins.openai_vad import EnergyVad, SpeechStarted, SpeechStopped

MIN_COMMIT_MS = 100
DEFAULT_TURN_DETECTION: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}


class TurnPhase(enum.Enum):
    IDLE = "idle"
    UTTERANCE = "utterance"
    TOOL_OUTPUTS = "tool_outputs"


def default_session(model: str) -> dict[str, Any]:
    """The session object of ``session.created``: the GA defaults."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful, witty, and friendly AI.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(DEFAULT_TURN_DETECTION),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
    }


def _merge(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Fields present in the update replace or (for objects of the same type) merge."""
    merged = dict(current)
    for key, value in update.items():
        old = merged.get(key)
        if (
            isinstance(value, dict)
            and isinstance(old, dict)
            and old.get("type", value.get("type")) == value.get("type", old.get("type"))
        ):
            merged[key] = _merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class RealtimeSession:
    """The server side of one Realtime websocket connection."""

    def __init__(
        self,
        *,
        log: SessionLog,
        next_turn: Callable[[], ScriptedTurn | None],
        greeting: str | None,
        greeting_ms: int,
        chunk_ms: int = 100,
    ) -> None:
        self.log = log
        self._chunk_ms = chunk_ms
        self._next_turn = next_turn
        self._greeting = greeting
        self._greeting_ms = greeting_ms
        self.config = default_session(log.model)
        log.session_config = self.config
        self._conversation_id = new_id("conv")
        self._items: list[dict[str, Any]] = []
        self._audio_items: dict[str, Any] = {}
        self._call_names: dict[str, str] = {}
        self._vad = EnergyVad()
        self._input = bytearray()
        self._speech_item_id: str | None = None
        self._phase = TurnPhase.IDLE
        self._turn: ScriptedTurn | None = None
        self.active: ResponseRun | None = None
        self._responses = 0
        self._audio_out = False
        self._received_bytes = 0

    # ----------------------------------------------------------------- public

    def opening_events(self) -> list[dict[str, Any]]:
        return [self._event("session.created", session=copy.deepcopy(self.config))]

    def receive(self, text: str) -> list[dict[str, Any]]:
        """Handle one client message; the server events it causes, in order."""
        try:
            raw = json.loads(text)
        except ValueError:
            self.log.client_events.append({"_unparsable": text[:200]})
            return self._reject(None, None, ApiError("invalid_json", "Invalid JSON payload."))
        self.log.client_events.append(raw)
        _, problem = check_client_event(raw)
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        event_type = raw.get("type") if isinstance(raw, dict) else None
        if problem is not None:
            return self._reject(event_type, event_id, problem)
        handler = getattr(self, "_on_" + str(event_type).replace(".", "_"))
        try:
            events: list[dict[str, Any]] = handler(raw)
        except _Rejected as rejected:
            return self._reject(event_type, event_id, rejected.error)
        return events

    def next_step(self) -> Step | None:
        """The active response's next events (None when nothing is being generated)."""
        if self.active is None:
            return None
        run = self.active
        step = run.next_step()
        self._absorb(run)
        if step is None or step.finished:
            self._finish(run)
        return step

    def conversation(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if not k.startswith("_")} for item in self._items]

    # ------------------------------------------------------------- handlers

    def _on_session_update(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        update = raw["session"]
        if update.get("type") != "realtime":
            raise _Rejected(
                ApiError(
                    "invalid_value",
                    "Invalid value: 'transcription'. A realtime session cannot become a "
                    "transcription session.",
                    "session.type",
                )
            )
        if "model" in update and update["model"] != self.config["model"]:
            raise _Rejected(
                ApiError("invalid_value", "The session's model cannot be changed.", "session.model")
            )
        modalities = update.get("output_modalities")
        if modalities is not None and len(set(modalities)) > 1:
            raise _Rejected(
                ApiError(
                    "invalid_value",
                    "Invalid value for 'session.output_modalities': it is not possible to "
                    "request both 'text' and 'audio'.",
                    "session.output_modalities",
                )
            )
        output = (update.get("audio") or {}).get("output") or {}
        voice = self.config["audio"]["output"]["voice"]
        if self._audio_out and "voice" in output and output["voice"] != voice:
            raise _Rejected(
                ApiError(
                    "cannot_update_voice",
                    "Cannot update a conversation's voice if assistant audio is present.",
                    "session.audio.output.voice",
                )
            )
        detection = ((update.get("audio") or {}).get("input") or {}).get("turn_detection")
        if isinstance(detection, dict):
            threshold = detection.get("threshold")
            if threshold is not None and not 0.0 <= threshold <= 1.0:
                raise _Rejected(
                    ApiError(
                        "decimal_above_max_value" if threshold > 1 else "decimal_below_min_value",
                        f"Invalid 'session.audio.input.turn_detection.threshold': expected a "
                        f"value between 0 and 1, but got {threshold} instead.",
                        "session.audio.input.turn_detection.threshold",
                    )
                )
        for index, tool in enumerate(update.get("tools") or []):
            if tool.get("type", "function") == "function" and not tool.get("name"):
                raise _Rejected(
                    ApiError(
                        "missing_required_parameter",
                        f"Missing required parameter: 'session.tools[{index}].name'.",
                        f"session.tools[{index}].name",
                    )
                )
        self.config = _merge(self.config, update)
        turn_detection = self.config["audio"]["input"].get("turn_detection")
        if isinstance(turn_detection, dict) and turn_detection.get("type") == "server_vad":
            self.config["audio"]["input"]["turn_detection"] = {
                **DEFAULT_TURN_DETECTION,
                **turn_detection,
            }
        self.log.session_config = self.config
        self._configure_vad()
        for direction in ("input", "output"):
            fmt = (self.config["audio"][direction].get("format") or {}).get("type")
            if fmt != "audio/pcmu":
                problem = (
                    f"audio.{direction}.format is {fmt!r}: the stand-in speaks only audio/pcmu"
                )
                if problem not in self.log.script_problems:
                    self.log.script_problems.append(problem)
        return [self._event("session.updated", session=copy.deepcopy(self.config))]

    def _on_input_audio_buffer_append(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            data = base64.b64decode(raw["audio"], validate=True)
        except (binascii.Error, ValueError):
            raise _Rejected(
                ApiError(
                    "invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio"
                )
            ) from None
        self._received_bytes += len(data)
        self.log.audio_received_ms = self._received_bytes // audio.BYTES_PER_MS
        self._input += data
        vad_events = self._vad.feed(data)
        detection = self._turn_detection()
        if detection is None:
            return []
        events: list[dict[str, Any]] = []
        for vad_event in vad_events:
            if isinstance(vad_event, SpeechStarted):
                events += self._speech_started(vad_event, detection)
            elif isinstance(vad_event, SpeechStopped):
                events += self._speech_stopped(vad_event, detection)
        return events

    def _on_input_audio_buffer_commit(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        buffered_ms = len(self._input) / audio.BYTES_PER_MS
        if buffered_ms < MIN_COMMIT_MS:
            raise _Rejected(
                ApiError(
                    "input_audio_buffer_commit_empty",
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    f"100ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                )
            )
        item_id = self._speech_item_id or new_id("item")
        events = self._commit(item_id)
        events += self._transcription_events(item_id)
        return events

    def _on_input_audio_buffer_clear(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        self._input.clear()
        self._speech_item_id = None
        self._vad.reset_buffer()
        return [self._event("input_audio_buffer.cleared")]

    def _on_output_audio_buffer_clear(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        # Documented as WebRTC/SIP only; over a websocket the client owns playback. The
        # real server's answer here is not documented: we take the stricter reading.
        raise _Rejected(
            ApiError(
                "invalid_value",
                "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
                "type",
            )
        )

    def _on_conversation_item_create(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        item = copy.deepcopy(raw["item"])
        previous = raw.get("previous_item_id")
        if previous is not None and previous != "root" and self._find(previous) is None:
            raise _Rejected(
                ApiError(
                    "invalid_value",
                    f"Previous item with id '{previous}' not found.",
                    "previous_item_id",
                )
            )
        item_id = item.get("id") or new_id("item")
        if self._find(item_id) is not None:
            raise _Rejected(
                ApiError(
                    "duplicate_item_id", f"Item with id '{item_id}' already exists.", "item.id"
                )
            )
        kind = item["type"]
        if kind == "function_call_output":
            name = self._call_names.get(item["call_id"])
            if name is None:
                # The docs: "the server will check that a function_call item with the same
                # ID exists in the conversation history". The wording below is ours.
                raise _Rejected(
                    ApiError(
                        "invalid_value",
                        f"Invalid value: '{item['call_id']}'. No function call with this call_id "
                        "exists in the conversation.",
                        "item.call_id",
                    )
                )
            self.log.function_outputs.append(
                {"call_id": item["call_id"], "output": item["output"], "name": name}
            )
        elif kind == "function_call":
            self._call_names[item.get("call_id") or ""] = item["name"]
        elif kind == "message" and item.get("role") == "assistant":
            if any(part.get("type") == "output_audio" for part in item.get("content", [])):
                raise _Rejected(
                    ApiError(
                        "invalid_value",
                        "Assistant audio messages cannot be created by the client.",
                        "item.content",
                    )
                )
        elif kind != "message":
            raise _Rejected(
                ApiError(
                    "invalid_value", f"Invalid value: '{kind}'. Not supported here.", "item.type"
                )
            )
        item.update(id=item_id, object="realtime.item", status="completed")
        previous_id = self._insert(item, previous)
        return [
            self._event("conversation.item.added", previous_item_id=previous_id, item=_wire(item)),
            self._event("conversation.item.done", previous_item_id=previous_id, item=_wire(item)),
        ]

    def _on_conversation_item_truncate(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        item_id = raw["item_id"]
        record = {**raw, "audio_sent_ms": None, "accepted": False}
        self.log.truncates.append(record)
        item = self._find(item_id)
        if item is None:
            raise _Rejected(
                ApiError("invalid_value", f"Item with item_id '{item_id}' not found.", "item_id")
            )
        progress = self._audio_items.get(item_id)
        if progress is None or progress.sent_ms == 0:
            raise _Rejected(
                ApiError(
                    "unsupported_content_type",
                    "Only model output audio messages can be truncated",
                    "item_id",
                )
            )
        record["audio_sent_ms"] = progress.sent_ms
        if raw["content_index"] != 0:
            raise _Rejected(
                ApiError(
                    "invalid_value",
                    f"Invalid 'content_index': item has no content part {raw['content_index']}.",
                    "content_index",
                )
            )
        end_ms = raw["audio_end_ms"]
        if end_ms < 0:
            raise _Rejected(
                ApiError(
                    "integer_below_min_value",
                    "Invalid 'audio_end_ms': expected a value >= 0.",
                    "audio_end_ms",
                )
            )
        if end_ms > progress.sent_ms:
            # The real message; its code is not documented, this one is our guess.
            raise _Rejected(
                ApiError(
                    "invalid_value",
                    f"Audio content of {progress.sent_ms}ms is already shorter than {end_ms}ms",
                    "audio_end_ms",
                )
            )
        record["accepted"] = True
        kept = cut_transcript(progress.text, end_ms, progress.total_ms)
        item["content"] = [{"type": "output_audio", "transcript": kept}]
        self._refresh_log()
        return [
            self._event(
                "conversation.item.truncated",
                item_id=item_id,
                content_index=0,
                audio_end_ms=end_ms,
            )
        ]

    def _on_conversation_item_delete(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        item = self._find(raw["item_id"])
        if item is None:
            raise _Rejected(
                ApiError(
                    "invalid_value",
                    f"Error deleting item: the item with id '{raw['item_id']}' does not exist.",
                    "item_id",
                )
            )
        self._items.remove(item)
        self._refresh_log()
        return [self._event("conversation.item.deleted", item_id=raw["item_id"])]

    def _on_conversation_item_retrieve(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        item = self._find(raw["item_id"])
        if item is None:
            raise _Rejected(
                ApiError(
                    "invalid_value", f"Item with item_id '{raw['item_id']}' not found.", "item_id"
                )
            )
        return [self._event("conversation.item.retrieved", item=_wire(item))]

    def _on_response_create(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        if self.active is not None:
            raise _Rejected(
                ApiError(
                    "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: {self.active.id}. "
                    "Wait until the response is finished before creating a new one.",
                )
            )
        return self._start_response()

    def _on_response_cancel(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = raw.get("response_id")
        if self.active is None or (wanted is not None and wanted != self.active.id):
            raise _Rejected(
                ApiError(
                    "response_cancel_not_active", "Cancellation failed: no active response found"
                )
            )
        return self._cancel("client_cancelled")

    # -------------------------------------------------------------- turns

    def _speech_started(
        self, event: SpeechStarted, detection: dict[str, Any]
    ) -> list[dict[str, Any]]:
        self._speech_item_id = new_id("item")
        events = [
            self._event(
                "input_audio_buffer.speech_started",
                audio_start_ms=event.audio_start_ms,
                item_id=self._speech_item_id,
            )
        ]
        if self.active is not None and detection.get("interrupt_response", True):
            events += self._cancel("turn_detected")
        return events

    def _speech_stopped(
        self, event: SpeechStopped, detection: dict[str, Any]
    ) -> list[dict[str, Any]]:
        item_id = self._speech_item_id or new_id("item")
        events = [
            self._event(
                "input_audio_buffer.speech_stopped",
                audio_end_ms=event.audio_end_ms,
                item_id=item_id,
            )
        ]
        events += self._commit(item_id)
        if detection.get("create_response", True) and self.active is None:
            events += self._start_response()
        events += self._transcription_events(item_id)
        return events

    def _commit(self, item_id: str) -> list[dict[str, Any]]:
        self._input.clear()
        self._speech_item_id = None
        self._vad.reset_buffer()
        previous = self._items[-1]["id"] if self._items else None
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._items.append(item)
        self.log.utterances += 1
        turn = self._next_turn()
        if turn is None:
            self.log.script_problems.append(
                f"caller utterance {self.log.utterances} has no ScriptedTurn: nothing is said back"
            )
            turn = ScriptedTurn(caller_says="")
        self._turn = turn
        self._phase = TurnPhase.UTTERANCE
        self._refresh_log()
        return [
            self._event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
            self._event("conversation.item.added", previous_item_id=previous, item=_wire(item)),
            self._event("conversation.item.done", previous_item_id=previous, item=_wire(item)),
        ]

    def _transcription_events(self, item_id: str) -> list[dict[str, Any]]:
        # Transcription runs beside the response; the docs say it may arrive before or
        # after the response events. We send it after response.created (the harder order).
        if not self.config["audio"]["input"].get("transcription") or self._turn is None:
            return []
        transcript = self._turn.caller_says
        item = self._find(item_id)
        if item is not None:
            item["content"] = [{"type": "input_audio", "transcript": transcript}]
            self._refresh_log()
        words = len(transcript.split())
        return [
            self._event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage={
                    "type": "tokens",
                    "input_tokens": 10,
                    "output_tokens": words,
                    "total_tokens": 10 + words,
                },
            )
        ]

    # ---------------------------------------------------------- responses

    def _start_response(self) -> list[dict[str, Any]]:
        output = self.config["audio"]["output"]
        run_args: dict[str, Any] = {
            "conversation_id": self._conversation_id,
            "audio_format": output.get("format") or {"type": "audio/pcm", "rate": 24000},
            "voice": output.get("voice"),
            "previous_item_id": self._items[-1]["id"] if self._items else None,
            "chunk_ms": self._chunk_ms,
        }
        turn = self._turn
        if self._phase is TurnPhase.UTTERANCE and turn is not None and turn.tool_calls:
            self._check_tools(turn)
            run = ResponseRun(ResponseKind.TOOL_CALLS, tool_calls=list(turn.tool_calls), **run_args)
            self._phase = TurnPhase.TOOL_OUTPUTS
        elif self._phase is not TurnPhase.IDLE and turn is not None:
            run = ResponseRun(
                ResponseKind.REPLY if turn.reply else ResponseKind.EMPTY,
                text=turn.reply,
                audio_ms=turn.reply_ms,
                answers_turn=True,
                **run_args,
            )
            self._phase = TurnPhase.IDLE
        elif self._responses == 0 and self._greeting:
            run = ResponseRun(
                ResponseKind.GREETING, text=self._greeting, audio_ms=self._greeting_ms, **run_args
            )
        else:
            run = ResponseRun(ResponseKind.EMPTY, **run_args)
        self._responses += 1
        self.active = run
        return [run.created_event()]

    def _check_tools(self, turn: ScriptedTurn) -> None:
        declared = {
            t.get("name") for t in self.config.get("tools") or [] if t.get("type") == "function"
        }
        for call in turn.tool_calls:
            if call.name not in declared:
                self.log.script_problems.append(
                    f"scripted tool call {call.name!r} is not a tool of the session "
                    f"(declared: {sorted(n for n in declared if n)})"
                )
        if self.config.get("tool_choice") == "none":
            self.log.script_problems.append("scripted tool calls while tool_choice is 'none'")

    def _cancel(self, reason: str) -> list[dict[str, Any]]:
        run = self.active
        if run is None:
            return []
        events = run.cancel(reason)
        if run.kind is ResponseKind.TOOL_CALLS:
            self._phase = TurnPhase.IDLE
        self._finish(run)
        return events

    def _absorb(self, run: ResponseRun) -> None:
        """Output items join the conversation as soon as they are announced."""
        for item in run.output:
            if self._find(item["id"]) is None:
                self._items.append(item)
            if item["type"] == "function_call":
                self._call_names[item["call_id"]] = item["name"]
        if run.audio_item is not None and run.audio_item.sent_ms:
            self._audio_items[run.audio_item.item["id"]] = run.audio_item
            self._audio_out = True
        self._refresh_log()

    def _finish(self, run: ResponseRun) -> None:
        self.active = None
        self._absorb(run)
        if run.answers_turn and not run.cancelled:
            self.log.turns_answered += 1

    # ------------------------------------------------------------ helpers

    def _turn_detection(self) -> dict[str, Any] | None:
        detection = self.config["audio"]["input"].get("turn_detection")
        return detection if isinstance(detection, dict) else None

    def _configure_vad(self) -> None:
        # semantic_vad is a model we cannot imitate: it is treated as server_vad defaults.
        settings = {**DEFAULT_TURN_DETECTION}
        detection = self._turn_detection() or {}
        settings.update({k: v for k, v in detection.items() if v is not None})
        self._vad.configure(
            threshold=float(settings["threshold"]),
            prefix_padding_ms=int(settings["prefix_padding_ms"]),
            silence_duration_ms=int(settings["silence_duration_ms"]),
        )

    def _find(self, item_id: str) -> dict[str, Any] | None:
        return next((item for item in self._items if item["id"] == item_id), None)

    def _insert(self, item: dict[str, Any], previous: str | None) -> str | None:
        if previous is None:
            before = self._items[-1]["id"] if self._items else None
            self._items.append(item)
        elif previous == "root":
            before = None
            self._items.insert(0, item)
        else:
            anchor = self._find(previous)
            position = self._items.index(anchor) + 1 if anchor is not None else len(self._items)
            self._items.insert(position, item)
            before = previous
        self._refresh_log()
        return before

    def _refresh_log(self) -> None:
        self.log.items = self.conversation()

    def _event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        return {"type": event_type, "event_id": new_id("event"), **fields}

    def _reject(
        self, event_type: str | None, event_id: str | None, error: ApiError
    ) -> list[dict[str, Any]]:
        self.log.violations.append(f"{event_type or '?'}: {error.message}")
        return [error_event(error, event_id)]


class _Rejected(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _wire(item: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("_")}
