"""Crash recovery: the service is killed with SIGKILL in the middle of a live call and
started again; the call still reaches Salesforce.

The service runs as a real subprocess (``receptionist serve``) configured only through its
environment, like a deployment: the Twilio stand-in places a Realtime call, the caller
gives their name (the scripted model saves it with ``record_caller_details``), the bridge
writes that progress to SQLite, and the process is killed with no chance to clean up. The
restarted process (same port, same database) finalizes the orphaned call from what was
stored once it has been idle for ``RECOVERY_IDLE_SECONDS``, and delivers it: one Lead with
the caller's name. A status callback arriving after that (twice, as Twilio may retry)
creates nothing more.

What a user would notice if this failed: a caller who gave their details during a deploy
or a crash is never called back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import BUSINESS_NUMBER, CALLER, PUBLIC_BASE_URL, wait_for
from tests.ports import free_port
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, Hold, ListenUntilAgentDone, Say

RECEPTIONIST = Path(sys.executable).with_name("receptionist")

DANA = {
    "first_name": "Dana",
    "last_name": "Reyes",
    "need": "Water heater leaking",
    "details": "The water heater in the garage is leaking onto the floor.",
    "urgency": 3,
}
TURNS = [
    ScriptedTurn(
        "Hi, this is Dana Reyes. My water heater is leaking in the garage.",
        reply="Thanks Dana, I have noted the leaking water heater. What is the best time for "
        "the team to call you back?",
        reply_ms=2500,
        tool_calls=[ToolCall("record_caller_details", DANA)],
    ),
]


@dataclass
class ServiceProcess:
    """One ``receptionist serve`` subprocess and the log lines it printed."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def read_log(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self.lines.append(text)
            if "Application startup complete" in text:
                self.ready.set()

    def logged(self, needle: str) -> bool:
        return any(needle in line for line in self.lines)


StartService = Callable[[], Awaitable[ServiceProcess]]


@dataclass
class Deployment:
    port: int
    env: dict[str, str]
    db_path: Path


@pytest.fixture
async def deployment(
    tmp_path: Path,
    businesses_file: Path,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Callable[..., Awaitable[RealtimeStandin]],
    salesforce_standin: SalesforceStandin,
) -> Deployment:
    ai = await make_realtime_standin(turns=TURNS, extraction=None)
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    db_path = tmp_path / "receptionist.db"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "BUSINESSES_FILE": str(businesses_file),
        "TWILIO_ACCOUNT_SID": twilio_standin.account_sid,
        "TWILIO_AUTH_TOKEN": twilio_standin.auth_token,
        "TWILIO_API_BASE_URL": twilio_standin.api_base_url,
        "OPENAI_API_KEY": ai.api_key,
        "OPENAI_BASE_URL": ai.base_url,
        "SALESFORCE_LOGIN_URL": salesforce_standin.login_url,
        "SALESFORCE_CLIENT_ID": salesforce_standin.client_id,
        "SALESFORCE_CLIENT_SECRET": salesforce_standin.client_secret,
        "REQUESTS_CA_BUNDLE": salesforce_standin.ca_bundle,
        "SSL_CERT_FILE": salesforce_standin.ca_bundle,
        "DELIVERY_RETRY_BASE_SECONDS": "0.2",
        # Calls untouched for this long are a dead process's: recovered (tests: short).
        "RECOVERY_IDLE_SECONDS": "3",
    }
    return Deployment(port=free_port(), env=env, db_path=db_path)


@pytest.fixture
async def start_service(deployment: Deployment, tmp_path: Path) -> AsyncIterator[StartService]:
    """Start ``receptionist serve`` on the deployment's port; every process started is
    stopped (SIGTERM, then SIGKILL) when the test ends."""
    started: list[ServiceProcess] = []

    async def start() -> ServiceProcess:
        process = await asyncio.create_subprocess_exec(
            str(RECEPTIONIST),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(deployment.port),
            cwd=tmp_path,  # no stray .env from the checkout
            env=deployment.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        service = ServiceProcess(process)
        service.reader = asyncio.create_task(service.read_log())
        started.append(service)
        waiter = asyncio.create_task(service.ready.wait())
        await asyncio.wait({waiter, service.reader}, timeout=30, return_when="FIRST_COMPLETED")
        waiter.cancel()
        if not service.ready.is_set():
            raise AssertionError("the service did not start:\n" + "\n".join(service.lines))
        return service

    yield start
    for service in started:
        if service.process.returncode is None:
            service.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await service.process.wait()
            except TimeoutError:
                service.process.kill()
                await service.process.wait()
        if service.reader is not None:
            with contextlib.suppress(Exception):
                await service.reader


def stored_details(db_path: Path, call_sid: str) -> dict[str, object]:
    """The call's details as the bridge last saved them (read straight from SQLite)."""
    if not db_path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        row = db.execute("SELECT details FROM calls WHERE call_sid = ?", (call_sid,)).fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def call_sid_of_live_stream(db_path: Path) -> str | None:
    if not db_path.exists():
        return None
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
        row = db.execute("SELECT call_sid FROM calls WHERE state = 'active'").fetchone()
    return str(row[0]) if row else None


async def status_callback(port: int, auth_token: str, call_sid: str) -> int:
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": CALLER,
        "To": BUSINESS_NUMBER,
        "CallStatus": "completed",
        "CallDuration": "42",
    }
    signature = RequestValidator(auth_token).compute_signature(
        PUBLIC_BASE_URL + "/twilio/status", params
    )
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.post(
            f"http://127.0.0.1:{port}/twilio/status",
            data=params,
            headers={"X-Twilio-Signature": signature},
        )
    return response.status_code


