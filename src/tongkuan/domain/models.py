"""How a model is named, shared by the settings that check a configured name and the parts
that open one: a shipped model, a model tuned on a catalog (and stored in it), or the path of
a `model.json` describing any ONNX image-embedding model."""

from __future__ import annotations

import re

DEFAULT_MODEL = "efficientnet-lite2"
SHIPPED_MODEL_NAMES = ("efficientnet-lite0", "efficientnet-lite2")
"""Models whose weights ship inside a registry package (`tongkuan.vision.export` builds them)."""

TUNED_PREFIX = "tuned-"
"""Every model stored in a catalog (tuned or quantized on it) is named `tuned-<digest>`."""


def is_tuned(model: str) -> bool:
    """Whether `model` names a model tuned on a catalog (and stored in it)."""
    return model.startswith(TUNED_PREFIX)


def is_shipped(model: str) -> bool:
    """Whether `model` names a model that ships with tongkuan."""
    return model in SHIPPED_MODEL_NAMES


LIBRARY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""What an imported or pulled model may be called (`DATA_DIR/models/<name>`)."""


def is_library_name(model: str) -> bool:
    """Whether `model` could name an imported or pulled model (shipped and tuned names aside)."""
    return bool(LIBRARY_NAME.fullmatch(model)) and not is_shipped(model) and not is_tuned(model)
