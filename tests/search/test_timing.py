"""The stage clock of a picture search: each lap charged to the stage that ran it."""

from __future__ import annotations

import time

from tongkuan.search.timing import Stage, StageClock


def test_each_lap_is_charged_to_the_stage_that_ran_and_revisits_add_up() -> None:
    clock = StageClock()
    began = time.perf_counter()
    clock.start(Stage.INDEX)
    time.sleep(0.02)
    clock.start(Stage.CATALOG)
    time.sleep(0.01)
    clock.start(Stage.INDEX)  # a widening search goes back to the index
    time.sleep(0.02)
    clock.stop()
    time.sleep(0.02)  # stopped: waiting belongs to no stage
    elapsed = time.perf_counter() - began
    assert set(clock.seconds) == {Stage.INDEX, Stage.CATALOG}
    assert clock.seconds[Stage.INDEX] >= 0.04 and clock.seconds[Stage.CATALOG] >= 0.01
    assert sum(clock.seconds.values()) <= elapsed - 0.02


def test_a_stopped_clock_charges_nothing_more() -> None:
    clock = StageClock()
    clock.stop()
    assert clock.seconds == {}


def test_time_measured_inside_a_stage_is_charged_to_its_own_stage_and_the_total_is_kept() -> None:
    clock = StageClock()
    began = time.perf_counter()
    clock.start(Stage.VISION)
    time.sleep(0.03)
    clock.spent(Stage.INFERENCE, 0.02)  # a model pass measured inside the vision work
    clock.stop()
    elapsed = time.perf_counter() - began
    assert clock.seconds[Stage.INFERENCE] == 0.02
    assert 0.01 <= clock.seconds[Stage.VISION] <= elapsed - 0.02
    assert sum(clock.seconds.values()) <= elapsed
