"""coordinator.service: the shell around the scheduler (requests end to end: test_handlers_fuzz.py, integration)."""

from __future__ import annotations

from pathlib import Path

from coordinator.service import Service
from depin.config import CoordinatorConfig
from depin.protocol import AckItem
from tests.coordinator.sched_support import (
    KERNELS,
    NO_AUDITS,
    OPEN_PLACEMENT,
    PARAMS,
    PRICE,
    SUBMITTER,
    WORKER_KEYS,
    good,
    item,
    open_policy,
    wid,
)


def test_a_resend_while_the_commit_holding_its_result_is_being_written_is_a_duplicate(tmp_path: Path) -> None:
    # Group commit: a job's results leave memory when it ends, but reach the disk only when the commit under way is
    # written. A resend in between (the worker's answer was lost) must still be recognised, not called unknown.
    config = CoordinatorConfig(data_dir=tmp_path, host="127.0.0.1", port=0, lease_timeout_ms=60_000)
    service = Service(config, lambda: 1_000, trust_policy=open_policy(), placement=OPEN_PLACEMENT, audits=NO_AUDITS)
    try:
        s, a = service.scheduler, wid("A")
        s.grant(now=1_000, account=SUBMITTER, amount=10**6)
        s.submit(now=1_000, submitter=SUBMITTER, kernel_name="mandelbrot", params=dict(PARAMS), n_tasks=1,
                 replicas=1, max_results=None, price=PRICE, quorum=None, max_errors=None)
        s.touch_worker(now=1_000, worker_id=a, public_key=WORKER_KEYS["A"].public)
        (g,) = s.lease(now=1_000, worker_id=a, max_tasks=1, kernels_ok=KERNELS)
        [ack] = s.report(now=1_001, worker_id=a, reports=[item(g, good(g))])
        assert ack.status == "accepted"
        w = service.take_write()  # the commit under way: taken, not yet written
        resent = s.report(now=1_002, worker_id=a, reports=[item(g, good(g))])
        assert resent == [AckItem(g.lease_id, "duplicate", "result already received")]
        service.write(w)
        service.written(w)
        assert s.report(now=1_003, worker_id=a, reports=[item(g, good(g))]) == resent  # now from the disk
    finally:
        service.close()
