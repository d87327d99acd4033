"""Model folders as the field ships them, read into a `ModelSpec`: the image tower to run,
how to feed it and which output to embed, read from the model's own files, never guessed.

- tongkuan's own: `model.json` beside `model.onnx`.
- The Hugging Face ONNX layout of transformers.js and optimum exports: `onnx/vision_model.onnx`
  (or `onnx/model.onnx` for an image-only encoder such as DINOv2 or ViT), `config.json`,
  `preprocessor_config.json`; CLIP's tower gives `image_embeds`, SigLIP's `pooler_output`,
  DINOv2 and ViT `last_hidden_state`, whose class token is the embedding.
- Immich's CLIP and SigLIP repositories: `visual/model.onnx` with `visual/preprocess_cfg.json`
  (its first output is the embedding), `textual/` beside it, `config.json` (open_clip's).

What cannot be read is one line naming the file and what it lacks (`ModelLoadError`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tongkuan.errors import ModelLoadError
from tongkuan.vision.encoder import ModelSpec
from tongkuan.vision.text import TextSpec, text_spec

# Pillow's filter numbers, as preprocessor_config.json's `resample` gives them
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# processors that read a bare `size` as the shorter side (the rest: a square)
_SHORTEST_EDGE_PROCESSORS = ("CLIPImageProcessor", "BitImageProcessor", "ChineseCLIPImageProcessor")
# the image tower's output to embed, by preference
_EMBEDDING_OUTPUTS = ("image_embeds", "image_embedding", "embedding", "embeddings")
_HF_ONNX_FILES = ("onnx/vision_model.onnx", "onnx/model.onnx")


def layout_of(folder: Path) -> str:
    """Which layout a model folder is in: "tongkuan", "hf-onnx" or "immich"; raises
    `ModelLoadError` naming what a model folder holds where it is none of them."""
    if (folder / "model.json").is_file():
        return "tongkuan"
    if (folder / "preprocessor_config.json").is_file() and any((folder / f).is_file() for f in _HF_ONNX_FILES):
        return "hf-onnx"
    if (folder / "visual" / "model.onnx").is_file():
        return "immich"
    raise ModelLoadError(
        f"{folder} is not a model folder: expected model.json and model.onnx (tongkuan), "
        "onnx/model.onnx or onnx/vision_model.onnx with preprocessor_config.json (Hugging Face ONNX), "
        "or visual/model.onnx (Immich)"
    )


def read_model_folder(folder: Path, name: str) -> ModelSpec:
    """The image tower of the model in `folder`, named `name`, with its dimension measured by
    one forward pass (which also proves the file loads)."""
    layout = layout_of(folder)
    if layout == "tongkuan":
        spec = ModelSpec.from_json(folder / "model.json")
        return ModelSpec(**{**spec.__dict__, "name": name})
    if layout == "hf-onnx":
        return _measured(_hf_onnx(folder, name))
    return _measured(_immich(folder, name))


def _json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except ValueError:
        raise ModelLoadError(f"{path} is not valid JSON") from None
    if not isinstance(loaded, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return loaded


def _graph(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises protobuf's own errors for a file that is not a model
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from exc


def _graph_io(path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The input names and (output name, rank) of an ONNX file, read without its weights."""
    graph = _graph(path)
    initialisers = {tensor.name for tensor in graph.initializer}
    inputs = [value.name for value in graph.input if value.name not in initialisers]
    outputs = [(value.name, len(value.type.tensor_type.shape.dim)) for value in graph.output]
    return inputs, outputs


def _input_types(path: Path) -> dict[str, str]:
    """Each input's integer type ("int32" or "int64"), for token ids."""
    graph = _graph(path)
    kinds = {6: "int32", 7: "int64"}
    return {value.name: kinds.get(value.type.tensor_type.elem_type, "int64") for value in graph.input}


def _pad_token(config: dict[str, Any]) -> str | None:
    pad = config.get("pad_token")
    if isinstance(pad, dict):  # an AddedToken written out
        pad = pad.get("content")
    return str(pad) if pad else None


