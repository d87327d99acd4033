"""A stand-in for an ONNX Runtime session, for tests of how passes are scheduled: each pass
is slow and logged, and each picture's output says whose rows came back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from tongkuan.vision.encoder import ModelSpec, OnnxEncoder, Outputs

RUN_S = 0.05  # one pass of the stand-in model


class SlowSession:
    """Each pass takes RUN_S and is logged as (thread name, batch size); each picture's
    embedding is its own mean colour, then its row in the pass."""

    def __init__(self, fail: bool = False) -> None:
        self.log: list[tuple[str, int]] = []
        self.fail = fail

    @property
    def sizes(self) -> list[int]:
        """The batch size of each pass, in order."""
        return [size for _, size in self.log]

    def run(self, wanted: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = next(iter(feeds.values()))
        self.log.append((threading.current_thread().name, len(batch)))
        time.sleep(RUN_S)
        if self.fail:
            raise RuntimeError("the model's pass failed")
        return [np.concatenate([batch.mean(axis=(2, 3)), np.arange(len(batch))[:, None]], axis=1)]


def stand_in_encoder(joined: int | None = None, fail: bool = False) -> tuple[OnnxEncoder, SlowSession]:
    """An encoder whose model is a `SlowSession` (`joined`: the encoder's own default if None)."""
    spec = ModelSpec(name="stand-in", path=Path("unused.onnx"), input_size=8, dim=4)
    model = OnnxEncoder(spec) if joined is None else OnnxEncoder(spec, joined=joined)
    model._session = session = SlowSession(fail)  # loaded already
    return model, session


def colours(outputs: Outputs) -> np.ndarray:
    """Each picture's mean colour from a stand-in's outputs, at unit length: what a picture
    gets whichever pass it ran in (the row part differs by design)."""
    part = outputs.embeddings[:, :3]
    return part / np.linalg.norm(part, axis=1, keepdims=True)  # type: ignore[no-any-return]
