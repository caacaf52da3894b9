"""Serving an ASGI app on 127.0.0.1 with an ephemeral port, for tests.

`AsgiServer` runs on the caller's event loop (for the app under test); `ThreadedAsgiServer`
runs on its own thread and loop, like a remote service: the app may call it with a
blocking client without freezing the event loop that serves the app itself.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

import uvicorn

Lifespan = Literal["auto", "on", "off"]


def _config(app: Any, *, lifespan: Lifespan) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        ws_ping_interval=None,
    )


async def _startup(server: uvicorn.Server) -> int:
    config = server.config
    if not config.loaded:
        config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    if not server.started:
        raise RuntimeError("ASGI server failed to start")
    sockets = server.servers[0].sockets
    port: int = sockets[0].getsockname()[1]
    return port


class AsgiServer:
    """An ASGI app served on the running event loop: ``async with AsgiServer(app) as s``."""

    def __init__(self, app: Any, *, lifespan: Lifespan = "auto") -> None:
        self._server = uvicorn.Server(_config(app, lifespan=lifespan))
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = await _startup(self._server)

    async def stop(self) -> None:
        if self._server.started:
            self._server.started = False
            await self._server.shutdown()

    async def __aenter__(self) -> AsgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ThreadedAsgiServer:
    """An ASGI app served from its own thread and event loop."""

    def __init__(self, app: Any, *, lifespan: Lifespan = "off") -> None:
        self._app = app
        self._lifespan = lifespan
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="twilio-standin-rest", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._error is not None:
            raise RuntimeError("stand-in server failed to start") from self._error

    async def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        server = uvicorn.Server(_config(self._app, lifespan=self._lifespan))
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.port = await _startup(server)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await server.shutdown()
