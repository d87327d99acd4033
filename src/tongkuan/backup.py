"""Backup and restore of a whole data directory, safe while the service runs.

A backup is one tar file. Its parts are taken in an order that keeps them consistent while
others keep writing: first the vector index files (a cache at some change-log position),
then the catalog through SQLite's online backup (one consistent snapshot, at that position
or later, so opening it replays what the index lacks), then the picture files (written
before the catalog rows that name them, and never deleted, so every picture the snapshot
names is there). Exported models are left out: they are exported again from the installed
packages at the first start.

An archive holds the catalog and `tongkuan.toml` (the apps' secrets, the admin token, which
hosts and proxies are trusted), so it is written readable by its owner only, and a restore
leaves the archive's settings out unless asked (`--with-settings`): trust is not carried in
by a file.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import time
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path

from tongkuan.errors import BackupError

CATALOG = "catalog.db"
SETTINGS = "tongkuan.toml"
_INDEX_FILE = re.compile(r"index-(\d+)\.(faiss|deleted\.npy)")
_SKIPPED = (".part", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class BackupReport:
    files: int
    bytes: int
    seconds: float
    settings: tuple[str, ...] = ()  # the settings the archive's tongkuan.toml sets, by name
    settings_restored: bool = False


def backup(data_dir: Path, archive: Path) -> BackupReport:
    """Write a consistent copy of `data_dir` into the tar file `archive` (.tar or .tar.gz)."""
    started = time.perf_counter()
    if not (data_dir / CATALOG).is_file():
        raise BackupError(f"{data_dir} holds no catalog ({CATALOG})")
    archive.parent.mkdir(parents=True, exist_ok=True)
    compressed = archive.name.endswith((".tar.gz", ".tgz"))
    partial = archive.with_name(archive.name + ".part")
    files = 0
    # created readable by its owner only, before a byte is written: it holds the secrets
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also where an earlier partial file had other modes
    with (
        os.fdopen(descriptor, "wb") as out,
        tempfile.TemporaryDirectory(dir=archive.parent) as scratch,
        tarfile.open(fileobj=out, mode="w:gz" if compressed else "w") as tar,
    ):
        for folder in sorted((data_dir / "index").glob("*")):  # 1. the index cache, one folder per model
            files += _add_index(tar, data_dir, folder, Path(scratch))
        snapshot = Path(scratch) / CATALOG  # 2. the catalog, one snapshot
        source = sqlite3.connect(data_dir / CATALOG, timeout=30.0)
        target = sqlite3.connect(snapshot)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        tar.add(snapshot, CATALOG)
        files += 1
        for name in ("images", "imports"):  # 3. pictures (and import jobs), then settings
            files += _add_tree(tar, data_dir, data_dir / name)
        if (data_dir / SETTINGS).is_file():
            tar.add(data_dir / SETTINGS, SETTINGS)
            files += 1
    os.replace(partial, archive)
    return BackupReport(files, archive.stat().st_size, time.perf_counter() - started)


def _add_index(tar: tarfile.TarFile, data_dir: Path, folder: Path, scratch: Path) -> int:
    """The newest complete index of a folder, copied first so that a concurrent save or
    cleanup cannot tear it."""
    by_seq: dict[int, list[Path]] = {}
    for path in folder.iterdir():
        if m := _INDEX_FILE.fullmatch(path.name):
            by_seq.setdefault(int(m.group(1)), []).append(path)
    for seq in sorted(by_seq, reverse=True):
        if not any(p.suffix == ".faiss" for p in by_seq[seq]):
            continue  # being saved right now: its tombstones are written before the index
        copies = []
        try:
            for path in by_seq[seq]:
                copy = scratch / f"{folder.name}-{path.name}"
                shutil.copyfile(path, copy)
                copies.append((copy, path))
        except FileNotFoundError:  # removed by a newer save meanwhile: try the next one
            continue
        for copy, path in copies:
            tar.add(copy, path.relative_to(data_dir).as_posix())
        return len(copies)
    return 0


def _add_tree(tar: tarfile.TarFile, data_dir: Path, root: Path) -> int:
    count = 0
    if not root.is_dir():
        return 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(_SKIPPED):
            try:
                tar.add(path, path.relative_to(data_dir).as_posix())
            except FileNotFoundError:
                continue
            count += 1
    return count


def restore(archive: Path, data_dir: Path, force: bool = False, with_settings: bool = False) -> BackupReport:
    """Unpack `archive` into `data_dir`, which must be empty or absent (or, with `force`, is
    replaced whole, its own `tongkuan.toml` kept; stop any service on it first). The catalog
    is checked before anything is replaced. The archive's `tongkuan.toml` is restored only
    `with_settings`; the report names the settings it sets either way."""
    started = time.perf_counter()
    if not archive.is_file():
        raise BackupError(f"{archive} does not exist")
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"{data_dir} is not empty; restore into a new directory, or pass --force to replace it")
    _open_archive(archive).close()  # a file of another kind is refused before anything is made
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir.parent))
    try:
        with _open_archive(archive) as tar:
            tar.extractall(staging, filter="data")
        _check_catalog(staging / CATALOG)
        settings = _setting_names(staging / SETTINGS)
        if not with_settings:
            (staging / SETTINGS).unlink(missing_ok=True)
            if (data_dir / SETTINGS).is_file():  # the directory's own settings stay
                shutil.copy2(data_dir / SETTINGS, staging / SETTINGS)
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        if data_dir.exists():
            old = data_dir.with_name(f".{data_dir.name}.replaced-{int(time.time())}")
            data_dir.rename(old)
            try:
                staging.rename(data_dir)
            except OSError:
                old.rename(data_dir)  # put the old directory back rather than leave none
                raise
            shutil.rmtree(old)
        else:
            staging.rename(data_dir)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # gzip reports truncation as EOFError
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one line
        raise BackupError(f"{archive} cannot be restored: {reason}") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    restored = with_settings and bool(settings)
    return BackupReport(files, archive.stat().st_size, time.perf_counter() - started, settings, restored)


def _open_archive(archive: Path) -> tarfile.TarFile:
    """The tar file `archive` (compressed or not); a file of another kind is one line saying so,
    not tarfile's list of every method it tried."""
    try:
        return tarfile.open(archive)
    except tarfile.ReadError as exc:
        raise BackupError(
            f"{archive} cannot be restored: it is not a backup archive (tongkuan backup writes a .tar or .tar.gz file)"
        ) from exc
    except OSError as exc:
        raise BackupError(f"{archive} cannot be restored: {exc.strerror or exc}") from exc


def _setting_names(path: Path) -> tuple[str, ...]:
    """The names a `tongkuan.toml` sets (tables' keys as `table.key`), never their values."""
    if not path.is_file():
        return ()
    try:
        parsed = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ("(unreadable tongkuan.toml)",)
    names: list[str] = []
    for key, value in parsed.items():
        names += [f"{key}.{inner}" for inner in value] if isinstance(value, dict) else [key]
    return tuple(sorted(names))


def _check_catalog(path: Path) -> None:
    if not path.is_file():
        raise BackupError(f"the archive holds no {CATALOG}")
    db = sqlite3.connect(path)
    try:
        result = db.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the archive's {CATALOG} is damaged: {exc}") from exc
    finally:
        db.close()
    if result != "ok":
        raise BackupError(f"the archive's {CATALOG} is damaged: {result}")