def read_text_tower(folder: Path) -> TextSpec | None:
    """The model's text tower where its folder has one (and its tokenizer), else None; one
    that is there but cannot be read is refused (`ModelLoadError`), never guessed."""
    layout = layout_of(folder)
    if layout == "tongkuan":
        return text_spec(folder / "model.json")
    if layout == "hf-onnx":
        path, tokenizer = folder / "onnx" / "text_model.onnx", folder / "tokenizer.json"
        if not path.is_file():
            return None
        if not tokenizer.is_file():
            raise ModelLoadError(f"{folder} has a text tower but no tokenizer.json")
        config = _json(folder / "config.json") if (folder / "config.json").is_file() else {}
        settings_path = folder / "tokenizer_config.json"
        settings = _json(settings_path) if settings_path.is_file() else {}
        text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        length = settings.get("model_max_length")
        if not isinstance(length, int) or length > 4096:  # transformers writes 1e30 for "no limit"
            length = text_config.get("max_position_embeddings") if isinstance(text_config, dict) else None
        canonicalize = bool(settings.get("do_lower_case")) or str(config.get("model_type", "")).startswith("siglip")
        names: tuple[str, ...] = ("text_embeds", "pooler_output")
    else:
        path, tokenizer = folder / "textual" / "model.onnx", folder / "textual" / "tokenizer.json"
        if not path.is_file():
            return None
        if not tokenizer.is_file():
            raise ModelLoadError(f"{folder} has a text tower but no textual/tokenizer.json")
        config = _json(folder / "config.json") if (folder / "config.json").is_file() else {}
        settings_path = folder / "textual" / "tokenizer_config.json"
        settings = _json(settings_path) if settings_path.is_file() else {}
        text_cfg = config.get("text_cfg") if isinstance(config.get("text_cfg"), dict) else {}
        length = (text_cfg or {}).get("context_length", 77)
        kwargs = (text_cfg or {}).get("tokenizer_kwargs") or {}
        canonicalize = isinstance(kwargs, dict) and kwargs.get("clean") == "canonicalize"
        names = ()
    pad = _pad_token(settings)
    if pad is None:
        raise ModelLoadError(f"{settings_path} gives no pad_token for the text tower")
    if not isinstance(length, int) or length < 1:
        raise ModelLoadError(f"{folder}: the text tower's context length cannot be read")
    inputs, outputs = _graph_io(path)
    types = _input_types(path)
    ids = next((i for i in inputs if i in ("input_ids", "text")), None)
    if ids is None:
        raise ModelLoadError(f"{path} takes no input_ids or text input (it takes {', '.join(inputs)})")
    mask = "attention_mask" if "attention_mask" in inputs else None
    given = [name for name, _ in outputs]
    output = next((n for n in names if n in given), given[0] if not names and given else None)
    if output is None:
        raise ModelLoadError(f"{path} gives none of {', '.join(names)} (it gives {', '.join(given)})")
    return TextSpec(path, tokenizer, length, pad, ids, types.get(ids, "int64"), mask, output, canonicalize)


def _square(value: Any, what: str, path: Path) -> int:
    """A square side from an int, a [h, w] list or a {"height", "width"} object."""
    if isinstance(value, int):
        return value
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    if isinstance(value, dict) and "height" in value and value.get("height") == value.get("width"):
        return int(value["height"])
    raise ModelLoadError(f"{path}: {what} {value!r} is not a square size")


