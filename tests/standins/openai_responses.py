"""Responses of the scripted Realtime model: the server events of one response, in steps.

Pure: a ``ResponseRun`` yields ``Step``s (events to send, then how many ms of generated
audio they carried); the I/O shell decides how fast to pace them. Cancelling a run
yields the events the real API sends for a cancelled response (the open audio item is
closed as ``incomplete``, then ``response.done`` with status ``cancelled``).

Event sequence for a spoken reply, as the GA API sends it over a websocket:
``response.created``, ``response.output_item.added``, ``conversation.item.added``,
``response.content_part.added``, (``response.output_audio_transcript.delta`` +
``response.output_audio.delta``)*, ``response.output_audio.done``,
``response.output_audio_transcript.done``, ``response.content_part.done``,
``response.output_item.done``, ``conversation.item.done``, ``response.done``.
"""

from __future__ import annotations

import base64
import enum
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.standins import audio
from tests.standins.openai_script import ToolCall, new_id

CHUNK_MS = 100
REPLY_FREQUENCY = 440.0  # the caller's test tone is 220 Hz: the two are told apart by pitch


class ResponseKind(enum.Enum):
    GREETING = "greeting"
    TOOL_CALLS = "tool_calls"
    REPLY = "reply"
    EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class Step:
    events: list[dict[str, Any]]
    audio_ms: int = 0
    """Audio carried by this step: the shell waits ``audio_ms / generation_speed`` after it."""
    finished: bool = False


@dataclass(slots=True)
class AudioItem:
    """An assistant audio item's generation progress (what truncation is checked against)."""

    item: dict[str, Any]
    total_ms: int
    text: str
    sent_ms: int = 0
    transcript_sent: str = ""


def _event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "event_id": new_id("event"), **fields}


def cut_transcript(text: str, kept_ms: int, total_ms: int) -> str:
    """The words of ``text`` heard in the first ``kept_ms`` of ``total_ms`` of audio."""
    if total_ms <= 0 or kept_ms >= total_ms:
        return text
    words = text.split(" ")
    keep = math.floor(len(words) * kept_ms / total_ms)
    return " ".join(words[:keep])


