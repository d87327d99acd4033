"""Content-addressed image files under the data directory: uploads and catalog pictures."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from tongkuan.errors import ImageNotFound
from tongkuan.images.decode import content_hash, sniff_extension

_NAME = re.compile(r"[0-9a-f]{32}\.(jpg|png|webp|gif|bmp|tif)")
_ID = re.compile(r"[0-9a-f]{32}")


STALE_PART_SECONDS = 3600
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def part_prefix() -> str:
    """Temporary files start with the writer's process id and host, so a later process can
    tell a crash's leftovers from a running process's writes, even in a folder that replicas
    on other machines share."""
    return f"{os.getpid()}.{_HOST}-"


def remove_stale_parts(folder: Path) -> None:
    """Delete `*.part` files a crash left behind, never renamed: those whose writing process
    on this machine is gone, and any other one older than an hour. Fresh ones stay."""
    cutoff = time.time() - STALE_PART_SECONDS
    for leftover in folder.glob("*.part"):
        pid, _, host = leftover.name.split("-", 1)[0].partition(".")
        try:
            local = pid.isascii() and pid.isdigit() and host in ("", _HOST)
            stale = not _alive(int(pid)) if local else leftover.stat().st_mtime < cutoff
            if stale:
                leftover.unlink(missing_ok=True)
        except FileNotFoundError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class ImageStore:
    """Files named `<first 32 hex of sha256>.<ext>` in one folder, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(root)

    def put(self, data: bytes) -> str:
        """Store `data` (idempotent) and return its file name."""
        name = f"{content_hash(data)[:32]}.{sniff_extension(data)}"
        path = self.root / name
        try:
            os.utime(path)  # already stored and in use again: `remove_unused` must see it as recent
        except FileNotFoundError:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=part_prefix(), suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        return name

    def path(self, name: str) -> Path:
        """The file for a stored name; raise `ImageNotFound` for anything else."""
        if not _NAME.fullmatch(name) or not (self.root / name).is_file():
            raise ImageNotFound(f"no stored image {name!r}")
        return self.root / name

    def find(self, image_id: str) -> Path:
        """The file of an image id (the name without its extension)."""
        if _ID.fullmatch(image_id):
            for path in self.root.glob(f"{image_id}.*"):
                if _NAME.fullmatch(path.name):
                    return path
        raise ImageNotFound(f"imageId {image_id!r} was never uploaded")

    def remove_unused(self, keep: set[str], older_than: float) -> tuple[int, int]:
        """Delete stored pictures not in `keep` and not modified for `older_than` seconds
        (query uploads, pictures of deleted products); return (files, bytes) removed.

        Safe while others write: a picture is stored (or, if already there, touched) before
        the catalog row that names it, so one named after `keep` was read is recent and stays."""
        cutoff = time.time() - older_than
        files = size = 0
        for path in self.root.iterdir():
            if not _NAME.fullmatch(path.name) or path.name in keep:
                continue
            try:
                stat = path.stat()
                if stat.st_mtime < cutoff:
                    path.unlink()
                    files, size = files + 1, size + stat.st_size
            except FileNotFoundError:
                continue
        return files, size
