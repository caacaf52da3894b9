"""Shared test configuration: the stand-ins' fixtures (registered as plugins), a business
file, and the real service running on a real port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from telephony.app import create_app
from telephony.services import Clock, Services, utc_now
from telephony.settings import Settings
from telephony.ws_server import WEBSOCKET_OPTIONS
from tests.ports import bound_socket

pytest_plugins = [
    "tests.standins.plugin_salesforce",
    "tests.standins.plugin_openai",
    "tests.standins.plugin_twilio",
]

BUSINESS_NUMBER = "+14155559999"
ON_CALL_PHONE = "+14155550111"
CALLER = "+14155550100"
# What the service believes its public URL is (Twilio signs over it and requires wss://
# stream URLs); the stand-in caller maps it onto the real local port.
PUBLIC_BASE_URL = "https://receptionist.example.com"

BUSINESSES_TOML = f"""
[[business]]
number = "{BUSINESS_NUMBER}"
name = "Bay Plumbing & Air"
timezone = "America/Los_Angeles"
services = ["plumbing", "heating", "air conditioning"]
service_area = "San Francisco and the Peninsula"
on_call_phone = "{ON_CALL_PHONE}"
greeting = "Thanks for calling Bay Plumbing and Air. How can I help?"
"""


@pytest.fixture
def businesses_file(tmp_path: Path) -> Path:
    path = tmp_path / "businesses.toml"
    path.write_text(BUSINESSES_TOML)
    return path


async def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll ``predicate`` until true (the store is written by another task or thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@dataclass
class RunningApp:
    url: str
    app: FastAPI
    settings: Settings
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Shut this service down (its lifespan ends) as a restart or a deploy would."""
        if self.server is not None and self.task is not None and not self.task.done():
            self.server.should_exit = True
            await self.task

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services


StartApp = Callable[..., Awaitable[RunningApp]]


@pytest.fixture
async def start_app(tmp_path: Path, businesses_file: Path) -> AsyncIterator[StartApp]:
    """Start the real service (uvicorn, real port) with the given settings overrides;
    returns the running app. The server is stopped when the test ends."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(*, clock: Clock | None = None, **overrides: object) -> RunningApp:
        sock = bound_socket()
        port = int(sock.getsockname()[1])
        values: dict[str, object] = {
            "public_base_url": PUBLIC_BASE_URL,
            "database_url": f"sqlite:///{tmp_path / 'receptionist.db'}",
            "businesses_file": businesses_file,
            "twilio_account_sid": "",
            "twilio_auth_token": "",
            "openai_api_key": "",
            "salesforce_login_url": "",
            "salesforce_client_id": "",
        }
        values.update(overrides)
        settings = Settings(**values)  # type: ignore[arg-type]
        app = create_app(settings, clock=clock or utc_now)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", **WEBSOCKET_OPTIONS
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        servers.append((server, task))
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the service did not start")
            await asyncio.sleep(0.02)
        return RunningApp(f"http://127.0.0.1:{port}", app, settings, server, task)

    yield start
    for server, task in servers:
        server.should_exit = True
        if not task.done():
            await task
