"""Ingestion spread over a Ray cluster, for catalogs too big for one machine's model.

A Ray Data pipeline in two stages: readers check records and download their pictures (I/O,
many small tasks), then an actor pool decodes, embeds in model batches and writes each
batch to the shared catalog in one transaction (the model loads once per actor; an actor
takes a GPU where the cluster has one). The vector index (Milvus) replays the catalog's
change log, so it is written by the same commit. A rerun after a crash skips what is done:
a product whose pictures are stored with the same content is not embedded again.

Every worker builds its ingester with the factory it is given (the engine's builders, from
the driver's settings), so the catalog and the picture folder must be shared (PostgreSQL and
a network file system): this is for the server backends. Ray costs a few seconds per job, so
small ingests stay in process.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable, Iterable
from typing import Any

from tongkuan.ingest.ingester import Failure, Fetched, Ingester, IngestReport
from tongkuan.ingest.readers import SourceRecord

logger = logging.getLogger(__name__)

READ_BATCH = 16  # records per download task
EMBED_BATCH = 32  # records per actor call (and per catalog transaction)
MAX_BLOCKS = 2_000  # enough to spread over a cluster, few enough for Ray's scheduler
LOCAL_START_TRIES = 2  # Ray gives a local node 30 s to register; a busy machine may need more


class _Reader:
    """Stage 1: check records and download their pictures."""

    def __init__(self, make_ingester: Callable[[], Ingester]) -> None:
        self.ingester = make_ingester()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        fetched = [self.ingester.fetch(pickle.loads(raw)) for raw in batch["record"]]
        return {"item": [pickle.dumps(f) for f in fetched]}


class _EmbedWriter:
    """Stage 2: decode, embed what changed, write each batch in one transaction."""

    def __init__(self, make_ingester: Callable[[], Ingester]) -> None:
        self.ingester = make_ingester()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        report = IngestReport()
        good = []
        for raw in batch["item"]:
            item: Fetched | Failure = pickle.loads(raw)
            loaded = self.ingester.decode(item) if isinstance(item, Fetched) else item
            if isinstance(loaded, Failure):
                report.failures.append(loaded)
            else:
                good.append(loaded)
        self.ingester.write(good, report)
        report.processed = len(batch["item"])
        return {"report": [pickle.dumps(report)]}


def start_ray(ray: Any, options: dict[str, Any], tries: int) -> None:
    """Start (or join) Ray; a failed start stops what it had started before the next try.

    Ray's local node must register within a fixed 30 s, which a machine busy with other work
    can miss; the processes of a failed start would otherwise outlive the ingest."""
    for attempt in range(1, tries + 1):
        try:
            ray.init(logging_level=logging.WARNING, **options)
            return
        except Exception:
            ray.shutdown()
            if attempt == tries:
                raise
            logger.warning("Ray did not start (try %d of %d); trying again", attempt, tries, exc_info=True)


def ingest_with_ray(
    make_ingester: Callable[[], Ingester],
    records: Iterable[SourceRecord],
    address: str,
    actors: int = 1,
    ray_options: dict[str, Any] | None = None,
) -> IngestReport:
    """Ingest `records` on the Ray cluster at `address` ("local" starts one on this machine).

    Every worker calls `make_ingester` (picklable: a module-level function or a partial of
    one) to open its own model and stores, which must therefore be shared ones."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        # A cluster of this machine alone stays on 127.0.0.1: Ray would otherwise advertise the
        # machine's external address (it is read when ray is first imported).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    started = time.perf_counter()
    options = dict(ray_options or {})
    if address != "local":
        options["address"] = address
    ours = not ray.is_initialized()  # a caller's own Ray session is left running
    if ours:
        start_ray(ray, options, tries=LOCAL_START_TRIES if address == "local" else 1)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0  # type: ignore[no-untyped-call]
        rows = [{"record": pickle.dumps(record)} for record in records]
        if not rows:
            return IngestReport(seconds=time.perf_counter() - started)
        blocks = min(MAX_BLOCKS, max(1, len(rows) // READ_BATCH))
        source = ray.data.from_items(rows, override_num_blocks=blocks)
        fetched = source.map_batches(
            _Reader, fn_constructor_args=(make_ingester,), batch_size=READ_BATCH, concurrency=(1, max(1, actors))
        )
        written = fetched.map_batches(
            _EmbedWriter,
            fn_constructor_args=(make_ingester,),
            batch_size=EMBED_BATCH,
            concurrency=(1, max(1, actors)),  # an autoscaling pool: small ingests start one actor
            num_gpus=gpus,
        )
        report = IngestReport()
        for row in written.iter_rows():
            part: IngestReport = pickle.loads(row["report"])
            report.added += part.added
            report.updated += part.updated
            report.unchanged += part.unchanged
            report.images_embedded += part.images_embedded
            report.processed += part.processed
            report.failures += part.failures
    finally:
        if ours:
            ray.shutdown()
    report.seconds = time.perf_counter() - started
    return report
