"""The real data sets as benchmarks read them, and scenes built from them."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tongkuan.domain.boxes import Box


def read_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file with a header (the data sets' label files), as dicts."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True)
class Composite:
    """A scene whose subject box is known: `subject` pasted into a real photo at `box`."""

    image: Image.Image
    box: Box
    subject: Path  # the shot pasted in


def composites(root: Path, count: int, seed: int = 7) -> list[Composite]:
    """`count` scenes, fixed by `seed`: a grocery iconic or fashion shot pasted at a random box
    into a grocery shelf photo or a clothing photo (`root` laid out like shared/data)."""
    rng = random.Random(seed)
    grocery = read_rows(root / "grocery_store" / "labels.csv")
    shelves = [root / "grocery_store" / r["path"] for r in grocery if r["split"] == "train"]
    iconic = [root / "grocery_store" / r["path"] for r in grocery if r["split"] == "catalog"]
    fashion_rows = read_rows(root / "fashion_product_images_small" / "labels.csv")
    fashion = [root / "fashion_product_images_small" / r["path"] for r in fashion_rows[::50]]
    clothing_rows = read_rows(root / "clothing_dataset" / "labels.csv")
    clothing = [root / "clothing_dataset" / r["path"] for r in clothing_rows[::20]]
    scenes = []
    for i in range(count):
        background = Image.open(rng.choice(shelves if i % 2 == 0 else clothing)).convert("RGB")
        subject_path = rng.choice(iconic if i % 3 else fashion)
        subject = Image.open(subject_path).convert("RGB")
        width, height = background.size
        longest = rng.uniform(0.35, 0.55) * min(width, height)
        scale = longest / max(subject.size)
        subject = subject.resize((max(8, int(subject.width * scale)), max(8, int(subject.height * scale))))
        x = rng.randint(0, width - subject.width)
        y = rng.randint(0, height - subject.height)
        background.paste(subject, (x, y))
        scenes.append(Composite(background, Box(x, x + subject.width, y, y + subject.height), subject_path))
    return scenes
