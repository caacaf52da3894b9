"""``LOG_FORMAT=json``: ``receptionist serve`` (the real command) logs one JSON object per
line, every line about a call carries its CallSid as a field, start-up is quiet, and no
caller number or words reach the log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import BUSINESS_NUMBER, PUBLIC_BASE_URL, wait_for
from tests.ports import free_port
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_deploy_caddy import stop, wait_for_port

RECEPTIONIST = str(Path(sys.executable).with_name("receptionist"))
CALLER = "+14155550123"


async def test_json_logs_carry_the_call_sid_and_no_personal_data(
    tmp_path: Path, twilio_standin: TwilioStandin, businesses_file: Path
) -> None:
    port = free_port()
    skipped = ("TWILIO_", "OPENAI_", "SALESFORCE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skipped)}
    env.update(
        {
            "LOG_FORMAT": "json",
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
            "BUSINESSES_FILE": str(businesses_file),
            "TWILIO_ACCOUNT_SID": twilio_standin.account_sid,
            "TWILIO_AUTH_TOKEN": twilio_standin.auth_token,
            "TWILIO_API_BASE_URL": twilio_standin.api_base_url,
            "NO_PROXY": "*",
        }
    )
    service = subprocess.Popen(
        [RECEPTIONIST, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await asyncio.to_thread(wait_for_port, port, service, "receptionist serve")
        result = await twilio_standin.place_call(
            app_url=f"http://127.0.0.1:{port}",
            public_base_url=PUBLIC_BASE_URL,
            from_=CALLER,
            to=BUSINESS_NUMBER,
            script=CallerScript(speech=["Alex Kim", "my furnace stopped working", "yes", "today"]),
            speed=8,
        )
        from crm.store import Store

        store = Store.from_url(env["DATABASE_URL"])
        try:
            await wait_for(
                lambda: (
                    (job := store.outbox_job(result.call_sid)) is not None
                    and job.state == "delivered"
                )
            )
        finally:
            store.engine.dispose()
    finally:
        stop(service)
    assert service.stderr is not None
    lines = service.stderr.read().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    about_call = [e for e in entries if result.call_sid in e["message"]]
    assert about_call, lines
    assert all(e["call_sid"] == result.call_sid for e in about_call)
    assert any("delivered" in e["message"] for e in about_call)
    # Quiet start-up: no migration chatter or uvicorn banner, one "ready" line.
    startup = [e for e in entries if "call_sid" not in e and e["level"] == "INFO"]
    assert [e["message"] for e in startup if "ready" in e["message"]] != []
    assert not any(e["logger"].startswith("alembic") for e in entries)
    text = "\n".join(lines)
    assert CALLER not in text and CALLER[2:] not in text
    assert "furnace" not in text and "Alex" not in text
