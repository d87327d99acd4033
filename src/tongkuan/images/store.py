"""Content-addressed image files under the data directory: uploads and catalog pictures."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from tongkuan.errors import ImageNotFound
from tongkuan.images.decode import content_hash, sniff_extension

_NAME = re.compile(r"^[0-9a-f]{32}\.(jpg|png|webp|gif|bmp|tif)$")
_ID = re.compile(r"^[0-9a-f]{32}$")


class ImageStore:
    """Files named `<first 32 hex of sha256>.<ext>` in one folder, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob("*.part"):  # a write cut short by a crash, never renamed
            leftover.unlink(missing_ok=True)

    def put(self, data: bytes) -> str:
        """Store `data` (idempotent) and return its file name."""
        name = f"{content_hash(data)[:32]}.{sniff_extension(data)}"
        path = self.root / name
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        return name

    def path(self, name: str) -> Path:
        """The file for a stored name; raise `ImageNotFound` for anything else."""
        if not _NAME.match(name) or not (self.root / name).is_file():
            raise ImageNotFound(f"no stored image {name!r}")
        return self.root / name

    def find(self, image_id: str) -> Path:
        """The file of an image id (the name without its extension)."""
        if _ID.match(image_id):
            for path in self.root.glob(f"{image_id}.*"):
                if _NAME.match(path.name):
                    return path
        raise ImageNotFound(f"imageId {image_id!r} was never uploaded")
