"""ONNX Runtime inference for any image-embedding model described by a `ModelSpec`.

A model is an `.onnx` file plus the numbers needed to feed it (input name and size, how a
picture is resized to it, mean and std on the 0-255 scale) and the names of its outputs: the
embedding (required; a transformer's token sequence is pooled to its first, class, token),
and optionally a (C, h, w) feature map for subject detection and class logits (ImageNet-1k)
for the category prior. A model without a feature map still searches: a shipped model finds
the subjects for it (`tongkuan.vision.pipeline.Vision`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.errors import ModelLoadError, ModelNotFound

logger = logging.getLogger(__name__)

SUPPORTED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
# Pictures per batch where ingestion and re-embedding run on a GPU: a CPU gains little past
# 16-32 (bench/embedders.py), a GPU needs far more pictures per pass to keep busy.
GPU_BATCH = 128
# Pictures per inference for background work (ingestion, re-embedding): a search waits for
# at most one such run, not a whole batch (a 16-picture Lite2 batch holds the cores ~0.2 s).
BACKGROUND_CHUNK = 4
# After a search's inference, background work leaves the cores free this long: a search runs
# two or three inferences with a few milliseconds of its own work between them.
FOLLOW_UP_S = 0.03
# Background work waits for searches at most this long per inference, so it still advances
# (a few pictures a second) under a load that always has a search waiting.
BACKGROUND_MAX_WAIT_S = 0.5

# Whether the inferences of this thread (or task) are background work that searches go before.
_background: ContextVar[bool] = ContextVar("background_inference", default=False)
# Who hears, for each inference of this thread (or task), how long it waited for a slot and ran.
_timing: ContextVar[Callable[[float, float], None] | None] = ContextVar("inference_timing", default=None)


@contextmanager
def background_inference() -> Iterator[None]:
    """Mark the inferences run inside the block as background work: they take the cores only
    when no search waits for them, a few pictures at a time."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


@contextmanager
def timed_inference(report: Callable[[float, float], None]) -> Iterator[None]:
    """Tell `report(waited_s, ran_s)` of each inference run inside the block: a search's time
    in the model's passes and in the queue for them, apart from the work around them."""
    token = _timing.set(report)
    try:
        yield
    finally:
        _timing.reset(token)


@dataclass(frozen=True)
class ModelSpec:
    """How to feed one ONNX image model and read its outputs."""

    name: str
    path: Path
    input_size: int
    dim: int
    input_name: str = "image"
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    embedding_output: str = "embedding"
    feature_map_output: str | None = None
    logits_output: str | None = None
    labels: str | None = None
    # "squash": the picture resized to a square of `resize_to` (default the input size);
    # "shortest": its shorter side resized to `resize_to`; then the input cut from the centre
    resize: str = "squash"
    resize_to: int | None = None
    interpolation: str = "bilinear"  # or bicubic, nearest, lanczos, box, hamming (Pillow's filters)
    # how a (batch, tokens, dim) embedding output becomes one vector: "cls", its first token
    pooling: str = "cls"
    described: Path | None = None  # the model.json it was read from

    @classmethod
    def from_json(cls, json_path: Path, onnx_path: Path | None = None) -> ModelSpec:
        """Read a `model.json`; the `.onnx` file defaults to `model.onnx` beside it."""
        try:
            raw: dict[str, Any] = json.loads(json_path.read_text())
        except FileNotFoundError as exc:
            raise ModelNotFound(f"model description {json_path} does not exist") from exc
        except ValueError as exc:
            raise ModelLoadError(f"model description {json_path} is not valid JSON") from exc
        for key, allowed in (("resize", RESIZE_MODES), ("interpolation", tuple(RESAMPLING)), ("pooling", ("cls",))):
            if key in raw and raw[key] not in allowed:
                raise ModelLoadError(f"{json_path}: {key} {raw[key]!r} is not one of {', '.join(allowed)}")
        return cls(
            name=str(raw.get("name", json_path.parent.name)),
            path=onnx_path or json_path.parent / str(raw.get("onnx", "model.onnx")),
            input_size=int(raw["input_size"]),
            dim=int(raw["dim"]),
            input_name=str(raw.get("input_name", "image")),
            mean=tuple(float(v) for v in raw.get("mean", (127.0,) * 3)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in raw.get("std", (128.0,) * 3)),  # type: ignore[arg-type]
            embedding_output=str(raw.get("embedding_output", "embedding")),
            feature_map_output=raw.get("feature_map_output"),
            logits_output=raw.get("logits_output"),
            labels=raw.get("labels"),
            resize=str(raw.get("resize", "squash")),
            resize_to=None if raw.get("resize_to") is None else int(raw["resize_to"]),
            interpolation=str(raw.get("interpolation", "bilinear")),
            pooling=str(raw.get("pooling", "cls")),
            described=json_path,
        )

    @property
    def description_file(self) -> Path:
        """The model.json that describes this model (beside its .onnx file unless read from
        one elsewhere, as in a Hugging Face or Immich layout)."""
        return self.described or self.path.with_name("model.json")

    def to_json(self, folder: Path) -> dict[str, Any]:
        """The `model.json` in `folder` that describes this model (its `.onnx` file named
        relative to the folder)."""
        described: dict[str, Any] = {
            "name": self.name,
            "onnx": self.path.relative_to(folder).as_posix(),
            "input_size": self.input_size,
            "dim": self.dim,
            "input_name": self.input_name,
            "mean": list(self.mean),
            "std": list(self.std),
            "embedding_output": self.embedding_output,
            "feature_map_output": self.feature_map_output,
            "logits_output": self.logits_output,
            "labels": self.labels,
            "resize": self.resize,
            "resize_to": self.resize_to,
            "interpolation": self.interpolation,
            "pooling": self.pooling,
        }
        return {key: value for key, value in described.items() if value is not None}


