"""The FastAPI app: factory, lifespan, health and metrics; one router per area."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from crm.config import CrmWriter
from telephony import routes_intake, routes_twilio
from telephony.routes_twilio import ServicesDep, TwilioRequestRefused
from telephony.services import Clock, Services, utc_now
from telephony.settings import Settings
from telephony.staff import routes as staff_routes
from telephony.staff.security import install_security_headers

log = logging.getLogger(__name__)


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
            services.store.engine.dispose()

    app = FastAPI(
        title="After-hours receptionist", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.include_router(routes_twilio.router)
    app.include_router(routes_intake.router)
    app.include_router(staff_routes.router)
    app.mount("/static/staff", StaticFiles(directory=staff_routes.STATIC_DIR), name="staff-static")
    install_security_headers(app)

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
