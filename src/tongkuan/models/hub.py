"""`tongkuan models pull`: a model from the Hugging Face Hub, or a mirror of it.

`HF_ENDPOINT` names a mirror (operators in China use one), `HF_HUB_OFFLINE=1` takes only what
an earlier pull left in the download cache, and a token (`--token`, or `HF_TOKEN`) opens a
gated model whose licence its owner has accepted. Only the files the model's layout needs are
fetched (`tongkuan.vision.layouts`), into `DATA_DIR/models/.hub`, where a download that stops
leaves what it finished for the next try. Every file is checked against the hub's own hashes
(SHA-256 for large files, the git object id for the rest) before the model is imported into
the library (`tongkuan.models.library`); nothing is imported from a download that fails.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from tongkuan.errors import ModelLoadError, ModelNotFound
from tongkuan.models.library import ModelRecord, check_name, import_model, models_folder

DEFAULT_ENDPOINT = "https://huggingface.co"
# files no layout needs: other runtimes' builds and half-precision copies
IGNORED = ("*.armnn", "*.rknn", "*/rknpu/*", "*/fp16/*", "*_fp16.onnx*", "*_q4*.onnx*", "*_bnb4.onnx*")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def default_name(repo: str) -> str:
    """A library name from a repository id: its last part, lower-cased, other characters as '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", repo.rsplit("/", 1)[-1].lower()).strip("-._")
    return name[:64] or "model"


def wanted_files(files: list[str]) -> list[str]:
    """The patterns of the files a model's layout needs, from the repository's file list;
    raises `ModelLoadError` where no layout tongkuan reads is there."""
    present = set(files)
    if "visual/model.onnx" in present:  # Immich's CLIP and SigLIP repositories
        return ["config.json", "README.md", "visual/*", "textual/*"]
    if "preprocessor_config.json" in present and "onnx/vision_model.onnx" in present:
        return ["*.json", "README.md", "onnx/vision_model.onnx*", "onnx/text_model.onnx*", "*.txt"]
    if "preprocessor_config.json" in present and "onnx/model.onnx" in present:
        return ["*.json", "README.md", "onnx/model.onnx*", "*.txt"]
    if "model.json" in present and "model.onnx" in present:
        return ["model.json", "model.onnx*", "README.md"]
    shown = ", ".join(sorted(files)[:8]) + (", ..." if len(files) > 8 else "")
    raise ModelLoadError(
        "it holds no model in a layout tongkuan reads (onnx/model.onnx or onnx/vision_model.onnx with "
        f"preprocessor_config.json, visual/model.onnx, or model.json with model.onnx); it has {shown or 'no files'}"
    )


def pull_model(
    data_dir: Path, reference: str, name: str | None = None, token: str | None = None, progress: bool = True
) -> ModelRecord:
    """Download `reference` (`REPO` or `REPO@REVISION`), check it and import it as `name`
    (default: the repository's name). Raises `ModelNotFound` or `ModelLoadError` with one line
    that says what went wrong and what to do; the library is left as it was."""
    repo, _, revision = reference.partition("@")
    revision = revision or "main"
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ModelNotFound(f"{reference!r} is not a repository id (owner/name, optionally @revision)")
    name = name or default_name(repo)
    check_name(data_dir, name)
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = token or os.environ.get("HF_TOKEN") or None
    cache = models_folder(data_dir) / ".hub"
    where = f"{repo}@{revision} on {endpoint}"
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        folder, origin = _cached(repo, revision, cache, where), {"licence": ""}
    else:
        folder, origin = _download(repo, revision, cache, endpoint, token, progress, where)
    source = f"{endpoint}/{repo}@{revision}"
    return import_model(
        data_dir, folder, name, {"repo": repo, "revision": origin.get("revision", revision), "source": source,
                                 "licence": origin.get("licence", "")},
    )  # fmt: skip


