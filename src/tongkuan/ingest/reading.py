"""When to read the text on a catalog's pictures (`TONGKUAN_READ_TEXT`).

`on` reads every picture, `off` none. `auto` reads the first `AUTO_SAMPLE` pictures of a
catalog and goes on only where at least `AUTO_SHARE` of them showed words the reader was sure
of: packaged goods do (grocery packs: 17 of 20 shoppers' photos), clothes and fruit mostly
do not, and reading costs 0.1-0.5 s a picture on 2 cores. Queries read where the catalog reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from PIL import Image

from tongkuan.vision.encoder import background_inference
from tongkuan.vision.reading import TextReader

ReadMode = Literal["auto", "on", "off"]
AUTO_SAMPLE = 64  # pictures read before `auto` decides
AUTO_SHARE = 0.25  # of them showing words, for `auto` to go on reading


def reads(mode: ReadMode, read: int, worded: int) -> bool:
    """Whether pictures are read, given how many were read so far and how many showed words."""
    if mode != "auto":
        return mode == "on"
    return read < AUTO_SAMPLE or worded >= AUTO_SHARE * read


class CatalogReading:
    """Reads the text on catalog pictures while `reads` says so, counting what it finds."""

    def __init__(self, reader: TextReader, mode: ReadMode, counts: tuple[int, int]) -> None:
        self.reader = reader
        self.mode = mode
        self.read, self.worded = counts

    @property
    def wanted(self) -> bool:
        return reads(self.mode, self.read, self.worded)

    def words(self, pictures: Sequence[Image.Image]) -> list[str | None]:
        """What each picture says, a line a line ("" for none); None for each where reading is
        off (the picture is left unread)."""
        if not self.wanted:
            return [None] * len(pictures)
        found: list[str | None] = []
        with background_inference():
            for picture in pictures:
                lines = "\n".join(line.text for line in self.reader.read(picture))
                self.read += 1
                self.worded += bool(lines)
                found.append(lines)
        return found
