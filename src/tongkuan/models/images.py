"""The pixels of catalog pictures, for the workflows that read every picture again
(re-embedding after a switch, tuning, calibrating an 8-bit model)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from PIL import Image

from tongkuan.images.decode import content_hash, decode_image
from tongkuan.images.fetch import Fetcher
from tongkuan.images.store import ImageStore

logger = logging.getLogger(__name__)


class ImageSource:
    """Catalog pictures from the picture store, or fetched once from their URLs into a cache
    (training reads each picture several times, re-embedding once more). Close it (or use it
    as a context manager) to close its fetcher."""

    def __init__(self, images: ImageStore, fetcher: Fetcher, cache: Path, max_pixels: int) -> None:
        self.images = images
        self.fetcher = fetcher
        self.cache = cache
        self.max_pixels = max_pixels
        cache.mkdir(parents=True, exist_ok=True)

    def data(self, location: str, digest: str) -> bytes:
        """The picture's bytes; a URL whose picture changed since ingestion is used as it is now."""
        if not location.startswith(("http://", "https://")):
            return self.images.path(location).read_bytes()
        cached = self.cache / digest
        if cached.exists():
            return cached.read_bytes()
        data = self.fetcher.fetch(location)
        if content_hash(data) != digest:
            logger.warning("the picture at %s changed since it was ingested", location)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
        return data

    def image(self, location: str, digest: str) -> Image.Image:
        return decode_image(self.data(location, digest), self.max_pixels)

    def close(self) -> None:
        self.fetcher.close()

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
