"""CPU per live-call progress save: one transaction per save against group commit.

N live calls in a fresh SQLite database (the embedded default, WAL), each with a 20-turn
transcript. Every round saves every call once, four ways, interleaved so the machine's
drift hits them alike:

- ``alone``: one ``Store.save_progress`` (its own transaction) per call, each in a worker
  thread through ``asyncio.to_thread`` — how the bridge saved before group commit;
- ``group 10`` / ``group 100``: ``Store.save_progress_many`` with 10 or 100 calls per
  transaction, called directly (the store's share alone);
- ``writer``: ``ProgressWriter.save`` from concurrent tasks, ten at a time (nine routine
  saves, then one that must land now), the way the bridges of live calls save now (at 100
  calls saving every 2 s, a 250 ms slot gathers about 12), thread hand-off included.

CPU is the process's (all threads), per saved row; medians and min..max over the rounds.

Usage: .venv/bin/python benchmarks/progress_saves.py [--calls 100] [--turns 20] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from agent.summary import TranscriptTurn
from crm.store import ProgressSnapshot, Store
from telephony.progress import ProgressWriter

TEXT = "I have a leaking pipe under the kitchen sink and there is water on the floor."


def snapshots(calls: int, turns: int) -> list[ProgressSnapshot]:
    said = [
        TranscriptTurn(speaker="caller" if k % 2 else "agent", text=TEXT, start=k * 3.0)
        for k in range(turns)
    ]
    details = {"first_name": "Pat", "need": "leak under the sink", "urgency": 3}
    return [ProgressSnapshot(f"CA{i:032x}", said, details) for i in range(calls)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'calls.db'}")
        store.create_schema()
        rows = snapshots(args.calls, args.turns)
        for row in rows:
            store.begin_call(
                row.call_sid,
                business="Acme",
                business_number="+14155559999",
                caller_phone="+14155550100",
                mode="realtime",
            )
        writer = ProgressWriter(store)

        async def alone() -> None:
            for row in rows:
                await asyncio.to_thread(store.save_progress, *_fields(row))

        def grouped(size: int) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                for start in range(0, len(rows), size):
                    store.save_progress_many(rows[start : start + size])

            return run

        async def through_writer() -> None:
            for start in range(0, len(rows), 10):
                *routine, last = rows[start : start + 10]
                await asyncio.gather(
                    *(writer.save(row) for row in routine), writer.save(last, now=True)
                )

        ways: dict[str, Callable[[], Awaitable[None]]] = {
            "alone": alone,
            "group 10": grouped(10),
            "group 100": grouped(100),
            "writer": through_writer,
        }
        results: dict[str, list[float]] = {name: [] for name in ways}

        async def measure() -> None:
            for way in ways.values():  # warm-up
                await way()
            for _ in range(args.rounds):
                for name, way in ways.items():
                    started = time.process_time()
                    await way()
                    results[name].append((time.process_time() - started) / len(rows) * 1e6)

        asyncio.run(measure())
        store.engine.dispose()

    base = statistics.median(results["alone"])
    print(
        f"progress saves: {args.calls} calls, {args.turns}-turn transcripts, SQLite, "
        f"{args.rounds} rounds (process CPU per saved row)"
    )
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"  {name:<10} {median:7.0f} µs  ({min(values):.0f}..{max(values):.0f})"
            f"  × alone {median / base:.2f}"
        )


def _fields(row: ProgressSnapshot) -> tuple[str, list[TranscriptTurn], dict[str, object]]:
    return row.call_sid, row.transcript, row.details


if __name__ == "__main__":
    main()
