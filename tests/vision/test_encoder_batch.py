"""Bulk embedding sizes its batches for the device the model runs on."""

from __future__ import annotations

from pathlib import Path

from tests.utils.tiny_models import tiny_hf_onnx
from tongkuan.vision.encoder import GPU_BATCH, ModelSpec, OnnxEncoder
from tongkuan.vision.layouts import read_model_folder


def test_batches_are_the_cpus_size_on_the_cpu_and_larger_on_cuda(tmp_path: Path) -> None:
    spec: ModelSpec = read_model_folder(tiny_hf_onnx(tmp_path / "m"), "m")
    encoder = OnnxEncoder(spec, threads=1)
    assert encoder.batch(32) == 32 and encoder.providers == ["CPUExecutionProvider"]
    encoder.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # as a GPU machine's session has
    assert encoder.batch(32) == GPU_BATCH and encoder.batch(256) == 256
