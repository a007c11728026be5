"""A mandelbrot job through three real workers: the result is bit-identical to the independent references, the
PNG has the right size, every validated task paid exactly `replicas` rewards of `price` from the job's escrow, and
the submitter got the rest of its grant back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.integration.support import Cluster, check_rewards

# Small enough for the plain-Python reference; an off-centre, asymmetric view so a flipped axis would show.
JOB = {"width": 96, "height": 72, "x_min": -2.1, "x_max": 0.7, "y_min": -1.05, "y_max": 1.2, "max_iter": 150}
TASKS, REPLICAS, PRICE = 6, 2, 7


@pytest.mark.timeout(240)
def test_job_matches_references_and_pays_each_task_twice(
        cluster: Cluster, cref: ModuleType, reference: Callable[[dict[str, Any]], np.ndarray], tmp_path: Path) -> None:
    coordinator = cluster.coordinator()
    workers = [cluster.worker(coordinator, f"worker-{i}") for i in range(3)]
    url = coordinator.url
    granted = 10_000
    submitter = cluster.fund(coordinator, granted)

    sub = cluster.cli("submit", "--coordinator", url, "--json", "mandelbrot",
                      *[f"-p{k}={v}" for k, v in JOB.items()],
                      "--tasks", str(TASKS), "--replicas", str(REPLICAS), "--price", str(PRICE))
    assert sub.returncode == 0, sub.stderr
    job_id = json.loads(sub.stdout)["job_id"]

    waited = cluster.cli("wait", "--coordinator", url, "--json", job_id)
    assert waited.returncode == 0, waited.stderr
    job = json.loads(waited.stdout)
    assert (job["state"], job["tasks_validated"], job["tasks_total"]) == ("done", TASKS, TASKS)

    npy = tmp_path / "x.npy"
    got = cluster.cli("result", "--coordinator", url, job_id, "-o", str(npy))
    assert got.returncode == 0, got.stderr
    image = np.load(npy)
    assert image.dtype == np.uint32 and image.shape == (JOB["height"], JOB["width"])
    c_ref = reference(JOB)
    assert np.array_equal(image, c_ref), f"{int((image != c_ref).sum())} pixels differ from the C reference"
    py_ref = cref.python_reference(**JOB)
    assert np.array_equal(image, py_ref), f"{int((image != py_ref).sum())} pixels differ from the Python reference"
    # Not a trivial picture: both escaped and captive pixels.
    assert image.min() < 5 and image.max() == JOB["max_iter"]

    png = tmp_path / "x.png"
    got = cluster.cli("result", "--coordinator", url, job_id, "-o", str(png))
    assert got.returncode == 0, got.stderr
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size == (JOB["width"], JOB["height"])
        im.load()

    rewards = check_rewards(coordinator.api, job)
    audited = job["audits"].get("passed", 0)  # tasks a worker on probation helped validate are audited (12.6)
    assert {e["to"] for e in rewards} <= {w.worker_id for w in workers}
    for task_id in {e["task_id"] for e in rewards}:  # distinct workers: the replicas, and an auditor if any
        assert len({e["to"] for e in rewards if e["task_id"] == task_id}) in (REPLICAS, REPLICAS + 1)
    paid = TASKS * REPLICAS + audited
    earnings = json.loads(cluster.cli("earnings", "--coordinator", url, "--json").stdout)
    assert sum(w["balance"] for w in earnings) == paid * PRICE
    assert sum(w["tasks_validated"] for w in earnings) == paid
    assert all(w["tasks_rejected"] == 0 for w in earnings)

    # The submitter paid for exactly the validated results (replicas and audits): its grant less paid x PRICE.
    assert coordinator.api.balance(submitter) == granted - paid * PRICE
    coordinator.api.wait_checkpointed()  # `ledger verify --coordinator` checks what the latest checkpoint signs
    verify = cluster.cli("ledger", "verify", "--coordinator", url)
    assert verify.returncode == 0, verify.stderr
    ok, credits = verify.stdout.splitlines()
    assert ok.startswith("ledger ok:") and "match the checkpoint signed by" in ok, ok
    # grant, escrow, the rewards, refund
    assert f"{1 + 1 + paid + 1} entries" in ok, ok
    assert credits == f"credits: {granted} minted = {granted} in accounts + 0 in escrow", credits
