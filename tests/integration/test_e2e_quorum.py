"""Quorum against a live coordinator, with peers that lie: a wrong result is outvoted and unpaid, a task that cannot
reach agreement fails its job (and refunds its whole escrow), and every kind of bad report is judged without paying
anyone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest

from depin import codec
from depin.crypto import SigningKey, open_envelope
from tests.integration.peer import TINY_JOB, Peer, fresh, honest_output
from tests.integration.support import Cluster, Coordinator, check_escrow
from tests.reference import cref


def lie(grant: dict[str, Any]) -> dict[str, Any]:
    """A well-formed but wrong output: the honest band with one pixel changed."""
    out = honest_output(grant)
    data = bytearray(out["data"])
    data[0] ^= 0x01
    return {**out, "data": bytes(data)}


@pytest.fixture
async def peer(cluster: Cluster) -> AsyncIterator[tuple[Coordinator, Peer]]:
    coordinator = cluster.coordinator()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield coordinator, Peer(session, coordinator.url, coordinator)


async def test_a_lying_worker_is_outvoted_and_unpaid(peer: tuple[Coordinator, Peer]) -> None:
    coordinator, p = peer
    submitter = SigningKey.generate()
    job_id = await p.submit(submitter, TINY_JOB, tasks=1, replicas=2, price=10)
    liar, honest, third = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    lied_on, honest_lease = await p.lease(liar), await p.lease(honest)
    assert (await p.report(liar, lied_on, lie(lied_on)))["status"] == "accepted"
    assert (await p.report(honest, honest_lease))["status"] == "accepted"
    # One against one: no quorum, so the coordinator asks a third worker instead of guessing.
    assert coordinator.api.job(job_id)["state"] == "running"
    tiebreak = await p.lease(third)
    assert tiebreak["task"] == honest_lease["task"]
    assert (await p.report(third, tiebreak))["status"] == "accepted"

    job = coordinator.api.job(job_id)
    assert (job["state"], job["tasks_validated"]) == ("done", 1)
    workers = coordinator.api.workers()
    assert (workers[liar.id]["balance"], workers[liar.id]["tasks_validated"], workers[liar.id]["tasks_rejected"]) \
        == (0, 0, 1)
    for key in (honest, third):
        assert (workers[key.id]["balance"], workers[key.id]["tasks_validated"]) == (10, 1)
    assert sorted(e["to"] for e in coordinator.api.rewards()) == sorted([honest.id, third.id])
    # The submitter paid for two validated results; the rest of the escrow (the tie-break did not cost extra) is back.
    check_escrow(coordinator.api.ledger(), coordinator.api.job(job_id))
    assert coordinator.api.balance(submitter.id) == job["max_cost"] - 2 * 10
    status, answer = await p.result(submitter, job_id)
    assert status == 200, answer
    image = codec.array_from_wire(answer["output"])
    assert np.array_equal(image, cref.python_reference(**TINY_JOB))
    # The liar's late second opinion changes nothing.
    assert (await p.report(liar, lied_on, honest_output(lied_on)))["status"] == "rejected"
    assert len(coordinator.api.rewards()) == 2


async def test_no_agreement_within_max_results_fails_the_job(peer: tuple[Coordinator, Peer], cluster: Cluster) -> None:
    coordinator, p = peer
    from depin.crypto import load_or_create_key

    submitter = load_or_create_key(cluster.home / "key")  # the CLI's key: `depin result` below asks as the submitter
    job_id = await p.submit(submitter, TINY_JOB, tasks=1, replicas=2, max_results=2)
    a, b = SigningKey.generate(), SigningKey.generate()
    ga, gb = await p.lease(a), await p.lease(b)
    await p.report(a, ga, lie(ga))
    await p.report(b, gb)
    job = coordinator.api.job(job_id)
    assert job["state"] == "failed" and job["error"], job
    assert coordinator.api.rewards() == []
    # Nothing was validated, so the whole escrow went back to the submitter.
    check_escrow(coordinator.api.ledger(), job)
    assert coordinator.api.balance(submitter.id) == job["max_cost"] == 1 * 2 * 10
    # Nobody can tell who was wrong, so nobody is judged either way.
    for key in (a, b):
        w = coordinator.api.workers()[key.id]
        assert (w["balance"], w["tasks_validated"], w["tasks_rejected"]) == (0, 0, 0)
    status, answer = await p.post("/v1/lease", SigningKey.generate(), "lease-request",
                                  {"max_tasks": 4, "wait_ms": 0, "kernels": ["mandelbrot@1"], **fresh()})
    assert (status, answer["leases"]) == (200, [])
    waited = cluster.cli("wait", "--coordinator", coordinator.url, job_id)
    assert waited.returncode == 1
    result = cluster.cli("result", "--coordinator", coordinator.url, job_id, "-o", str(cluster.root / "x.npy"))
    assert result.returncode == 2 and result.stderr.startswith("depin: error:"), result.stderr
    assert "failed" in result.stderr and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(("bad", "reason"), [
    (lambda g: {**honest_output(g), "shape": [1, 1], "data": b"\x00" * 4}, "malformed output"),
    (lambda g: {**honest_output(g), "dtype": "float32"}, "malformed output"),
    (lambda g: {**honest_output(g), "data": honest_output(g)["data"][:-4]}, "malformed output"),
    (lambda g: {"dtype": "uint32", "shape": [1], "data": b"\x00" * 4, "extra": 1}, "malformed output"),
], ids=["wrong-shape", "wrong-dtype", "short-data", "extra-key"])
async def test_a_malformed_output_is_rejected_and_counted(peer: tuple[Coordinator, Peer], bad: Any,
                                                          reason: str) -> None:
    coordinator, p = peer
    job_id = await p.submit(SigningKey.generate(), TINY_JOB, tasks=1, replicas=2)
    mallory = SigningKey.generate()
    grant = await p.lease(mallory)
    ack = await p.report(mallory, grant, bad(grant))
    assert ack["status"] == "rejected" and reason in ack["reason"], ack
    assert coordinator.api.workers()[mallory.id]["tasks_rejected"] == 1
    assert coordinator.api.rewards() == []
    # The task still gets its two honest results from others and validates.
    for _ in range(2):
        key = SigningKey.generate()
        assert (await p.report(key, await p.lease(key)))["status"] == "accepted"
    assert coordinator.api.job(job_id)["state"] == "done"
    assert mallory.id not in {e["to"] for e in coordinator.api.ledger()}


async def test_resent_and_misaddressed_results(peer: tuple[Coordinator, Peer]) -> None:
    coordinator, p = peer
    await p.submit(SigningKey.generate(), TINY_JOB, tasks=2, replicas=2)
    alice = SigningKey.generate()
    grant = await p.lease(alice)
    assert (await p.report(alice, grant))["status"] == "accepted"
    # Resending the same result (a lost ack) is answered "duplicate" and changes nothing.
    again = await p.report(alice, grant)
    assert again["status"] == "duplicate", again
    changed = await p.report(alice, grant, lie(grant))
    assert changed["status"] == "rejected" and "different result" in changed["reason"], changed
    # A result whose task_id is not the lease's task.
    other = await p.lease(alice)
    task = codec.decode(grant["task"])
    status, answer = await p.post("/v1/results", alice, "results", {"results": [
        {"lease_id": other["lease_id"], "task_id": task["task_id"], "output": honest_output(other),
         "elapsed_ms": 1}], **fresh()})
    assert status == 200
    [item] = open_envelope("results-ack", answer)[1]["acks"]
    assert item["status"] == "rejected" and "task_id" in item["reason"], item
    # A lease given back cannot be reported on afterwards.
    status, _ = await p.post("/v1/release", alice, "release", {"lease_ids": [other["lease_id"]], **fresh()})
    assert status == 200
    gone = await p.report(alice, other)
    assert gone["status"] == "rejected" and "given back" in gone["reason"], gone
    # An unknown lease.
    fake = {**other, "lease_id": "feedfacefeedface"}
    assert (await p.report(alice, fake))["status"] == "rejected"
    assert coordinator.api.rewards() == []
    w = coordinator.api.workers()[alice.id]
    assert (w["balance"], w["tasks_validated"]) == (0, 0)
