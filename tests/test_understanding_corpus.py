"""The labelled corpus (tests/corpus/) against issue 12's targets: Hot recall 1.0 on
life-safety situations, Hot precision ≥ 0.95, name accuracy ≥ 0.95 — and the callback
reader and the whole scripted calls held to the same bar. ``benchmarks/understanding.py``
prints the same figures (and the held-out set's) for README."""

from __future__ import annotations

from tests.corpus import (
    call_cases,
    callback_cases,
    heldout_call_cases,
    name_cases,
    score_callbacks,
    score_calls,
    score_names,
    score_urgency,
    urgency_cases,
)


def test_the_corpus_is_as_large_as_the_issue_asks() -> None:
    utterances = len(urgency_cases()) + len(name_cases()) + len(callback_cases())
    assert len(urgency_cases()) >= 200 and utterances >= 300
    assert len(call_cases()) >= 40


def test_urgency_targets() -> None:
    score = score_urgency(urgency_cases())
    assert score.life_safety_recall == 1.0, score.misses
    assert score.hot_recall >= 0.95, score.misses
    assert score.hot_precision >= 0.95, score.misses
    assert score.urgency_accuracy >= 0.9, score.misses


def test_name_accuracy() -> None:
    accuracy, misses = score_names(name_cases())
    assert accuracy >= 0.95, misses


def test_callback_accuracy() -> None:
    accuracy, misses = score_callbacks(callback_cases())
    assert accuracy >= 0.95, misses


def test_whole_scripted_calls() -> None:
    score = score_calls(call_cases() + heldout_call_cases())
    assert score.all_fields >= 0.95, score.misses
    for field, accuracy in score.field_accuracy.items():
        assert accuracy >= 0.9, (field, score.misses)
