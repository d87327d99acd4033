"""`tongkuan quantize`: switch the catalog to an 8-bit copy of its model.

The copy is calibrated on pictures of the catalog itself (`tongkuan.vision.quantize`),
stored in the catalog like a tuned model (every replica finds it), and the catalog is
embedded again with it and switched in one transaction, exactly as `tongkuan tune` does,
so `tongkuan tune --undo` switches back (`tongkuan.models.switch`). A shipped model and a
tuned one quantize alike.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tongkuan.catalog.store import Catalog
from tongkuan.errors import CannotLearn, ImageError
from tongkuan.models.images import ImageSource
from tongkuan.models.parts import Parts
from tongkuan.models.switch import base_model, keep_model, open_current, switch
from tongkuan.vision.encoder import ModelSpec, OnnxEncoder
from tongkuan.vision.quantize import precision, quantize_model

CALIBRATION_PICTURES = 256
_PAGE = 500
_TIMED_PASSES = 20


@dataclass(frozen=True)
class QuantizeReport:
    """What `quantize_catalog` did, with one forward pass's time before and after."""

    model: str
    quantized_from: str
    calibration_pictures: int
    float_forward_ms: float
    int8_forward_ms: float
    embed_seconds: float
    index_pictures: int
    whitened: bool


def quantize_catalog(parts: Parts, pictures: int = CALIBRATION_PICTURES, seed: int = 0) -> QuantizeReport:
    """Quantize the catalog's model, calibrated on up to `pictures` of its pictures, and
    switch the catalog to it. Raises `CannotLearn` for a catalog already on an 8-bit model or
    with too few pictures."""
    current, spec, catalog = open_current(parts)
    work = parts.data_dir / "quantize"  # never DATA_DIR/tune: an interrupted tune resumes from it
    owned = True  # until the switch takes the catalog over
    try:
        if precision(spec.description_file) == "int8":
            raise CannotLearn(f"the catalog's model {current} is 8-bit already")
        with parts.images(work / "pictures") as source:
            calibration = _calibration(catalog, source, pictures, seed)
            with tempfile.TemporaryDirectory(prefix="tongkuan-int8-", dir=parts.data_dir) as folder:
                candidate = Path(folder) / "candidate"
                described = {"quantized_from": current, "tuned_from": base_model(spec, current)}
                quantize_model(spec, calibration, candidate, described)
                name, int8 = keep_model(parts, catalog, candidate)
            float_ms, int8_ms = (_forward_ms(s, parts.threads, calibration[0]) for s in (spec, int8))
            owned = False
            switched = switch(parts, catalog, name, int8, source)
    finally:
        if owned:
            catalog.close()
    shutil.rmtree(work, ignore_errors=True)  # pictures fetched from URLs to embed them again
    return QuantizeReport(
        name,
        current,
        len(calibration),
        float_ms,
        int8_ms,
        switched.embed_seconds,
        switched.index_pictures,
        switched.whitened,
    )


def _calibration(catalog: Catalog, source: ImageSource, wanted: int, seed: int) -> list[Image.Image]:
    """Up to `wanted` pictures drawn at random from the catalog's first `wanted * 8`."""
    found: list[tuple[str, str]] = []
    after: str | None = None
    while len(found) < wanted * 8 and (page := catalog.products(after, _PAGE)):
        after = page[-1].item_id
        for product in page:
            found += [(p.location, p.content_hash) for p in catalog.images_of(product.item_id)]
    chosen = random.Random(seed).sample(found, min(wanted, len(found)))
    images = []
    for location, digest in chosen:
        try:
            images.append(source.image(location, digest))
        except ImageError:
            continue  # a picture that cannot be read any more calibrates nothing
    return images


def _forward_ms(spec: ModelSpec, threads: int, image: Image.Image) -> float:
    """The median time of one single-picture forward pass, in milliseconds."""
    encoder = OnnxEncoder(spec, threads=threads)
    encoder.run([image])  # the first pass pays for loading
    times = []
    for _ in range(_TIMED_PASSES):
        started = time.perf_counter()
        encoder.run([image])
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1000, 2)