def _hf_onnx(folder: Path, name: str) -> ModelSpec:
    path = next(folder / f for f in _HF_ONNX_FILES if (folder / f).is_file())
    inputs, outputs = _graph_io(path)
    if "pixel_values" not in inputs:
        raise ModelLoadError(f"{path} takes no pixel_values input (it takes {', '.join(inputs)})")
    if len(inputs) > 1:
        raise ModelLoadError(
            f"{path} also needs {', '.join(i for i in inputs if i != 'pixel_values')}: "
            "give the image tower alone as onnx/vision_model.onnx"
        )
    names = dict(outputs)
    config = _json(folder / "config.json") if (folder / "config.json").is_file() else {}
    model_type = str(config.get("model_type", ""))
    if any(o in names for o in _EMBEDDING_OUTPUTS):
        output = next(o for o in _EMBEDDING_OUTPUTS if o in names)
    elif model_type.startswith("siglip") and "pooler_output" in names:
        output = "pooler_output"  # SigLIP's attention-pooling head gives its embedding
    elif "last_hidden_state" in names:
        output = "last_hidden_state"  # DINOv2, ViT: the class token
    elif "pooler_output" in names:
        output = "pooler_output"
    else:
        raise ModelLoadError(
            f"{path} gives none of image_embeds, pooler_output or last_hidden_state (it gives {', '.join(names)})"
        )
    processor_path = folder / "preprocessor_config.json"
    processor = _json(processor_path)
    for key in ("size", "image_mean", "image_std"):
        if key not in processor and (key == "size" or processor.get("do_normalize", True)):
            raise ModelLoadError(f"{processor_path} has no {key}")
    size = processor["size"]
    kind = str(processor.get("image_processor_type", ""))
    if isinstance(size, dict) and "shortest_edge" in size:
        resize, resize_to = "shortest", int(size["shortest_edge"])
    elif isinstance(size, int) and kind in _SHORTEST_EDGE_PROCESSORS:
        resize, resize_to = "shortest", size
    else:
        resize, resize_to = "squash", _square(size, "size", processor_path)
    if processor.get("do_center_crop", resize == "shortest"):
        if "crop_size" not in processor:
            raise ModelLoadError(f"{processor_path} crops the centre but gives no crop_size")
        input_size = _square(processor["crop_size"], "crop_size", processor_path)
    else:
        input_size = resize_to
    scale = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    normalise = processor.get("do_normalize", True)
    mean = [float(m) for m in processor["image_mean"]] if normalise else [0.0, 0.0, 0.0]
    std = [float(s) for s in processor["image_std"]] if normalise else [1.0, 1.0, 1.0]
    resample = processor.get("resample", 2 if kind.startswith("ViT") else 3)
    if resample not in _RESAMPLE:
        raise ModelLoadError(f"{processor_path}: resample {resample!r} is not one of Pillow's filters")
    return ModelSpec(
        name=name,
        path=path,
        input_size=input_size,
        dim=0,
        input_name="pixel_values",
        # pixels * scale, then (x - mean) / std, as (pixels - mean / scale) / (std / scale)
        mean=tuple(m / scale for m in mean),  # type: ignore[arg-type]
        std=tuple(s / scale for s in std),  # type: ignore[arg-type]
        embedding_output=output,
        resize=resize,
        resize_to=resize_to if resize_to != input_size else None,
        interpolation=_RESAMPLE[resample],
    )


def _immich(folder: Path, name: str) -> ModelSpec:
    path = folder / "visual" / "model.onnx"
    inputs, outputs = _graph_io(path)
    if len(inputs) != 1 or not outputs:
        raise ModelLoadError(f"{path} must take one picture input and give an embedding (it takes {inputs})")
    described_path = folder / "visual" / "preprocess_cfg.json"
    described = _json(described_path)
    for key in ("size", "mean", "std"):
        if key not in described:
            raise ModelLoadError(f"{described_path} has no {key}")
    size = described["size"]
    side = int(size[0]) if isinstance(size, list) else int(size)
    interpolation = str(described.get("interpolation", "bicubic"))
    if interpolation not in _RESAMPLE.values():
        raise ModelLoadError(f"{described_path}: interpolation {interpolation!r} is not one Pillow has")
    mode = str(described.get("resize_mode", "shortest"))
    if mode not in ("shortest", "squash"):
        raise ModelLoadError(f"{described_path}: resize_mode {mode!r} is not shortest or squash")
    return ModelSpec(
        name=name,
        path=path,
        input_size=side,
        dim=0,
        input_name=inputs[0],
        mean=tuple(255.0 * float(m) for m in described["mean"]),  # type: ignore[arg-type]
        std=tuple(255.0 * float(s) for s in described["std"]),  # type: ignore[arg-type]
        embedding_output=outputs[0][0],
        resize=mode,
        resize_to=side if mode == "shortest" else None,
        interpolation=interpolation,
    )


def _measured(spec: ModelSpec) -> ModelSpec:
    """`spec` with its embedding's dimension, from one forward pass of a grey picture."""
    from PIL import Image

    from tongkuan.vision.encoder import OnnxEncoder

    encoder = OnnxEncoder(spec, threads=1)
    out = encoder.run([Image.new("RGB", (spec.input_size, spec.input_size), (128, 128, 128))])
    return ModelSpec(**{**spec.__dict__, "dim": int(out.embeddings.shape[1])})
