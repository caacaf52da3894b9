"""How long the event loop stalls while calls end: a call's summary built on the loop or in a
worker thread, at CPython's GIL switch interval (5 ms) and at the service's (1 ms).

The event loop relays every live call's audio, so any stall of it delays every call's
frames. When a call ends the service reads the caller's words (keywords, urgency, phone
numbers: ``agent.summary_builder.build_summary``), which is milliseconds of CPU. This
measures, in one process on uvloop (what uvicorn runs), a ticker on the loop that wants to
run every 2 ms (a relay's loop wakes that often) while calls end one after another:

- ``idle``: no call ends (the timer's own floor; libuv timers have 1 ms resolution);
- ``on loop``: the summary built on the event loop, as before;
- ``thread, 5 ms``: built in a worker thread, CPython's default switch interval;
- ``thread, 1 ms``: built in a worker thread at ``SWITCH_INTERVAL_SECONDS`` (the service).

Modes run interleaved, ``--rounds`` times each; each round ends ``--calls`` calls (a 40-turn
transcript each), one every 20 ms. Reported: the ticker's lateness p50 / p99 / max over all
rounds, and CPU seconds per call (process time), medians of the rounds.

Usage:
    .venv/bin/python benchmarks/loop_stalls.py [--rounds 5] [--calls 30]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.business import Business, load_businesses  # noqa: E402
from agent.details import CallerDetails  # noqa: E402
from agent.summary import TranscriptTurn  # noqa: E402
from agent.summary_builder import build_summary  # noqa: E402
from benchmarks.load import BUSINESSES  # noqa: E402
from telephony.pauses import SWITCH_INTERVAL_SECONDS  # noqa: E402

CALLER_LINES = [
    "Hi, this is Dana Whitfield, my water heater is leaking all over the garage floor.",
    "It's a 50 gallon gas unit, about twelve years old, and water is coming from the bottom.",
    "Can someone call me back tomorrow morning at 415 555 0123? I'm at 12 Oak Street.",
    "No, no gas smell. It's just leaking. I turned off the water valve already.",
    "My email is dana at example dot com if that's easier for the quote.",
    "We also have a furnace that makes a banging noise when it starts, can you look at that?",
    "Tomorrow between eight and ten would be great, or any time after four.",
    "Thanks so much, bye.",
]
AGENT_LINE = "Thanks, I have noted that. Is there anything else I should pass on?"


def transcript(turns: int = 40) -> list[TranscriptTurn]:
    out = []
    for i in range(turns // 2):
        out.append(TranscriptTurn(speaker="caller", text=CALLER_LINES[i % 8], start=6.0 * i))
        out.append(TranscriptTurn(speaker="agent", text=AGENT_LINE, start=6.0 * i + 3))
    return out


def summary_job(business: Business, turns: list[TranscriptTurn]) -> Callable[[], object]:
    def build() -> object:
        return build_summary(
            call_sid="CA" + "0" * 32,
            business=business,
            caller_phone="+14155550123",
            transcript=turns,
            tool_details=CallerDetails(),
            model_details=CallerDetails(first_name="Dana", last_name="Whitfield"),
            now=dt.datetime.now(dt.UTC),
            duration_seconds=120,
        )

    return build


async def one_round(mode: str, calls: int, job: Callable[[], object]) -> tuple[list[float], float]:
    """The ticker's lateness (s) during ``calls`` call endings, and CPU seconds per call."""
    lateness: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        # perf_counter, not loop.time(): libuv's clock has 1 ms steps
        due = time.perf_counter()
        while not done.is_set():
            due += 0.002
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            lateness.append(max(0.0, time.perf_counter() - due))

    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS if mode == "thread, 1 ms" else 0.005)
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    cpu0 = time.process_time()
    for _ in range(calls):
        if mode == "on loop":
            job()
        elif mode != "idle":
            await asyncio.to_thread(job)
        await asyncio.sleep(0.020)
    cpu = (time.process_time() - cpu0) / calls
    done.set()
    await ticking
    sys.setswitchinterval(0.005)
    return lateness, cpu


async def main(args: argparse.Namespace) -> None:
    path = Path(args.workdir) / "businesses.toml"
    path.write_text(BUSINESSES)
    business = load_businesses(path).businesses[0]
    job = summary_job(business, transcript())
    job()  # warm: regexes compiled, phonenumbers' metadata loaded
    modes = ["idle", "on loop", "thread, 5 ms", "thread, 1 ms"]
    lateness: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            late, per_call = await one_round(mode, args.calls, job)
            lateness[mode].extend(late)
            cpu[mode].append(per_call)
    print(
        f"{args.rounds} rounds x {args.calls} call endings (40-turn transcripts), a 2 ms ticker"
        f" on uvloop; Python {sys.version.split()[0]}\n"
    )
    print(f"{'mode':14}{'lateness p50':>13}{'p99':>9}{'max':>9}{'CPU per call':>14}  (ms)")
    for mode in modes:
        values = sorted(lateness[mode])
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        print(
            f"{mode:14}{statistics.median(values) * 1000:>13.2f}{p99 * 1000:>9.2f}"
            f"{values[-1] * 1000:>9.2f}{statistics.median(cpu[mode]) * 1000:>14.2f}"
        )
    print(
        "\nlateness: how late the ticker ran, all rounds; CPU per call: process CPU seconds"
        " per call ending (the ticker's included; see 'idle'), median of the rounds."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--workdir", default="/tmp")
    arguments = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(arguments))
