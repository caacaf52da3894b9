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
from sqlalchemy.exc import SQLAlchemyError

from crm.config import CrmWriter
from telephony import routes_intake, routes_staff, routes_twilio, twiml
from telephony.routes_twilio import ServicesDep, TwilioRequestRefused
from telephony.services import Clock, Services, utc_now
from telephony.settings import Settings

log = logging.getLogger(__name__)

DATABASE_DOWN_MESSAGE = (
    "Sorry, we cannot take your details right now because of a technical problem. "
    "Please call back in a few minutes. Goodbye."
)


PURGE_INTERVAL_SECONDS = 3600.0


async def purge_periodically(services: Services, stop: asyncio.Event) -> None:
    """Apply the personal-data retention now and then every hour until ``stop``."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(services.purge_expired_personal_data)
        except SQLAlchemyError as exc:
            log.error("retention purge failed (%s); retrying later", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PURGE_INTERVAL_SECONDS)


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
        single_node = services.store.engine.dialect.name == "sqlite"
        recovered = await services.finalizer.recover(
            idle_for=None if single_node else dt.timedelta(seconds=settings.max_call_seconds)
        )
        if recovered:
            log.warning("finalized %d call(s) left active by a previous process", recovered)
        stop = asyncio.Event()
        worker = asyncio.create_task(services.worker.run(stop)) if run_worker else None
        purger = asyncio.create_task(purge_periodically(services, stop))
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
            await purger
            if worker is not None:
                await worker
            services.store.engine.dispose()

    docs = settings.api_docs_enabled  # the API description is off unless asked for
    app = FastAPI(
        title="After-hours receptionist",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.include_router(routes_twilio.router)
    app.include_router(routes_intake.router)
    app.include_router(routes_staff.router)

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
