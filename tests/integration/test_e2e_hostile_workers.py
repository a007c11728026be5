"""Hostile workers next to trusted honest ones, on a live cluster (tests/integration/hostile.py runs them).

One scenario runs once for the module: 10 honest `depin worker` processes earn trust on warm-up jobs; then
(a) a random, a lazy, a copier, a replayer and an abandoner join (5 of 15 identities) while measured jobs run, and
(b) three colluders join (3 of 13). The tests below check the outcome: no wrong result accepted, nobody hostile
paid, every worker that only sends wrong results banned, every replayed envelope refused, and the trusted honest
workers still running most of their tasks alone. Focused tests with raw protocol peers follow, for what the
simulation surfaced: a worker banned in the middle of a batch (fixed since, kept as a regression test), a task an
abandoner let expire reaching waiting workers at once (fixed since, kept as a regression test). A trusted worker
that turns after earning trust (once an xfail here) is now caught by audits: its single results need a bond and are
audited, and a conviction corrects the task, slashes and re-audits (tests/coordinator/test_scheduler_attacks.py;
bench_hostile scenario d and benchmarks/sim_audits.py measure it; results in jobs that ended before the conviction
stay as they are, PROTOCOL.md 12.6).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from depin import codec
from depin.crypto import SigningKey, open_envelope
from tests.integration.hostile import WRONG_ONLY, Phase, PhaseOutcome, Scenario, ScenarioOutcome, run_scenario
from tests.integration.peer import TINY_JOB, Peer, fresh, honest_output
from tests.integration.support import Cluster, Coordinator, read_db, wait_until

SCENARIO = Scenario(
    name="hostile",
    honest=10,
    phases=(
        Phase("a: 33% mixed", ("random", "lazy", "copier", "replayer", "abandoner"), jobs=2, tasks=120),
        Phase("b: 23% colluders", ("colluder",) * 3, jobs=2, tasks=120),
    ),
)


@pytest.fixture(scope="module")
def outcome(module_cluster: Cluster) -> ScenarioOutcome:
    return run_scenario(module_cluster, SCENARIO, say=print)


def phases(outcome: ScenarioOutcome) -> list[PhaseOutcome]:
    assert [p.name for p in outcome.phases] == [p.name for p in SCENARIO.phases]
    return outcome.phases


def test_the_honest_workers_are_trusted_before_the_hostile_ones_arrive(outcome: ScenarioOutcome) -> None:
    assert outcome.warmup.trusted == SCENARIO.honest
    for ph in phases(outcome):
        assert ph.honest_trusted_after == SCENARIO.honest, ph.name
        assert ph.honest_banned == [], ph.name
        assert ph.crashed == [], ph.crashed
        assert ph.coordinator_alive


def test_no_wrong_result_is_accepted(outcome: ScenarioOutcome) -> None:
    for ph in phases(outcome):
        assert ph.done_jobs >= 1, f"{ph.name}: no job ended done, so nothing was checked: {ph.jobs}"
        assert ph.validated >= ph.done_jobs * min(j["tasks_total"] for j in ph.jobs)
        assert ph.wrong_jobs == [], f"{ph.name}: done jobs differ from the reference: {ph.wrong_jobs}"
        assert ph.wrong_tasks == [], f"{ph.name}: validated tasks differ from the reference: {ph.wrong_tasks}"


def test_no_hostile_identity_is_credited(outcome: ScenarioOutcome) -> None:
    assert outcome.ledger_ok.startswith("ok"), outcome.ledger_ok
    for ph in phases(outcome):
        assert ph.hostile_ids and (ph.hostile_rewards, ph.hostile_credits) == ([], 0), ph.name
        # They did try: their results were recorded and judged, not just ignored.
        assert ph.results["hostile"] > 0, ph.name


def test_every_worker_that_only_sends_wrong_results_is_banned(outcome: ScenarioOutcome) -> None:
    for ph in phases(outcome):
        for s in ph.seen:
            if s.kind in WRONG_ONLY:
                assert s.results > 0, f"{ph.name}: the {s.kind} never got a task"
                assert s.banned is not None and s.ban_reason is not None, f"{ph.name}: {s.kind} not banned: {s}"
                assert s.ban_reason.startswith("worker banned: "), s.ban_reason


def test_replayed_results_envelopes_are_refused_with_409(outcome: ScenarioOutcome) -> None:
    [replayer] = [s for ph in phases(outcome) for s in ph.seen if s.kind == "replayer"]
    assert replayer.replays > 0
    assert replayer.replays_refused == replayer.replays, dict(replayer.replay_answers)
    assert all("replayed" in answer for answer in replayer.replay_answers), dict(replayer.replay_answers)


def test_trusted_honest_workers_run_most_of_their_tasks_single(outcome: ScenarioOutcome) -> None:
    for ph in phases(outcome):
        assert ph.honest_single_share() > 0.5, (ph.name, ph.honest_single)


# ---- focused: what the simulation surfaced --------------------------------------------------------------------
# The first was a bug at commit a3eb6aa (the banned worker was paid); it is fixed in the working tree since
# (Scheduler.report checks the ban before every item of a batch), and the test stays as its regression test.


@pytest.fixture
async def short_leases(cluster: Cluster) -> AsyncIterator[tuple[Coordinator, Peer]]:
    coordinator = cluster.coordinator(lease_timeout=1.0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield coordinator, Peer(session, coordinator.url, coordinator)  # its submits are funded by grants


async def lease(p: Peer, key: SigningKey, max_tasks: int = 1, wait_ms: int = 0) -> list[dict[str, Any]]:
    status, answer = await p.post("/v1/lease", key, "lease-request",
                                  {"max_tasks": max_tasks, "wait_ms": wait_ms, "kernels": ["mandelbrot@1"], **fresh()})
    assert status == 200, answer
    return list(answer["leases"])


async def test_a_worker_banned_in_the_middle_of_a_batch_is_not_paid_for_the_rest_of_it(
        short_leases: tuple[Coordinator, Peer]) -> None:
    coordinator, p = short_leases
    job_id = await p.submit(SigningKey.generate(), TINY_JOB, tasks=4, replicas=2)
    mallory = SigningKey.generate()
    # A new identity holds one or two leases at a time (its capacity, PROTOCOL.md 12.1), and a lease that expired
    # no longer counts against it while a late result on it still counts: mallory collects three expired leases
    # and one active one, on four distinct tasks.
    state = "SELECT state FROM leases WHERE lease_id = ?"
    held = []
    for _ in range(3):
        [g] = await lease(p, mallory)
        held.append(g)
        wait_until(lambda g=g: read_db(coordinator.db, state, (g["lease_id"],)) == [("expired",)],
                   "mallory's lease to expire", 30)
    [last] = await lease(p, mallory)
    assert len({codec.decode(g["task"])["task_id"] for g in [*held, last]}) == 4
    # Three malformed results ban mallory; the fourth item, a correct result, comes after.
    items = [{"lease_id": g["lease_id"], "task_id": codec.decode(g["task"])["task_id"],
              "output": {"dtype": "uint32", "shape": [1], "data": b"\0" * 4}, "elapsed_ms": 1} for g in held]
    items.append({"lease_id": last["lease_id"], "task_id": codec.decode(last["task"])["task_id"],
                  "output": honest_output(last), "elapsed_ms": 1})
    status, answer = await p.post("/v1/results", mallory, "results", {"results": items, **fresh()})
    assert status == 200, answer
    acks = open_envelope("results-ack", answer)[1]["acks"]
    assert [a["status"] for a in acks] == ["rejected"] * 4, acks
    assert acks[3]["reason"].startswith("worker banned: "), acks[3]
    workers = coordinator.api.workers()
    assert workers[mallory.id]["banned"], workers[mallory.id]
    assert (workers[mallory.id]["balance"], workers[mallory.id]["tasks_validated"]) == (0, 0), workers[mallory.id]
    # The job is still done, by honest workers only, and mallory is never paid.
    honest = [SigningKey.generate() for _ in range(3)]
    deadline = time.monotonic() + 60  # leases last 1 s: a loaded machine may let some expire and be taken again
    while coordinator.api.job(job_id)["state"] != "done" and time.monotonic() < deadline:
        for key in honest:
            for g in await lease(p, key, max_tasks=2):
                assert (await p.report(key, g))["status"] in ("accepted", "rejected")
    assert coordinator.api.job(job_id)["state"] == "done", coordinator.api.job(job_id)
    assert mallory.id not in {e["to"] for e in coordinator.api.ledger()}
    assert {e["to"] for e in coordinator.api.rewards()} <= {k.id for k in honest}


async def test_a_task_abandoned_by_a_hostile_worker_is_offered_at_once_to_workers_waiting_for_work(
        short_leases: tuple[Coordinator, Peer]) -> None:
    _, p = short_leases
    wait_ms = 5000
    late = []
    for _ in range(2):  # two rounds: the expiry tick can only win both races by luck
        await p.submit(SigningKey.generate(), TINY_JOB, tasks=1, replicas=1)
        abandoner, waiting = SigningKey.generate(), SigningKey.generate()
        [held] = await lease(p, abandoner)
        poll = asyncio.ensure_future(lease(p, waiting, wait_ms=wait_ms))
        asked_ms = int(time.time() * 1000)
        # The abandoner asks for work again right as its lease runs out; it cannot have the same task back.
        expires_ms = held["expires_ms"]
        await asyncio.sleep(max(0.0, (expires_ms - 30) / 1000 - time.time()))
        while time.time() * 1000 < expires_ms + 200:
            assert await lease(p, abandoner) == []
        [grant] = await poll
        assert (await p.report(waiting, grant))["status"] == "accepted"  # the job ends; the next round starts clean
        issued_ms = grant["expires_ms"] - 1000
        # Granted because the task became leasable, or only because the long poll ran out?
        late.append(issued_ms - asked_ms >= wait_ms - 100)
    assert late == [False, False], f"the waiting worker was served only when its own wait ran out: {late}"


