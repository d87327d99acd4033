"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from tongkuan import __version__
from tongkuan.api import admin, alibaba, metrics, taobao, web
from tongkuan.api.access_log import AccessLog
from tongkuan.api.deps import EngineDep
from tongkuan.api.envelope import Envelope, install_error_handlers, ok
from tongkuan.api.guards import FramingCheck, HostCheck, SecurityHeaders
from tongkuan.api.limits import AuthThrottle, BodyLimit, FetchSlots, RateLimiter
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.evaluation.service import Evaluations


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the app over `engine`, or open one from `settings` when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        opened = engine or Engine(settings)
        app.state.engine = opened  # read by `tongkuan.api.deps.get_engine`
        app.state.evaluations = Evaluations(opened, Path(settings.data_dir) / "checks.jsonl")
        opened.warm_up()
        opened.imports.start()
        try:
            yield
        finally:
            opened.imports.close()
            if own:
                opened.close()

    app = FastAPI(
        title="tongkuan",
        version=__version__,
        description="Self-hosted product image search, wire-compatible with Taobao Image Search V2.0.",
        lifespan=lifespan,
        # the interactive docs load unpinned scripts from a CDN into this origin: off unless asked
        docs_url="/docs" if settings.http.api_docs else None,
        redoc_url="/redoc" if settings.http.api_docs else None,
    )
    install_error_handlers(app)
    # what routes need, each read back typed by its accessor in `tongkuan.api.deps`
    app.state.settings = settings
    app.state.limiter = RateLimiter(settings.limits.rate_limit_qps, settings.limits.app_rate_limits)
    app.state.web_limiter = RateLimiter(settings.limits.web_rate_limit_qps)
    app.state.auth_throttle = AuthThrottle(settings.access.auth_failure_limit, settings.access.auth_failure_window)
    app.state.fetch_slots = FetchSlots(settings.fetch.concurrency, settings.fetch.per_client, settings.fetch.per_host)
    # middleware added later wraps what was added before
    app.add_middleware(
        BodyLimit, max_bytes=settings.limits.max_body_bytes, wide_max_bytes=settings.limits.admin_max_body_bytes
    )
    app.add_middleware(FramingCheck)
    app.add_middleware(HostCheck, hosts=settings.http.served_hosts)
    app.add_middleware(AccessLog)  # outside the Host check: refused hosts are logged too
    app.state.metrics = None
    if settings.http.metrics:  # off: /metrics is an unknown route, answered 404 like any other
        registry = metrics.Metrics(app.state)
        app.state.metrics = registry
        app.add_middleware(metrics.RequestCounter, metrics=registry)  # counts 413s too
        app.add_api_route("/metrics", registry.scrape, methods=["GET"], include_in_schema=False)
    app.add_middleware(SecurityHeaders)  # outermost: every answer carries them
    app.include_router(taobao.router)
    app.include_router(alibaba.router)
    app.include_router(admin.router)
    if settings.http.web_ui:
        app.include_router(web.router)
        app.include_router(web.api)

    @app.get("/health", tags=["service"], summary="Liveness and catalog size")
    def health(opened: EngineDep) -> Envelope:
        """Liveness: 200 while the process serves, whatever the backends do (restarting a
        replica brings no backend back); the catalog's size when it answers, else nulls."""
        products, images = opened.reachable_counts() or (None, None)
        return ok({"status": "ok", "products": products, "images": images})

    @app.get("/ready", tags=["service"], summary="Readiness: the catalog store and the vector index answer")
    def ready(opened: EngineDep) -> Envelope:
        """Readiness: 200 when both backends answer now, else 503 naming the one that does not,
        so a load balancer stops sending this replica requests it could only refuse."""
        opened.check_ready()
        return ok({"status": "ready"})

    return app
