"""A worker pins its coordinator's key on first contact and refuses to work for any other key afterwards."""

from __future__ import annotations

import signal

import pytest

from depin.crypto import SigningKey
from tests.integration.support import Cluster, free_port, submit, wait_until


@pytest.mark.timeout(120)
def test_worker_refuses_a_coordinator_whose_key_changed(cluster: Cluster) -> None:
    first = cluster.coordinator("coordinator-1")
    worker = cluster.worker(first, "worker")
    pinned = worker.data_dir / "coordinator.pub"
    wait_until(lambda: worker.worker_id in first.api.workers(), "the worker to talk to coordinator 1")
    assert pinned.read_text().strip() == first.api.info()["public_key"]
    worker.proc.signal(signal.SIGTERM)
    assert worker.proc.wait() == 0, worker.proc.tail()

    # Another coordinator (its own data dir, so its own key), and the same worker data dir pointed at it.
    second = cluster.coordinator("coordinator-2")
    assert second.api.info()["public_key"] != first.api.info()["public_key"]
    again = cluster.worker(second, "worker", data_dir=worker.data_dir)
    code = again.proc.wait()
    assert code != 0, again.proc.tail()
    assert "coordinator key changed" in again.proc.log(), again.proc.tail()
    assert "Traceback" not in again.proc.log()
    # It refused before asking for work, so the impostor never even heard of it; and the pin is unchanged.
    assert again.worker_id not in second.api.workers()
    assert second.api.status()["active_leases"] == 0
    assert pinned.read_text().strip() == first.api.info()["public_key"]


@pytest.mark.timeout(120)
def test_worker_refuses_a_coordinator_other_than_the_key_given(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    other = SigningKey.generate().public.hex()
    worker = cluster.worker(coordinator, "stranger", coordinator_key=other)
    code = worker.proc.wait()
    assert code != 0, worker.proc.tail()
    assert "--coordinator-key" in worker.proc.log(), worker.proc.tail()
    assert "Traceback" not in worker.proc.log()
    assert worker.worker_id not in coordinator.api.workers()
    assert not (worker.data_dir / "coordinator.pub").exists()

    # The right key (in upper case, as a user may paste it) is accepted and pinned.
    right = coordinator.api.info()["public_key"]
    friend = cluster.worker(coordinator, "friend", coordinator_key=right.upper())
    wait_until(lambda: friend.worker_id in coordinator.api.workers(), "the worker with the right key to connect")
    assert friend.proc.alive()
    assert (friend.data_dir / "coordinator.pub").read_text().strip() == right


@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", ["abc", "zz" * 32, "00" * 31])
def test_malformed_coordinator_key_is_one_line_error(cluster: Cluster, key: str) -> None:
    got = cluster.cli("worker", "--coordinator", f"http://127.0.0.1:{free_port()}", "--data-dir",
                      str(cluster.root / "w"), "--coordinator-key", key)
    assert got.returncode == 2
    assert got.stderr.count("\n") == 1 and got.stderr.startswith("depin: error:"), got.stderr
    assert "--coordinator-key" in got.stderr


@pytest.mark.timeout(120)
def test_running_worker_refuses_an_impostor_on_the_same_url(cluster: Cluster) -> None:
    port = free_port()
    first = cluster.coordinator("coordinator-1", port=port)
    worker = cluster.worker(first, "worker")
    wait_until(lambda: worker.worker_id in first.api.workers(), "the worker to talk to coordinator 1")
    first.proc.signal(signal.SIGTERM)
    assert first.proc.wait() == 0

    impostor = cluster.coordinator("coordinator-2", port=port)
    submit(impostor, SigningKey.generate(), {"width": 16, "height": 8}, tasks=2, replicas=1)
    code = worker.proc.wait(timeout=15)
    assert code != 0
    assert "coordinator key changed" in worker.proc.log()