async def test_sigkill_mid_call_then_restart_delivers_the_call_to_salesforce(
    deployment: Deployment,
    start_service: StartService,
    twilio_standin: TwilioStandin,
    salesforce_standin: SalesforceStandin,
) -> None:
    """The issue's must-show: SIGKILL mid-call after the caller's name was saved; the
    restarted service finalizes the call from SQLite and Salesforce gets one Lead with
    the caller's name; a late (duplicate) status callback writes nothing twice."""
    service = await start_service()
    script = CallerScript(
        # The caller then stays on the line until the service dies under it.
        steps=[ListenUntilAgentDone(), Say(ms=1500), ListenUntilAgentDone(), Hold(timeout_s=120)]
    )
    call = asyncio.create_task(
        twilio_standin.place_call(
            app_url=f"http://127.0.0.1:{deployment.port}",
            public_base_url=PUBLIC_BASE_URL,
            from_=CALLER,
            to=BUSINESS_NUMBER,
            script=script,
            speed=2,
        )
    )
    # The bridge saves progress every 2 s: wait until the name is in the database.
    await wait_for(lambda: call_sid_of_live_stream(deployment.db_path) is not None)
    call_sid = call_sid_of_live_stream(deployment.db_path)
    assert call_sid is not None
    await wait_for(
        lambda: stored_details(deployment.db_path, call_sid).get("last_name") == "Reyes",
        timeout=30,
    )
    assert not salesforce_standin.records("Lead"), "nothing is delivered before the call ends"

    service.process.send_signal(signal.SIGKILL)
    assert await service.process.wait() == -signal.SIGKILL
    async with asyncio.timeout(30):
        result = await call  # the caller's stream dropped; Twilio could not reach us
    assert result.script_timeouts == []
    assert result.status_callbacks == [0]
    assert not salesforce_standin.records("Lead")

    restarted = await start_service()
    await wait_for(lambda: len(salesforce_standin.records("Lead")) == 1, timeout=30)
    assert restarted.logged("finalized 1 call(s) idle for over")
    (lead,) = salesforce_standin.records("Lead")
    assert (lead["FirstName"], lead["LastName"]) == ("Dana", "Reyes")
    assert lead["Phone"] == CALLER
    assert "Water heater leaking" in lead["Description"]
    await wait_for(
        lambda: any(t.get("CallObject") == call_sid for t in salesforce_standin.records("Task"))
    )

    # Twilio's status callback arrives late (and is retried): nothing is written twice.
    assert (
        await status_callback(deployment.port, deployment.env["TWILIO_AUTH_TOKEN"], call_sid) == 204
    )
    assert (
        await status_callback(deployment.port, deployment.env["TWILIO_AUTH_TOKEN"], call_sid) == 204
    )
    async with httpx.AsyncClient(trust_env=False) as client:
        health = await client.get(f"http://127.0.0.1:{deployment.port}/healthz")
    assert health.status_code == 200
    with contextlib.closing(sqlite3.connect(deployment.db_path, timeout=5)) as db:
        jobs = db.execute("SELECT state FROM outbox WHERE call_sid = ?", (call_sid,)).fetchall()
        summaries = db.execute(
            "SELECT COUNT(*) FROM summaries WHERE call_sid = ?", (call_sid,)
        ).fetchone()
    assert jobs == [("delivered",)] and summaries == (1,)
    assert len(salesforce_standin.records("Lead")) == 1
    call_tasks = [t for t in salesforce_standin.records("Task") if t.get("CallObject") == call_sid]
    assert len(call_tasks) == 1 and call_tasks[0]["WhoId"] == lead["Id"]
    assert not restarted.logged("Traceback")
