"""The labelled understanding corpus: caller utterances and whole scripted calls.

``urgency.txt``, ``callbacks.txt`` and ``names.txt`` hold single utterances with the answer
a careful human dispatcher would give; ``calls.json`` holds whole scripted-intake calls
(the caller's answers in order) with the summary fields expected at the end. The scoring
lives here so the test (targets) and the benchmark (figures for README) share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class UrgencyCase:
    urgency: int
    tag: str
    text: str
    line: int

    @property
    def hot(self) -> bool:
        return self.urgency >= 4

    @property
    def life_safety(self) -> bool:
        return self.urgency == 5 and self.tag not in {"claim"}


@dataclass(frozen=True, slots=True)
class CallbackCase:
    expected: bool | None
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class NameCase:
    first: str | None
    last: str | None
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class CallCase:
    id: str
    answers: list[str]
    expect: dict[str, Any]
    caller_phone: str = "+14155550100"
    notes: str = ""
    digits: list[str] = field(default_factory=list)


def _lines(name: str) -> list[tuple[int, str]]:
    out = []
    for number, raw in enumerate((HERE / name).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append((number, line))
    return out


def urgency_cases() -> list[UrgencyCase]:
    cases = []
    for number, line in _lines("urgency.txt"):
        head, _, text = line.partition("|")
        level, _, tag = head.strip().partition(" ")
        cases.append(UrgencyCase(int(level), tag.strip(), text.strip(), number))
    return cases


def callback_cases() -> list[CallbackCase]:
    values = {"yes": True, "no": False, "none": None}
    cases = []
    for number, line in _lines("callbacks.txt"):
        head, _, text = line.partition("|")
        cases.append(CallbackCase(values[head.strip()], text.strip(), number))
    return cases


def name_cases() -> list[NameCase]:
    cases = []
    for number, line in _lines("names.txt"):
        first, last, text = (part.strip() for part in line.split("|", 2))
        cases.append(NameCase(first or None, last or None, text, number))
    return cases


def call_cases() -> list[CallCase]:
    data = json.loads((HERE / "calls.json").read_text(encoding="utf-8"))
    return [CallCase(**entry) for entry in data]
