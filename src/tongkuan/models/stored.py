"""Models kept in the catalog, where every replica finds them.

A model tuned on the catalog (`tongkuan tune`) is stored in the catalog's learned metadata
(`LearnedMetadata`, under `model:<name>`): its `model.onnx` and `model.json` in one zip,
base64-encoded. So a replica that has never seen it, a restored backup and a catalog moved
to PostgreSQL all find it; each process unpacks it once into its data directory's model
cache. The archive's SHA-256 is its name's suffix, so a damaged copy is never loaded.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

from tongkuan.catalog.store import LearnedMetadata
from tongkuan.domain.models import TUNED_PREFIX
from tongkuan.errors import ModelLoadError, ModelNotFound

_FILES = ("model.onnx", "model.json")


def _key(name: str) -> str:
    return f"model:{name}"


def pack(folder: Path) -> tuple[str, bytes]:
    """The zip of a model folder's files and the name it is stored under (`tuned-<digest>`)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in _FILES:
            info = zipfile.ZipInfo(file, date_time=(2000, 1, 1, 0, 0, 0))  # the same files, the same bytes
            archive.writestr(info, (folder / file).read_bytes())
    data = buffer.getvalue()
    return TUNED_PREFIX + hashlib.sha256(data).hexdigest()[:12], data


def store_model(catalog: LearnedMetadata, folder: Path) -> str:
    """Store the model in `folder` in the catalog; return its name. Its model.json names no
    model: a model is named by the folder it is unpacked into (`models/<name>`)."""
    name, data = pack(folder)
    catalog.set_learned(_key(name), base64.b64encode(data).decode("ascii"))
    return name


def unpack_model(catalog: LearnedMetadata, name: str, folder: Path) -> Path:
    """The model's `model.json` in `folder`, unpacked from the catalog unless it is there
    already; raises `ModelNotFound` when the catalog does not hold it."""
    described = folder / "model.json"
    if described.exists() and (folder / "model.onnx").exists():
        return described
    text = catalog.learned(_key(name))
    if text is None:
        raise ModelNotFound(f"model {name!r} is not stored in this catalog (was it tuned on another one?)")
    data = base64.b64decode(text)
    if TUNED_PREFIX + hashlib.sha256(data).hexdigest()[:12] != name:
        raise ModelLoadError(f"the catalog's copy of model {name!r} is damaged")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for file in _FILES:  # model.json last: its presence says the folder is complete
            tmp = folder / f".{file}.{os.getpid()}.tmp"
            tmp.write_bytes(archive.read(file))
            tmp.replace(folder / file)
    return described


def tuned_from(described: Path) -> str | None:
    """The shipped model a tuned model's `model.json` says it was tuned from."""
    base = json.loads(described.read_text()).get("tuned_from")
    return None if base is None else str(base)
