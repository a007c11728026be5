"""coordinator.placement: capacity, draws and grace as pure rules."""

from __future__ import annotations

from coordinator import placement
from coordinator.placement import PlacementPolicy


def test_capacity_doubles_on_success_and_halves_on_trouble_within_bounds() -> None:
    policy = PlacementPolicy(start_capacity=2, max_capacity=16)
    cap = policy.start_capacity
    seen = []
    for _ in range(5):
        cap = placement.grown(cap, policy)
        seen.append(cap)
    assert seen == [4, 8, 16, 16, 16]
    assert [placement.shrunk(c) for c in (16, 3, 2, 1)] == [8, 1, 1, 1]


def test_grace_follows_the_measured_time_within_bounds() -> None:
    policy = PlacementPolicy(grace_factor=4, min_grace_ms=1_000)
    assert placement.grace_ms(policy, 60_000, None) == 15_000  # nothing measured: a quarter of the timeout
    assert placement.grace_ms(policy, 60_000, 10) == 1_000  # never below the floor
    assert placement.grace_ms(policy, 60_000, 2_000) == 8_000
    assert placement.grace_ms(policy, 60_000, 100_000) == 60_000  # never past the lease itself
