"""Bulk import jobs: JSONL files ingested in the background, with progress, kept in the
catalog store so that every process sharing the catalog reports them.

A job is its records, its status (`Job`, as JSON) and a lease (`JobStore`). Each process
runs one job at a time, one it holds the lease of, and renews the lease while it runs; a
job whose runner stopped (a process that died, or closed mid-job) is taken over by whichever
process claims it next once its lease has lapsed, and runs again from the start: ingestion is
idempotent, so what was already stored comes back "unchanged" without being embedded again.
Jobs that an older version kept as files in the job folder are moved into the store at start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from itertools import islice
from pathlib import Path

from tongkuan.catalog.store import JobStore
from tongkuan.errors import CatalogConflict, IngestError, JobNotFound, ModelSwitched
from tongkuan.images.store import part_prefix, remove_stale_parts
from tongkuan.ingest.ingester import Ingester, IngestReport
from tongkuan.ingest.readers import read_jsonl

logger = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[0-9a-f]{32}")
FAILURES_KEPT = 100
JOB_LEASE_S = 30.0  # a job whose runner has not renewed its lease for this long is taken over
POLL_S = 5.0  # how often an idle worker looks for jobs (another process's, or a lapsed one)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass
class Job:
    """What an import job is doing and has done."""

    job_id: str
    state: JobState
    records: int
    created: float = field(default_factory=time.time)
    processed: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    failures: list[dict[str, str | None]] = field(default_factory=list)  # the first FAILURES_KEPT
    error: str | None = None
    finished: float | None = None


class ImportJobs:
    """The jobs in a catalog store and the one worker thread that runs them here, in order.
    `folder` holds upload bodies while they arrive and the records of the job running here."""

    def __init__(
        self,
        folder: Path,
        ingester: Callable[[], Ingester],
        store: Callable[[], JobStore],
        lease_s: float = JOB_LEASE_S,
        follow_switch: Callable[[], bool] = lambda: False,
    ) -> None:
        self.folder = folder
        self.ingester = ingester
        # reopens with the model the catalog switched to (`tongkuan tune` in another process);
        # True where it did: a running job then goes on with new ingesters
        self.follow_switch = follow_switch
        self.store = store  # asked each time: the engine reopens its catalog on a model switch
        self.lease_s = lease_s
        self.owner = uuid.uuid4().hex  # this process's name on the leases it holds
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._halt: threading.Event | None = None  # the running job's
        self._saving = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(folder)

    def incoming(self) -> Path:
        """A fresh file in the job folder to write an import body into before `submit`."""
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=part_prefix(), suffix=".part")
        os.close(fd)
        return Path(name)

    def submit(self, incoming: Path) -> Job:
        """Queue a JSONL file written to `incoming()` as a new job (it is read into the store
        and removed)."""
        job_id = uuid.uuid4().hex
        body = incoming.read_bytes()
        try:
            records = sum(1 for line in body.decode("utf-8").splitlines() if line.strip())  # as read_jsonl reads it
        except UnicodeDecodeError as exc:
            raise IngestError(f"an import must be UTF-8 JSONL text ({exc.reason} at byte {exc.start})") from None
        job = Job(job_id, JobState.QUEUED, records)
        self.store().add_job(job_id, job.created, _status(job), body)
        incoming.unlink(missing_ok=True)
        with self._wake:
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job:
        status = self.store().job_status(job_id) if _JOB_ID.fullmatch(job_id) else None
        if status is None:
            raise JobNotFound(f"no import job {job_id!r}")
        return _job(status)

    def delete(self, job_id: str) -> None:
        """Forget a job that ended (done or failed); raises `JobNotFound`, or `CatalogConflict`
        for a job still queued or running."""
        if _JOB_ID.fullmatch(job_id) and self.store().delete_job(job_id):
            return
        self.get(job_id)  # raises JobNotFound for none
        raise CatalogConflict(f"import job {job_id!r} has not ended: wait until it is done or failed")

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        return [_job(status) for status in self.store().job_statuses()]

    def start(self) -> None:
        """Run queued jobs (and any whose runner stopped) in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._move_old_jobs()
        self._thread = threading.Thread(target=self._run, name="import-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the batch in hand and let the job go: this process, restarted, or
        another one sharing the catalog resumes it."""
        self._stop.set()
        halt = self._halt
        if halt is not None:
            halt.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.store().claim_job(self.owner, self.lease_s)
                if claimed is None:
                    with self._wake:
                        self._wake.wait(timeout=POLL_S)
                    continue
                self._execute(*claimed)
            except Exception:  # a full disk, an unreachable catalog: keep the worker alive
                logger.exception("import worker failed; retrying in %g s", POLL_S)
                self._stop.wait(POLL_S)

    def _execute(self, job_id: str, status: str, body: bytes) -> None:
        job = _job(status)
        job.state, job.error, job.finished = JobState.RUNNING, None, None
        report = IngestReport()
        halt = self._halt = threading.Event()  # set on close, or when another process took the job
        if self._stop.is_set():
            halt.set()
        ended = threading.Event()
        records = self.folder / f"{job_id}.jsonl"
        records.write_bytes(body)
        renewing = threading.Thread(target=self._renew, args=(job, report, halt, ended), daemon=True)
        stopped = False
        try:
            self._record(job, report, halt)
            renewing.start()
            while True:
                try:
                    self.ingester().ingest(
                        islice(read_jsonl(records), report.processed, None),
                        on_commit=lambda _: self._record(job, report, halt),
                        report=report,
                        stop=halt,
                    )
                    break
                except ModelSwitched:  # nothing of the batch in hand was written
                    if not self.follow_switch():
                        raise
                    logger.info("import job %s goes on with the model the catalog switched to", job_id)
            stopped = halt.is_set() and report.processed < job.records
            if not stopped:
                job.state = JobState.DONE
        except Exception as exc:  # a job must end in a state, whatever went wrong
            logger.exception("import job %s failed", job_id)
            job.state, job.error = JobState.FAILED, str(exc) or type(exc).__name__
        finally:
            ended.set()
            if renewing.is_alive():
                renewing.join()
            records.unlink(missing_ok=True)
            self._halt = None
        if not stopped:
            job.finished = time.time()
        # stopped here: the lease goes at once, so the next runner need not wait for it to lapse
        self._save(job, report, done=not stopped, lease_s=0.0 if stopped else self.lease_s)

    def _renew(self, job: Job, report: IngestReport, halt: threading.Event, ended: threading.Event) -> None:
        """Renew the lease while the job runs, even through a batch longer than the lease."""
        while not ended.wait(self.lease_s / 3):
            self._record(job, report, halt)

    def _record(self, job: Job, report: IngestReport, halt: threading.Event) -> None:
        try:
            if not self._save(job, report):
                logger.warning("import job %s was taken over by another process; stopping here", job.job_id)
                halt.set()
        except Exception:  # the catalog is out: the ingest fails on its own, or the lease lapses
            logger.warning("could not record import job %s", job.job_id, exc_info=True)

    def _save(self, job: Job, report: IngestReport, done: bool = False, lease_s: float | None = None) -> bool:
        with self._saving:  # the worker and the renewing thread both save
            job.processed = report.processed
            job.added, job.updated, job.unchanged = report.added, report.updated, report.unchanged
            job.failed = len(report.failures)
            job.failures = [
                {"origin": f.origin.rsplit("/", 1)[-1], "itemId": f.item_id, "reason": f.reason}
                for f in report.failures[:FAILURES_KEPT]
            ]
            lease = self.lease_s if lease_s is None else lease_s
            return self.store().update_job(job.job_id, self.owner, _status(job), lease, done)

    def _move_old_jobs(self) -> None:
        """Jobs an older version kept as files here (`<id>.json` and `<id>.jsonl`) go into
        the store, unfinished ones queued again."""
        for state_file in self.folder.glob("*.json"):
            records = state_file.with_suffix(".jsonl")
            if not _JOB_ID.fullmatch(state_file.stem):
                continue
            try:
                job = _job(state_file.read_text(encoding="utf-8"))
                if self.store().job_status(job.job_id) is None:
                    done = job.state in (JobState.DONE, JobState.FAILED)
                    job.state = job.state if done else JobState.QUEUED
                    body = b"" if done else records.read_bytes()
                    self.store().add_job(job.job_id, job.created, _status(job), body, done)
            except (OSError, ValueError, TypeError, KeyError):
                logger.warning("could not move the old import job %s", state_file.stem, exc_info=True)
                continue
            state_file.unlink(missing_ok=True)
            records.unlink(missing_ok=True)


def _status(job: Job) -> str:
    return json.dumps(asdict(job), ensure_ascii=False)


def _job(status: str) -> Job:
    raw = json.loads(status)
    return Job(**{**raw, "state": JobState(raw["state"])})
