"""The fault-injection run, shared by ``tests/test_fault_injection.py`` (40 calls) and
``benchmarks/fault_injection.py`` (≥ 1,000 calls).

Everything is real except the three clouds, which are the stand-ins of ``tests/standins``
(instrumented in ``tests/fault_rig.py``):

- two service processes (the app under uvicorn, in-process delivery worker off) on one
  SQLite database: one without OpenAI (the scripted intake answers), one with OpenAI → the
  Realtime stand-in, which cuts the connection after the first turn
  (``drop_after_turns``) so the intake takes over the live call;
- the delivery worker as a separate ``receptionist worker`` process, SIGKILLed while the
  composite request that writes a call's records is in Salesforce — every other time right
  after Salesforce wrote them, otherwise before it carried the request out (the stand-in
  kills it from the thread serving that request, so the moment is exact) — and started
  again; the lease it held expires and the job is taken again;
- the Twilio stand-in placing signed calls, a distinct caller number each; a share of them
  get duplicate status callbacks — the stand-in's repeat to the same node, or a pair
  posted at the same moment to both nodes;
- Salesforce faults sprinkled through the run, one outstanding at a time: 500, 503, 401
  (INVALID_SESSION_ID), every token expired, timeouts (nothing written), timeouts after
  processing (written, answer lost) and REQUEST_LIMIT_EXCEEDED.

The figures come from the database and the stand-in's records: summaries stored,
deliveries, Leads and call Tasks, duplicates (call Tasks per CallObject > 1, Leads per
phone > 1) and lost calls (no stored summary, or no call Task in Salesforce).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from crm.store import OutboxJob, Store
from tests.fault_rig import (
    BUSINESS_NUMBER,
    PUBLIC_BASE_URL,
    ChildProcess,
    CountingSalesforceStandin,
    SharedClientTwilioStandin,
    stop_all,
    wait_until_serving,
)
from tests.ports import free_port
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio_script import (
    CallerScript,
    CallResult,
    HangUp,
    Hold,
    ListenUntilAgentDone,
    Say,
)

BUSINESSES_TOML = f"""
[[business]]
number = "{BUSINESS_NUMBER}"
name = "Bay Plumbing & Air"
timezone = "America/Los_Angeles"
services = ["plumbing", "heating", "air conditioning"]
service_area = "San Francisco and the Peninsula"
on_call_phone = "+14155550111"
greeting = "Thanks for calling Bay Plumbing and Air. How can I help?"
"""

# Salesforce faults, by weight; "expired_token" is SalesforceStandin.expire_tokens().
SALESFORCE_FAULT_MIX: tuple[tuple[str, int], ...] = (
    ("500", 5),
    ("503", 5),
    ("timeout", 2),
    ("timeout_after_processing", 3),
    ("401", 2),
    ("expired_token", 2),
    ("403_limit", 1),
)
FIRST_NAMES = ("Maria", "John", "Dana", "Sam", "Priya", "Luis", "Aiko", "Omar", "Grace", "Tom")
LAST_NAMES = ("Lopez", "Smith", "Reyes", "Park", "Shah", "Garcia", "Tanaka", "Haddad", "Kim")
NEEDS = (
    "my water heater is leaking in the garage",
    "I would like a quote to replace my old furnace",
    "the air conditioning is not cooling at all",
    "my basement is flooding, a pipe burst under the sink",
    "the kitchen drain is clogged",
    "I smell gas near the stove",
    "no hot water since this morning",
)
URGENCIES = ("it can wait a few days", "today please", "no rush, this week is fine")
CALLBACK_TIMES = ("tomorrow morning", "this afternoon", "after 5", "any time")
DEFAULT_SEED = 20240611
KILL_WAIT_SECONDS = 120.0
"""How long an armed worker kill may wait for a write before the run reports it missing."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How big the run is and how much goes wrong in it."""

    calls: int = 1000
    realtime_drops: int = 30
    """Calls through the Realtime instance whose connection is cut after the first turn."""
    duplicate_callback_share: float = 0.2
    salesforce_fault_share: float = 0.25
    """Salesforce faults injected per call placed (each fault fails one request)."""
    worker_kills: int = 5
    concurrency: int = 16
    """Intake calls in flight at once."""
    realtime_speed: float = 8.0
    drain_timeout_s: float = 300.0
    seed: int = DEFAULT_SEED
    retry_base_seconds: float = 0.05
    rate_limit_seconds: float = 0.2
    lease_seconds: float = 2.0
    max_attempts: int = 50
    salesforce_timeout_seconds: float = 0.5
    """The service's Salesforce client timeout; the stand-in stalls longer than this."""

    @property
    def intake_calls(self) -> int:
        return self.calls - self.realtime_drops


