"""What a test scripts for the OpenAI stand-in, and what the stand-in records of each session.

A test cannot make the stand-in understand speech, so it scripts the model instead: for
the n-th caller utterance the stand-in detects (by energy), it reports ``turns[n].caller_says``
as the input transcription and plays ``turns[n]``'s tool calls and reply.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id shaped like the real API's (``item_`` + 21 characters, ``call_`` + 16, ...)."""
    length = 16 if prefix == "call" else 21
    return prefix + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the scripted model makes."""

    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class ScriptedTurn:
    """The model's behaviour for the n-th caller utterance.

    ``tool_calls`` are emitted in one response right after the utterance; the spoken
    ``reply`` then comes in the response the client creates after sending the
    ``function_call_output`` items and ``response.create``, as with the real API.
    An empty ``reply`` means the response carries no spoken output.
    """

    caller_says: str
    reply: str = ""
    reply_ms: int = 1500
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(slots=True)
class SessionLog:
    """Everything one Realtime websocket connection saw, for tests to assert on."""

    model: str
    client_events: list[dict[str, Any]] = field(default_factory=list)
    """Every client event received (parsed JSON), including rejected ones."""
    violations: list[str] = field(default_factory=list)
    """One line per client event the real API would have rejected; tests assert ``[]``."""
    session_config: dict[str, Any] = field(default_factory=dict)
    """The effective session config after the session.update(s) so far."""
    truncates: list[dict[str, Any]] = field(default_factory=list)
    """Each conversation.item.truncate received, plus ``audio_sent_ms`` for that item and
    ``accepted`` (whether the real API would have applied it)."""
    function_outputs: list[dict[str, Any]] = field(default_factory=list)
    """Each function_call_output item the client created (call_id, output, name)."""
    audio_received_ms: int = 0
    server_events: list[dict[str, Any]] = field(default_factory=list)
    """Every server event sent, audio deltas included, in order."""
    items: list[dict[str, Any]] = field(default_factory=list)
    """The conversation as the model holds it (assistant transcripts cut by truncation)."""
    utterances: int = 0
    """Caller utterances committed in this session (by VAD or by the client)."""
    turns_answered: int = 0
    """Scripted turns whose answer response completed in this session."""
    script_problems: list[str] = field(default_factory=list)
    """Things the script asked for that the real model could not do (e.g. calling a tool
    the session does not declare)."""
    closed: bool = False
    dropped: bool = False
    """True when the stand-in cut the connection on purpose (``drop_after_turns``)."""

    def events_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Server events of one type, in order."""
        return [e for e in self.server_events if e.get("type") == event_type]

    def client_events_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Client events of one type, in order."""
        return [e for e in self.client_events if e.get("type") == event_type]
