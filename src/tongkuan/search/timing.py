"""Where the time of a picture search goes, stage by stage, for the service's metrics.

A `StageClock` is a lap timer: starting a stage charges the time since the last start to the
stage that was running, so a widening search that goes back and forth between the index and
the catalog adds each visit to its stage, at the cost of one `perf_counter` call a switch.
"""

from __future__ import annotations

from enum import StrEnum
from time import perf_counter


class Stage(StrEnum):
    """The stages of a picture search, in order. Whoever gets the picture (the HTTP routes)
    times the first two; the searcher the rest, with the model's passes and the waits for
    them told apart inside the vision work (`tongkuan.vision.encoder.timed_inference`)."""

    FETCH = "fetch"  # the picture's bytes: downloaded from picUrl or read from the picture store
    DECODE = "decode"  # bytes to pixels, within the pixel limit
    QUEUE = "queue"  # waiting for an inference slot (other searches' passes, background work)
    INFERENCE = "inference"  # the model's forward passes, inside ONNX Runtime
    VISION = "vision"  # the work around the passes: resizing, subjects, the inset search, crops
    READ = "read"  # reading the text on the picture (where the catalog's pictures carry text)
    INDEX = "index"  # bringing the vector index up to the change log, nearest-picture searches
    CATALOG = "catalog"  # reading the hits' products and pictures in one snapshot, and ranking them


class StageClock:
    """Seconds spent in each stage of one search. Not thread-safe: one per search."""

    __slots__ = ("seconds", "_running", "_since")

    def __init__(self) -> None:
        self.seconds: dict[Stage, float] = {}
        self._running: Stage | None = None
        self._since = 0.0

    def start(self, stage: Stage) -> None:
        """Charge the time since the last start to the running stage, and run `stage` from now."""
        self._since = self._charge(perf_counter())
        self._running = stage

    def spent(self, stage: Stage, seconds: float) -> None:
        """Charge `seconds` measured inside the running stage to `stage` instead (the model's
        passes inside the vision work)."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        if self._running is not None:
            self.seconds[self._running] = self.seconds.get(self._running, 0.0) - seconds

    def stop(self) -> None:
        """Charge the running stage and run none (waiting for a lock belongs to no stage)."""
        self._charge(perf_counter())
        self._running = None

    def _charge(self, now: float) -> float:
        if self._running is not None:
            self.seconds[self._running] = self.seconds.get(self._running, 0.0) + now - self._since
        return now
