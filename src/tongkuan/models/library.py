"""The models a data directory holds beside the shipped ones: imported from a folder carried
in by hand, or pulled from a model hub (`tongkuan.models.hub`), each in its own folder under
`DATA_DIR/models/<name>` with its files as they came, a `model.json` that says how to run its
image tower, and a `record.json` that says where it came from.

A catalog switches to one as to any other model (`tongkuan.models.switch`); a model the
catalog searches with cannot be removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tongkuan.domain.models import LIBRARY_NAME, SHIPPED_MODEL_NAMES, is_shipped, is_tuned
from tongkuan.errors import ConfigError, ModelNotFound
from tongkuan.vision.encoder import ModelSpec
from tongkuan.vision.layouts import layout_of, read_model_folder, read_text_tower

RECORD = "record.json"
NAME_PATTERN = LIBRARY_NAME
_SKIPPED = (".git", ".cache")  # never copied into the library


@dataclass(frozen=True)
class ModelRecord:
    """One model a catalog can search with: its name, kind ("shipped", "tuned", "imported" or
    "pulled"), embedding dimension (None where not known until first used), size on disk,
    licence (from its model card), where it came from, and its folder's layout."""

    name: str
    kind: str
    dim: int | None
    size_bytes: int
    licence: str | None
    source: str
    layout: str | None = None
    text: bool = False  # whether it has a text tower (text-to-picture search)


def models_folder(data_dir: Path) -> Path:
    return data_dir / "models"


def library_spec(data_dir: Path, name: str) -> ModelSpec | None:
    """The imported or pulled model named `name` in this data directory (None: none such)."""
    if not NAME_PATTERN.fullmatch(name):
        return None
    folder = models_folder(data_dir) / name
    if not (folder / RECORD).is_file():
        return None
    return ModelSpec.from_json(folder / "model.json")


def check_name(data_dir: Path, name: str) -> None:
    """Raise `ConfigError` for a name a new model cannot take."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"model name {name!r}: use lower-case letters, digits, '.', '_' and '-' (at most 64, "
            "starting with a letter or digit)"
        )
    if is_shipped(name) or is_tuned(name):
        raise ConfigError(f"model name {name!r} is taken by a shipped or tuned model")
    if (models_folder(data_dir) / name).exists():
        raise ConfigError(f"{data_dir} already holds a model named {name!r}: remove it first, or choose another name")


def import_model(data_dir: Path, source: Path, name: str, origin: dict[str, str] | None = None) -> ModelRecord:
    """Copy the model folder `source` into the library as `name`: its layout is read, its image
    tower loaded once to measure its dimension, and nothing is kept unless all of that works.
    `origin` says where it came from (pulled models: the repository and revision)."""
    check_name(data_dir, name)
    source = source.resolve()
    if not source.is_dir():
        raise ModelNotFound(f"{source} is not a folder")
    layout = layout_of(source)
    library = models_folder(data_dir)
    library.mkdir(parents=True, exist_ok=True)
    staging = library / f".importing-{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*_SKIPPED), symlinks=False)
        spec = read_model_folder(staging, name)
        described = spec.to_json(staging) if layout != "tongkuan" else json.loads((staging / "model.json").read_text())
        described["name"] = name
        text = read_text_tower(staging)
        if text is not None and layout != "tongkuan":
            described["text"] = text.to_json(staging)
        (staging / "model.json").write_text(json.dumps(described, indent=2))
        licence = (origin or {}).get("licence") or card_licence(staging / "README.md")
        record = {
            "kind": "pulled" if origin and origin.get("repo") else "imported",
            "source": (origin or {}).get("source") or str(source),
            "layout": layout,
            "licence": licence or "",
            "dim": spec.dim,
            "text": text is not None,
            "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **{k: v for k, v in (origin or {}).items() if k not in ("licence", "source")},
        }
        (staging / RECORD).write_text(json.dumps(record, indent=2))
        staging.rename(library / name)  # the whole folder appears at once, or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _library_record(library / name)


def card_licence(readme: Path) -> str | None:
    """The `license:` of a model card's front matter (README.md), where it has one."""
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    front = text[3:].split("\n---", 1)[0]
    found = re.search(r"^license:\s*['\"]?([^'\"\n]+)", front, re.MULTILINE)
    return found.group(1).strip() if found else None


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def _library_record(folder: Path) -> ModelRecord:
    record = json.loads((folder / RECORD).read_text())
    return ModelRecord(
        name=folder.name,
        kind=str(record.get("kind", "imported")),
        dim=int(record["dim"]) if record.get("dim") else None,
        size_bytes=_size(folder),
        licence=record.get("licence") or None,
        source=str(record.get("source", "")),
        layout=record.get("layout"),
        text=bool(record.get("text")),
    )


def list_models(data_dir: Path) -> list[ModelRecord]:
    """Every model this data directory can search with: the shipped ones, then those tuned on
    its catalog that it has unpacked, then the imported and pulled ones, each by name."""
    library = models_folder(data_dir)
    records: list[ModelRecord] = []
    for name in SHIPPED_MODEL_NAMES:
        folder = library / name
        exported = folder / "model.json"
        dim = ModelSpec.from_json(exported).dim if exported.is_file() else None
        size = _size(folder) if folder.is_dir() else 0
        records.append(ModelRecord(name, "shipped", dim, size, "Apache-2.0", "efficientnet-lite-pytorch (PyPI)"))
    if library.is_dir():
        for folder in sorted(library.iterdir()):
            if is_tuned(folder.name) and (folder / "model.json").is_file():
                spec = ModelSpec.from_json(folder / "model.json")
                records.append(ModelRecord(folder.name, "tuned", spec.dim, _size(folder), None, "tongkuan tune"))
        for folder in sorted(library.iterdir()):
            if (folder / RECORD).is_file() and not folder.name.startswith("."):
                records.append(_library_record(folder))
    return records


def remove_model(data_dir: Path, name: str, in_use: set[str]) -> None:
    """Delete an imported or pulled model; refuses shipped and tuned ones and those `in_use`
    (the catalog's model). The model a catalog switched from can go: `--undo` then names it."""
    if is_shipped(name) or is_tuned(name):
        raise ConfigError(f"{name} is a shipped or tuned model: only imported and pulled models can be removed")
    folder = models_folder(data_dir) / name
    if not NAME_PATTERN.fullmatch(name) or not (folder / RECORD).is_file():
        raise ModelNotFound(f"{data_dir} holds no imported or pulled model named {name!r} (see tongkuan models list)")
    if name in in_use:
        raise ConfigError(f"the catalog uses {name}: switch to another model first (tongkuan models use NAME)")
    trash = folder.with_name(f".removing-{name}-{os.getpid()}")
    folder.rename(trash)  # gone from the library at once; the files after
    shutil.rmtree(trash, ignore_errors=True)


def as_json(records: list[ModelRecord]) -> list[dict[str, object]]:
    return [asdict(record) for record in records]
