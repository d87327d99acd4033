"""From a configured model name to a ready `ModelSpec`, building shipped models once."""

from __future__ import annotations

import fcntl
from pathlib import Path

from tongkuan.errors import ModelLoadError, ModelNotFound
from tongkuan.vision.encoder import ModelSpec
from tongkuan.vision.export import SHIPPED_MODELS, export_shipped_model


def resolve_model(model: str, data_dir: Path) -> ModelSpec:
    """A shipped model name (exported into `data_dir/models/<name>` on first use) or a path
    to a `model.json` describing any ONNX image-embedding model."""
    if model in SHIPPED_MODELS:
        cache = data_dir / "models" / model
        if not (cache / "model.onnx").exists() or not (cache / "model.json").exists():
            cache.mkdir(parents=True, exist_ok=True)
            with open(cache / ".lock", "w") as lock:  # two processes may start at once
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (cache / "model.onnx").exists() or not (cache / "model.json").exists():
                    export_shipped_model(model, cache)
        return ModelSpec.from_json(cache / "model.json")
    path = Path(model)
    if path.suffix == ".json" and path.exists():
        return ModelSpec.from_json(path)
    if path.exists():
        raise ModelLoadError(f"model {model!r}: give the model.json that describes the ONNX file")
    raise ModelNotFound(f"model {model!r} is neither shipped ({', '.join(SHIPPED_MODELS)}) nor a model.json path")
