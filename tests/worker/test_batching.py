"""worker.batching: the adaptive batch. What it asks for from measured speed, what of a grant it keeps, when it
leases ahead; an explicit --batch overrides the asking and the keeping."""

from __future__ import annotations

import pytest

from depin.protocol import MAX_BATCH
from worker.batching import HOLD_S, TARGET_S, Pace, Task

TINY = Task("montecarlo@1", 1)
BAND = Task("mandelbrot@1", 1_000_000)


def test_a_kernel_never_timed_is_asked_for_one_task_at_a_time() -> None:
    p = Pace()
    assert p.ask() == 1
    assert p.estimate(TINY) is None


def test_asks_for_about_the_target_of_work() -> None:
    p = Pace()
    p.note(BAND, 0.025)  # 25 ms a band: 4 bands make the 100 ms target
    assert p.ask() == 4
    p.note(BAND, 0.2)  # slower than the target: one at a time, never none
    assert p.ask() == 1


def test_tiny_tasks_are_asked_for_up_to_the_cap() -> None:
    p = Pace()
    p.note(TINY, 20e-6)
    assert p.ask() == MAX_BATCH
    p.note(TINY, 0.0)  # a clock too coarse to see it
    assert p.ask() == MAX_BATCH
    assert Pace(cap=16).ask() == 1
    capped = Pace(cap=16)
    capped.note(TINY, 20e-6)
    assert capped.ask() == 16


def test_the_estimate_is_a_running_mean_per_unit_of_declared_work() -> None:
    p = Pace(weight=0.5)
    p.note(Task("k@1", 10), 1.0)  # 0.1 s per unit
    p.note(Task("k@1", 10), 3.0)  # 0.3 s per unit: the mean moves half way
    assert p.estimate(Task("k@1", 1)) == pytest.approx(0.2)
    assert p.estimate(Task("k@1", 100)) == pytest.approx(20.0)  # scaled by the work, not the task count
    assert p.estimate(Task("other@1", 1)) is None


def test_requests_are_sized_on_the_last_task_computed() -> None:
    p = Pace()
    p.note(Task("montecarlo@1", 1_000), 0.01)  # 10 us per sample
    assert p.ask() == 10
    p.note(Task("montecarlo@1", 100), 0.001)  # the same speed, smaller tasks: more of them
    assert p.ask() == 100


def test_keep_what_fits_in_hand_and_give_back_the_rest() -> None:
    p = Pace()
    p.note(BAND, 0.3)
    assert p.keep([BAND] * 10) == 3  # 0.9 s of 1.0 s in hand
    assert p.keep([BAND] * 10, hold_s=0.5) == 1  # a short lease timeout holds less
    assert p.keep([BAND] * 2) == 2
    p.note(BAND, 5.0)
    assert p.keep([BAND] * 3) == 1  # longer than the hold alone: still one


def test_a_job_of_bigger_tasks_of_the_same_kernel_is_not_kept_in_the_numbers_of_tiny_ones() -> None:
    p = Pace()
    p.note(Task("montecarlo@1", 1), 20e-6)
    assert p.ask() == MAX_BATCH
    big = Task("montecarlo@1", 1_000_000)  # 20 s, by the estimate per sample
    assert p.keep([big] * MAX_BATCH) == 1


def test_a_kernel_never_timed_in_a_grant_is_kept_alone_to_be_measured() -> None:
    p = Pace()
    p.note(TINY, 20e-6)
    assert p.keep([TINY, TINY, BAND, TINY]) == 3
    assert p.keep([BAND, BAND]) == 1
    assert p.keep([]) == 0


def test_leases_ahead_only_while_the_batch_in_hand_is_known_and_short() -> None:
    p = Pace()
    assert not p.ahead([TINY])  # never timed
    p.note(TINY, 20e-6)
    assert p.ahead([TINY] * MAX_BATCH)
    assert not p.ahead([TINY, BAND])
    p.note(BAND, HOLD_S / 2)
    assert p.ahead([BAND, BAND])
    assert not p.ahead([BAND] * 3)
    assert not p.ahead([BAND, BAND], hold_s=HOLD_S / 4)


def test_a_fixed_batch_asks_for_it_and_keeps_all() -> None:
    p = Pace(fixed=4)
    assert p.ask() == 4
    p.note(BAND, 10.0)
    assert (p.ask(), p.keep([BAND] * 4)) == (4, 4)
    assert not p.ahead([BAND] * 4)  # but it does not lease ahead of long work either


@pytest.mark.parametrize("bad", [{"fixed": 0}, {"fixed": MAX_BATCH + 1}, {"target_s": 0}, {"hold_s": -1.0},
                                 {"weight": 0.0}, {"weight": 1.5}])
def test_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Pace(**bad)  # type: ignore[arg-type]


def test_defaults() -> None:
    assert (TARGET_S, HOLD_S, Pace().cap) == (0.1, 1.0, MAX_BATCH)