def _cached(repo: str, revision: str, cache: Path, where: str) -> Path:
    """The snapshot an earlier pull of `repo` at `revision` left in the download cache (laid out
    as the hub client's cache is: `models--OWNER--NAME/refs/REVISION` names the commit whose
    files are under `snapshots/COMMIT`)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    ref = root / "refs" / revision
    commit = revision if re.fullmatch(r"[0-9a-f]{40}", revision) else (ref.read_text().strip() if ref.is_file() else "")
    folder = root / "snapshots" / commit
    if not commit or not folder.is_dir():
        raise ModelNotFound(
            f"offline (HF_HUB_OFFLINE) and {where} was never downloaded here: pull it once online, "
            "or carry its folder in and use tongkuan models import"
        )
    return folder


def _download(
    repo: str, revision: str, cache: Path, endpoint: str, token: str | None, progress: bool, where: str
) -> tuple[Path, dict[str, str]]:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(repo, revision=revision, files_metadata=True)
        siblings = list(info.siblings or [])
        patterns = wanted_files([s.rfilename for s in siblings])
        folder = Path(
            snapshot_download(
                repo, revision=revision, cache_dir=cache, allow_patterns=patterns, ignore_patterns=list(IGNORED),
                endpoint=endpoint, token=token, tqdm_class=None if progress else _silent_bars(),
            )
        )  # fmt: skip
    except GatedRepoError:
        raise ModelNotFound(
            f"{where} is gated: accept its licence on the hub, then give a token (--token or HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFound(f"{where}: no such repository (or it is private: give a token)") from None
    except RevisionNotFoundError:
        raise ModelNotFound(f"{where}: the repository has no revision {revision!r}") from None
    except LocalEntryNotFoundError as exc:
        cause = exc.__cause__ or exc
        raise ModelNotFound(
            f"cannot download {where} ({type(cause).__name__}): is the hub reachable? HF_ENDPOINT names a mirror; "
            "a folder carried in is imported with tongkuan models import"
        ) from None
    except ModelLoadError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelLoadError(f"cannot download {where}: {str(exc).splitlines()[0]}") from None
    except (KeyError, TypeError, ValueError) as exc:  # an answer the hub client could not read
        raise ModelLoadError(f"cannot download {where}: the hub's answer is not what a hub answers ({exc!r})") from None
    except Exception as exc:  # the hub client's transport errors (its HTTP library's own classes)
        raise ModelNotFound(
            f"cannot download {where} ({type(exc).__name__}): is the hub reachable? HF_ENDPOINT names a mirror; "
            "a folder carried in is imported with tongkuan models import"
        ) from None
    if folder.name != info.sha:  # the revision moved on between the listing and the download
        raise ModelLoadError(f"{where} changed while it was being downloaded: pull again")
    _verify(folder, siblings, where)
    card = info.card_data
    licence = str(getattr(card, "license", None) or "") if card is not None else ""
    return folder, {"revision": str(info.sha), "licence": licence}


def _verify(folder: Path, siblings: list[Any], where: str) -> None:
    """Each downloaded file against the hub's hash of it; a file that differs is deleted from
    the cache (so the next pull fetches it again) and the pull refused."""
    for sibling in siblings:
        path = folder / sibling.rfilename
        if not path.exists():
            continue  # a file the layout does not need
        data = path.read_bytes()
        lfs = getattr(sibling, "lfs", None)
        if lfs is not None and getattr(lfs, "sha256", None):
            expected, found = str(lfs.sha256), hashlib.sha256(data).hexdigest()
        elif getattr(sibling, "blob_id", None):
            expected, found = str(sibling.blob_id), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        else:
            continue
        if found != expected:
            target = path.resolve()
            path.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            raise ModelLoadError(
                f"{where}: {sibling.rfilename} does not match the hub's hash (expected {expected[:12]}, "
                f"got {found[:12]}); it was discarded: pull again"
            )


def _silent_bars() -> Any:
    """A progress bar class that shows nothing (`progress=False`)."""
    from tqdm.auto import tqdm

    class Silent(tqdm):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    return Silent
