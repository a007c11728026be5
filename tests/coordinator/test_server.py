"""coordinator.server, the parts that are not request handling (handlers: test_handlers_fuzz.py, tests/integration)."""

from __future__ import annotations

import gc

from coordinator import server


def test_the_collector_is_tuned_for_a_large_live_heap_and_the_state_restored_at_start_is_frozen() -> None:
    before = gc.get_threshold()
    kept = [[] for _ in range(10)]  # something long-lived and tracked, like restored state
    try:
        server.quiet_collector()
        assert gc.get_threshold() == server.GC_THRESHOLDS
        assert gc.get_freeze_count() >= len(kept)
        young, middle, full = server.GC_THRESHOLDS
        assert young > 700 and full > 10  # rarer than CPython's defaults (700, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
