"""worker.daemon: Backoff (exponential, jittered by an injected random source, capped) and the journal flush."""

from __future__ import annotations

from pathlib import Path

import pytest

from depin.config import WorkerConfig
from depin.crypto import SigningKey
from depin.errors import BadRequest, Forbidden, KeyMismatch
from depin.protocol import AckItem, ResultItem, ResultsAck
from worker.daemon import Backoff, Worker


def _delays(b: Backoff, n: int) -> list[float]:
    return [b.next_delay() for _ in range(n)]


def test_grows_exponentially_up_to_the_cap() -> None:
    top = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 1.0)
    assert _delays(top, 9) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    bottom = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 0.0)
    assert _delays(bottom, 9) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_jitter_spans_the_upper_half() -> None:
    assert Backoff(base_s=1.0, cap_s=100.0, rand=lambda: 0.5).next_delay() == 1.5  # ceiling 2: 1 + 0.5 * 1


def test_counts_failures_and_resets() -> None:
    b = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 1.0)
    _delays(b, 5)
    assert b.failures == 5
    b.reset()
    assert b.failures == 0
    assert _delays(b, 2) == [0.5, 1.0]


def test_many_failures_stay_at_the_cap() -> None:
    b = Backoff(base_s=0.25, cap_s=7.0, rand=lambda: 1.0)
    b.failures = 10_000
    assert b.next_delay() == 7.0


@pytest.mark.parametrize("r", [0.0, 0.3, 0.999])
def test_delays_stay_within_half_to_full_ceiling(r: float) -> None:
    b = Backoff(base_s=0.1, cap_s=5.0, rand=lambda: r)
    for n in range(1, 30):
        ceiling = min(5.0, 0.1 * 2**n)
        d = b.next_delay()
        assert isinstance(d, float)
        assert ceiling / 2 <= d <= ceiling


def test_defaults() -> None:
    b = Backoff()
    assert (b.base_s, b.cap_s, b.failures) == (0.25, 30.0, 0)
    assert 0.25 <= b.next_delay() <= 0.5


# ---- Worker._flush: what happens to journaled results when the coordinator answers ------------------------------

def _item(lease_id: str) -> ResultItem:
    return ResultItem(lease_id=lease_id, task_id=f"t-{lease_id}", output={"dtype": "uint8", "shape": [1],
                                                                          "data": b"\x00"}, elapsed_ms=1)


async def test_flush_sets_aside_only_the_result_the_coordinator_refuses_as_malformed(tmp_path: Path) -> None:
    w = Worker(WorkerConfig(coordinator="http://127.0.0.1:1", data_dir=tmp_path, coordinator_key=None),
               SigningKey(bytes(32)))
    for n, lease_id in enumerate(["a", "bad", "c"]):
        w.journal.add(_item(lease_id), now_ms=n)
    batches: list[list[str]] = []

    async def send(client: object, items: list[ResultItem]) -> ResultsAck:
        ids = [i.lease_id for i in items]
        batches.append(ids)
        if "bad" in ids:
            raise BadRequest("field results[0].output: must be a map")
        return ResultsAck(worker_id=w.key.id, request_nonce=b"n" * 16,
                          acks=tuple(AckItem(i, "accepted", "") for i in ids))

    w._send = send  # type: ignore[method-assign]
    await w._flush(client=None)  # type: ignore[arg-type]
    assert batches == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert w.journal.count() == 0
    assert w.journal.refused() == [("bad", "field results[0].output: must be a map")]
    assert (w.stats.accepted, w.stats.rejected) == (2, 0)
    w.journal.close()


@pytest.mark.parametrize(("error", "code"), [("banned", 5), ("key", 4)])
async def test_a_ban_or_a_changed_key_stops_the_worker(tmp_path: Path, error: str, code: int) -> None:
    # Retrying cannot help either: a 403 on a worker request means a ban, a changed key means an impostor.
    w = Worker(WorkerConfig(coordinator="http://127.0.0.1:1", data_dir=tmp_path, coordinator_key=None),
               SigningKey(bytes(32)))
    cycles = 0

    async def cycle(client: object) -> None:
        nonlocal cycles
        cycles += 1
        raise Forbidden("worker banned: 3 invalid results out of 3") if error == "banned" else KeyMismatch("changed")

    w._cycle = cycle  # type: ignore[method-assign]
    assert await w.run() == code
    assert cycles == 1