@dataclass(slots=True)
class ResponseRun:
    """One response from ``response.created`` to ``response.done``."""

    kind: ResponseKind
    conversation_id: str
    audio_format: dict[str, Any]
    voice: Any
    previous_item_id: str | None
    text: str = ""
    audio_ms: int = 0
    chunk_ms: int = CHUNK_MS
    """Audio per ``response.output_audio.delta`` (the real API's deltas vary in size)."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    answers_turn: bool = False
    id: str = field(default_factory=lambda: new_id("resp"))
    output: list[dict[str, Any]] = field(default_factory=list)
    audio_item: AudioItem | None = None
    done: bool = False
    cancelled: bool = False
    _steps: Iterator[Step] | None = None

    def created_event(self) -> dict[str, Any]:
        return _event("response.created", response=self._response("in_progress", None))

    def next_step(self) -> Step | None:
        if self.done:
            return None
        if self._steps is None:
            self._steps = self._generate()
        step = next(self._steps, None)
        if step is None or step.finished:
            self.done = True
        return step

    def cancel(self, reason: str) -> list[dict[str, Any]]:
        """Stop generating; the events that close the response as ``cancelled``."""
        self.done = True
        self.cancelled = True
        events: list[dict[str, Any]] = []
        item = self.audio_item
        if item is not None and item.item["status"] == "in_progress":
            events += self._close_audio_item(item, "incomplete")
        details = {"type": "cancelled", "reason": reason}
        events.append(_event("response.done", response=self._response("cancelled", details)))
        return events

    def _response(self, status: str, details: dict[str, Any] | None) -> dict[str, Any]:
        done = status != "in_progress"
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": [_public(item) for item in self.output] if done else [],
            "conversation_id": self.conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": self.audio_format, "voice": self.voice}},
            "usage": self._usage() if done else None,
            "metadata": None,
        }

    def _usage(self) -> dict[str, Any]:
        # Plausible numbers only; nobody should bill from a stand-in.
        audio_tokens = (self.audio_item.sent_ms // 50) if self.audio_item else 0
        text_tokens = len(self.text.split()) + 8 * len(self.tool_calls)
        return {
            "total_tokens": 100 + audio_tokens + text_tokens,
            "input_tokens": 100,
            "output_tokens": audio_tokens + text_tokens,
            "input_token_details": {"text_tokens": 100, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        }

    def _generate(self) -> Iterator[Step]:
        if self.kind is ResponseKind.TOOL_CALLS:
            for index, call in enumerate(self.tool_calls):
                yield Step(self._function_call_events(index, call))
        elif self.kind in {ResponseKind.GREETING, ResponseKind.REPLY} and self.text:
            yield from self._audio_steps()
        yield Step(
            [_event("response.done", response=self._response("completed", None))], finished=True
        )

    def _function_call_events(self, index: int, call: ToolCall) -> list[dict[str, Any]]:
        item_id = new_id("item")
        call_id = new_id("call")
        arguments = json.dumps(call.arguments)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
        }
        previous = self._previous_item_id()
        where = {"response_id": self.id, "item_id": item_id, "output_index": index}
        events = [
            _event(
                "response.output_item.added",
                response_id=self.id,
                output_index=index,
                item=dict(item),
            ),
            _event("conversation.item.added", previous_item_id=previous, item=dict(item)),
            _event(
                "response.function_call_arguments.delta", call_id=call_id, delta=arguments, **where
            ),
            _event(
                "response.function_call_arguments.done",
                call_id=call_id,
                name=call.name,
                arguments=arguments,
                **where,
            ),
        ]
        item.update(status="completed", arguments=arguments)
        self.output.append(item)
        events += [
            _event(
                "response.output_item.done",
                response_id=self.id,
                output_index=index,
                item=dict(item),
            ),
            _event("conversation.item.done", previous_item_id=previous, item=dict(item)),
        ]
        return events

    def _previous_item_id(self) -> str | None:
        return self.output[-1]["id"] if self.output else self.previous_item_id

    def _audio_steps(self) -> Iterator[Step]:
        item_id = new_id("item")
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        previous = self._previous_item_id()
        self.output.append(item)
        audio_item = AudioItem(item=item, total_ms=self.audio_ms, text=self.text)
        audio_item.item["_previous_item_id"] = previous
        self.audio_item = audio_item
        where = {"response_id": self.id, "item_id": item_id, "output_index": 0}
        opening = [
            _event(
                "response.output_item.added",
                response_id=self.id,
                output_index=0,
                item=_public(item),
            ),
            _event("conversation.item.added", previous_item_id=previous, item=_public(item)),
            _event(
                "response.content_part.added",
                content_index=0,
                part={"type": "audio", "transcript": ""},
                **where,
            ),
        ]
        pcm = audio.tone(self.audio_ms, frequency=REPLY_FREQUENCY)
        words = self.text.split(" ")
        step = self.chunk_ms
        chunks = max(1, math.ceil(self.audio_ms / step))
        words_sent = 0
        for index in range(chunks):
            events = opening if index == 0 else []
            chunk = pcm[index * step * audio.BYTES_PER_MS : (index + 1) * step * audio.BYTES_PER_MS]
            due = math.ceil(len(words) * (index + 1) / chunks)
            if due > words_sent:
                delta = " ".join(words[words_sent:due])
                if words_sent:
                    delta = " " + delta
                words_sent = due
                audio_item.transcript_sent += delta
                events.append(
                    _event(
                        "response.output_audio_transcript.delta",
                        content_index=0,
                        delta=delta,
                        **where,
                    )
                )
            events.append(
                _event(
                    "response.output_audio.delta",
                    content_index=0,
                    delta=base64.b64encode(chunk).decode("ascii"),
                    **where,
                )
            )
            chunk_ms = audio.duration_ms(chunk)
            audio_item.sent_ms += chunk_ms
            yield Step(events, audio_ms=chunk_ms)
        yield Step(self._close_audio_item(audio_item, "completed"))

    def _close_audio_item(self, audio_item: AudioItem, status: str) -> list[dict[str, Any]]:
        item = audio_item.item
        transcript = audio_item.transcript_sent
        where = {"response_id": self.id, "item_id": item["id"], "output_index": 0}
        item["status"] = status
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        previous = item.get("_previous_item_id")
        return [
            _event("response.output_audio.done", content_index=0, **where),
            _event(
                "response.output_audio_transcript.done",
                content_index=0,
                transcript=transcript,
                **where,
            ),
            _event(
                "response.content_part.done",
                content_index=0,
                part={"type": "audio", "transcript": transcript},
                **where,
            ),
            _event(
                "response.output_item.done", response_id=self.id, output_index=0, item=_public(item)
            ),
            _event("conversation.item.done", previous_item_id=previous, item=_public(item)),
        ]


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """The item as sent on the wire (without the stand-in's bookkeeping keys)."""
    return {k: v for k, v in item.items() if not k.startswith("_")}
