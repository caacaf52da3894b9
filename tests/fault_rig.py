"""The rig of the fault-injection run (``tests/fault_harness.py``): the stand-ins with the
instruments the run reads, and the product's own processes started and killed.

- ``CountingSalesforceStandin`` counts the injected faults it actually served, by kind,
  and the answers lost because the client died first (a worker killed mid-request); and it
  kills the delivery worker at an exact point of a delivery (:meth:`arm_worker_kill`):
  while the composite request that writes a call's records is in Salesforce, either before
  Salesforce carried it out or right after it wrote every record — from the thread serving
  that request, so which of the two happened never depends on scheduling;
- ``SharedClientTwilioStandin`` places calls exactly as ``TwilioStandin.place_call`` does,
  over one shared HTTP client;
- ``ChildProcess`` runs ``receptionist worker``, or the app (``create_app(run_worker=False)``
  under uvicorn), configured by environment, its output in a log file; SIGKILL or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.standins.salesforce import SalesforceStandin
from tests.standins.salesforce_http import Response
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_call import CallPlan, CallRun
from tests.standins.twilio_rest import LiveCall, new_sid
from tests.standins.twilio_script import CallerScript, CallResult

BUSINESS_NUMBER = "+14155559999"
PUBLIC_BASE_URL = "https://receptionist.example.com"


@dataclass(slots=True)
class WorkerKill:
    """One armed kill of the delivery worker (``CountingSalesforceStandin.arm_worker_kill``)."""

    after_write: bool
    kill: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    call_sid: str | None = None
    """The call whose records the killed request was writing."""
    write_attempts_let_through: int = 0
    """Writes that failed on an injected fault before one succeeded (after_write only)."""


def written_call_sid(method: str, path: str, raw: bytes) -> str | None:
    """The CallSid whose call Task this request creates, if it is a write composite."""
    if method != "POST" or not path.rstrip("/").endswith("/composite"):
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    for sub in body.get("compositeRequest") or []:
        record = sub.get("body")
        if "/sobjects/Task" in str(sub.get("url", "")) and isinstance(record, dict):
            sid = record.get("CallObject") or record.get("Call_SID__c")
            if sid:
                return str(sid)
    return None


class CountingSalesforceStandin(SalesforceStandin):
    """The Salesforce stand-in, counting the injected faults actually served, by kind."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.faults_served: Counter[str] = Counter()
        self.requests_at_last_fault = 0
        self.answers_lost = 0
        self._kill: WorkerKill | None = None

    def arm_worker_kill(self, *, after_write: bool, kill: Callable[[], None]) -> WorkerKill:
        """Call ``kill`` (which SIGKILLs the worker) on the next request that writes a
        call's records, from the thread serving it: before Salesforce carries it out, or,
        with ``after_write``, once Salesforce has written the call Task (a write that fails
        on an injected fault is answered as usual and the kill waits for the next write).
        The killed request gets no answer, as when a client dies mid-request."""
        armed = WorkerKill(after_write, kill)
        with self._lock:
            assert self._kill is None, "one worker kill at a time"
            self._kill = armed
        return armed

    def disarm_worker_kill(self) -> None:
        with self._lock:
            self._kill = None

    def _data_request(
        self, method: str, path: str, query: str, raw: bytes, headers: Any
    ) -> Response:
        sid = written_call_sid(method, path, raw)
        with self._lock:
            armed = self._kill if sid is not None else None
            self._kill = None if armed is not None else self._kill
        if armed is None:
            return super()._data_request(method, path, query, raw, headers)
        if armed.after_write:
            response = super()._data_request(method, path, query, raw, headers)
            if not any(t.get("CallObject") == sid for t in self.records("Task")):
                armed.write_attempts_let_through += 1
                with self._lock:
                    self._kill = armed
                return response
        armed.call_sid = sid
        armed.kill()
        armed.done.set()
        return Response(0, drop=True)

    def _take_fault(self, path: str, *, duplicates: bool) -> Any:
        fault = super()._take_fault(path, duplicates=duplicates)
        if fault is not None:  # called with the stand-in's lock held
            self.faults_served[fault.kind] += 1
            self.requests_at_last_fault = len(self.api_requests)
        return fault

    def start(self) -> None:
        super().start()
        assert self._server is not None
        report_error = self._server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
                # The client went away before the answer: a worker killed mid-request.
                self.answers_lost += 1
                return
            report_error(request, client_address)

        self._server.handle_error = handle_error  # type: ignore[method-assign]

    def pending_faults(self) -> int:
        with self._lock:
            return sum(fault.remaining for fault in self._faults)


