"""A local OpenAI for the tests: the GA Realtime websocket and structured chat completions.

``RealtimeStandin`` listens on 127.0.0.1 (ephemeral port) with uvicorn + Starlette in a
thread of its own (its own event loop), so the app under test — async or not — talks to
it over real sockets exactly as it would to api.openai.com:

- ``WS /v1/realtime?model=M`` with ``Authorization: Bearer <key>``: the Realtime API
  (see ``openai_session``): server VAD by the energy of the appended μ-law audio, the
  scripted transcription / tool calls / replies, barge-in, truncation, and the real
  ``error`` events (each also recorded as a violation).
- ``POST /v1/chat/completions``: structured outputs (see ``openai_chat``).

Usage::

    async with RealtimeStandin(turns=[ScriptedTurn("My basement is flooding", reply="...")]) as ai:
        client = AsyncOpenAI(api_key=ai.api_key, base_url=ai.base_url)
        ...
        await ai.wait_until(lambda: ai.sessions and ai.sessions[0].closed)
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import math
import socket
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.standins.openai_chat import (
    SERVER_ERROR,
    answer_chat_completion,
    bad_request,
    invalid_api_key,
    missing_api_key,
    unscripted_required_keys,
)
from tests.standins.openai_protocol import StandinBug, check_server_event
from tests.standins.openai_script import ScriptedTurn, SessionLog, ToolCall, new_id
from tests.standins.openai_session import RealtimeSession

__all__ = ["RealtimeStandin", "ScriptedTurn", "SessionLog", "ToolCall"]

_ABORT = object()
DEFAULT_MODELS = (
    "gpt-realtime",
    "gpt-4o-realtime-preview",
    "gpt-4o-mini",
    "gpt-4o-mini-tts",
    "gpt-4o-transcribe",
)


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1756252800, "owned_by": "system"}


class _DenialIsNotAnError(logging.Filter):
    """uvicorn's sans-I/O websocket protocol logs an error after an ASGI app answered the
    upgrade with a denial response (HTTP 401/503), which is exactly what we mean to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


_UVICORN_ERRORS = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _DenialIsNotAnError) for f in _UVICORN_ERRORS.filters):
    _UVICORN_ERRORS.addFilter(_DenialIsNotAnError())
