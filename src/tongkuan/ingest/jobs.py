"""Bulk import jobs: JSONL files ingested one at a time in the background, with progress.

Each job is a records file `<id>.jsonl` and a state file `<id>.json` in one folder; state
is rewritten atomically after every batch. A job that was queued or running when the
process stopped runs again from the start at the next start: ingestion is idempotent, so
what was already stored comes back "unchanged" without being embedded again.
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
from pathlib import Path

from tongkuan.errors import IngestError, JobNotFound
from tongkuan.images.store import part_prefix, remove_stale_parts
from tongkuan.ingest.ingester import Ingester, IngestReport
from tongkuan.ingest.readers import read_jsonl

logger = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[0-9a-f]{32}")
FAILURES_KEPT = 100


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
    """The job folder and the one worker thread that runs its jobs in order."""

    def __init__(self, folder: Path, ingester: Callable[[], Ingester]) -> None:
        self.folder = folder
        self.ingester = ingester
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(folder)

    def incoming(self) -> Path:
        """A fresh file in the job folder to write an import body into before `submit`."""
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=part_prefix(), suffix=".part")
        os.close(fd)
        return Path(name)

    def submit(self, incoming: Path) -> Job:
        """Queue a JSONL file written to `incoming()` as a new job."""
        job_id = uuid.uuid4().hex
        try:
            with incoming.open(encoding="utf-8") as lines:  # as read_jsonl will read it
                records = sum(1 for line in lines if line.strip())
        except UnicodeDecodeError as exc:
            raise IngestError(f"an import must be UTF-8 JSONL text ({exc.reason} at byte {exc.start})") from None
        os.replace(incoming, self.folder / f"{job_id}.jsonl")
        job = Job(job_id, JobState.QUEUED, records)
        with self._wake:
            self._save(job)
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job:
        path = self.folder / f"{job_id}.json"
        if not _JOB_ID.fullmatch(job_id) or not path.exists():
            raise JobNotFound(f"no import job {job_id!r}")
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Job(**{**raw, "state": JobState(raw["state"])})

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        found = [self.get(p.stem) for p in self.folder.glob("*.json") if _JOB_ID.fullmatch(p.stem)]
        return sorted(found, key=lambda job: job.created)

    def start(self) -> None:
        """Run queued jobs (and any a stopped process left unfinished) in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="import-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the batch in hand; the job resumes at the next start."""
        self._stop.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _next(self) -> Job | None:
        pending = [job for job in self.jobs() if job.state in (JobState.QUEUED, JobState.RUNNING)]
        return pending[0] if pending else None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._wake:
                    job = self._next()
                    if job is None:
                        self._wake.wait(timeout=5.0)
                        continue
                self._execute(job)
            except Exception:  # a full disk, say: keep the worker alive and try again later
                logger.exception("import worker failed; retrying in 5 s")
                self._stop.wait(5.0)

    def _execute(self, job: Job) -> None:
        job.state = JobState.RUNNING
        report = IngestReport()
        stopped = False

        def progress(_: list[str]) -> None:
            self._record(job, report)

        try:
            self._record(job, report)
            self.ingester().ingest(
                read_jsonl(self.folder / f"{job.job_id}.jsonl"), on_commit=progress, report=report, stop=self._stop
            )
            stopped = self._stop.is_set() and report.processed < job.records
            if not stopped:
                job.state = JobState.DONE
        except Exception as exc:  # a job must end in a state, whatever went wrong
            logger.exception("import job %s failed", job.job_id)
            job.state, job.error = JobState.FAILED, str(exc) or type(exc).__name__
        if not stopped:
            job.finished = time.time()
        self._record(job, report)

    def _record(self, job: Job, report: IngestReport) -> None:
        job.processed = report.processed
        job.added, job.updated, job.unchanged = report.added, report.updated, report.unchanged
        job.failed = len(report.failures)
        job.failures = [
            {"origin": f.origin.rsplit("/", 1)[-1], "itemId": f.item_id, "reason": f.reason}
            for f in report.failures[:FAILURES_KEPT]
        ]
        self._save(job)

    def _save(self, job: Job) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=part_prefix(), suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(job), out, ensure_ascii=False)
        os.replace(tmp, self.folder / f"{job.job_id}.json")