class SharedClientTwilioStandin(TwilioStandin):
    """The Twilio stand-in, placing calls over one shared HTTP client.

    ``TwilioStandin.place_call`` opens an ``httpx.AsyncClient`` per call, and loading its
    CA bundle costs ~80 ms of CPU: a third of the run's time at 1,000 calls. The call
    itself runs exactly as there (``CallRun``)."""

    async def place_call_over(
        self,
        http: httpx.AsyncClient,
        *,
        app_url: str,
        from_: str,
        script: CallerScript,
        status_callback: bool = True,
        duplicate_status_callback: bool = False,
        speed: float = 1.0,
    ) -> CallResult:
        sid = new_sid("CA")
        call = LiveCall(
            sid=sid,
            account_sid=self.account_sid,
            from_=from_,
            to=BUSINESS_NUMBER,
            loop=asyncio.get_running_loop(),
        )
        with self._state.lock:
            self._state.calls[sid] = call
        plan = CallPlan(
            account_sid=self.account_sid,
            auth_token=self.auth_token,
            app_url=app_url,
            public_base_url=PUBLIC_BASE_URL,
            from_=from_,
            to=BUSINESS_NUMBER,
            script=script,
            status_callback=status_callback,
            duplicate_status_callback=duplicate_status_callback,
            speed=speed,
            give_up_after_s=20.0,
            agent_busy=self.agent_busy,
        )
        return await CallRun(plan, call, http).run()


_SERVE = (
    "import sys, uvicorn; from telephony.app import create_app; "
    "from telephony.ws_server import WEBSOCKET_OPTIONS; "
    "uvicorn.run(create_app(run_worker=False), host='127.0.0.1', port=int(sys.argv[1]), "
    "log_level='warning', **WEBSOCKET_OPTIONS)"
)
_SETTINGS_PREFIXES = (
    "PUBLIC_BASE_URL",
    "TWILIO_",
    "OPENAI_",
    "SALESFORCE_",
    "DATABASE_URL",
    "BUSINESSES_FILE",
    "DELIVERY_",
)


class ChildProcess:
    """A process of the product's, configured by environment, its output in a log file:
    ``receptionist worker``, or the app (``create_app(run_worker=False)``) under uvicorn."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        stop_signal: signal.Signals = signal.SIGINT,
    ) -> None:
        self.name = name
        self.argv = argv
        self.stop_signal = stop_signal
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
        self.env |= env | {"PYTHONUNBUFFERED": "1"}
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.log_path.open("ab")

    @classmethod
    def worker(cls, env: dict[str, str], workdir: Path) -> ChildProcess:
        return cls("worker", [sys.executable, "-m", "telephony.cli", "worker"], env, workdir)

    @classmethod
    def service(cls, name: str, port: int, env: dict[str, str], workdir: Path) -> ChildProcess:
        # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal it caught (on
        # SIGINT that is a KeyboardInterrupt traceback, which would read as a failure).
        argv = [sys.executable, "-c", _SERVE, str(port)]
        return cls(name, argv, env, workdir, stop_signal=signal.SIGTERM)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no chance to give back a lease."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """Stopped as an operator would (Ctrl-C for the worker, SIGTERM for the service);
        SIGKILL if it has not stopped in 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def tracebacks(self) -> list[str]:
        """The last line of every traceback the process logged."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        found = []
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                end = next((j for j in range(i + 1, len(lines)) if not lines[j][:1].isspace()), i)
                found.append(f"{self.name}: {lines[end]}")
        return found


def stop_all(children: list[ChildProcess]) -> None:
    """Stop every process at once, then wait for each (SIGKILL after 10 s)."""
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in running:
        assert child.process is not None
        child.process.send_signal(child.stop_signal)
    for child in running:
        child.stop()


async def wait_until_serving(http: httpx.AsyncClient, child: ChildProcess, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert child.process is not None
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited: see {child.log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(url + "/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not start: see {child.log_path}")
