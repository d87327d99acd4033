"""Tiny random-weight image encoders in the layouts the field ships, built with onnx's own
helpers in milliseconds: a ViT/DINOv2-style encoder in the Hugging Face ONNX layout
(`onnx/model.onnx` giving `last_hidden_state` and `pooler_output`, `config.json`,
`preprocessor_config.json`) and a CLIP-style visual tower in Immich's layout. Patches are
embedded by one strided convolution, so different pictures get different embeddings and a
picture finds itself first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _encoder_graph(input_name: str, side: int, patch: int, dim: int, seed: int, outputs: str) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    tokens = (side // patch) ** 2
    weight = numpy_helper.from_array(rng.normal(0, 0.2, (dim, 3, patch, patch)).astype(np.float32), "patch_weight")
    shape = numpy_helper.from_array(np.array([0, dim, tokens], dtype=np.int64), "token_shape")
    nodes = [
        helper.make_node("Conv", [input_name, "patch_weight"], ["patches"], strides=[patch, patch]),
        helper.make_node("Reshape", ["patches", "token_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["last_hidden_state"], perm=[0, 2, 1]),
        helper.make_node("ReduceMean", ["last_hidden_state"], ["pooler_output"], axes=[1], keepdims=0),
    ]
    graph_outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", tokens, dim]),
        helper.make_tensor_value_info("pooler_output", TensorProto.FLOAT, ["batch", dim]),
    ]
    if outputs == "embedding":  # a CLIP-style tower: one normalised vector
        nodes.append(helper.make_node("LpNormalization", ["pooler_output"], ["embedding"], axis=1, p=2))
        graph_outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])]
    graph = helper.make_graph(
        nodes,
        "tiny-encoder",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, side, side])],
        graph_outputs,
        [weight, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_hf_onnx(folder: Path, dim: int = 24, side: int = 32, patch: int = 8, seed: int = 0) -> Path:
    """A DINOv2-style encoder in the Hugging Face ONNX layout (resize the shorter side to
    side + 8, cut the centre, ImageNet statistics, bicubic), with a model card."""
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(_encoder_graph("pixel_values", side, patch, dim, seed, "tokens"), str(folder / "onnx" / "model.onnx"))
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov2", "hidden_size": dim, "patch_size": patch}))
    processor = {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": side + 8},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": side, "width": side},
        "do_rescale": True,
        "rescale_factor": 0.00392156862745098,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "do_convert_rgb": True,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- image-feature-extraction\n---\n# tiny\n")
    return folder


def tiny_immich(folder: Path, dim: int = 16, side: int = 32, patch: int = 8, seed: int = 1) -> Path:
    """A CLIP-style visual tower in Immich's layout (`visual/model.onnx` taking `image`,
    giving a normalised `embedding`; `visual/preprocess_cfg.json`; open_clip's config.json)."""
    (folder / "visual").mkdir(parents=True, exist_ok=True)
    onnx.save(_encoder_graph("image", side, patch, dim, seed, "embedding"), str(folder / "visual" / "model.onnx"))
    (folder / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": [side, side],
                "mode": "RGB",
                "mean": [0.48145466, 0.4578275, 0.40821073],
                "std": [0.26862954, 0.26130258, 0.27577711],
                "interpolation": "bicubic",
                "resize_mode": "shortest",
            }
        )
    )
    (folder / "config.json").write_text(json.dumps({"embed_dim": dim, "vision_cfg": {"image_size": side}}))
    return folder


COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def tiny_clip(
    folder: Path, dim: int = 8, side: int = 32, seed: int = 2, meanings: dict[str, str] | None = None
) -> Path:
    """A CLIP-style model in the Hugging Face ONNX layout whose towers agree on colours: the
    visual tower projects a picture's mean colour, the text tower projects the colour its
    colour word names, through the same random matrix (`onnx/vision_model.onnx` giving
    `image_embeds`, `onnx/text_model.onnx` giving `text_embeds`, a word-level
    `tokenizer.json`). "red" finds a red picture first, and nothing else does; `meanings`
    gives more words a colour ({"shoes": "red"}: shoes look red to it)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    rng = np.random.default_rng(seed)
    projection = rng.normal(0, 1, (3, dim)).astype(np.float32)
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    vision = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixel_values"], ["mean_colour"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean_colour", "projection"], ["image_embeds"]),
        ],
        "tiny-clip-vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(projection, "projection")],
    )
    meanings = {colour: colour for colour in COLOURS} | (meanings or {})
    words = ["<pad>", "<unk>", *meanings, "a", "photo", "of"]
    table = np.zeros((len(words), dim), dtype=np.float32)
    for i, word in enumerate(words):
        if word in meanings:  # the colour as the visual tower sees it: 0.5 mean and std on the 0-1 scale
            normalised = (np.array(COLOURS[meanings[word]], dtype=np.float32) / 255 - 0.5) / 0.5
            table[i] = normalised @ projection
    text = helper.make_graph(
        [
            helper.make_node("Gather", ["word_table", "input_ids"], ["words"]),
            helper.make_node("ReduceSum", ["words", "token_axis"], ["text_embeds"], keepdims=0),
        ],
        "tiny-clip-text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(table, "word_table"), numpy_helper.from_array(np.array([1], np.int64), "token_axis")],
    )
    for graph, name in ((vision, "vision_model.onnx"), (text, "text_model.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / "onnx" / name))
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>", "model_max_length": 8}))
    (folder / "config.json").write_text(json.dumps({"model_type": "clip", "projection_dim": dim}))
    processor = {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"height": side, "width": side},
        "do_center_crop": False,
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 0.00392156862745098,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder
