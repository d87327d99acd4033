"""An 8-bit copy of a float model, calibrated on the catalog's own pictures.

ONNX Runtime's static quantization: weights per output channel in int8, activations in
uint8 with ranges observed on real inputs (the catalog's pictures, as the encoder feeds
them), in the QDQ format that ORT fuses into integer kernels. On a CPU with AVX-512 VNNI
one EfficientNet-Lite2 forward pass takes about a third of the float one, and a picture's
int8 embedding keeps a cosine of 0.99 with its float one. A model is a model: the catalog
is embedded again with the 8-bit one (as after tuning), never mixed with float vectors.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.errors import CannotLearn
from tongkuan.vision.encoder import ModelSpec, preprocess

logger = logging.getLogger(__name__)

MIN_CALIBRATION = 16  # fewer pictures than this give activation ranges that fit nobody


def quantize_model(
    spec: ModelSpec, calibration: Sequence[Image.Image], out_dir: Path, described: Mapping[str, object]
) -> Path:
    """Write `out_dir/model.onnx`, `spec`'s model in 8 bits calibrated on `calibration`, and
    `out_dir/model.json` (its float model's description plus `described`); returns the latter."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) < MIN_CALIBRATION:
        raise CannotLearn(
            f"quantizing needs at least {MIN_CALIBRATION} pictures to calibrate on; got {len(calibration)}"
        )

    class Batches(CalibrationDataReader):  # type: ignore[misc]
        """The calibration pictures, one at a time, as the encoder feeds them."""

        def __init__(self) -> None:
            self._inputs: Iterator[NDArray[np.float32]] = (preprocess([image], spec) for image in calibration)

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            batch = next(self._inputs, None)
            return None if batch is None else {spec.input_name: batch}

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tongkuan-quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(spec.path), str(prepared))  # shapes and fusions first: better ranges
        quantize_static(
            str(prepared),
            str(out_dir / "model.onnx"),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    original = json.loads(spec.description_file.read_text()) if spec.description_file.exists() else {}
    description = {**original, **_spec_fields(spec), **described, "precision": "int8"}
    description.pop("name", None)  # named by the folder it is unpacked into
    # the 8-bit image tower alone: a text tower's files stay with the float model
    description.pop("text", None)
    description["onnx"] = "model.onnx"
    target = out_dir / "model.json"
    target.write_text(json.dumps(description, indent=2))
    return target


def _spec_fields(spec: ModelSpec) -> dict[str, object]:
    """What a model.json must say to feed the model (a shipped model's may say it implicitly)."""
    return {
        "input_name": spec.input_name,
        "input_size": spec.input_size,
        "dim": spec.dim,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "embedding_output": spec.embedding_output,
        "feature_map_output": spec.feature_map_output,
        "logits_output": spec.logits_output,
        "labels": spec.labels,
        "resize": spec.resize,
        "resize_to": spec.resize_to,
        "interpolation": spec.interpolation,
        "pooling": spec.pooling,
    }


def precision(described: Path) -> str:
    """ "int8" for a model this module made, else "float32"."""
    return str(json.loads(described.read_text()).get("precision", "float32"))
