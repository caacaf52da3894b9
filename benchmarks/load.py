"""Load benchmark: N concurrent real-time calls against one server process pinned to one core.

For each N of the sweep and each variant, side by side in the same sitting:

- ``after``: ``receptionist serve`` from this tree;
- ``before``: ``receptionist serve`` from another tree (``--before-tree``, e.g. a
  ``git worktree`` of the commit before the performance work);
- ``bare``: ``benchmarks/bare_relay.py``, the cheapest correct relay (the floor);
- ``bare-ff``: the same relay with the service's own websocket framing
  (``telephony.ws_server``, ``telephony.ws_framing``) instead of stock ``websockets``';
- any ``--tree NAME=DIR``: ``receptionist serve`` from that tree as variant ``NAME``;
- ``after-bN``: this tree with ``REALTIME_AUDIO_BATCH_FRAMES=N``; ``after-dN``: this tree
  with ``DELIVERY_CONCURRENCY=N`` (CRM deliveries a process makes at once).

The server runs under ``taskset -c <server core>``; this process (the load generator, the
lean Realtime stand-in and the Salesforce stand-in, which answers after 100 ms) is pinned to
the other core. Each call: a signed ``/twilio/voice`` webhook, a signed upgrade,
``connected``/``start``, then a 20 ms μ-law frame every 20 ms in real time with speech
bursts; the stand-in's energy VAD answers each utterance with 2.4 s of audio in real-time
20 ms deltas; the caller echoes marks when their audio has "played", barges in 1 s into
every other answer, and the call ends with ``stop`` and a status callback. During the
measurement window calls are churned (one hangs up and a new one starts, ``--churn`` per
second), which is where hangup → CRM record is measured.

Server CPU is CPU-seconds of the server process (utime + stime from /proc, all threads)
over the window, divided by call-seconds — not wall time, so other load on the machine
changes it less (it still changes it: caches, frequency, SMT siblings). The generator
reports its own ticker lateness and CPU use, and flags a step where it fell behind.

Usage:
    .venv/bin/python benchmarks/load.py --calls 25,50,100 [--window 20]
        [--before-tree /tmp/before] [--variants before,after,bare]
    .venv/bin/python benchmarks/load.py --calls 100 --profile /tmp/prof --variants before,after
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load_rig import LATE_S, Call, Rig, percentile  # noqa: E402
from tests.conversation_scripts import CALLBACK_EXTRACTION  # noqa: E402
from tests.standins.salesforce import SalesforceStandin  # noqa: E402

PUBLIC_BASE_URL = "https://receptionist.example.com"
AUTH_TOKEN = "b" * 32
BUSINESS_NUMBER = "+14155559999"
BUSINESSES = f"""
[[business]]
number = "{BUSINESS_NUMBER}"
name = "Bay Plumbing & Air"
timezone = "America/Los_Angeles"
services = ["plumbing", "heating"]
service_area = "San Francisco"
greeting = "Thanks for calling Bay Plumbing and Air. How can I help?"
"""
CALL_SID = re.compile(rb"CA[0-9a-f]{32}")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class SlowSalesforce(SalesforceStandin):
    """The Salesforce stand-in answering every data request after ``latency`` seconds, and
    noting when the first write naming a call's CallSid (the call Task's CallObject) has
    been answered: the call is in the CRM."""

    latency = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.logged: dict[str, float] = {}
        self._logged_lock = threading.Lock()

    def _data_request(
        self, method: str, path: str, query: str, raw: bytes, headers: Mapping[str, str]
    ) -> Any:
        time.sleep(self.latency)
        response = super()._data_request(method, path, query, raw, headers)
        if method in ("POST", "PATCH") and response.status < 300:
            now = time.monotonic()
            with self._logged_lock:
                for sid in CALL_SID.findall(raw):
                    self.logged.setdefault(sid.decode(), now)
        return response


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """The process's CPU (all threads, ended ones included), or one thread's (``tid``)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def off_loop_cpu(pid: int) -> float:
    """CPU of every thread but the main one (the event loop's): the worker threads that
    run database calls and other blocking work."""
    return cpu_seconds(pid) - cpu_seconds(pid, pid)


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Variant:
    name: str
    tree: Path | None  # None: the bare relay
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class StepResult:
    variant: str
    calls: int
    cpu_per_call_second: float
    relay_cpu_per_call_second: float
    relay_off_loop_share: float
    cpu_per_call_lifecycle: float
    rss_base_mb: float
    rss_per_call_mb: float
    late_c2m: int
    late_c2m_quiet: int
    """Of ``late_c2m``, those in the first half-window (no call starting or ending)."""
    frames_c2m: int
    late_m2c: int
    late_m2c_quiet: int
    frames_m2c: int
    c2m_p50: float | None
    c2m_p99: float | None
    m2c_p50: float | None
    m2c_p99: float | None
    barge_p50: float | None
    barge_p99: float | None
    barge_count: int
    barge_missed: int
    first_audio_p50: float | None
    crm_p50: float | None
    crm_p95: float | None
    crm_count: int
    churned: int
    failed: int
    gen_cpu: float
    tick_late_p99: float | None
    tick_late_max: float | None
    generator_behind: bool
    cpu_spread: tuple[float, float, int] | None = None


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