@dataclass
class Outputs:
    """One batch's results: L2-normalised embeddings and, where the model has them, the rest."""

    embeddings: NDArray[np.float32]
    feature_maps: NDArray[np.float32] | None = None
    logits: NDArray[np.float32] | None = None


RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
RESIZE_MODES = ("squash", "shortest")


def fit(image: Image.Image, spec: ModelSpec) -> Image.Image:
    """An RGB image resized (and cut) to the model's square input, as the model was trained:
    "squash" resizes it to a square of `resize_to` (default the input size), "shortest" its
    shorter side to `resize_to`; then the input is cut from the centre."""
    size = spec.input_size
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert copies even an RGB image
    filter_ = RESAMPLING[spec.interpolation]
    side = spec.resize_to or size
    if spec.resize == "squash":
        resized = rgb.resize((side, side), filter_)
    else:
        width, height = rgb.size
        scale = side / min(width, height)
        # the longer side as the image processors compute it (int, not round)
        resized = rgb.resize((side, int(height * scale)) if width <= height else (int(width * scale), side), filter_)
    if resized.size == (size, size):
        return resized
    left, top = (resized.size[0] - size) // 2, (resized.size[1] - size) // 2
    return resized.crop((left, top, left + size, top + size))


def preprocess(images: list[Image.Image], spec: ModelSpec) -> NDArray[np.float32]:
    """Resize each RGB image to the model's square input and normalise it, NCHW float32."""
    size = spec.input_size
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    for i, image in enumerate(images):
        resized = fit(image, spec)
        # in place, straight from the 8-bit pixels: the same floats as (pixels - mean) / std,
        # without the three temporary arrays that took 1.4 ms of a 15 ms Lite2 pass
        np.subtract(np.asarray(resized).transpose(2, 0, 1), mean, out=batch[i], dtype=np.float32)
        np.divide(batch[i], std, out=batch[i])
    return batch


