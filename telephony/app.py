"""The FastAPI app: factory, lifespan, health and metrics; one router per area."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from crm.config import CrmWriter
from telephony import pauses, routes_fallback, routes_intake, routes_twilio, twiml
from telephony.bridge import HEARTBEAT_SECONDS
from telephony.reconcile import reconcile
from telephony.routes_twilio import ServicesDep, TwilioRequestRefused
from telephony.services import Clock, Services, utc_now
from telephony.settings import Settings
from telephony.staff import routes as staff_routes
from telephony.staff.security import install_security_headers

log = logging.getLogger(__name__)

DATABASE_DOWN_MESSAGE = (
    "Sorry, we cannot take your details right now because of a technical problem. "
    "Please call back in a few minutes. Goodbye."
)


PURGE_INTERVAL_SECONDS = 3600.0


async def every(
    interval: float,
    stop: asyncio.Event,
    job: Callable[[], Awaitable[object]],
    what: str,
    *,
    first_now: bool = False,
) -> None:
    """Run ``job`` every ``interval`` seconds (first at once with ``first_now``) until
    ``stop``; a failure is logged and the loop goes on (it outlives database or Twilio
    hiccups)."""
    if not first_now and await _stopped_within(interval, stop):
        return
    while not stop.is_set():
        try:
            await job()
        except Exception as exc:
            log.error("%s failed (%s); retrying later", what, type(exc).__name__)
        if await _stopped_within(interval, stop):
            return


async def _stopped_within(seconds: float, stop: asyncio.Event) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


async def purge_periodically(services: Services, stop: asyncio.Event) -> None:
    """Apply the personal-data retention now and then every hour until ``stop``."""
    await every(
        PURGE_INTERVAL_SECONDS,
        stop,
        lambda: asyncio.to_thread(services.purge_expired_personal_data),
        "retention purge",
        first_now=True,
    )


async def collect_garbage_periodically(
    collections: pauses.FullCollections, stop: asyncio.Event
) -> None:
    """A full garbage collection when it is due (no media stream live, or ten minutes since
    the last), looked at every second until ``stop``."""

    async def check() -> None:
        collections.check()

    await every(pauses.IDLE_CHECK_SECONDS, stop, check, "garbage collection")


async def recover_idle_calls(services: Services) -> int:
    """Finalize calls nobody has touched for ``RECOVERY_IDLE_SECONDS`` (a crashed process's
    calls). A live call has a heartbeat (bridge progress every few seconds, a webhook per
    intake answer), so a restart or a second process never cuts it."""
    idle = dt.timedelta(seconds=services.settings.recovery_idle_seconds)
    recovered = await services.finalizer.recover(idle_for=idle, serving=services.live_calls)
    if recovered:
        log.warning("finalized %d call(s) idle for over %s", recovered, idle)
    return recovered


async def recover_periodically(services: Services, stop: asyncio.Event) -> None:
    """The same recovery every minute while the service runs (a node that died leaves
    its calls to the survivors)."""
    interval = max(1.0, min(60.0, services.settings.recovery_idle_seconds / 2))
    await every(interval, stop, lambda: recover_idle_calls(services), "recovery sweep")


async def reconcile_periodically(services: Services, stop: asyncio.Event) -> None:
    """The capture ledger against Twilio's call log every ``RECONCILE_INTERVAL_SECONDS``
    (looking back twice that far, at least an hour)."""
    interval = services.settings.reconcile_interval_seconds
    lookback = dt.timedelta(seconds=max(3600.0, 2 * interval))

    async def reconcile_once() -> None:
        report = await reconcile(services, since=dt.datetime.now(dt.UTC) - lookback)
        for error in report.errors:
            log.error("reconcile: %s", error)

    await every(interval, stop, reconcile_once, "reconcile")


def create_app(
    settings: Settings | None = None,
    *,
    crm: CrmWriter | None = None,
    run_worker: bool = True,
    clock: Clock = utc_now,
) -> FastAPI:
    """Build the service. ``crm`` replaces the configured CRM and ``clock`` the wall clock
    used for business hours and due dates (tests)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings, crm=crm, clock=clock)
        app.state.services = services
        stop = asyncio.Event()
        if settings.recovery_idle_seconds < 2 * HEARTBEAT_SECONDS:
            log.warning(
                "RECOVERY_IDLE_SECONDS=%g is shorter than twice the heartbeat of a live call "
                "(%g s): a call in which nobody speaks for a while could be recovered while "
                "it goes on; set it to %g or more",
                settings.recovery_idle_seconds,
                HEARTBEAT_SECONDS,
                2 * HEARTBEAT_SECONDS,
            )
        for business in services.businesses.businesses:
            if business.office_phone and business.ring_timeout_seconds + 60 > (
                settings.recovery_idle_seconds
            ):
                log.warning(
                    "RECOVERY_IDLE_SECONDS=%g is too short for %s's ring_timeout_seconds=%d: "
                    "a call still ringing the office could be recovered; set it above %d",
                    settings.recovery_idle_seconds,
                    business.number,
                    business.ring_timeout_seconds,
                    business.ring_timeout_seconds + 60,
                )
        # Calls idle beyond the bound — never one another process is still serving. Owed
        # emergency alerts (a crashed process may have left one unsent) go out from the
        # escalation loop's first sweep, at once, without holding up the start.
        await recover_idle_calls(services)
        # Start-up made many long-lived objects (modules, types, settings): frozen, no
        # collection walks them again; full collections run only when they stall no call.
        pauses.warm_up(services.openai)
        pauses.install()
        collections = app.state.collections = pauses.FullCollections(services.live_calls)
        background = [
            asyncio.create_task(collect_garbage_periodically(collections, stop)),
            asyncio.create_task(services.escalation.run(stop)),
            asyncio.create_task(recover_periodically(services, stop)),
        ]
        if services.twilio is not None and settings.reconcile_interval_seconds > 0:
            background.append(asyncio.create_task(reconcile_periodically(services, stop)))
        background.append(asyncio.create_task(purge_periodically(services, stop)))
        worker = asyncio.create_task(services.worker.run(stop)) if run_worker else None
        greetings = asyncio.create_task(services.render_greetings())
        log.info(
            "receptionist ready: crm=%s openai=%s twilio_rest=%s businesses=%d",
            services.crm.name,
            "on" if settings.openai_configured else "off (scripted intake)",
            "on" if services.twilio else "off",
            len(services.businesses),
        )
        try:
            yield
        finally:
            greetings.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await greetings
            stop.set()
            if worker is not None:
                await worker
            await asyncio.gather(*background, return_exceptions=True)
            pauses.uninstall()
            await services.close()

    docs = settings.api_docs_enabled  # the API description is off unless asked for
    app = FastAPI(
        title="After-hours receptionist",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.include_router(routes_twilio.router)
    # The Media Stream is a plain ASGI app (Starlette serves an endpoint that is not a function
    # as ASGI; the parameter's annotation only names the function form).
    stream_app: Any = routes_twilio.media_stream
    app.router.add_websocket_route("/twilio/stream", stream_app, name="media_stream")
    app.include_router(routes_intake.router)
    app.include_router(routes_fallback.router)
    app.include_router(staff_routes.router)
    app.mount("/static/staff", StaticFiles(directory=staff_routes.STATIC_DIR), name="staff-static")
    install_security_headers(app)

    @app.exception_handler(TwilioRequestRefused)
    async def refused(_request: Request, exc: TwilioRequestRefused) -> Response:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.exception_handler(SQLAlchemyError)
    async def database_failed(request: Request, exc: SQLAlchemyError) -> Response:
        """The database cannot be reached: a caller still hears a message, never an error
        (Twilio's call log keeps the call, and ``reconcile`` records it later)."""
        log.error("%s: the database failed (%s)", request.url.path, type(exc).__name__)
        if request.url.path.startswith("/twilio/") and request.url.path != "/twilio/status":
            return Response(
                content=twiml.say_and_hang_up(DATABASE_DOWN_MESSAGE), media_type="application/xml"
            )
        return JSONResponse({"detail": "the database is unavailable"}, status_code=503)

    @app.get("/healthz")
    def healthz(services: ServicesDep) -> JSONResponse:
        try:
            services.store.check_health()
            database = "ok"
        except SQLAlchemyError as exc:
            log.error("health check: the database failed (%s)", type(exc).__name__)
            database = f"error: {type(exc).__name__}"
        outbox: dict[str, object] = {}
        if database == "ok":
            try:
                counts = services.store.outbox_counts()
                oldest = services.store.oldest_undelivered()
                outbox = {
                    "backlog": counts.get("pending", 0) + counts.get("delivering", 0),
                    "dead": counts.get("dead", 0),
                    "oldest_waiting_seconds": round((utc_now() - oldest).total_seconds())
                    if oldest
                    else 0,
                }
            except Exception as exc:
                database = f"error: {type(exc).__name__}"
        status = 200 if database == "ok" else 503
        return JSONResponse(
            {
                "status": "ok" if status == 200 else "degraded",
                "database": database,
                "crm": services.crm.name,
                "openai": services.settings.openai_configured,
                "twilio_rest": services.twilio is not None,
                "twilio_signatures": services.signatures.configured,
                "outbox": outbox,
            },
            status_code=status,
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