OVERLOADED = {
    "error": {
        "message": "The engine is currently overloaded, please try again later.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


class RealtimeStandin:
    """The OpenAI stand-in. Attributes may be changed by tests at any time."""

    def __init__(
        self,
        *,
        turns: Sequence[ScriptedTurn] = (),
        greeting: str | None = "Thanks for calling, how can I help?",
        greeting_ms: int = 1200,
        extraction: dict[str, Any] | None = None,
        api_key: str = "sk-standin",
        generation_speed: float = 4.0,
        chunk_ms: int = 100,
    ) -> None:
        self.turns: list[ScriptedTurn] = list(turns)
        self.greeting = greeting
        self.greeting_ms = greeting_ms
        self.extraction = extraction
        self.api_key = api_key
        self.generation_speed = generation_speed
        self.chunk_ms = chunk_ms
        """Audio per ``response.output_audio.delta`` (the real API's vary; 20 is Twilio's frame)."""
        """Response audio is generated this many times faster than real time."""
        self.refuse_connections = False
        self.models: list[str] = list(DEFAULT_MODELS)
        """Model ids ``GET /v1/models`` lists and ``GET /v1/models/{id}`` finds."""
        self.speech_requests: list[Any] = []
        self.speech_fails = False
        self.audio_hold_ms: int | None = None
        """Pause every response's audio once this many ms of it have been sent, until the
        response is cancelled (a barge-in) or `release_audio` is called: a test then acts
        while a response is certainly still in progress, with a known amount of it sent,
        whatever the machine's speed."""
        self.drop_after_turns: int | None = None
        """Cut the next session's TCP connection (no close frame) once it has answered this
        many caller turns. Fires once, then resets to None (so a reconnect carries on)."""
        self.sessions: list[SessionLog] = []
        self.extraction_requests: list[dict[str, Any]] = []
        self.extraction_fails = False
        self.internal_errors: list[str] = []
        """Stand-in bugs (a server event that failed validation, a crashed handler)."""
        self.script_problems: list[str] = []
        """Chat-completion scripting problems (e.g. the extraction lacks a required key)."""
        self.port = 0
        self._turns_used = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._connections: list[_Connection] = []

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """What the app passes as the openai ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def turns_used(self) -> int:
        """How many scripted turns have been consumed by caller utterances (all sessions)."""
        return self._turns_used

    async def start(self) -> None:
        """Bind an ephemeral port and serve from a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        started = threading.Event()
        config = uvicorn.Config(
            self._app(started),
            lifespan="on",
            log_level="warning",
            access_log=False,
            http="h11",
            ws="websockets-sansio",
            ws_max_size=64 * 1024 * 1024,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        server = self._server

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            finally:
                loop.close()
                sock.close()

        self._thread = threading.Thread(target=run, name="openai-standin", daemon=True)
        self._thread.start()
        if not await asyncio.to_thread(started.wait, 10):
            raise RuntimeError("the OpenAI stand-in did not start")

    async def stop(self) -> None:
        """Close every connection and stop the server thread."""
        if self._thread is None or self._server is None:
            return
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 10)
        self._thread = None

    async def __aenter__(self) -> RealtimeStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def responding(self) -> bool:
        """A response is being generated on an open session, or events of one are not yet
        written to the socket (for ``TwilioStandin.agent_busy``: once this is False, all of
        the answer is on its way to the app)."""
        return any(c.session.active is not None or c.unsent > 0 for c in list(self._connections))

    def release_audio(self) -> None:
        """Lift `audio_hold_ms`: held responses carry on generating."""
        self.audio_hold_ms = None
        loop = self._loop
        if loop is None:
            return
        for connection in list(self._connections):
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(connection.wake.set)

    # -------------------------------------------------------------- waiting

    async def wait_until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait (from any event loop) until ``predicate()`` is true; re-checked on every
        change the stand-in makes. ``TimeoutError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._waiters.append((loop, future))
            if predicate():
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("the OpenAI stand-in never reached the awaited state")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, remaining)
        return None

    def _changed(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(_resolve, future)

    def _next_turn(self) -> ScriptedTurn | None:
        with self._lock:
            if self._turns_used >= len(self.turns):
                return None
            turn = self.turns[self._turns_used]
            self._turns_used += 1
            return turn

    # ------------------------------------------------------------------ app

    def _app(self, started: threading.Event) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            started.set()
            yield

        return Starlette(
            routes=[
                WebSocketRoute("/v1/realtime", self._realtime),
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/audio/speech", self._speech, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/models/{model:path}", self._retrieve_model, methods=["GET"]),
                Route(
                    "/{path:path}",
                    self._not_found,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ],
            lifespan=lifespan,
        )

    def _auth_problem(self, authorization: str | None) -> dict[str, Any] | None:
        if not authorization or not authorization.startswith("Bearer "):
            return missing_api_key()
        key = authorization.removeprefix("Bearer ")
        return None if key == self.api_key else invalid_api_key(key)

    async def _list_models(self, request: Request) -> Response:
        """``GET /v1/models``: ``{"object": "list", "data": [model, ...]}``."""
        problem = self._auth_problem(request.headers.get("authorization"))
        if problem is not None:
            return JSONResponse(problem, status_code=401)
        data = [_model_object(m) for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _retrieve_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: the model object, or 404 ``model_not_found``."""
        problem = self._auth_problem(request.headers.get("authorization"))
        if problem is not None:
            return JSONResponse(problem, status_code=401)
        model = request.path_params["model"]
        if model not in self.models:
            message = f"The model '{model}' does not exist or you do not have access to it."
            return JSONResponse(bad_request(message, code="model_not_found"), status_code=404)
        return JSONResponse(_model_object(model))

    async def _not_found(self, request: Request) -> Response:
        message = f"Invalid URL ({request.method} {request.url.path})"
        return JSONResponse(bad_request(message), status_code=404)

    async def _chat_completions(self, request: Request) -> Response:
        problem = self._auth_problem(request.headers.get("authorization"))
        if problem is not None:
            return JSONResponse(problem, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.extraction_requests.append(body)
        self._changed()
        if self.extraction_fails:
            return JSONResponse(SERVER_ERROR, status_code=500)
        status, payload = answer_chat_completion(body, self.extraction)
        if status == 200 and self.extraction is not None:
            for key in unscripted_required_keys(body, self.extraction):
                self.script_problems.append(f"extraction lacks required key {key!r}")
        return JSONResponse(payload, status_code=status, headers={"x-request-id": new_id("req")})

    async def _speech(self, request: Request) -> Response:
        """``POST /v1/audio/speech``: text to speech. The stand-in cannot speak, so it
        answers a tone lasting ~70 ms per character-group (min 0.5 s) in the requested
        format; only ``pcm`` (24 kHz s16le mono, as documented) is produced."""
        problem = self._auth_problem(request.headers.get("authorization"))
        if problem is not None:
            return JSONResponse(problem, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse(bad_request("We could not parse the JSON body."), status_code=400)
        self.speech_requests.append(body)
        self._changed()
        if self.speech_fails:
            return JSONResponse(SERVER_ERROR, status_code=500)
        text = body.get("input") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text or len(text) > 4096:
            return JSONResponse(
                bad_request("'input' must be a string of 1 to 4096 characters.", "input"),
                status_code=400,
            )
        for key in ("model", "voice"):
            if not isinstance(body.get(key), str):
                return JSONResponse(
                    bad_request(f"Missing required parameter: '{key}'.", key), status_code=400
                )
        if body.get("response_format", "mp3") != "pcm":
            self.script_problems.append("speech requested in a format the stand-in cannot produce")
            return JSONResponse(bad_request("stand-in produces pcm only", "response_format"), 400)
        ms = max(500, len(text) * 70 // 5)
        samples = array.array(
            "h", (int(6000 * math.sin(2 * math.pi * 330 * i / 24000)) for i in range(ms * 24))
        )
        return Response(samples.tobytes(), media_type="application/octet-stream")

    async def _realtime(self, websocket: WebSocket) -> None:
        if self.refuse_connections:
            await websocket.send_denial_response(JSONResponse(OVERLOADED, status_code=503))
            return
        problem = self._auth_problem(websocket.headers.get("authorization"))
        if problem is not None:
            await websocket.send_denial_response(JSONResponse(problem, status_code=401))
            return
        model = websocket.query_params.get("model")
        if not model:
            denial = bad_request(
                "Missing required parameter: 'model'.", "model", "missing_required_parameter"
            )
            await websocket.send_denial_response(JSONResponse(denial, status_code=400))
            return
        log = SessionLog(model=model)
        if websocket.headers.get("openai-beta", "").startswith("realtime"):
            log.violations.append(
                "connect: the OpenAI-Beta: realtime=v1 header selects the beta protocol, "
                "not the GA events this app must speak"
            )
        self.sessions.append(log)
        await websocket.accept()
        session = RealtimeSession(
            log=log,
            next_turn=self._next_turn,
            greeting=self.greeting,
            greeting_ms=self.greeting_ms,
            chunk_ms=self.chunk_ms,
        )
        connection = _Connection(self, websocket, session)
        self._connections.append(connection)
        try:
            await connection.run()
        finally:
            self._connections.remove(connection)

    def _transport_of(self, websocket: WebSocket) -> asyncio.Transport | None:
        """The TCP transport under ``websocket`` (uvicorn keeps one protocol per connection)."""
        assert self._server is not None
        client = tuple(websocket.scope["client"] or ())
        for protocol in list(self._server.server_state.connections):
            if (
                "websockets" in type(protocol).__module__
                and getattr(protocol, "client", None) == client
            ):
                transport: asyncio.Transport = getattr(protocol, "transport")  # noqa: B009
                return transport
        return None


class _Connection:
    """The I/O shell of one websocket: reader, response pump and writer."""

    def __init__(self, standin: RealtimeStandin, websocket: WebSocket, session: RealtimeSession):
        self.standin = standin
        self.websocket = websocket
        self.session = session
        self.log = session.log
        self.outbox: asyncio.Queue[object] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.dropping = False
        self.unsent = 0
        """Events queued for the socket and not yet written."""

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        pump = asyncio.create_task(self._pump())
        try:
            self._emit(self.session.opening_events())
            await self._read()
        except Exception as exc:  # a stand-in bug must fail the test, not hang it
            self.standin.internal_errors.append(f"realtime handler crashed: {exc!r}")
        finally:
            self.log.closed = True
            for task in (writer, pump):
                task.cancel()
            await asyncio.gather(writer, pump, return_exceptions=True)
            self.standin._changed()

    async def _read(self) -> None:
        while True:
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            if self.dropping:
                continue
            text = message.get("text")
            if text is None:
                self.log.violations.append("binary frame: Realtime client events are JSON text")
                continue
            self._emit(self.session.receive(text))
            if self.session.active is not None:
                self.wake.set()
            self.standin._changed()

    async def _pump(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while not self.dropping and not self._held():
                answered = self.log.turns_answered
                step = self.session.next_step()
                if step is None:
                    break
                self._emit(step.events)
                if self.log.turns_answered > answered:
                    self._maybe_drop()
                self.standin._changed()
                if step.audio_ms:
                    await asyncio.sleep(step.audio_ms / 1000 / self.standin.generation_speed)

    def _held(self) -> bool:
        """The active response has sent `audio_hold_ms` of audio: wait (woken by the next
        client event, e.g. the barge-in that cancels it, or by `release_audio`)."""
        hold = self.standin.audio_hold_ms
        run = self.session.active
        item = run.audio_item if run is not None else None
        return hold is not None and item is not None and item.sent_ms >= hold

    def _maybe_drop(self) -> None:
        limit = self.standin.drop_after_turns
        if limit is not None and self.log.turns_answered >= limit:
            self.standin.drop_after_turns = None
            self.dropping = True
            self.outbox.put_nowait(_ABORT)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if self.dropping:
                return
            try:
                check_server_event(event)
            except StandinBug as bug:
                self.standin.internal_errors.append(str(bug))
                continue
            self.log.server_events.append(event)
            self.unsent += 1
            self.outbox.put_nowait(event)

    async def _write(self) -> None:
        while True:
            event = await self.outbox.get()
            if event is _ABORT:
                transport = self.standin._transport_of(self.websocket)
                self.log.dropped = True
                if transport is None:
                    self.standin.internal_errors.append("drop_after_turns: no transport to abort")
                    await self.websocket.close(1011)
                else:
                    transport.abort()
                return
            try:
                await self.websocket.send_text(json.dumps(event))
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            finally:
                self.unsent -= 1


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
