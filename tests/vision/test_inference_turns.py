"""Searches go before background inference (ingestion, re-embedding), which runs a few
pictures at a time, so a search never waits behind a whole ingestion batch."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from PIL import Image

from tests.utils.stand_in import RUN_S, SlowSession, colours, stand_in_encoder
from tongkuan.vision.encoder import BACKGROUND_CHUNK, BACKGROUND_MAX_WAIT_S, OnnxEncoder, background_inference


def encoder() -> tuple[OnnxEncoder, SlowSession]:
    return stand_in_encoder()


def pictures(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (16, 16), (i * 10, 255 - i * 10, i)) for i in range(count)]


def test_a_search_waits_for_one_background_chunk_not_the_whole_batch() -> None:
    model, session = encoder()
    background_out: list[Any] = []

    def ingest() -> None:
        with background_inference():
            background_out.append(model.run(pictures(16)))

    worker = threading.Thread(target=ingest, name="ingest")
    worker.start()
    time.sleep(RUN_S / 2)  # the first chunk is running
    waited: list[float] = []

    def search() -> None:
        started = time.monotonic()
        model.run(pictures(1))
        waited.append(time.monotonic() - started)

    searcher = threading.Thread(target=search, name="search")
    searcher.start()
    searcher.join()
    worker.join()

    assert waited[0] < 2.5 * RUN_S  # the chunk running, then its own run; not four chunks
    assert session.log[:2] == [("ingest", BACKGROUND_CHUNK), ("search", 1)]
    assert [size for name, size in session.log if name == "ingest"] == [BACKGROUND_CHUNK] * 4
    # the background batch's results come back whole and in order
    whole = model.run(pictures(16))
    assert np.allclose(colours(background_out[0]), colours(whole))


def test_searches_run_whole_batches_as_before() -> None:
    model, session = encoder()
    model.run(pictures(9))
    assert [size for _, size in session.log] == [9]


def test_background_work_still_advances_when_a_search_always_waits() -> None:
    model, session = encoder()
    stop = threading.Event()

    def searches() -> None:
        while not stop.is_set():
            model.run(pictures(1))

    searchers = [threading.Thread(target=searches, name="search") for _ in range(2)]  # one always waits
    for thread in searchers:
        thread.start()
    time.sleep(RUN_S)
    started = time.monotonic()
    with background_inference():
        model.run(pictures(BACKGROUND_CHUNK))
    took = time.monotonic() - started
    stop.set()
    for thread in searchers:
        thread.join()
    assert took < BACKGROUND_MAX_WAIT_S + 3 * RUN_S, took
