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


def call_cases(name: str = "calls.json") -> list[CallCase]:
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    return [CallCase(**entry) for entry in data]


def heldout_call_cases() -> list[CallCase]:
    """Ten calls written after the intake was tuned on ``calls.json``, scored once first."""
    return call_cases("calls_heldout.json")


def heldout_cases() -> list[UrgencyCase]:
    cases = []
    for number, line in _lines("urgency_heldout.txt"):
        head, _, text = line.partition("|")
        level, _, tag = head.strip().partition(" ")
        cases.append(UrgencyCase(int(level), tag.strip(), text.strip(), number))
    return cases


@dataclass(frozen=True, slots=True)
class UrgencyScore:
    cases: int
    hot_precision: float
    hot_recall: float
    life_safety_recall: float
    urgency_accuracy: float
    emergency_accuracy: float
    misses: list[tuple[int, int, int, str]]  # (line, expected, got, text)


def score_urgency(cases: list[UrgencyCase]) -> UrgencyScore:
    """Hot precision/recall and accuracies of ``agent.urgency.read_urgency`` (the reader
    alone: no model), a reading of ``None`` counting as the default urgency 2."""
    from agent.urgency import read_urgency

    tp = fp = fn = exact = emergency_ok = safety_hit = safety_total = 0
    misses = []
    for case in cases:
        reading = read_urgency([case.text])
        got = reading.urgency if reading.urgency is not None else 2
        exact += got == case.urgency
        emergency_ok += reading.is_emergency == (case.urgency == 5)
        if got >= 4 and case.hot:
            tp += 1
        elif got >= 4:
            fp += 1
        elif case.hot:
            fn += 1
        if case.life_safety:
            safety_total += 1
            safety_hit += got == 5
        if got != case.urgency:
            misses.append((case.line, case.urgency, got, case.text))
    n = len(cases)
    return UrgencyScore(
        cases=n,
        hot_precision=tp / (tp + fp) if tp + fp else 1.0,
        hot_recall=tp / (tp + fn) if tp + fn else 1.0,
        life_safety_recall=safety_hit / safety_total if safety_total else 1.0,
        urgency_accuracy=exact / n,
        emergency_accuracy=emergency_ok / n,
        misses=misses,
    )


def score_names(cases: list[NameCase]) -> tuple[float, list[str]]:
    from agent.names import is_name_refusal, read_name

    misses = []
    for case in cases:
        reading = read_name(case.text)
        got = (None, None) if is_name_refusal(case.text) else (reading.first, reading.last)
        if got != (case.first, case.last):
            misses.append(f"{case.line}: {case.text!r} -> {got}")
    return 1 - len(misses) / len(cases), misses


def score_callbacks(cases: list[CallbackCase]) -> tuple[float, list[str]]:
    from agent.caller_intents import read_callback

    misses = [
        f"{c.line}: {c.text!r} -> {read_callback(c.text)}"
        for c in cases
        if read_callback(c.text) is not c.expected
    ]
    return 1 - len(misses) / len(cases), misses


def run_call(case: CallCase) -> Any:
    """The scripted intake driven by the call's answers (silence once they run out);
    returns the intake when it is done."""
    from agent.business import default_business
    from agent.intake import Intake

    intake = Intake(default_business(), case.caller_phone)
    at = 0.0
    answers = list(case.answers)
    while not intake.done:
        at += 8.0
        answer = answers.pop(0) if answers else None
        if answer is not None and answer.startswith("DTMF:"):
            intake.answer(None, digits=answer[5:], at=at)
        else:
            intake.answer(answer, confidence=0.9, at=at)
    return intake


@dataclass(frozen=True, slots=True)
class CallsScore:
    calls: int
    all_fields: float  # calls with every expected field right
    field_accuracy: dict[str, float]
    misses: list[str]


def score_calls(cases: list[CallCase]) -> CallsScore:
    right: dict[str, int] = {}
    seen: dict[str, int] = {}
    perfect = 0
    misses = []
    for case in cases:
        details = run_call(case).details()
        wrong = {}
        for key, expected in case.expect.items():
            got = getattr(details, key)
            if key in {"callback_requested", "new_project"}:
                got = bool(got)
            seen[key] = seen.get(key, 0) + 1
            if got == expected:
                right[key] = right.get(key, 0) + 1
            else:
                wrong[key] = (expected, got)
        perfect += not wrong
        if wrong:
            misses.append(f"{case.id}: {wrong}")
    return CallsScore(
        calls=len(cases),
        all_fields=perfect / len(cases),
        field_accuracy={k: right.get(k, 0) / n for k, n in sorted(seen.items())},
        misses=misses,
    )
