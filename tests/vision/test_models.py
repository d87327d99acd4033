"""The shipped models: ONNX export faithful to torch, and models plugged in by description."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tongkuan.errors import ModelLoadError, ModelNotFound
from tongkuan.vision.encoder import ModelSpec, OnnxEncoder, preprocess
from tongkuan.vision.export import SHIPPED_MODELS, export_shipped_model, load_torch_model
from tongkuan.vision.pipeline import Vision
from tongkuan.vision.registry import resolve_model

PHOTOS = [
    "grocery_store/iconic/Alpro-Fresh-Soy-Milk_Iconic.jpg",
    "grocery_store/images/train/Fruit/Apple/Golden-Delicious/Golden-Delicious_001.jpg",
    "clothing_dataset/images/4c8f245e-a039-46fd-a6b9-1bb51e83fc05.jpg",
    "fashion_product_images_small/images/1163.jpg",
]


def photos(root: Path) -> list[Image.Image]:
    return [Image.open(root / p).convert("RGB") for p in PHOTOS]


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_the_onnx_export_matches_torch_on_real_photos(name: str, data_root: Path, model_cache: Path) -> None:
    import torch

    spec = resolve_model(name, model_cache)
    images = photos(data_root)
    onnx_out = OnnxEncoder(spec).run(images)
    net = load_torch_model(SHIPPED_MODELS[name])
    with torch.no_grad():
        fmap = net.extract_features(torch.from_numpy(preprocess(images, spec)))
        pooled = fmap.mean(dim=(2, 3))
        logits = net._fc(pooled).numpy()
    pooled_np = pooled.numpy()
    expected = pooled_np / np.linalg.norm(pooled_np, axis=1, keepdims=True)
    assert np.abs(onnx_out.embeddings - expected).max() < 1e-4
    assert onnx_out.logits is not None and np.abs(onnx_out.logits - logits).max() < 1e-3
    assert onnx_out.feature_maps is not None and onnx_out.feature_maps.shape[:2] == (4, 1280)


def test_exporting_a_shipped_model_emits_no_warnings(
    data_root: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, even those pytest's settings hide
        out = export_shipped_model("efficientnet-lite0", tmp_path / "lite0")
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert capfd.readouterr().out == ""  # the weights loader's own "Loaded pretrained weights" line
    embedded = OnnxEncoder(ModelSpec.from_json(out / "model.json")).run(photos(data_root)[:1]).embeddings
    assert embedded.shape == (1, 1280)  # the export is still a working model


def test_a_model_described_by_json_plugs_in_even_without_detection_or_classifier(
    model_cache: Path, data_root: Path, tmp_path: Path
) -> None:
    shipped = resolve_model("efficientnet-lite0", model_cache)
    description = {
        "name": "my-embedder",
        "input_size": 224,
        "dim": 1280,
        "mean": [127, 127, 127],
        "std": [128, 128, 128],
        "embedding_output": "embedding",
    }
    (tmp_path / "model.json").write_text(json.dumps(description))
    spec = ModelSpec.from_json(tmp_path / "model.json", onnx_path=shipped.path)
    vision = Vision(OnnxEncoder(spec))
    described = vision.describe(photos(data_root)[:2])
    assert described[0].embedding.shape == (1280,)
    assert abs(float(np.linalg.norm(described[0].embedding)) - 1.0) < 1e-5
    width, height = photos(data_root)[0].size
    assert described[0].regions[0].to_param() == f"0,{width},0,{height}"  # no feature map: whole image
    assert np.allclose(described[0].prior, 1 / 14)  # no classifier: flat prior


def test_a_description_naming_a_missing_output_fails_to_load(model_cache: Path, tmp_path: Path) -> None:
    shipped = resolve_model("efficientnet-lite0", model_cache)
    (tmp_path / "model.json").write_text(
        json.dumps({"input_size": 224, "dim": 1280, "embedding_output": "no_such_output"})
    )
    encoder = OnnxEncoder(ModelSpec.from_json(tmp_path / "model.json", onnx_path=shipped.path))
    with pytest.raises(ModelLoadError, match="no_such_output"):
        encoder.load()


def test_unknown_models_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        resolve_model("efficientnet-b7", tmp_path)


def test_pictures_are_normalised_per_channel_as_the_model_expects(data_root: Path, tmp_path: Path) -> None:
    # a model trained with ImageNet's statistics: every channel its own mean and spread
    spec = ModelSpec("m", tmp_path / "m.onnx", 64, 8, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    pictures = photos(data_root)
    pictures += [pictures[0].convert("L"), pictures[1].convert("RGBA")]  # other modes come as RGB
    batch = preprocess(pictures, spec)
    assert batch.shape == (len(pictures), 3, 64, 64) and batch.dtype == np.float32
    for i, picture in enumerate(pictures):
        pixels = np.asarray(picture.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)
        expected = (pixels.transpose(2, 0, 1) - np.float32(spec.mean)[:, None, None]) / np.float32(spec.std)[
            :, None, None
        ]
        assert np.allclose(batch[i], expected, rtol=0, atol=1e-6)


def test_the_shipped_models_are_the_names_the_settings_accept() -> None:
    from tongkuan.domain.models import SHIPPED_MODEL_NAMES
    from tongkuan.vision.export import SHIPPED_MODELS

    assert tuple(SHIPPED_MODELS) == SHIPPED_MODEL_NAMES