def l2_normalise(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: NDArray[np.float32] = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def open_session(path: Path, threads: int) -> tuple[Any, list[str]]:
    """An ONNX Runtime session of `path` as the service runs every model (the preferred
    providers available, `threads` intra-op threads, idle workers not spinning), and the
    providers it got; raises `ModelLoadError` for a file ONNX Runtime cannot load.

    Each option was measured on Lite2 at batch 1 on 2 cores (docs/benchmarks.md, "The work
    around a query's two passes"): spinning makes a lone pass 10 % faster but the service
    11-14 % slower under load, even stopped after each run (the spinning workers take the
    cores from the requests' own work); full graph optimisation is 3x faster than basic;
    without the memory arena a pass is 1-9 % slower; one thread is 1.6-1.8x slower; parallel
    execution is no faster (a chain of convolutions has no branches to run side by side)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle ORT workers spin by default; in a server that steals the cores from the
    # request's own Python work between the two forward passes.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [p for p in SUPPORTED_PROVIDERS if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers), providers
    except Exception as exc:  # ORT raises its own untyped errors for corrupt files
        raise ModelLoadError(f"cannot load {path}: {exc}") from exc


class _Joined:
    """Searches' pictures that wait for a slot together and run in one pass: the first to
    come takes the slot for all of them, the others wait for their rows of its outputs."""

    def __init__(self) -> None:
        self.inputs: list[NDArray[np.float32]] = []
        self.outputs: list[Any] | None = None
        self.error: BaseException | None = None
        self.began = self.ended = 0.0
        self.done = threading.Event()

    @property
    def size(self) -> int:
        return sum(len(batch) for batch in self.inputs)


class OnnxEncoder:
    """Runs a `ModelSpec` with ONNX Runtime. Thread-safe: ORT sessions allow concurrent `run`.

    Searches that wait for the slot at the same time run in one pass, up to `joined` pictures
    (a batch of 4 costs 0.92 of four single passes a picture on 2 cores, bench/perf.py); a
    search that finds the slot free runs at once, alone."""

    def __init__(self, spec: ModelSpec, threads: int = 2, slots: int = 1, joined: int = 1) -> None:
        self.spec = spec
        self.threads = threads
        self.joined = joined
        self._joining: _Joined | None = None  # the pass searches may still join, under `_turn`
        self._session: Any = None
        self.providers: list[str] = []  # known once loaded
        self._lock = threading.Lock()
        # Runs at once: more than the cores can serve only multiplies ORT's working memory
        # (32 concurrent requests grew RSS 13 % in five minutes) without adding throughput.
        self._slots = slots
        self._running = 0
        self._waiting = 0  # searches and background work alike
        self._urgent_waiting = 0  # searches only: background work lets them go first
        self._urgent_done_at = 0.0  # when a search's inference last ended (time.monotonic)
        self._overdue = 0  # background inferences that waited their longest: they go next
        self._turn = threading.Condition()

    @property
    def waiting(self) -> int:
        """Inferences waiting for a slot now (searches and ingestion alike): a queue that stays
        above zero says the slots, or the cores behind them, are too few for the load."""
        return self._waiting

    def load(self) -> None:
        """Open the ONNX session once (guarded: two requests may race to load)."""
        with self._lock:
            if self._session is not None:
                return

            if not self.spec.path.exists():
                raise ModelNotFound(f"model file {self.spec.path} does not exist")
            session, providers = open_session(self.spec.path, self.threads)
            names = {o.name for o in session.get_outputs()}
            for wanted in (
                self.spec.embedding_output,
                self.spec.feature_map_output,
                self.spec.logits_output,
            ):
                if wanted is not None and wanted not in names:
                    raise ModelLoadError(f"model {self.spec.name} has no output {wanted!r}; it has {sorted(names)}")
            logger.info("model %s loaded with %s, %d threads", self.spec.name, providers, self.threads)
            self.providers = providers
            self._session = session

    def batch(self, cpu_batch: int) -> int:
        """Pictures per batch for bulk embedding: `cpu_batch` on the CPU, `GPU_BATCH` (or more,
        if asked) where the session runs on CUDA."""
        self.load()
        return max(cpu_batch, GPU_BATCH) if "CUDAExecutionProvider" in self.providers else cpu_batch

    def run(self, images: list[Image.Image]) -> Outputs:
        """Embed a batch of RGB images; also return feature maps and logits if the model has them."""
        self.load()
        wanted = [self.spec.embedding_output]
        if self.spec.feature_map_output:
            wanted.append(self.spec.feature_map_output)
        if self.spec.logits_output:
            wanted.append(self.spec.logits_output)
        background, report = _background.get(), _timing.get()
        size = BACKGROUND_CHUNK if background else max(1, len(images))
        parts: list[list[Any]] = []
        for start in range(0, len(images), size):
            batch = preprocess(images[start : start + size], self.spec)
            if not background:  # with `joined` 1, a search's group never takes another
                parts.append(self._run_joined(wanted, batch, report))
                continue
            asked = time.perf_counter()
            self._take_slot(background)
            began = time.perf_counter()
            try:
                parts.append(self._session.run(wanted, {self.spec.input_name: batch}))
            finally:
                self._give_slot(background)
            if report is not None:
                report(began - asked, time.perf_counter() - began)
        if len(parts) == 1:
            results = parts[0]
        else:
            results = [np.concatenate([part[i] for part in parts]) for i in range(len(wanted))]
        by_name = dict(zip(wanted, results, strict=True))
        emb = np.asarray(by_name[self.spec.embedding_output], dtype=np.float32)
        if emb.ndim == 3:  # a transformer's tokens: its class token is the picture's embedding
            emb = emb[:, 0]
        emb = emb.reshape(len(images), -1)
        return Outputs(
            embeddings=l2_normalise(emb),
            feature_maps=by_name.get(self.spec.feature_map_output or ""),
            logits=by_name.get(self.spec.logits_output or ""),
        )

    def _run_joined(
        self, wanted: list[str], batch: NDArray[np.float32], report: Callable[[float, float], None] | None
    ) -> list[Any]:
        """A search's pass, run with the other searches' that wait for the slot with it."""
        asked = time.perf_counter()
        with self._turn:
            joining = self._joining
            lead = joining is None or joining.size + len(batch) > self.joined
            if lead:  # the first of a group runs it
                joining = self._joining = _Joined()
            else:
                self._waiting += 1
            assert joining is not None
            joining.inputs.append(batch)
            mine = len(joining.inputs) - 1
        if lead:
            self._run_group(wanted, joining)
        else:
            joining.done.wait()
            with self._turn:
                self._waiting -= 1
        if report is not None:
            report(joining.began - asked, joining.ended - joining.began)
        if joining.error is not None:
            raise joining.error
        assert joining.outputs is not None
        start = sum(len(b) for b in joining.inputs[:mine])
        return [output[start : start + len(batch)] for output in joining.outputs]

    def _run_group(self, wanted: list[str], joining: _Joined) -> None:
        """Take the slot for a group of searches, close it to newcomers, run it as one batch."""
        try:
            self._take_slot(False)
        except BaseException as exc:
            joining.error = exc
            with self._turn:
                if self._joining is joining:
                    self._joining = None
            joining.done.set()
            raise
        try:
            with self._turn:
                if self._joining is joining:
                    self._joining = None  # who comes now waits for the next pass
            inputs = joining.inputs[0] if len(joining.inputs) == 1 else np.concatenate(joining.inputs)
            joining.began = time.perf_counter()
            joining.outputs = self._session.run(wanted, {self.spec.input_name: inputs})
        except BaseException as exc:
            joining.error = exc
        finally:
            joining.ended = time.perf_counter()
            self._give_slot(False)
            joining.done.set()

    def _take_slot(self, background: bool) -> None:
        """Wait for an inference slot. Background work also waits while a search waits, and
        for `FOLLOW_UP_S` after a search's inference, but for `BACKGROUND_MAX_WAIT_S` at most:
        then it is overdue and goes before searches."""
        with self._turn:
            self._waiting += 1
            self._urgent_waiting += not background
            overdue_at = time.monotonic() + BACKGROUND_MAX_WAIT_S
            overdue = False
            try:
                while True:
                    now = time.monotonic()
                    if background and not overdue and now >= overdue_at:
                        overdue = True
                        self._overdue += 1
                    wait: float | None = None  # until a slot is given back
                    if self._running < self._slots:
                        if not background:
                            if not self._overdue:
                                break
                        elif overdue:
                            break
                        else:
                            pause = self._urgent_done_at + FOLLOW_UP_S - now  # a search's next inference
                            if not self._urgent_waiting and pause <= 0:
                                break
                            wait = overdue_at - now if self._urgent_waiting else min(pause, overdue_at - now)
                    elif background and not overdue:
                        wait = overdue_at - now
                    self._turn.wait(wait)
            finally:
                self._waiting -= 1
                self._urgent_waiting -= not background
                self._overdue -= overdue
            self._running += 1

    def _give_slot(self, background: bool) -> None:
        with self._turn:
            self._running -= 1
            if not background:
                self._urgent_done_at = time.monotonic()
            self._turn.notify_all()