class Server:
    """One server process under test, pinned to a core (optionally under py-spy)."""

    def __init__(self, variant: Variant, port: int, env: dict[str, str], workdir: Path, core: int):
        self.variant = variant
        self.port = port
        self.log_path = workdir / f"{variant.name}-{port}.log"
        python = sys.executable
        if variant.tree is None:
            command = [python, str(ROOT / "benchmarks" / "bare_relay.py"), "--port", str(port)]
            if variant.name == "bare-ff":
                command.append("--fast-frames")
            cwd = ROOT
        else:
            command = [
                python,
                "-m",
                "telephony.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            cwd = variant.tree
            env = {**env, **variant.env, "PYTHONPATH": str(variant.tree)}
        command = ["taskset", "-c", str(core), *command]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        atexit.register(self._kill)  # never leave a server behind, even on Ctrl-C
        self.pid = self.process.pid

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        self.pid = self._python_pid()

    def _python_pid(self) -> int:
        """The interpreter's pid (``taskset`` execs it, so it is the child's pid)."""
        return self.process.pid

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        for _ in range(150):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def run_step(
    args: argparse.Namespace,
    variant: Variant,
    calls: int,
    sf: SlowSalesforce,
    workdir: Path,
    profile: Path | None,
) -> StepResult:
    port = free_port()
    rig = Rig(
        app_port=port,
        public_base_url=PUBLIC_BASE_URL,
        auth_token=AUTH_TOKEN,
        business_number=BUSINESS_NUMBER,
        extraction=CALLBACK_EXTRACTION,
    )
    await rig.start()
    businesses = workdir / "businesses.toml"
    businesses.write_text(BUSINESSES)
    env = {
        **os.environ,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": rig.account_sid,
        "TWILIO_API_BASE_URL": "http://127.0.0.1:9",  # no REST call is expected on this path
        "RECONCILE_INTERVAL_SECONDS": "0",
        "OPENAI_API_KEY": rig.api_key,
        "OPENAI_BASE_URL": rig.base_url,
        "DATABASE_URL": f"sqlite:///{workdir / f'{variant.name}-{calls}-{port}.db'}",
        "BUSINESSES_FILE": str(businesses),
        "SALESFORCE_LOGIN_URL": sf.login_url,
        "SALESFORCE_CLIENT_ID": sf.client_id,
        "SALESFORCE_CLIENT_SECRET": sf.client_secret,
        "REQUESTS_CA_BUNDLE": sf.ca_bundle,
        "SSL_CERT_FILE": sf.ca_bundle,
        "PYTHONUNBUFFERED": "1",
    }
    server = Server(variant, port, env, workdir, args.server_core)
    churned: dict[str, float] = {}
    try:
        await server.ready()
        await asyncio.sleep(1.5)  # the greeting renders at start-up
        # One warm-up call end to end (webhook, stream, finalize, CRM), so the base RSS
        # includes what the first call loads lazily and "per call" is really per call.
        warm = await rig.place_call()
        if warm is not None:
            await asyncio.sleep(3)
            await rig.hang_up(warm)
            deadline = time.monotonic() + 15
            while variant.tree is not None and warm.call_sid not in sf.logged:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        rss_base = rss_mb(server.pid)
        ramp = max(2.0, calls / 40)
        placing = []
        for _ in range(calls):
            placing.append(asyncio.create_task(rig.place_call()))
            await asyncio.sleep(ramp / calls)
        await asyncio.gather(*placing)
        await asyncio.sleep(args.warmup)
        rig.measuring = True
        cpu0, gen0, t0 = cpu_seconds(server.pid), time.process_time(), time.monotonic()
        off0 = off_loop_cpu(server.pid)
        profiler = None
        if profile is not None:  # py-spy samples the window only (GIL-holding samples)
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            profiler = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--gil",
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(int(args.window)),
                    "-o",
                    str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        async def churn() -> None:
            replacements: list[asyncio.Task[Any]] = []
            while True:
                await asyncio.sleep(1 / args.churn)
                live = [c for c in rig.calls if c.conn is not None and c.conn.open]
                if not live:
                    continue
                oldest: Call = live[0]

                async def replace(call: Call) -> None:
                    hung_up = await rig.hang_up(call)
                    if hung_up is not None:
                        churned[call.call_sid] = hung_up
                    await rig.place_call()

                replacements.append(asyncio.create_task(replace(oldest)))

        # First half: N calls talking, none starting or ending (the relay's cost).
        await asyncio.sleep(args.window / 2)
        cpu_mid, t_mid = cpu_seconds(server.pid), time.monotonic()
        off_mid = off_loop_cpu(server.pid)
        mid_c2m, mid_m2c = len(rig.stats.c2m), len(rig.stats.m2c)
        # Second half: the same, plus calls ending and new ones starting (each call's
        # webhook, stream set-up, finalization, extraction and CRM delivery).
        churner = asyncio.create_task(churn())
        await asyncio.sleep(args.window / 2)
        cpu1, gen1, t1 = cpu_seconds(server.pid), time.process_time(), time.monotonic()
        ended_in_window = len(churned)
        rss_loaded = rss_mb(server.pid)
        rig.measuring = False
        if profiler is not None:
            await asyncio.to_thread(profiler.wait)
        churner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await churner
        await asyncio.gather(*(rig.hang_up(c) for c in list(rig.calls)), return_exceptions=True)
        if variant.tree is not None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(s not in sf.logged for s in churned):
                await asyncio.sleep(0.2)
    finally:
        await server.stop()
        await rig.stop()
    stats = rig.stats
    held = (int(variant.env.get("REALTIME_AUDIO_BATCH_FRAMES", "1")) - 1) * 0.020
    crm = [sf.logged[s] - t for s, t in churned.items() if s in sf.logged]
    call_seconds = calls * (t1 - t0)
    late_p99 = percentile(stats.tick_late, 99)
    late_max = max(stats.tick_late) if stats.tick_late else None
    gen_cpu = (gen1 - gen0) / (t1 - t0)
    return StepResult(
        variant=variant.name,
        calls=calls,
        cpu_per_call_second=(cpu1 - cpu0) / call_seconds,
        relay_cpu_per_call_second=(cpu_mid - cpu0) / (calls * (t_mid - t0)),
        relay_off_loop_share=(off_mid - off0) / max(cpu_mid - cpu0, 1e-9),
        cpu_per_call_lifecycle=((cpu1 - cpu_mid) - (cpu_mid - cpu0) / (t_mid - t0) * (t1 - t_mid))
        / max(1, ended_in_window),
        rss_base_mb=rss_base,
        rss_per_call_mb=(rss_loaded - rss_base) / calls,
        # Batched caller audio holds frames by design: late means later than that too.
        late_c2m=sum(1 for v in stats.c2m if v > LATE_S + held),
        late_c2m_quiet=sum(1 for v in stats.c2m[:mid_c2m] if v > LATE_S + held),
        frames_c2m=len(stats.c2m),
        late_m2c=sum(1 for v in stats.m2c if v > LATE_S),
        late_m2c_quiet=sum(1 for v in stats.m2c[:mid_m2c] if v > LATE_S),
        frames_m2c=len(stats.m2c),
        c2m_p50=percentile(stats.c2m, 50),
        c2m_p99=percentile(stats.c2m, 99),
        m2c_p50=percentile(stats.m2c, 50),
        m2c_p99=percentile(stats.m2c, 99),
        barge_p50=percentile(stats.barge, 50),
        barge_p99=percentile(stats.barge, 99),
        barge_count=len(stats.barge),
        barge_missed=stats.barge_missed,
        first_audio_p50=percentile(stats.first_audio, 50),
        crm_p50=percentile(crm, 50),
        crm_p95=percentile(crm, 95),
        crm_count=len(crm),
        churned=len(churned),
        failed=stats.calls_failed,
        gen_cpu=gen_cpu,
        tick_late_p99=late_p99,
        tick_late_max=late_max,
        generator_behind=bool(
            gen_cpu > 0.85 or (late_p99 or 0) > 0.005 or (late_max or 0) > LATE_S
        ),
    )


def report(results: list[StepResult]) -> None:
    floor = {r.calls: r.relay_cpu_per_call_second for r in results if r.variant == "bare"}
    print(
        f"\n{'variant':9}{'N':>4} {'relay CPU':>10} {'x bare':>6} {'calls/core':>10} "
        f"{'per call':>9} {'3-min calls/core':>16} {'with churn':>10} {'RSS base':>8} "
        f"{'MB/call':>7} {'threads':>7}  relay CPU spread"
    )
    for r in results:
        relay = r.relay_cpu_per_call_second
        ratio = relay / floor[r.calls] if floor.get(r.calls) else None
        lifecycle = r.cpu_per_call_lifecycle if r.variant != "bare" else 0.0
        three_minutes = 1 / (relay + lifecycle / 180) if relay > 0 else 0
        spread = r.cpu_spread
        print(
            f"{r.variant:9}{r.calls:>4} {relay:>10.5f} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>6} "
            f"{1 / relay if relay else 0:>10.0f} {lifecycle * 1000:>7.0f}ms {three_minutes:>16.0f} "
            f"{r.cpu_per_call_second:>10.5f} {r.rss_base_mb:>8.0f} {r.rss_per_call_mb:>7.3f} "
            f"{r.relay_off_loop_share:>7.1%}  "
            + (f"{spread[0]:.5f}..{spread[1]:.5f} ({spread[2]} runs)" if spread else "")
        )
    print(
        f"\n{'variant':9}{'N':>4} {'late c>m':>12} {'late m>c':>12} {'c>m p50/p99':>13} "
        f"{'m>c p50/p99':>13} {'barge p50/p99':>13} {'greet':>6} {'CRM p50/p95 s':>20} "
        f"{'gen cpu':>7} {'tick p99/max':>13}"
    )
    for r in results:
        crm = (
            "-"
            if r.crm_p50 is None
            else f"{r.crm_p50:.2f}/{r.crm_p95:.2f} ({r.crm_count}/{r.churned})"
        )
        print(
            f"{r.variant:9}{r.calls:>4} {r.late_c2m:>5}/{r.frames_c2m:<6} "
            f"{r.late_m2c:>5}/{r.frames_m2c:<6} {ms(r.c2m_p50):>6}/{ms(r.c2m_p99):<6} "
            f"{ms(r.m2c_p50):>6}/{ms(r.m2c_p99):<6} {ms(r.barge_p50):>6}/{ms(r.barge_p99):<6} "
            f"{ms(r.first_audio_p50):>6} {crm:>20} {r.gen_cpu:>7.0%} "
            f"{ms(r.tick_late_p99):>6}/{ms(r.tick_late_max):<6}"
            + ("  GENERATOR BEHIND" if r.generator_behind else "")
            + (
                "  SERVER BEHIND (its CPU figure is not valid)"
                if r.c2m_p50 is None or r.late_c2m > 0.05 * r.frames_c2m
                else ""
            )
            + (f"  {r.failed} calls failed" if r.failed else "")
            + (f"  barge-ins without clear: {r.barge_missed}" if r.barge_missed else "")
        )
    print(
        "\nrelay CPU: server CPU-seconds per call-second (all threads) with N calls talking and"
        " none starting or ending; calls/core = 1 / that; x bare: ratio to the bare relay."
        "\nper call: CPU-seconds each call's start and end add (webhook, stream set-up,"
        " finalization, extraction, CRM delivery), from the churned half of the window;"
        "\n3-min calls/core: 1 / (relay + per call / 180 s); with churn: CPU s/call-s over the"
        " whole window; threads: the share of relay CPU spent off the event loop (worker"
        " threads: database calls).\nlate: frames delayed > 20 ms / frames measured"
        " (c>m caller→model,"
        " m>c model→caller; ms, through the server, one clock; each run's line splits them"
        " between the two half-windows); barge: the stand-in's"
        " speech_started → Twilio clear;\ngreet: stream start → first audio; CRM: stop → the"
        " Salesforce write naming the CallSid answered (Salesforce answers after 100 ms);"
        "\ngen cpu / tick: the generator's own CPU share and ticker lateness (ms)."
    )


async def main(args: argparse.Namespace) -> None:
    trees = {}
    for spec in args.tree:
        name, _, directory = spec.partition("=")
        if not name or not directory:
            raise SystemExit(f"--tree takes NAME=DIR, not {spec!r}")
        trees[name] = Path(directory).resolve()
    variants = []
    for name in args.variants.split(","):
        if name in ("bare", "bare-ff"):
            variants.append(Variant(name, None))
        elif name == "before":
            if args.before_tree is None:
                raise SystemExit("--before-tree is needed for the 'before' variant")
            variants.append(Variant("before", Path(args.before_tree).resolve()))
        elif name == "after":
            variants.append(Variant("after", ROOT))
        elif name in trees:  # --tree NAME=DIR: another tree, e.g. the previous commit
            variants.append(Variant(name, trees[name]))
        elif name.startswith("after-b") and name[7:].isdigit():  # caller audio batched
            variants.append(Variant(name, ROOT, {"REALTIME_AUDIO_BATCH_FRAMES": name[7:]}))
        elif name.startswith("after-d") and name[7:].isdigit():  # CRM deliveries at once
            variants.append(Variant(name, ROOT, {"DELIVERY_CONCURRENCY": name[7:]}))
        else:
            raise SystemExit(f"unknown variant {name!r}")
    results: list[StepResult] = []
    sf = SlowSalesforce()
    sf.start()
    try:
        with tempfile.TemporaryDirectory(prefix="load-") as tmp:
            workdir = Path(tmp)
            for calls, _ in [
                (int(n), r) for n in args.calls.split(",") for r in range(args.repeat)
            ]:
                for variant in variants:
                    profile = None
                    if args.profile:
                        Path(args.profile).mkdir(parents=True, exist_ok=True)
                        profile = Path(args.profile) / f"{variant.name}-{calls}.txt"
                    result = await run_step(args, variant, calls, sf, workdir, profile)
                    results.append(result)
                    print(
                        f"{variant.name} N={calls}: relay {result.relay_cpu_per_call_second:.5f},"
                        f" with churn {result.cpu_per_call_second:.5f} CPU s/call-s,"
                        f" {result.relay_off_loop_share:.1%} of the relay's off the event loop;"
                        f" late c>m/m>c {result.late_c2m_quiet}/{result.late_m2c_quiet} with no"
                        f" call starting or ending, {result.late_c2m - result.late_c2m_quiet}/"
                        f"{result.late_m2c - result.late_m2c_quiet} with churn",
                        flush=True,
                    )
    finally:
        sf.stop()
    report(aggregate(results))
    report_paired(results, [v.name for v in variants])


def report_paired(results: list[StepResult], names: list[str]) -> None:
    """Ratios of relay CPU within each round (variants run back to back), then their median:
    on a machine whose speed drifts between rounds, these are steadier than ratios of the
    medians."""
    if len(names) < 2:
        return
    by_round: dict[tuple[int, int], dict[str, float]] = {}
    seen: dict[tuple[int, str], int] = {}
    for r in results:
        index = seen.get((r.calls, r.variant), 0)
        seen[(r.calls, r.variant)] = index + 1
        by_round.setdefault((r.calls, index), {})[r.variant] = r.relay_cpu_per_call_second
    print("\npaired relay CPU ratios, median of the per-round ratios (min..max, rounds):")
    for calls in sorted({c for c, _ in by_round}):
        rounds = [v for (c, _), v in sorted(by_round.items()) if c == calls]
        for name in names:
            for base in names:
                if (
                    name == "bare"
                    or base == name
                    or (base != "bare" and names.index(base) > names.index(name))
                ):
                    continue
                ratios = sorted(r[name] / r[base] for r in rounds if r.get(name) and r.get(base))
                if ratios:
                    print(
                        f"  N={calls} {name} / {base}: {statistics.median(ratios):.2f}"
                        f" ({ratios[0]:.2f}..{ratios[-1]:.2f}, {len(ratios)})"
                    )


def aggregate(results: list[StepResult]) -> list[StepResult]:
    """One row per (variant, N): medians of the repeats, counts summed, CPU spread kept."""
    rows: list[StepResult] = []
    keys = dict.fromkeys((r.variant, r.calls) for r in results)
    for variant, calls in keys:
        group = [r for r in results if (r.variant, r.calls) == (variant, calls)]
        row = StepResult(**vars(group[0]))
        for name, value in vars(row).items():
            values = [getattr(r, name) for r in group]
            if isinstance(value, bool):
                setattr(row, name, any(values))
            elif isinstance(value, int) and name != "calls":
                setattr(row, name, sum(values))
            elif isinstance(value, float) or value is None:
                present = [v for v in values if v is not None]
                setattr(row, name, statistics.median(present) if present else None)
        cpus = [r.relay_cpu_per_call_second for r in group]
        row.cpu_spread = (min(cpus), max(cpus), len(cpus))
        rows.append(row)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="25,50", help="comma-separated sweep of N")
    parser.add_argument(
        "--variants",
        default="after,bare",
        help="before, after, after-bK (batch K frames), after-dK (K deliveries at once), bare,"
        " bare-ff (bare with the service's websocket framing),"
        " or a --tree NAME",
    )
    parser.add_argument("--before-tree", default=None)
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another tree to serve as variant NAME (repeatable), e.g. prev=/tmp/prev",
    )
    parser.add_argument("--window", type=float, default=20.0, help="measurement seconds per step")
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument(
        "--churn", type=float, default=1.0, help="calls ended and replaced per second"
    )
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs per step (medians)")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--generator-core", type=int, default=1)
    parser.add_argument("--profile", default=None, help="directory: run the servers under py-spy")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    os.sched_setaffinity(0, {arguments.generator_core})
    with contextlib.suppress(ImportError):
        import uvloop  # the generator's loop, like the servers' (uvicorn picks uvloop too)

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main(arguments))
