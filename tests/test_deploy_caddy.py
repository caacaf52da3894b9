"""The deployment kit, tested here: Debian's Caddy with the shipped ``deploy/Caddyfile``
(its internal CA standing in for Let's Encrypt) in front of ``receptionist serve`` started
as the systemd unit starts it, and a full Realtime call from the Twilio stand-in over
``https://`` and ``wss://`` through the proxy.

What a user would notice if this failed: a live number whose webhooks pass the proxy but
whose audio stream never upgrades, or whose signatures fail behind TLS termination.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crm.store import Store
from tests.conftest import BUSINESS_NUMBER, CALLER, wait_for
from tests.ports import free_port
from tests.standins.openai_realtime import RealtimeStandin
from tests.standins.twilio import TwilioStandin
from tests.test_e2e_call import JOHN_EXTRACTION, JOHN_TURNS

ROOT = Path(__file__).resolve().parent.parent
CADDY = shutil.which("caddy")
RECEPTIONIST = str(Path(sys.executable).with_name("receptionist"))
DOMAIN = "receptionist.example.com"

pytestmark = pytest.mark.skipif(CADDY is None, reason="no caddy: apt-get install -y caddy")


def wait_for_port(port: int, process: subprocess.Popen[str], what: str) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"{what} exited: {process.stderr.read() if process.stderr else ''}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def caddy_home(tmp_path: Path) -> Path:
    home = tmp_path / "caddy-home"
    home.mkdir()
    return home


@pytest.fixture
def proxy(tmp_path: Path, caddy_home: Path) -> Iterator[tuple[int, int, Path]]:
    """Caddy with deploy/Caddyfile: https on a free port for DOMAIN and 127.0.0.1, proxying
    to a free upstream port; yields (https port, upstream port, CA root file)."""
    https_port, http_port, upstream = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "HOME": str(caddy_home),
        "XDG_DATA_HOME": str(caddy_home / "data"),
        "XDG_CONFIG_HOME": str(caddy_home / "config"),
        "RECEPTIONIST_DOMAIN": f"https://{DOMAIN}:{https_port}, https://127.0.0.1:{https_port}",
        "RECEPTIONIST_UPSTREAM": f"127.0.0.1:{upstream}",
        "CADDY_GLOBAL": (
            f"admin off\n\thttp_port {http_port}\n\thttps_port {https_port}\n"
            "\tlocal_certs\n\tskip_install_trust"
        ),
    }
    config = ROOT / "deploy" / "Caddyfile"
    check = subprocess.run(
        [CADDY, "validate", "--config", str(config), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(https_port, process, "caddy")
        root = caddy_home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + 20
        while not root.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert root.exists(), "caddy made no internal CA"
        yield https_port, upstream, root
    finally:
        stop(process)


async def test_a_call_through_caddy_over_https_and_wss(
    tmp_path: Path,
    proxy: tuple[int, int, Path],
    twilio_standin: TwilioStandin,
    make_realtime_standin,  # type: ignore[no-untyped-def]
    businesses_file: Path,
) -> None:
    https_port, upstream, ca_root = proxy
    ai: RealtimeStandin = await make_realtime_standin(turns=JOHN_TURNS, extraction=JOHN_EXTRACTION)
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    database = tmp_path / "calls.db"
    public = f"https://{DOMAIN}:{https_port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "OPENAI_", "SALESFORCE_"))
    }
    env.update(
        {
            "PUBLIC_BASE_URL": public,
            "DATABASE_URL": f"sqlite:///{database}",
            "BUSINESSES_FILE": str(businesses_file),
            "TWILIO_ACCOUNT_SID": twilio_standin.account_sid,
            "TWILIO_AUTH_TOKEN": twilio_standin.auth_token,
            "TWILIO_API_BASE_URL": twilio_standin.api_base_url,
            "OPENAI_API_KEY": ai.api_key,
            "OPENAI_BASE_URL": ai.base_url,
            "NO_PROXY": "*",
        }
    )
    # As deploy/systemd/receptionist.service runs it (with the worker in-process here).
    service = subprocess.Popen(
        [RECEPTIONIST, "serve", "--host", "127.0.0.1", "--port", str(upstream)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await asyncio.to_thread(wait_for_port, upstream, service, "receptionist serve")
        context = ssl.create_default_context(cafile=str(ca_root))
        async with httpx.AsyncClient(verify=context, trust_env=False) as client:
            health = await client.get(f"https://127.0.0.1:{https_port}/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            assert health.http_version in {"HTTP/1.1", "HTTP/2"}
            plain = await client.get(f"http://127.0.0.1:{https_port}/healthz")
            assert plain.status_code == 400  # TLS only on the https port

        result = await _call(f"https://127.0.0.1:{https_port}", public, twilio_standin, context)
        assert result.webhook_statuses and set(result.webhook_statuses) == {200}, result.errors
        assert result.errors == []
        assert result.streams == 1  # the Media Stream upgraded over wss:// through Caddy
        assert result.played_audio_ms > 1000
        assert result.cleared_audio_ms > 0  # the barge-in travelled through the proxy too
        store = Store.from_url(f"sqlite:///{database}")
        try:
            await wait_for(
                lambda: (
                    (job := store.outbox_job(result.call_sid)) is not None
                    and job.state == "delivered"
                )
            )
            summary = store.get_summary(result.call_sid)
            assert summary is not None and summary.last_name == "Smith"
            assert summary.caller_phone == CALLER
        finally:
            store.engine.dispose()
        assert ai.sessions and ai.sessions[0].violations == []
    finally:
        stop(service)
    log = service.stderr.read() if service.stderr else ""
    assert "refused" not in log, log  # no signature failures behind the proxy


async def _call(url: str, public: str, twilio: TwilioStandin, context: ssl.SSLContext):  # type: ignore[no-untyped-def]
    """The barge-in call of the direct end-to-end test, through the proxy."""
    from tests.standins.twilio_script import (
        CallerScript,
        HangUp,
        InterruptAgent,
        ListenUntilAgentDone,
        Say,
    )

    script = CallerScript(
        steps=[
            ListenUntilAgentDone(),
            Say(ms=1200),
            InterruptAgent(after_ms=600, say_ms=1200),
            ListenUntilAgentDone(),
            HangUp(),
        ]
    )
    return await twilio.place_call(
        app_url=url,
        public_base_url=public,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=script,
        speed=1.0,
        ssl_context=context,
    )
