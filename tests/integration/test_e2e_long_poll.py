"""Long polls woken as many as there is work for (coordinator.waiters, PROTOCOL.md 7.2), on a live coordinator.

The coordinator wakes only as many waiting lease requests as a change made slots for, oldest first. A woken request
that may not take the slot passes the wake on: this checks that the slot still reaches the one waiting worker that
can take it, inside that worker's single long poll.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from depin.crypto import SigningKey, open_envelope
from tests.integration.peer import TINY_JOB, Peer, lease_payload, results_payload
from tests.integration.support import Cluster


async def test_a_slot_the_oldest_waiter_may_not_take_reaches_a_later_waiter_within_its_long_poll(
        cluster: Cluster) -> None:
    coordinator = cluster.coordinator(lease_timeout=2.0)
    submitter, a, b, c = (SigningKey.generate() for _ in range(4))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        peer = Peer(session, coordinator.url, coordinator)
        await peer.submit(submitter, TINY_JOB, tasks=1, replicas=2)
        grant_a = await peer.lease(a)  # the first slot
        grant_c = await peer.lease(c)  # the second: c was the only one who could be drawn; it never answers
        status, answer = await peer.post("/v1/results", a, "results", results_payload(grant_a))
        assert status == 200 and open_envelope("results-ack", answer)[1]["acks"][0]["status"] == "accepted"
        # a waits first (the oldest waiter) but holds the task; b waits after it. When c's lease expires, one slot
        # is freed: the wake goes to a, which may not take it, and must reach b.
        polls = [asyncio.create_task(peer.post("/v1/lease", a, "lease-request", lease_payload(wait_ms=5_000)))]
        await asyncio.sleep(0.3)
        polls.append(asyncio.create_task(peer.post("/v1/lease", b, "lease-request", lease_payload(wait_ms=30_000))))
        first, _ = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
        # b's poll answers first, with the lease: had the wake stopped at a, b would have got it only when its own
        # poll ran out (after a's shorter one).
        assert first == {polls[1]}
        status_b, answer_b = await polls[1]
        assert status_b == 200 and len(answer_b["leases"]) == 1, answer_b
        assert answer_b["leases"][0]["task"] == grant_c["task"]  # the task c abandoned
        status_a, answer_a = await polls[0]  # a's poll runs out with nothing
        assert status_a == 200 and answer_a["leases"] == []


async def test_a_read_of_a_job_waits_until_the_job_changes(cluster: Cluster) -> None:
    """GET /v1/jobs/{id}?wait_ms=..&since=.. (PROTOCOL.md 7.7): answered at once when the job is no longer at
    `since`, else when it changes; malformed values are refused."""
    coordinator = cluster.coordinator()
    submitter, a = SigningKey.generate(), SigningKey.generate()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        peer = Peer(session, coordinator.url, coordinator)
        job_id = await peer.submit(submitter, TINY_JOB, tasks=1, replicas=2)

        async def read(query: str = "") -> tuple[int, dict[str, Any]]:
            async with session.get(f"{coordinator.url}/v1/jobs/{job_id}{query}") as resp:
                return resp.status, await resp.json()

        _, job = await read()
        version = job["version"]
        _, stale = await read(f"?wait_ms=30000&since={version - 1}")  # not the job's version: the job as it is
        assert stale["version"] == version and stale["lease_states"] == {}
        waiting = asyncio.create_task(read(f"?wait_ms=30000&since={version}"))
        await peer.lease(a)  # the job changes: one of its tasks is leased
        status, changed = await waiting  # had the lease not woken the read, it would answer after 30 s, unchanged
        assert status == 200 and changed["version"] != version and changed["lease_states"] == {"active": 1}
        for bad in ("?wait_ms=soon&since=1", "?wait_ms=-1&since=1", "?wait_ms=10&since=x"):
            status, answer = await read(bad)
            assert status == 400 and "query parameter" in answer["error"], (bad, answer)
