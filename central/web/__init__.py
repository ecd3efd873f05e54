"""The relay's dashboard and JSON API (FastAPI, server-rendered pages): fleet, records
and their audit trail, the exception queue, reconciliation, throughput; `/healthz` and
Prometheus `/metrics` without sign-in, saying only what a monitor needs (the inbox's full
counts are /api/v1/stats). Served on 127.0.0.1 unless configured."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import statistics
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from central._version import __version__
from central.config import CentralConfig
from central.inbox import Inbox

from . import _api, _pages, _stores
from ._deps import AppState
from ._docs import mount_docs
from ._guard import SecurityHeaders, Throttle
from ._users import add_user, end_sessions, load_users, remove_user, session_secret

__all__ = ["add_user", "create_app", "end_sessions", "load_users", "remove_user", "serve"]

HEALTH_SECONDS = 0.8
"""How long /healthz waits for the database: the answer comes within a second, always."""

log = logging.getLogger("tillbridge.central.web")


def create_app(config: CentralConfig, inbox: Inbox) -> FastAPI:
    # FastAPI's own /docs and /redoc load Swagger from a CDN with inline script: ours
    # (_docs) serves the installed Swagger UI files instead.
    app = FastAPI(
        title="Tillbridge relay",
        version=__version__,
        description="Fleet, records, exceptions and reconciliation of the Tillbridge relay. "
        "Sign in with a dashboard session or HTTP Basic; retry and resolve need the "
        "operator role and the X-CSRF-Token header (GET /api/v1/csrf).",
        docs_url=None,
        redoc_url=None,
    )
    secret = session_secret(config.session_secret_file)
    web = config.web
    throttle = Throttle(
        web.login_failures_per_user, web.login_failures_per_address, web.login_window_seconds
    )
    app.state.tillbridge = AppState(config, inbox, secret, throttle)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="tillbridge_session",
        max_age=int(config.web.session_hours * 3600),
        same_site="lax",
        https_only=config.web.secure_cookies,
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), "static")
    mount_docs(app)
    app.include_router(_api.router)
    app.include_router(_pages.router)
    app.include_router(_stores.router)
    app.include_router(_stores.api)

    @app.exception_handler(StarletteHTTPException)
    async def _errors(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        try:
            await asyncio.wait_for(inbox.ping(), HEALTH_SECONDS)
        except TimeoutError:
            return JSONResponse({"status": "busy"}, 503)
        except Exception as exc:  # noqa: BLE001 - health answers, it does not raise
            # The class only: a driver's message may hold the database URL.
            log.warning(
                "Health check: the inbox does not answer.", extra={"error": type(exc).__name__}
            )
            return JSONResponse({"status": "failing"}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return PlainTextResponse(await render_metrics(inbox), media_type=CONTENT_TYPE_LATEST)

    return app


async def render_metrics(inbox: Inbox) -> bytes:
    """Prometheus text, read from the inbox at scrape time (several relays agree)."""
    stats = await inbox.stats()
    registry = CollectorRegistry()

    def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"tillbridge_{name}", text, list(labels), registry=registry)

    records = gauge("records", "Records in the inbox by state.", ("state",))
    for state, count in stats["by_state"].items():
        records.labels(state).set(count)
    deliveries = gauge("deliveries", "Deliveries by target and state.", ("target", "state"))
    for target, states in stats.get("deliveries", {}).items():
        for state, count in states.items():
            deliveries.labels(target, state).set(count)
    gauge("exceptions_open", "Open exceptions.").set(stats["exceptions"])
    gauge("stores", "Stores known.").set(stats["stores"])
    gauge("stores_online", "Stores online.").set(stats["online"])
    gauge("duplicates", "Duplicate records dropped.").set(stats["duplicates"])
    gauge("missing_seqs", "Sequence numbers not yet received.").set(stats["missing"])
    pending = gauge("downlink_pending", "Downlink messages not yet answered.", ("store",))
    late = gauge(
        "downlink_past_promise", "Orders at the store past their promised time.", ("store",)
    )
    for store, down in stats.get("downlink", {}).items():
        pending.labels(store).set(down["pending"])
        late.labels(store).set(down["past_promise"])
    latency = Histogram(
        "tillbridge_delivery_latency_seconds",
        "From receipt to the target's confirmation (deliveries of the last hour).",
        buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
        registry=registry,
    )
    samples = await inbox.delivery_latencies()
    for value in samples:
        latency.observe(value)
    if samples:
        Gauge(
            "tillbridge_delivery_latency_p50_seconds", "Median of the same.", registry=registry
        ).set(statistics.median(samples))
    return generate_latest(registry)


async def serve(app: FastAPI, listen: str, stop: asyncio.Event) -> None:
    """Run the app with uvicorn until `stop` is set. An address already in use is logged
    and the relay goes on without its dashboard: intake must not stop for it."""
    import uvicorn

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        log.error("Dashboard cannot listen.", extra={"listen": listen, "error": str(exc)})
        return
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