@dataclass(slots=True)
class PlacedCall:
    call_sid: str
    phone: str
    kind: str  # "intake" | "realtime_drop"
    duplicate_callbacks: str = ""  # "" | "sequential" | "concurrent"
    caller_errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FaultRunReport:
    """The figures of one run (see :meth:`lines`)."""

    calls_placed: int = 0
    intake_calls: int = 0
    realtime_calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    calls_touched: int = 0
    summaries_stored: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    not_finished: int = 0
    found_already_delivered: int = 0
    leads: int = 0
    call_tasks: int = 0
    duplicate_call_tasks: int = 0
    duplicate_leads: int = 0
    lost: list[str] = field(default_factory=list)
    kills_mid_delivery: int = 0
    kills_after_write: int = 0
    killed_after_write_found_written: int = 0
    """Calls whose worker was killed after Salesforce wrote them, whose retry then found
    the records already there (and wrote nothing)."""
    killed_before_write_delivered_once: int = 0
    """Calls whose worker was killed before Salesforce wrote them, delivered by the retry
    with exactly one call Task."""
    salesforce_faults_left_unconsumed: int = 0
    caller_errors: list[str] = field(default_factory=list)
    unexpected_errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    calls_seconds: float = 0.0
    median_attempts: float = 0.0
    max_attempts: int = 0

    @property
    def faults_total(self) -> int:
        return sum(self.faults.values())

    @property
    def fault_share(self) -> float:
        return self.faults_total / self.calls_placed if self.calls_placed else 0.0

    @property
    def touched_share(self) -> float:
        return self.calls_touched / self.calls_placed if self.calls_placed else 0.0

    @property
    def duplicates(self) -> int:
        return self.duplicate_call_tasks + self.duplicate_leads

    def lines(self) -> list[str]:
        rows: list[tuple[str, str]] = [
            (
                "calls placed",
                f"{self.calls_placed}  (scripted intake {self.intake_calls},"
                f" Realtime then intake {self.realtime_calls})",
            ),
            ("faults injected", f"{self.faults_total}  = {self.fault_share:.1%} of calls"),
        ]
        for kind, count in sorted(self.faults.items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append((f"  {kind}", str(count)))
        rows += [
            ("calls touched by >= 1 fault", f"{self.calls_touched}  = {self.touched_share:.1%}"),
            (
                "worker killed mid-delivery",
                f"{self.kills_mid_delivery}  ({self.kills_after_write} after Salesforce wrote"
                f" the records: {self.killed_after_write_found_written} found written on the"
                f" retry; {self.kills_mid_delivery - self.kills_after_write} before:"
                f" {self.killed_before_write_delivered_once} written once by the retry)",
            ),
            ("summaries stored", str(self.summaries_stored)),
            (
                "calls delivered",
                f"{self.delivered}  ({self.found_already_delivered} found already written"
                " on a retry)",
            ),
            ("dead-lettered", str(self.dead_lettered)),
            ("not finished at the end", str(self.not_finished)),
            ("Leads in the Salesforce stand-in", str(self.leads)),
            ("call Tasks in the stand-in", str(self.call_tasks)),
            (
                "duplicates",
                f"{self.duplicates}  (Tasks per CallObject > 1: {self.duplicate_call_tasks},"
                f" Leads per phone > 1: {self.duplicate_leads})",
            ),
            ("lost", f"{len(self.lost)}  (no stored summary, or no call Task in Salesforce)"),
            ("errors seen by callers", str(len(self.caller_errors))),
            ("unexpected errors (tracebacks)", str(len(self.unexpected_errors))),
            ("Salesforce faults never consumed", str(self.salesforce_faults_left_unconsumed)),
            ("delivery attempts", f"median {self.median_attempts:g}, max {self.max_attempts}"),
            (
                "wall time",
                f"{self.wall_seconds:.1f} s  (calls placed in {self.calls_seconds:.1f} s,"
                " then the outbox drained)",
            ),
        ]
        return [f"{label:<40}{value}" for label, value in rows]


def salesforce_fault_schedule(count: int, rng: random.Random) -> list[str]:
    """``count`` fault kinds in the proportions of SALESFORCE_FAULT_MIX, shuffled; two
    authentication faults are never adjacent (a 401 right after a renewed token is a
    real credentials problem, dead-lettered by design, not a transient fault)."""
    total = sum(weight for _, weight in SALESFORCE_FAULT_MIX)
    kinds: list[str] = []
    for kind, weight in SALESFORCE_FAULT_MIX:
        kinds += [kind] * round(count * weight / total)
    rng.shuffle(kinds)
    auth = {"401", "expired_token"}
    for i in range(1, len(kinds)):
        if kinds[i] in auth and kinds[i - 1] in auth:
            for j in range(i + 1, len(kinds)):
                if kinds[j] not in auth:
                    kinds[i], kinds[j] = kinds[j], kinds[i]
                    break
    return kinds[:count]


class FaultRun:
    """One run of a :class:`FaultPlan`; ``await FaultRun(plan, workdir).run()``."""

    def __init__(
        self, plan: FaultPlan, workdir: Path, *, progress: Callable[[str], None] | None = None
    ) -> None:
        self.plan = plan
        self.workdir = workdir
        self.say = progress or (lambda _line: None)
        self.rng = random.Random(plan.seed)
        self.placed: list[PlacedCall] = []
        self.calls_done = 0
        self.calls_finished = asyncio.Event()
        self.everything_done = asyncio.Event()
        self.kills = 0
        self.kills_mid_delivery = 0
        self.kills_after_write = 0
        self.expiries = 0
        self.touched_by_kill: set[str] = set()
        self.killed_after_write: list[str] = []
        self.killed_before_write: list[str] = []
        self.kill_errors: list[str] = []
        self.database_url = f"sqlite:///{workdir / 'receptionist.db'}"
        self.started = time.monotonic()
        self.calls_seconds = 0.0

    # -- configuration -----------------------------------------------------------------

    def _environment(
        self,
        sf: SalesforceStandin,
        twilio: SharedClientTwilioStandin,
        ai: RealtimeStandin | None,
        businesses: Path,
    ) -> dict[str, str]:
        """The settings of every process, as environment variables (DESIGN.md's names)."""
        plan = self.plan
        env = {
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "DATABASE_URL": self.database_url,
            "BUSINESSES_FILE": str(businesses),
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_API_BASE_URL": twilio.api_base_url,
            "SALESFORCE_LOGIN_URL": sf.login_url,
            "SALESFORCE_CLIENT_ID": sf.client_id,
            "SALESFORCE_CLIENT_SECRET": sf.client_secret,
            "SALESFORCE_TIMEOUT_SECONDS": str(plan.salesforce_timeout_seconds),
            "DELIVERY_RETRY_BASE_SECONDS": str(plan.retry_base_seconds),
            "DELIVERY_RATE_LIMIT_SECONDS": str(plan.rate_limit_seconds),
            "DELIVERY_MAX_ATTEMPTS": str(plan.max_attempts),
            "DELIVERY_LEASE_SECONDS": str(plan.lease_seconds),
            "REQUESTS_CA_BUNDLE": sf.ca_bundle,
            "SSL_CERT_FILE": sf.ca_bundle,
        }
        if ai is not None:
            env |= {"OPENAI_API_KEY": ai.api_key, "OPENAI_BASE_URL": ai.base_url}
        return env

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> FaultRunReport:
        businesses = self.workdir / "businesses.toml"
        businesses.write_text(BUSINESSES_TOML)
        store = Store.from_url(self.database_url)
        store.create_schema()  # before two services race to create it
        sf = CountingSalesforceStandin()
        sf.timeout_seconds = self.plan.salesforce_timeout_seconds + 0.3
        sf.start()
        ai = RealtimeStandin(turns=[], extraction=None, generation_speed=8.0)
        twilio = SharedClientTwilioStandin()
        twilio.agent_busy = ai.responding  # callers wait for whole answers
        children: list[ChildProcess] = []
        try:
            async with twilio, httpx.AsyncClient(trust_env=False, timeout=30.0) as http:
                await ai.start()
                ports = {"intake": free_port(), "realtime": free_port()}
                for name, port in ports.items():
                    env = self._environment(
                        sf, twilio, ai if name == "realtime" else None, businesses
                    )
                    children.append(ChildProcess.service(name, port, env, self.workdir))
                urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
                children.append(
                    ChildProcess.worker(
                        self._environment(sf, twilio, None, businesses), self.workdir
                    )
                )
                for child in children:
                    child.start()
                for child in children[:2]:
                    await wait_until_serving(http, child, urls[child.name])
                worker = children[2]
                self.say("services and worker started; placing calls")
                self.started = time.monotonic()
                await self._drive(
                    sf, twilio, ai, worker, store, http, urls["intake"], urls["realtime"]
                )
                wall = time.monotonic() - self.started
                stop_all(children)
                report = self._report(sf, ai, store, wall)
                for child in children:
                    report.unexpected_errors += child.tracebacks()
                return report
        finally:
            stop_all(children)
            for child in children:
                child.close()
            await ai.stop()
            sf.stop()
            store.engine.dispose()

    async def _drive(
        self,
        sf: CountingSalesforceStandin,
        twilio: SharedClientTwilioStandin,
        ai: RealtimeStandin,
        worker: ChildProcess,
        store: Store,
        http: httpx.AsyncClient,
        intake_url: str,
        realtime_url: str,
    ) -> None:
        plan = self.plan
        dup_indexes = set(
            self.rng.sample(range(plan.calls), round(plan.calls * plan.duplicate_callback_share))
        )
        realtime_indexes = sorted(self.rng.sample(range(plan.calls), plan.realtime_drops))
        semaphore = asyncio.Semaphore(plan.concurrency)
        intake_done = 0

        async def intake_call(index: int) -> None:
            nonlocal intake_done
            async with semaphore:
                await self._intake_call(
                    http, index, index in dup_indexes, twilio, intake_url, realtime_url
                )
            intake_done += 1
            self._call_done()

        async def realtime_calls() -> None:
            """One at a time (the stand-in's drop is armed per call), spread over the run."""
            for number, index in enumerate(realtime_indexes):
                while intake_done < number * plan.intake_calls / len(realtime_indexes):
                    await asyncio.sleep(0.05)
                await self._realtime_call(
                    http, index, index in dup_indexes, twilio, ai, realtime_url
                )
                self._call_done()

        injector = asyncio.create_task(self._inject_salesforce_faults(sf))
        killer = asyncio.create_task(self._kill_worker(sf, worker, store))
        async with asyncio.TaskGroup() as calls:
            calls.create_task(realtime_calls())
            for index in range(plan.calls):
                if index not in realtime_indexes:
                    calls.create_task(intake_call(index))
        self.calls_seconds = time.monotonic() - self.started
        self.calls_finished.set()
        self.say(f"{len(self.placed)} calls placed; draining the outbox")
        await killer
        await self._drain(store)
        self.everything_done.set()
        await injector

    def _call_done(self) -> None:
        self.calls_done += 1
        if self.calls_done % 100 == 0:
            self.say(f"{self.calls_done} calls done")

    # -- callers ---------------------------------------------------------------------

    def _phone(self, index: int) -> str:
        return f"+1628{5550000 + index:07d}"

    async def _intake_call(
        self,
        http: httpx.AsyncClient,
        index: int,
        duplicate: bool,
        twilio: SharedClientTwilioStandin,
        intake_url: str,
        other_url: str,
    ) -> None:
        rng = random.Random(self.plan.seed * 100_003 + index)
        phone = self._phone(index)
        mode = "" if not duplicate else ("sequential" if index % 2 else "concurrent")
        script = CallerScript(
            speech=[
                f"this is {rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                rng.choice(NEEDS),
                rng.choice(URGENCIES),
                "yes, this number",
                rng.choice(CALLBACK_TIMES),
            ]
        )
        result = await twilio.place_call_over(
            http,
            app_url=intake_url,
            from_=phone,
            script=script,
            status_callback=mode != "concurrent",
            duplicate_status_callback=mode == "sequential",
        )
        call = PlacedCall(result.call_sid, phone, "intake", mode)
        if mode == "concurrent":
            statuses = await asyncio.gather(
                *(
                    self._post_status(http, url, twilio, result.call_sid, phone)
                    for url in (intake_url, other_url)
                )
            )
            result.status_callbacks.extend(statuses)
        call.caller_errors = _caller_errors(result)
        self.placed.append(call)

    async def _post_status(
        self,
        http: httpx.AsyncClient,
        app_url: str,
        twilio: SharedClientTwilioStandin,
        sid: str,
        phone: str,
    ) -> int:
        """The completed-call status callback as Twilio signs it, posted to one node."""
        params = {
            "CallSid": sid,
            "AccountSid": twilio.account_sid,
            "From": phone,
            "To": BUSINESS_NUMBER,
            "CallStatus": "completed",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            "CallDuration": "42",
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
        }
        url = PUBLIC_BASE_URL + "/twilio/status"
        signature = RequestValidator(twilio.auth_token).compute_signature(url, params)
        response = await http.post(
            app_url + "/twilio/status", data=params, headers={"X-Twilio-Signature": signature}
        )
        return response.status_code

    async def _realtime_call(
        self,
        http: httpx.AsyncClient,
        index: int,
        duplicate: bool,
        twilio: SharedClientTwilioStandin,
        ai: RealtimeStandin,
        realtime_url: str,
    ) -> None:
        rng = random.Random(self.plan.seed * 100_019 + index)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        phone = self._phone(index)
        ai.turns.append(
            ScriptedTurn(
                f"Hi, this is {first} {last} and my furnace is making a banging noise.",
                reply=f"Thanks {first}, I've noted the banging furnace.",
                reply_ms=800,
                tool_calls=[
                    ToolCall(
                        "record_caller_details",
                        {"first_name": first, "last_name": last, "need": "Furnace banging noise"},
                    )
                ],
            )
        )
        ai.drop_after_turns = 1
        sessions_before = len(ai.sessions)
        script = CallerScript(
            # After speaking, the caller holds on until the app hands the call over.
            steps=[ListenUntilAgentDone(), Say(ms=1000), Hold(timeout_s=60), HangUp()],
            speech=[rng.choice(URGENCIES), "this number", rng.choice(CALLBACK_TIMES)],
        )
        result = await twilio.place_call_over(
            http,
            app_url=realtime_url,
            from_=phone,
            script=script,
            speed=self.plan.realtime_speed,
            duplicate_status_callback=duplicate,
        )
        call = PlacedCall(
            result.call_sid, phone, "realtime_drop", "sequential" if duplicate else ""
        )
        call.caller_errors = _caller_errors(result)
        dropped = any(s.dropped for s in ai.sessions[sessions_before:])
        if not dropped:
            session = ai.sessions[-1] if len(ai.sessions) > sessions_before else None
            call.caller_errors.append(
                "the Realtime connection was not dropped: "
                f"{result.script_timeouts} {result.stream_closed_by} {result.ended_by} "
                f"{session and (session.utterances, session.turns_answered, session.closed)}"
            )
        if not result.said:
            call.caller_errors.append("the intake did not take over after the drop")
        self.placed.append(call)

    # -- Salesforce faults -------------------------------------------------------------

    async def _inject_salesforce_faults(self, sf: CountingSalesforceStandin) -> None:
        """One fault outstanding at a time, spread over the calls; goes on while the
        outbox drains, and stops when everything is delivered."""
        plan = self.plan
        schedule = salesforce_fault_schedule(
            round(plan.calls * plan.salesforce_fault_share), self.rng
        )
        expiry_tokens_at: int | None = None
        gap_from = 0
        for number, kind in enumerate(schedule):
            while not self.everything_done.is_set():
                if expiry_tokens_at is not None and sf.token_requests > expiry_tokens_at:
                    expiry_tokens_at = None
                    gap_from = len(sf.api_requests)
                due = self.calls_finished.is_set() or self.calls_done >= number * plan.calls / len(
                    schedule
                )
                quiet = (
                    expiry_tokens_at is None
                    and sf.pending_faults() == 0
                    and len(sf.api_requests) >= max(gap_from, sf.requests_at_last_fault) + 2
                )
                if due and quiet:
                    break
                await asyncio.sleep(0.01)
            else:
                return
            if kind == "expired_token":
                expiry_tokens_at = sf.token_requests
                sf.expire_tokens()
                self.expiries += 1
            else:
                sf.inject_fault(kind)

    # -- the worker ---------------------------------------------------------------------

    async def _kill_worker(
        self, sf: CountingSalesforceStandin, worker: ChildProcess, store: Store
    ) -> None:
        """SIGKILL the worker ``worker_kills`` times over the run, each time in the middle
        of the composite request that writes a call's records: the first, third, … time
        right *after* Salesforce wrote them (the worst moment for duplicates), the others
        before Salesforce carried the request out. The stand-in does the kill from the
        thread serving that request (:meth:`CountingSalesforceStandin.arm_worker_kill`), so
        the moment is exact, whatever the scheduling. The worker is started again at once;
        the job's lease has to expire before the new process takes it."""
        plan = self.plan
        for number in range(plan.worker_kills):
            target = (number + 1) * plan.calls / (plan.worker_kills + 1)
            while self.calls_done < target and not self.calls_finished.is_set():
                await asyncio.sleep(0.05)
            assert worker.process is not None
            pid = worker.process.pid
            armed = sf.arm_worker_kill(
                after_write=number % 2 == 0, kill=lambda pid=pid: os.kill(pid, signal.SIGKILL)
            )
            # Calls still to come are delivered after this point, so a write does come.
            if not await asyncio.to_thread(armed.done.wait, KILL_WAIT_SECONDS):
                self.kill_errors.append(f"kill {number + 1}: no write reached Salesforce")
                sf.disarm_worker_kill()
                continue
            worker.process.wait()
            self.kills += 1
            self.kills_mid_delivery += 1
            assert armed.call_sid is not None
            self.touched_by_kill.add(armed.call_sid)
            if armed.after_write:
                self.kills_after_write += 1
                self.killed_after_write.append(armed.call_sid)
            else:
                self.killed_before_write.append(armed.call_sid)
            worker.start()

    async def _drain(self, store: Store) -> None:
        sids = [call.call_sid for call in self.placed]
        deadline = time.monotonic() + self.plan.drain_timeout_s
        last_change = time.monotonic()
        last_state: tuple[int, int] | None = None
        while time.monotonic() < deadline:
            jobs = await asyncio.to_thread(_jobs, store, sids)
            finished = sum(1 for job in jobs.values() if job.state in ("delivered", "dead"))
            if finished == len(sids):
                return
            state = (len(jobs), finished)
            if state != last_state:
                last_state, last_change = state, time.monotonic()
            elif len(jobs) == finished and time.monotonic() - last_change > 15:
                return  # some calls were never finalized; they will count as lost
            await asyncio.sleep(0.2)

    # -- figures -------------------------------------------------------------------------

    def _report(
        self, sf: CountingSalesforceStandin, ai: RealtimeStandin, store: Store, wall: float
    ) -> FaultRunReport:
        report = FaultRunReport(wall_seconds=wall, calls_seconds=self.calls_seconds)
        sids = [call.call_sid for call in self.placed]
        report.calls_placed = len(self.placed)
        report.intake_calls = sum(1 for c in self.placed if c.kind == "intake")
        report.realtime_calls = sum(1 for c in self.placed if c.kind == "realtime_drop")
        faults = report.faults
        for kind, count in sf.faults_served.items():
            faults[f"salesforce {kind}"] += count
        faults["salesforce token expired (all tokens)"] += self.expiries
        faults["realtime connection dropped"] = sum(1 for s in ai.sessions if s.dropped)
        faults["duplicate status callback"] = sum(1 for c in self.placed if c.duplicate_callbacks)
        faults["worker SIGKILL"] = self.kills
        report.kills_mid_delivery = self.kills_mid_delivery
        report.kills_after_write = self.kills_after_write
        report.salesforce_faults_left_unconsumed = sf.pending_faults()

        jobs = _jobs(store, sids)
        summaries = {sid for sid in sids if store.get_summary(sid) is not None}
        report.summaries_stored = len(summaries)
        states = Counter(job.state for job in jobs.values())
        report.delivered = states["delivered"]
        report.dead_lettered = states["dead"]
        report.not_finished = len(sids) - report.delivered - report.dead_lettered
        for job in jobs.values():
            if job.result_json and json.loads(job.result_json).get("already_delivered"):
                report.found_already_delivered += 1
        attempts = [job.attempts for job in jobs.values()]
        if attempts:
            report.median_attempts = statistics.median(attempts)
            report.max_attempts = max(attempts)

        leads = sf.records("Lead")
        tasks = [t for t in sf.records("Task") if t.get("CallObject")]
        report.leads = len(leads)
        report.call_tasks = len(tasks)
        per_call = Counter(t["CallObject"] for t in tasks)
        per_phone = Counter(lead.get("Phone") for lead in leads)
        report.duplicate_call_tasks = sum(n - 1 for n in per_call.values() if n > 1)
        report.duplicate_leads = sum(n - 1 for n in per_phone.values() if n > 1)
        report.lost = [sid for sid in sids if sid not in summaries or per_call[sid] == 0]
        for sid in self.killed_after_write:
            job = jobs.get(sid)
            result = json.loads(job.result_json) if job and job.result_json else {}
            if result.get("already_delivered"):
                report.killed_after_write_found_written += 1
        for sid in self.killed_before_write:
            job = jobs.get(sid)
            if job is not None and job.state == "delivered" and per_call[sid] == 1:
                report.killed_before_write_delivered_once += 1

        touched = {c.call_sid for c in self.placed if c.duplicate_callbacks}
        touched |= {c.call_sid for c in self.placed if c.kind == "realtime_drop"}
        touched |= {sid for sid, job in jobs.items() if job.attempts > 1}
        touched |= self.touched_by_kill
        report.calls_touched = len(touched)

        for call in self.placed:
            report.caller_errors += [f"{call.call_sid}: {e}" for e in call.caller_errors]
        report.unexpected_errors = (
            list(ai.internal_errors)
            + [f"realtime session: {v}" for s in ai.sessions for v in s.violations]
            + self.kill_errors
        )
        return report


def _caller_errors(result: CallResult) -> list[str]:
    errors = [str(e) for e in result.errors]
    errors += [f"webhook HTTP {s}" for s in result.webhook_statuses if s != 200]
    errors += [f"status callback HTTP {s}" for s in result.status_callbacks if s != 204]
    return errors


def _jobs(store: Store, sids: list[str]) -> dict[str, OutboxJob]:
    wanted = set(sids)
    with store.sessions() as session:
        return {
            job.call_sid: job
            for job in session.scalars(select(OutboxJob))
            if job.call_sid in wanted
        }
