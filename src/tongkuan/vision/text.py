"""A model's text tower: words to a vector in the pictures' space (text-to-picture search).

CLIP- and SigLIP-class models have one (`onnx/text_model.onnx` in the Hugging Face ONNX
layout, `textual/model.onnx` in Immich's); `tongkuan.vision.layouts` reads it into a `TextSpec`.
Words are tokenized with the model's own `tokenizer.json` (the `tokenizers` library: no torch),
padded and cut to the model's context length, and the tower's output L2-normalised.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tongkuan.errors import ModelLoadError, ModelNotFound
from tongkuan.vision.encoder import l2_normalise, open_session

MAX_WORDS = 200  # characters of a text query; CLIP-class context lengths hold fewer tokens anyway


@dataclass(frozen=True)
class TextSpec:
    """How to run a text tower: its ONNX file and tokenizer, the context length every query is
    padded and cut to (with `pad_token`), whether the words are lower-cased and stripped of
    punctuation first (open_clip's "canonicalize", SigLIP), the inputs it takes (token ids,
    and an attention mask where it declares one) and the output to embed."""

    path: Path
    tokenizer: Path
    context_length: int
    pad_token: str
    ids_input: str
    ids_type: str = "int64"
    mask_input: str | None = None
    output: str = "text_embeds"
    canonicalize: bool = False

    @classmethod
    def from_json(cls, folder: Path, raw: dict[str, Any]) -> TextSpec:
        """The `text` object of a `model.json` in `folder` (paths relative to it)."""
        try:
            return cls(
                path=folder / str(raw["onnx"]),
                tokenizer=folder / str(raw["tokenizer"]),
                context_length=int(raw["context_length"]),
                pad_token=str(raw["pad_token"]),
                ids_input=str(raw["ids_input"]),
                ids_type=str(raw.get("ids_type", "int64")),
                mask_input=raw.get("mask_input"),
                output=str(raw.get("output", "text_embeds")),
                canonicalize=bool(raw.get("canonicalize", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{folder / 'model.json'}: its text tower lacks {exc}") from None

    def to_json(self, folder: Path) -> dict[str, Any]:
        described: dict[str, Any] = {
            "onnx": self.path.relative_to(folder).as_posix(),
            "tokenizer": self.tokenizer.relative_to(folder).as_posix(),
            "context_length": self.context_length,
            "pad_token": self.pad_token,
            "ids_input": self.ids_input,
            "ids_type": self.ids_type,
            "mask_input": self.mask_input,
            "output": self.output,
            "canonicalize": self.canonicalize,
        }
        return {key: value for key, value in described.items() if value is not None}


def text_spec(model_json: Path) -> TextSpec | None:
    """The text tower a `model.json` describes (its `text` object), or None."""
    import json

    raw = json.loads(model_json.read_text()).get("text")
    return None if not isinstance(raw, dict) else TextSpec.from_json(model_json.parent, raw)


def canonical(text: str) -> str:
    """open_clip's canonical text: punctuation gone, lower case, single spaces."""
    return " ".join(re.sub(r"[^\w\s]", " ", text).lower().split())


class TextEncoder:
    """Runs a `TextSpec`; thread-safe, loaded on first use."""

    def __init__(self, spec: TextSpec, threads: int = 2) -> None:
        self.spec = spec
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            from tokenizers import Tokenizer

            for path in (self.spec.path, self.spec.tokenizer):
                if not path.exists():
                    raise ModelNotFound(f"text tower file {path} does not exist")
            try:
                tokenizer = Tokenizer.from_file(str(self.spec.tokenizer))
            except Exception as exc:  # the tokenizers library raises its own untyped errors
                raise ModelLoadError(f"cannot read {self.spec.tokenizer}: {exc}") from exc
            pad = tokenizer.token_to_id(self.spec.pad_token)
            if pad is None:
                raise ModelLoadError(f"{self.spec.tokenizer} has no pad token {self.spec.pad_token!r}")
            length = self.spec.context_length
            tokenizer.enable_padding(length=length, pad_id=pad, pad_token=self.spec.pad_token)
            tokenizer.enable_truncation(max_length=length)
            session, _ = open_session(self.spec.path, self.threads)
            self._tokenizer, self._session = tokenizer, session

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """One L2-normalised vector per text."""
        self.load()
        cleaned = [canonical(t) if self.spec.canonicalize else " ".join(t.split()) for t in texts]
        encoded = self._tokenizer.encode_batch([t[:MAX_WORDS] for t in cleaned])
        ids = np.array([e.ids for e in encoded], dtype=np.dtype(self.spec.ids_type))
        feeds = {self.spec.ids_input: ids}
        if self.spec.mask_input:
            feeds[self.spec.mask_input] = np.array([e.attention_mask for e in encoded], dtype=ids.dtype)
        (out,) = self._session.run([self.spec.output], feeds)
        vectors = np.asarray(out, dtype=np.float32)
        if vectors.ndim == 3:  # tokens: the pooled one is the first
            vectors = vectors[:, 0]
        return l2_normalise(vectors.reshape(len(texts), -1))
