"""The fault-injection run: ≥ 1,000 simulated calls with ≥ 30 % injected faults, ending
with 0 summaries lost and 0 duplicate records (the harness is ``tests/fault_harness.py``).

Two service processes (scripted intake; Realtime, whose connection is cut mid-call) share
one SQLite database; the outbox is delivered by a separate ``receptionist worker`` process,
SIGKILLed while it holds a job and restarted; the Salesforce stand-in answers 500/503/401,
expires every token, times out (before and after writing) and hits its request limit;
status callbacks arrive twice. Prints the figures; exits 1 when a call was lost, a record
duplicated, or the faults were fewer than 30 % of the calls.

    .venv/bin/python benchmarks/fault_injection.py [--calls N] [--realtime-drops N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fault_harness import DEFAULT_SEED, FaultPlan, FaultRun


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--realtime-drops", type=int, default=30)
    parser.add_argument("--worker-kills", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--keep", action="store_true", help="keep the logs and the database")
    args = parser.parse_args()
    plan = FaultPlan(
        calls=args.calls,
        realtime_drops=min(args.realtime_drops, args.calls),
        worker_kills=args.worker_kills,
        concurrency=args.concurrency,
        seed=args.seed,
    )
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="fault-injection-"))
    print(
        f"fault injection: {plan.calls} calls, {plan.realtime_drops} Realtime drops, "
        f"{plan.worker_kills} worker kills",
        flush=True,
    )
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"  {time.monotonic() - started:6.1f} s  {line}", flush=True)

    run = FaultRun(plan, workdir, progress=progress)
    report = asyncio.run(run.run())
    print()
    for line in report.lines():
        print(line)
    for problem in (report.lost + report.caller_errors + report.unexpected_errors)[:20]:
        print(f"  ! {problem}")
    if args.keep:
        print(f"logs and database kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = not report.lost and report.duplicates == 0 and report.fault_share >= 0.3
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
