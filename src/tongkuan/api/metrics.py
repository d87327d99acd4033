"""Prometheus metrics at `GET /metrics`, served only with `TONGKUAN_METRICS=true`.

Recorded as requests come: requests by route template, method and status code, and the
seconds each stage of a picture search takes (`tongkuan.search.timing.Stage`). Read when
Prometheus scrapes, so they cost nothing in between: the catalog's products and pictures,
the vector index's pictures, the requests the rate limits refused, and the inferences waiting
for a slot.

Each app has a registry of its own, never the library's global one, so apps built side by
side in one process (the tests) keep their own counts. `tongkuan serve` runs one process, so
no multiprocess mode is needed: with several replicas, Prometheus scrapes each and sums them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from tongkuan.api.access_log import ResponseStatus
from tongkuan.engine import Engine
from tongkuan.errors import TongkuanError
from tongkuan.evaluation.service import Evaluations
from tongkuan.search.timing import Stage, StageClock

logger = logging.getLogger(__name__)

# From a catalog read (about a millisecond) to a slow picUrl download (10 s by default).
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"  # the route of a request no route served: raw paths would make series without bound
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """One app's registry: what its middleware and routes record, plus what is read of the
    app's engine and rate limiters (`state`) at each scrape."""

    def __init__(self, state: State) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tongkuan_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        stages = Histogram(
            "tongkuan_search_stage_seconds",
            "Seconds one picture search spends in each stage: fetch, decode, queue, inference, vision, read, index, "
            "catalog.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        # bound once: every stage shows from the first scrape, and observing skips a lookup
        self._stages = {stage: stages.labels(stage.value) for stage in Stage}
        self.registry.register(_ScrapeTimeValues(state))

    def observe(self, clock: StageClock) -> None:
        """Record the stages of one finished search: every stage, 0 for one it skipped (no
        model pass for a picture described before), so each stage counts every search."""
        for stage, histogram in self._stages.items():
            histogram.observe(clock.seconds.get(stage, 0.0))

    def scrape(self, request: Request) -> Response:
        """`GET /metrics`: every metric in the format the scraper asks for (Prometheus text
        unless it asks for OpenMetrics). A route bound to this app's metrics, so it needs no
        lookup of them."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.registry), headers={"Content-Type": content_type})


class _ScrapeTimeValues:
    """A collector of values read at each scrape."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "tongkuan_rate_limited_requests",
            "Requests refused by a rate limit: app (per appKey), web (the search page, per client address) "
            "or auth (a client address after too many failed authentications).",
            labels=["limit"],
        )
        refused.add_metric(["app"], self.state.limiter.refused)
        refused.add_metric(["web"], self.state.web_limiter.refused)
        refused.add_metric(["auth"], self.state.auth_throttle.refused)
        yield refused
        engine: Engine | None = getattr(self.state, "engine", None)
        if engine is None:
            return  # the app has not started
        yield from _evaluation_figures(getattr(self.state, "evaluations", None))
        yield GaugeMetricFamily(
            "tongkuan_inference_waiting",
            "Inferences (searches and ingestion) waiting for one of the TONGKUAN_INFERENCE_SLOTS.",
            value=engine.inference_waiting(),
        )
        try:
            products, pictures = engine.counts()
            vectors = engine.index_size()
        except TongkuanError as exc:
            # a store that is down still leaves the request counts to scrape
            logger.warning("metrics without catalog and index sizes: %s", exc)
            return
        yield GaugeMetricFamily("tongkuan_catalog_products", "Products in the catalog.", value=products)
        yield GaugeMetricFamily("tongkuan_catalog_pictures", "Pictures in the catalog.", value=pictures)
        yield GaugeMetricFamily("tongkuan_index_vectors", "Pictures the vector index holds.", value=vectors)


def _evaluation_figures(evaluations: Evaluations | None) -> Iterator[Metric]:
    """The last finished evaluation's figures (nothing before one finishes)."""
    scores = evaluations.last_scores() if evaluations is not None else None
    if scores is None:
        return
    recall = GaugeMetricFamily(
        "tongkuan_eval_recall",
        "Recall at k of the last evaluation on a check set (POST /admin/evaluations).",
        labels=["k"],
    )
    for k, value in (("1", scores.recall_1), ("5", scores.recall_5), ("20", scores.recall_20)):
        recall.add_metric([k], value)
    yield recall
    yield GaugeMetricFamily("tongkuan_eval_mrr", "Mean reciprocal rank of the last evaluation.", value=scores.mrr)
    yield GaugeMetricFamily("tongkuan_eval_checks", "Checks the last evaluation scored.", value=scores.n)


class RequestCounter:
    """ASGI middleware counting each request by its route's template, method and status code.
    Added outside the other guards, so requests refused before routing (a body over the limit
    by its declared size, a Host not served) count too, as `UNMATCHED` like paths no route serves."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status.send)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            # The router leaves the route it matched in the scope (a wrong method matches too: 405).
            # Its path holds the prefix its APIRouter declares; FastAPI leaves out one given to
            # include_router, so routers here declare their own.
            route = str(getattr(scope.get("route"), "path", UNMATCHED))
            self.metrics.requests.labels(route, method, str(status.code)).inc()
