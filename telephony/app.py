"""The FastAPI app: factory, lifespan, health and metrics; one router per area."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from crm.config import CrmWriter
from telephony import routes_intake, routes_staff, routes_twilio
from telephony.reconcile import reconcile
from telephony.routes_twilio import ServicesDep, TwilioRequestRefused
from telephony.services import Clock, Services, utc_now
from telephony.settings import Settings

log = logging.getLogger(__name__)


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
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
        if stop.is_set():
            return
        try:
            await recover_idle_calls(services)
        except Exception as exc:  # the loop outlives a database hiccup
            log.error("recovery sweep failed (%s)", type(exc).__name__)


async def reconcile_periodically(services: Services, stop: asyncio.Event) -> None:
    """The capture ledger against Twilio's call log every ``RECONCILE_INTERVAL_SECONDS``
    (looking back twice that far, at least an hour)."""
    interval = services.settings.reconcile_interval_seconds
    lookback = dt.timedelta(seconds=max(3600.0, 2 * interval))
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
        if stop.is_set():
            return
        try:
            report = await reconcile(services, since=dt.datetime.now(dt.UTC) - lookback)
        except Exception as exc:  # the loop outlives a Twilio or database hiccup
            log.error("reconcile failed (%s)", type(exc).__name__)
            continue
        for error in report.errors:
            log.error("reconcile: %s", error)


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
        # Owed emergency alerts first (a crashed process may have left one unsent), then
        # calls idle beyond the bound — never one another process is still serving.
        await services.escalation.send_owed()
        await recover_idle_calls(services)
        background = [
            asyncio.create_task(services.escalation.run(stop)),
            asyncio.create_task(recover_periodically(services, stop)),
        ]
        if services.twilio is not None and settings.reconcile_interval_seconds > 0:
            background.append(asyncio.create_task(reconcile_periodically(services, stop)))
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
            await services.close()

    app = FastAPI(
        title="After-hours receptionist", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.include_router(routes_twilio.router)
    app.include_router(routes_intake.router)
    app.include_router(routes_staff.router)

    @app.exception_handler(TwilioRequestRefused)
    async def refused(_request: Request, exc: TwilioRequestRefused) -> Response:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.get("/healthz")
    def healthz(services: ServicesDep) -> JSONResponse:
        try:
            with services.store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            database = "ok"
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
            },
            status_code=status,
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
