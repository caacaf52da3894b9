"""The fault-injection run at a small size (``tests/fault_harness.py``; the 1,000-call run
is ``benchmarks/fault_injection.py``).

40 signed calls reach two service processes sharing one database — the scripted intake, and
Realtime whose connection is cut mid-call — while the outbox is delivered by a separate
``receptionist worker`` process that is SIGKILLed mid-delivery — once right after Salesforce
wrote a call's records, once before — and restarted, Salesforce
answers 500/503/401, expires every token, times out (before and after writing) and hits its
request limit, and status callbacks arrive twice (once to each node at the same moment).
Every call must end with a stored summary and exactly one call Task in Salesforce, and no
caller may have more than one Lead.
"""

from __future__ import annotations

from pathlib import Path

from tests.fault_harness import FaultPlan, FaultRun


async def test_forty_calls_through_injected_faults_lose_nothing_and_write_nothing_twice(
    tmp_path: Path,
) -> None:
    plan = FaultPlan(
        calls=40,
        realtime_drops=2,
        worker_kills=2,
        concurrency=8,
        lease_seconds=1.0,
        drain_timeout_s=90.0,
    )
    report = await FaultRun(plan, tmp_path).run()

    assert report.calls_placed == 40
    # The faults really happened.
    assert report.fault_share >= 0.3, report.lines()
    assert report.faults["realtime connection dropped"] == 2
    assert report.faults["duplicate status callback"] == 8
    assert report.faults["worker SIGKILL"] == 2
    assert report.kills_mid_delivery == 2, "the worker died holding a job"
    assert report.kills_after_write == 1, "... once after Salesforce wrote the records"
    # The retry after the kill after the write found the records and wrote nothing; the
    # retry after the kill before the write wrote them, once.
    assert report.killed_after_write_found_written == 1, report.lines()
    assert report.killed_before_write_delivered_once == 1, report.lines()
    salesforce = sum(n for kind, n in report.faults.items() if kind.startswith("salesforce"))
    assert salesforce >= 8
    assert report.salesforce_faults_left_unconsumed == 0
    # Callers never noticed, and nothing went wrong outside the injected faults.
    assert report.caller_errors == []
    assert report.unexpected_errors == []
    # Nothing lost, nothing written twice.
    assert report.summaries_stored == 40
    assert (report.delivered, report.dead_lettered, report.not_finished) == (40, 0, 0)
    assert report.lost == []
    assert report.duplicates == 0
    assert (report.leads, report.call_tasks) == (40, 40)
