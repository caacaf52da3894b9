"""Understanding benchmark: the labelled corpus (tests/corpus/) through the urgency reader,
the name and callback readers, and whole scripted-intake calls. Prints Hot precision and
recall, life-safety recall and accuracies (the figures in README).

    .venv/bin/python -m benchmarks.understanding [--misses]

``urgency_heldout.txt`` was written after the reader was tuned and scored once before any
fix; its figures are the honest estimate for new phrasing.
"""

from __future__ import annotations

import argparse
import time

from tests.corpus import (
    call_cases,
    callback_cases,
    heldout_call_cases,
    heldout_cases,
    name_cases,
    run_call,
    score_callbacks,
    score_calls,
    score_names,
    score_urgency,
    urgency_cases,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--misses", action="store_true", help="list every wrong answer")
    args = parser.parse_args()

    for title, cases in (("corpus", urgency_cases()), ("held-out", heldout_cases())):
        s = score_urgency(cases)
        print(
            f"urgency {title:9} n={s.cases:3}  Hot precision {s.hot_precision:.3f}  "
            f"Hot recall {s.hot_recall:.3f}  life-safety recall {s.life_safety_recall:.3f}  "
            f"urgency accuracy {s.urgency_accuracy:.3f}  emergency accuracy "
            f"{s.emergency_accuracy:.3f}"
        )
        if args.misses:
            for line, expected, got, text in s.misses:
                print(f"    line {line}: expected {expected}, got {got}: {text}")
    names = name_cases()
    accuracy, misses = score_names(names)
    print(f"names            n={len(names):3}  accuracy {accuracy:.3f}")
    callbacks = callback_cases()
    cb_accuracy, cb_misses = score_callbacks(callbacks)
    print(f"callbacks        n={len(callbacks):3}  accuracy {cb_accuracy:.3f}")
    all_misses = misses + cb_misses
    for title, cases in (("calls", call_cases()), ("held-out calls", heldout_call_cases())):
        calls = score_calls(cases)
        fields = "  ".join(f"{k} {v:.3f}" for k, v in calls.field_accuracy.items())
        print(f"{title:16} n={calls.calls:3}  all fields right {calls.all_fields:.3f}")
        print(f"    per field: {fields}")
        all_misses += calls.misses
    if args.misses:
        for miss in all_misses:
            print("    " + miss)
    cases = call_cases()
    answers = sum(len(c.answers) for c in cases)
    started = time.perf_counter()
    for _ in range(3):
        for case in cases:
            run_call(case)
    per_answer = (time.perf_counter() - started) / (3 * answers) * 1000
    print(f"cost             {per_answer:.2f} ms of CPU per scripted-intake answer (all readers)")


if __name__ == "__main__":
    main()
