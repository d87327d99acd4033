"""Searches that wait for the model at the same time run in one pass (up to `joined`
pictures); a search that finds it free runs at once, alone; each gets its own rows back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.utils.stand_in import RUN_S, SlowSession, colours, stand_in_encoder
from tongkuan.vision.encoder import OnnxEncoder, Outputs, background_inference
from tongkuan.vision.registry import resolve_model


def encoder(joined: int, fail: bool = False) -> tuple[OnnxEncoder, SlowSession]:
    return stand_in_encoder(joined, fail)


def picture(i: int) -> Image.Image:
    return Image.new("RGB", (16, 16), (i * 20, 255 - i * 20, i))


def alone(i: int) -> Outputs:
    model, _ = encoder(joined=1)
    return model.run([picture(i)])


def search_at_once(model: OnnxEncoder, count: int) -> dict[int, Outputs | BaseException]:
    """`count` searches in threads, the first holding the model while the others arrive."""
    out: dict[int, Outputs | BaseException] = {}

    def search(i: int) -> None:
        try:
            out[i] = model.run([picture(i)])
        except BaseException as exc:  # noqa: BLE001 - the test reads what each search got
            out[i] = exc

    threads = [threading.Thread(target=search, args=(i,)) for i in range(count)]
    threads[0].start()
    time.sleep(RUN_S / 3)  # the first search's pass is running
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def test_searches_waiting_together_run_in_one_pass_and_each_gets_its_own_rows() -> None:
    model, session = encoder(joined=4)
    out = search_at_once(model, 5)
    assert session.sizes == [1, 4]  # the first alone (the model was free), then the four that waited
    for i, got in out.items():
        assert isinstance(got, Outputs)
        # the picture's own embedding, as a pass of its own gives it (the last column, its
        # row in the pass, is left out: it differs by design)
        assert np.allclose(colours(got), colours(alone(i)))


def test_a_pass_takes_at_most_the_joined_pictures_and_the_rest_wait_for_the_next() -> None:
    model, session = encoder(joined=2)
    out = search_at_once(model, 6)
    assert session.sizes[0] == 1 and max(session.sizes) == 2 and sum(session.sizes) == 6
    assert all(isinstance(got, Outputs) for got in out.values())


def test_with_joining_off_each_search_runs_alone() -> None:
    model, session = encoder(joined=1)
    search_at_once(model, 4)
    assert session.sizes == [1, 1, 1, 1]


def test_a_failed_pass_fails_every_search_joined_to_it_and_the_model_serves_the_next() -> None:
    model, session = encoder(joined=4, fail=True)
    out = search_at_once(model, 4)
    assert session.sizes == [1, 3]
    assert all(isinstance(got, RuntimeError) for got in out.values())
    session.fail = False
    assert model.run([picture(1)]).embeddings.shape == (1, 4)
    assert model.waiting == 0


def test_background_work_is_never_joined_to_searches() -> None:
    model, session = encoder(joined=4)

    def ingest() -> None:
        with background_inference():
            model.run([picture(i) for i in range(3)])

    search_at_once(model, 1)
    worker = threading.Thread(target=ingest)
    worker.start()
    worker.join()
    assert session.sizes == [1, 3]


@pytest.mark.parametrize("joined", [1, 4])
def test_concurrent_searches_on_the_real_model_match_searches_made_one_at_a_time(
    model_cache: Path, data_root: Path, joined: int
) -> None:
    paths = sorted((data_root / "grocery_store" / "images" / "val" / "Packages" / "Milk").rglob("*.jpg"))[:6]
    images = [Image.open(p).convert("RGB") for p in paths]
    model = OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), joined=joined)
    one_at_a_time = [model.run([image]).embeddings[0] for image in images]
    out: dict[int, np.ndarray] = {}

    def search(i: int) -> None:
        out[i] = model.run([images[i]]).embeddings[0]

    threads = [threading.Thread(target=search, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, expected in enumerate(one_at_a_time):
        assert float(out[i] @ expected) > 0.9999  # a batch's kernels may round differently, never more
