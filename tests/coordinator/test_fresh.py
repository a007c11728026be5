"""The secret order in which a job's tasks are made (coordinator.fresh)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.fresh import nth


@given(st.binary(min_size=1, max_size=32), st.integers(1, 3000))
def test_each_key_orders_the_indexes_as_a_permutation(key: bytes, n: int) -> None:
    assert sorted(nth(key, n, k) for k in range(n)) == list(range(n))


def test_the_empty_key_is_index_order_and_keys_differ() -> None:
    assert [nth(b"", 10, k) for k in range(10)] == list(range(10))
    orders = {tuple(nth(bytes([i]) * 16, 1000, k) for k in range(20)) for i in range(8)}
    assert len(orders) == 8  # eight keys, eight different orders
    assert tuple(range(20)) not in orders


def test_a_million_tasks_cost_nothing_to_order() -> None:
    key = b"k" * 16
    firsts = [nth(key, 10**6, k) for k in range(1000)]
    assert len(set(firsts)) == 1000 and all(0 <= i < 10**6 for i in firsts)
    with pytest.raises(ValueError):
        nth(key, 10, 10)
