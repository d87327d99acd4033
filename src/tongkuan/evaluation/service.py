"""Evaluations the service runs on its own catalog (`POST /admin/evaluations`), one at a
time in the background, and the checks the search page saves (`POST /admin/checks`).

Runs are kept in this process's memory (the last `KEPT`): a restart forgets them, and each
replica answers for its own. Their searches yield the cores to live searches."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from tongkuan.engine import Engine
from tongkuan.errors import JobNotFound
from tongkuan.evaluation.checks import Check, parse_checks
from tongkuan.evaluation.runner import catalog_products, evaluate
from tongkuan.evaluation.scoring import Outcome, Scores
from tongkuan.vision.encoder import background_inference

KEPT = 20  # finished evaluations remembered


@dataclass(frozen=True)
class EvaluationRun:
    """One evaluation: where it stands, and its figures once done."""

    evaluation_id: str
    created: float
    total: int
    model: str
    state: str = "queued"  # queued, running, done, failed
    done: int = 0
    scores: Scores | None = None
    misses: tuple[Outcome, ...] = ()
    error: str = ""


@dataclass
class Evaluations:
    """The service's evaluation runs and the checks saved from the search page."""

    engine: Engine
    saved: Path  # the JSONL file the page's checks are appended to
    _runs: dict[str, EvaluationRun] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _one_at_a_time: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, text: str) -> EvaluationRun:
        """Check the JSONL check set `text` (pictures as URLs or uploads' imageIds; raises
        `CheckSetError` naming the bad lines) and start running it."""
        checks = parse_checks(text, catalog_products(self.engine), None)
        run = EvaluationRun(uuid.uuid4().hex, time.time(), len(checks), self.engine.vision.spec.name)
        self._put(run)
        threading.Thread(target=self._run, args=(run.evaluation_id, checks), daemon=True).start()
        return run

    def get(self, evaluation_id: str) -> EvaluationRun:
        with self._lock:
            if (run := self._runs.get(evaluation_id)) is None:
                raise JobNotFound(f"no evaluation {evaluation_id!r}")
            return run

    def runs(self) -> list[EvaluationRun]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda run: run.created)

    def last_scores(self) -> Scores | None:
        """The figures of the last evaluation that finished (for /metrics)."""
        done = [run for run in self.runs() if run.scores is not None]
        return done[-1].scores if done else None

    def save(self, line: dict[str, object]) -> Check:
        """Keep one check (a search the page marked right) in the saved check set."""
        text = json.dumps(line, ensure_ascii=False)
        check = parse_checks(text, catalog_products(self.engine), None, "the check")[0]
        with self._lock:
            self.saved.parent.mkdir(parents=True, exist_ok=True)
            with self.saved.open("a", encoding="utf-8") as out:
                out.write(text + "\n")
        return check

    def saved_text(self) -> str:
        with self._lock:
            return self.saved.read_text(encoding="utf-8") if self.saved.exists() else ""

    def _run(self, evaluation_id: str, checks: list[Check]) -> None:
        with self._one_at_a_time:
            self._change(evaluation_id, state="running")
            try:
                with background_inference():
                    result = evaluate(
                        self.engine,
                        checks,
                        progress=False,
                        each=lambda _: self._change(evaluation_id, done=self.get(evaluation_id).done + 1),
                    )
            except Exception as exc:  # reported on the run, never lost in a thread
                self._change(evaluation_id, state="failed", error=str(exc) or type(exc).__name__)
                return
            misses = tuple(o for o in result.outcomes if o.rank != 1)
            self._change(evaluation_id, state="done", scores=result.scores, misses=misses, model=result.model)

    def _change(self, evaluation_id: str, **changes: object) -> None:
        with self._lock:
            self._runs[evaluation_id] = replace(self._runs[evaluation_id], **changes)  # type: ignore[arg-type]

    def _put(self, run: EvaluationRun) -> None:
        with self._lock:
            self._runs[run.evaluation_id] = run
            finished = [r for r in self._runs.values() if r.state in ("done", "failed")]
            for old in sorted(finished, key=lambda r: r.created)[:-KEPT]:
                del self._runs[old.evaluation_id]
