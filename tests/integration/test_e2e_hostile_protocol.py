"""Hostile requests against a live coordinator, speaking the real protocol from the test process.

Each is refused with the documented status and a reason, nothing refused is credited (or granted, or escrowed),
and the coordinator goes on serving honest requests afterwards.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest

from depin import codec
from depin.crypto import SigningKey, open_envelope
from tests.integration.peer import LEASE_LIMIT, TINY_JOB, Peer, fresh, honest_output, lease_payload, results_payload
from tests.integration.support import Cluster, Coordinator


@pytest.fixture
async def live(cluster: Cluster) -> AsyncIterator[tuple[Coordinator, Peer, str]]:
    """A coordinator (no workers) with one two-task job, funded by a grant of exactly its max cost, and a raw peer to
    attack it."""
    coordinator = cluster.coordinator()
    submitter = SigningKey.generate()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        peer = Peer(session, coordinator.url, coordinator)
        await peer.grant(submitter.id, 2 * 5 * 10)  # 2 tasks x max_results 5 (replicas + 3) x price 10
        status, answer = await peer.post("/v1/jobs", submitter, "submit", {
            "kernel": "mandelbrot", "params": TINY_JOB, "tasks": 2, "replicas": 2, "max_results": None, "price": 10,
            **fresh()})
        assert status == 200, answer
        yield coordinator, peer, answer["job_id"]


def assert_nothing_credited(coordinator: Coordinator, job_id: str) -> None:
    api = coordinator.api
    # Only the fixture's grant and the job's escrow: no reward, and the escrow still holds the whole max cost.
    assert [e["kind"] for e in api.ledger()] == ["grant", "escrow"]
    assert api.status()["ledger"]["entries"] == 2
    assert api.job(job_id)["escrow"] == api.job(job_id)["max_cost"] == 100
    for w in api.workers().values():
        assert (w["balance"], w["tasks_validated"]) == (0, 0), w
    job = api.job(job_id)
    assert (job["state"], job["tasks_validated"]) in (("queued", 0), ("running", 0)), job


async def test_forged_signature_is_401_and_registers_nobody(live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    mallory = SigningKey.generate()
    envelope = mallory.seal("lease-request", lease_payload())
    sig = bytearray(envelope["sig"])
    sig[10] ^= 0x01
    status, answer = await peer.post_bytes("/v1/lease", codec.encode({**envelope, "sig": bytes(sig)}))
    assert status == 401, answer
    assert "signature" in answer["error"]
    # A valid signature over different bytes (a tampered payload) is the same forgery.
    body = bytearray(envelope["payload"])
    body[-1] ^= 0x01
    status, answer = await peer.post_bytes("/v1/lease", codec.encode({**envelope, "payload": bytes(body)}))
    assert status == 401, answer
    # A genuine signature made for another kind of message does not verify as this one (domain separation).
    other_kind = mallory.seal("release", lease_payload())
    status, answer = await peer.post_bytes("/v1/lease", codec.encode(other_kind))
    assert status == 401, answer
    assert mallory.id not in coordinator.api.workers()
    assert coordinator.api.status()["active_leases"] == 0
    assert_nothing_credited(coordinator, job_id)


async def test_replayed_results_envelope_is_refused(live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    alice = SigningKey.generate()
    grant = await peer.lease(alice)
    body = codec.encode(alice.seal("results", results_payload(grant)))
    status, answer = await peer.post_bytes("/v1/results", body)
    assert status == 200, answer
    _, ack = open_envelope("results-ack", answer)
    assert [a["status"] for a in ack["acks"]] == ["accepted"]
    status, answer = await peer.post_bytes("/v1/results", body)  # the exact same bytes again
    assert status == 409, answer
    assert "replayed" in answer["error"]
    # The same nonce under a fresh signature over a new payload is a replay too.
    payload = codec.decode(codec.decode(body)["payload"])
    payload["results"][0]["elapsed_ms"] = 2
    status, answer = await peer.post("/v1/results", alice, "results", payload)
    assert status == 409 and "replayed" in answer["error"], answer
    # One honest result is not a quorum of two: nothing paid.
    assert_nothing_credited(coordinator, job_id)


async def test_result_for_someone_elses_lease_is_rejected_unpaid(live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    alice, bob = SigningKey.generate(), SigningKey.generate()
    grant = await peer.lease(alice)
    status, answer = await peer.post("/v1/results", bob, "results", results_payload(grant))
    assert status == 200, answer
    signer, ack = open_envelope("results-ack", answer)
    assert signer.raw.hex() == coordinator.api.info()["public_key"]
    assert ack["worker_id"] == bob.id
    [item] = ack["acks"]
    assert item["lease_id"] == grant["lease_id"]
    assert item["status"] == "rejected"
    assert "another worker" in item["reason"]
    # Bob's result on a lease of his own is accepted; one result is no quorum, so still nobody is paid.
    bobs = await peer.lease(bob)
    status, answer = await peer.post("/v1/results", bob, "results", results_payload(bobs))
    assert status == 200
    assert [a["status"] for a in open_envelope("results-ack", answer)[1]["acks"]] == ["accepted"]
    assert_nothing_credited(coordinator, job_id)
    # Alice's own result for her lease is still welcome: the impostor did not spoil it. If Bob's lease was on the
    # same task, the two agree and each is paid once; Bob is never paid for the result sent on Alice's lease.
    status, answer = await peer.post("/v1/results", alice, "results", results_payload(grant))
    assert status == 200
    assert [a["status"] for a in open_envelope("results-ack", answer)[1]["acks"]] == ["accepted"]
    pairs = [(e["task_id"], e["to"]) for e in coordinator.api.rewards()]
    assert len(pairs) == len(set(pairs))
    assert len([p for p in pairs if p[1] == bob.id]) <= 1


@pytest.mark.parametrize("body", [b"\xc1", b"\x83\xa3key", b"\x92\x01", b"not msgpack at all \xff\xfe"],
                         ids=["reserved-byte", "truncated-map", "truncated-array", "garbage"])
@pytest.mark.parametrize("path", ["/v1/lease", "/v1/results", "/v1/jobs"])
async def test_malformed_msgpack_is_400(live: tuple[Coordinator, Peer, str], path: str, body: bytes) -> None:
    coordinator, peer, job_id = live
    status, answer = await peer.post_bytes(path, body)
    assert status == 400, answer
    assert answer["error"]
    assert_nothing_credited(coordinator, job_id)


async def test_body_over_the_endpoint_limit_is_413(live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    status, answer = await peer.post_bytes("/v1/lease", b"\x00" * (LEASE_LIMIT + 1))
    assert status == 413, answer

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while streaming too
        for _ in range(LEASE_LIMIT // 4096 + 2):
            yield b"\x00" * 4096

    status, answer = await peer.post_bytes("/v1/lease", chunks())
    assert status == 413, answer
    # Just under the limit is read (and refused for what it is, not for its size).
    status, answer = await peer.post_bytes("/v1/lease", b"\x00" * LEASE_LIMIT)
    assert status == 400, answer
    assert_nothing_credited(coordinator, job_id)


@pytest.mark.parametrize("skew_ms", [-10 * 60_000, 10 * 60_000], ids=["stale", "future"])
async def test_timestamp_outside_the_window_is_409(live: tuple[Coordinator, Peer, str], skew_ms: int) -> None:
    coordinator, peer, job_id = live
    alice = SigningKey.generate()
    payload = lease_payload(ts=int(time.time() * 1000) + skew_ms)
    status, answer = await peer.post("/v1/lease", alice, "lease-request", payload)
    assert status == 409, answer
    assert "timestamp" in answer["error"]
    grant = await peer.lease(alice)
    payload = results_payload(grant)
    payload["ts"] += skew_ms
    status, answer = await peer.post("/v1/results", alice, "results", payload)
    assert status == 409, answer
    assert_nothing_credited(coordinator, job_id)


@pytest.mark.parametrize(("path", "kind", "drop", "where"), [
    ("/v1/lease", "lease-request", "wait_ms", "wait_ms"),
    ("/v1/lease", "lease-request", "nonce", "nonce"),
    ("/v1/results", "results", "results[0].elapsed_ms", "results[0].elapsed_ms"),
    ("/v1/results", "results", "results[0].output", "results[0].output"),
    ("/v1/jobs", "submit", "price", "price"),
])
async def test_missing_field_is_400_naming_it(live: tuple[Coordinator, Peer, str], path: str, kind: str, drop: str,
                                              where: str) -> None:
    coordinator, peer, job_id = live
    alice = SigningKey.generate()
    if kind == "lease-request":
        payload = lease_payload()
    elif kind == "results":
        payload = results_payload(await peer.lease(alice))
    else:
        payload = {"kernel": "mandelbrot", "params": TINY_JOB, "tasks": 2, "replicas": 2, "max_results": None,
                   "price": 10, **fresh()}
    if drop.startswith("results[0]."):
        del payload["results"][0][drop.split(".", 1)[1]]
    else:
        del payload[drop]
    status, answer = await peer.post(path, alice, kind, payload)
    assert status == 400, answer
    assert where in answer["error"], answer
    assert "missing" in answer["error"], answer
    assert_nothing_credited(coordinator, job_id)


async def test_coordinator_still_serves_after_every_kind_of_abuse(live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    alice, bob = SigningKey.generate(), SigningKey.generate()
    grant = await peer.lease(alice)
    abuse = [
        ("/v1/results", b"\xc1"),
        ("/v1/lease", b"\x00" * (LEASE_LIMIT + 1)),
        ("/v1/results", codec.encode(bob.seal("results", results_payload(grant)))),
        ("/v1/results", codec.encode({"key": b"short", "payload": b"", "sig": b""})),
        ("/v1/results", codec.encode([1, 2, 3])),
        ("/v1/results", codec.encode({**alice.seal("results", results_payload(grant)), "sig": b"\x00" * 64})),
    ]
    for path, body in abuse:
        status, _ = await peer.post_bytes(path, body)
        assert status in (200, 400, 401, 409, 413), (path, status)
    assert coordinator.proc.alive()
    # Honest traffic still works: both replicas of one task arrive, the task validates, exactly two rewards.
    carol = SigningKey.generate()
    status, answer = await peer.post("/v1/lease", carol, "lease-request", {**lease_payload(), "max_tasks": 2})
    assert status == 200, answer
    # The task Alice holds still wants a second replica, drawn for Carol, the only other worker present (she may
    # also get the job's other task: a walk starts at a random task).
    [carols] = [g for g in answer["leases"] if g["task"] == grant["task"]]
    for key, g in ((alice, grant), (carol, carols)):
        status, answer = await peer.post("/v1/results", key, "results", results_payload(g))
        assert status == 200, answer
        assert [a["status"] for a in open_envelope("results-ack", answer)[1]["acks"]] == ["accepted"]
    rewards = coordinator.api.rewards()
    assert sorted(e["to"] for e in rewards) == sorted([alice.id, carol.id])
    assert {e["amount"] for e in rewards} == {10}
    assert coordinator.api.job(job_id)["tasks_validated"] == 1
    assert np.array_equal(np.frombuffer(honest_output(grant)["data"], "<u4"),
                          np.frombuffer(honest_output(carols)["data"], "<u4"))


async def test_too_many_requests_from_one_key_is_429_and_costs_nothing(cluster: Cluster) -> None:
    # A coordinator allowing 2 signed requests a second per key (bursts of 4): a fifth request at once is refused.
    coordinator = cluster.coordinator("limited", extra=("--rate-per-key", "2"))
    flooder, other = SigningKey.generate(), SigningKey.generate()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        peer = Peer(session, coordinator.url)
        statuses = []
        for _ in range(8):
            status, answer = await peer.post("/v1/lease", flooder, "lease-request", lease_payload(wait_ms=0))
            statuses.append(status)
            if status == 429:
                assert "too many requests from this key" in answer["error"], answer
        assert statuses[:4] == [200] * 4 and 429 in statuses[4:], statuses
        # Another key is not affected, and the refused requests registered nothing beyond the flooder itself.
        status, _ = await peer.post("/v1/lease", other, "lease-request", lease_payload(wait_ms=0))
        assert status == 200
    assert coordinator.api.ledger() == []


# ---- the market's signed requests: only the operator grants, only the submitter fetches or cancels -------------


async def test_only_the_coordinators_key_can_grant(live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    mallory = SigningKey.generate()
    status, answer = await peer.post("/v1/grants", mallory, "grant", {"account": mallory.id, "amount": 10**6,
                                                                       **fresh()})
    assert status == 403, answer
    assert "coordinator's key" in answer["error"], answer
    # The operator's genuine grant, replayed byte for byte, is refused as a replay and mints nothing twice.
    body = codec.encode(coordinator.key.seal("grant", {"account": mallory.id, "amount": 7, **fresh()}))
    status, answer = await peer.post_bytes("/v1/grants", body)
    assert status == 200 and (answer["account"], answer["amount"], answer["balance"]) == (mallory.id, 7, 7), answer
    status, answer = await peer.post_bytes("/v1/grants", body)
    assert status == 409 and "replayed" in answer["error"], answer
    # Malformed grants: not a party id, a zero amount, an amount past 2^53-1.
    for payload, where in (({"account": "escrow:" + job_id, "amount": 5}, "account"),
                           ({"account": mallory.id, "amount": 0}, "amount"),
                           ({"account": mallory.id, "amount": 2**53}, "amount")):
        status, answer = await peer.post("/v1/grants", coordinator.key, "grant", {**payload, **fresh()})
        assert status == 400 and where in answer["error"], (payload, answer)
    entries = coordinator.api.ledger()
    assert [(e["kind"], e["to"], e["amount"]) for e in entries[2:]] == [("grant", mallory.id, 7)]
    assert coordinator.api.status()["ledger"]["minted"] == 100 + 7


async def test_only_the_submitter_fetches_or_cancels_its_job(live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    mallory = SigningKey.generate()
    status, answer = await peer.result(mallory, job_id)
    assert status == 403 and "submitter" in answer["error"], answer
    status, answer = await peer.post(f"/v1/jobs/{job_id}/cancel", mallory, "cancel", {"job_id": job_id, **fresh()})
    assert status == 403 and "submitter" in answer["error"], answer
    # The unsigned read of a result is gone: a result is the submitter's.
    async with peer.session.get(f"{peer.url}/v1/jobs/{job_id}/result") as resp:
        assert resp.status == 405, resp.status
    # A signed request for another job than the URL names.
    status, answer = await peer.post(f"/v1/jobs/{job_id}/result", mallory, "result-request",
                                     {"job_id": "0123456789abcdef", **fresh()})
    assert status == 400 and "job_id" in answer["error"], answer
    assert coordinator.api.job(job_id)["state"] == "queued"
    assert_nothing_credited(coordinator, job_id)


async def test_a_submit_the_account_cannot_cover_is_402_and_creates_nothing(
        live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    poor = SigningKey.generate()
    await peer.grant(poor.id, 99)  # one credit short of 2 tasks x 5 results x 10
    payload = {"kernel": "mandelbrot", "params": TINY_JOB, "tasks": 2, "replicas": 2, "max_results": None,
               "price": 10, **fresh()}
    status, answer = await peer.post("/v1/jobs", poor, "submit", payload)
    assert status == 402, answer
    assert answer["error"].startswith("insufficient funds"), answer
    assert "100" in answer["error"] and "99" in answer["error"], answer
    assert [j["job_id"] for j in coordinator.api.get("/v1/jobs")["jobs"]] == [job_id]
    assert coordinator.api.balance(poor.id) == 99
    assert [e["kind"] for e in coordinator.api.ledger()] == ["grant", "escrow", "grant"]


async def test_a_lease_request_with_a_minimum_price_above_every_job_gets_nothing(
        live: tuple[Coordinator, Peer, str]) -> None:
    coordinator, peer, job_id = live
    picky = SigningKey.generate()
    status, answer = await peer.post("/v1/lease", picky, "lease-request", lease_payload(min_price=11))
    assert (status, answer) == (200, {"leases": []}), answer
    assert coordinator.api.workers()[picky.id]["min_price"] == 11
    status, answer = await peer.post("/v1/lease", picky, "lease-request", lease_payload(min_price=2**40))
    assert status == 400 and "min_price" in answer["error"], answer
    # At the job's own price it is served, and the signed task says what it pays.
    status, answer = await peer.post("/v1/lease", picky, "lease-request", lease_payload(min_price=10))
    assert status == 200 and len(answer["leases"]) == 1, answer
    assert codec.decode(answer["leases"][0]["task"])["price"] == 10
    assert_nothing_credited(coordinator, job_id)
