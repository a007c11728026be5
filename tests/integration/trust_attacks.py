"""Attacks on the cross-check (issue 9), as real protocol clients next to real `depin worker` processes; shared by
the integration test (tests/integration/test_e2e_trust_attacks.py) and the benchmark (benchmarks/bench_trust.py).

hostile.py's swarm sets independent hostile workers loose; the attacks here are scripted instead, because each
one depends on an order of moves (first lease, then second lease, then which report first). Every attacker is an
`Agent`: a fresh key speaking the real protocol through depin.client.Client on one background event loop (`Net`),
driven synchronously by the scenario, or repeatedly by a `Background` thread. Honest answers, the colluders' shared
wrong answers (`Collusion`) and the reference images come from hostile.py (the plain-Python reference).

    patient    identity C computes honestly until GET /v1/workers lists it trusted; a fresh Sybil P takes the first
               lease of every task of a victim job; C takes the second leases; on tasks both hold they return the
               same wrong band (elsewhere they stay honest, so neither is caught disagreeing)
    decoy      a submitter posts a job whose declared work bound is huge but whose points all escape at once, so
               honest trusted workers look "too fast" and lose their streaks; two fresh colluders then validate each
               other's wrong bands on a victim job
    newcomer   two colluders out-vote a fresh honest identity on three tasks: its third disagreement bans it
    kill       four throw-away identities send malformed results until a task passes max_errors
    stall      twenty rotating fresh identities lease every free slot (max_tasks 256) and abandon them
    minprice   trusted workers whose --min-price is above a job's price count as "a trusted worker could help", so
               untrusted honest workers are kept off the last quorum slot
    demo       no attacker: a `depin demo`-sized job on three honest workers, counting the too-fast flags

Each scenario function returns an `Outcome`: nothing here asserts, the test asserts and the benchmark prints.
Figures a fixer may add later (slashing, audit state, a job's waiting reason) are read defensively.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from depin import codec, protocol
from depin.client import Client, fresh
from depin.crypto import SigningKey, open_envelope
from depin.errors import DepinError, Forbidden, TooManyRequests
from tests.integration.hostile import JOB, KERNEL_KEY, Collusion, Seen, honest_band, reference_image
from tests.integration.support import (
    HONEST_BATCH,
    TERMINAL,
    Cluster,
    Coordinator,
    Worker,
    fetch_result,
    read_db,
    submit,
    wait_until,
)

T = TypeVar("T")

# Every point of this region escapes at the first iteration, while max_iter declares a million: the kernel's work
# bound (rows x width x max_iter) is a million times what the computation costs.
DECOY_JOB: dict[str, Any] = {"width": 40, "height": 24, "x_min": 50.0, "x_max": 60.0, "y_min": 50.0, "y_max": 60.0,
                             "max_iter": 1_000_000}
# Field names a coordinator might use for why a job's task is waiting (none exists at the time of writing).
WAITING_FIELDS = ("waiting", "waiting_reason", "waiting_for", "wait_reason", "blocked", "blocked_on", "stalled",
                  "reason")


# ---- the attackers' transport --------------------------------------------------------------------------------


class Net:
    """One event loop in a background thread and one HTTP client on it; every Agent of a scenario speaks through
    it. Use as a context manager."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.client: Client | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="attack-net", daemon=True)

    def __enter__(self) -> Net:
        self._thread.start()

        async def open_client() -> Client:
            return await Client(self.url, timeout_s=60.0).__aenter__()

        self.client = self.run(open_client())
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
        """Run `coro` on the loop and wait for its answer (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.run(self.client.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


@dataclass(frozen=True)
class Grant:
    """A lease as an attacker sees it."""

    lease_id: str
    expires_ms: int
    task_id: str
    params: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int]:
        return self.params["row_end"] - self.params["row_start"], self.params["width"]


Forge = Callable[[Grant], dict[str, Any]]


def honest(g: Grant) -> dict[str, Any]:
    """The correct band."""
    return codec.array_to_wire(honest_band(g.params, g.params["row_start"], g.params["row_end"]))


def malformed(g: Grant) -> dict[str, Any]:
    """An output of the wrong shape: an error result."""
    return codec.array_to_wire(np.zeros((1,), dtype=np.uint32))


def colluding(collusion: Collusion) -> Forge:
    """The colluders' shared wrong band (one pixel off, picked from the task id)."""
    return lambda g: codec.array_to_wire(collusion.answer(g.task_id, g.params))


class Agent:
    """One attacker identity with a fresh key, driven synchronously."""

    def __init__(self, net: Net, kind: str, *, min_price: int | None = None) -> None:
        self.net = net
        self.key = SigningKey.generate()
        self.seen = Seen(kind, self.key.id)
        self.min_price = min_price
        self.held: dict[str, Grant] = {}  # task id -> the lease it got on it
        self.reported: set[str] = set()  # lease ids it has answered

    @property
    def id(self) -> str:
        return self.key.id

    def lease(self, max_tasks: int = 256, wait_ms: int = 0) -> list[Grant]:
        """POST /v1/lease; the grants (raises Forbidden once banned)."""
        if self.seen.connected is None:
            self.seen.connected = time.monotonic()
        req = protocol.LeaseRequest(max_tasks=max_tasks, wait_ms=wait_ms, kernels=(KERNEL_KEY,),
                                    min_price=self.min_price)
        client = self.net.client
        assert client is not None
        try:
            answer = self.net.run(client.post_signed("/v1/lease", self.key, "lease-request", req.to_payload(),
                                                     read_timeout_s=wait_ms / 1000 + 15))
        except Forbidden as exc:
            self._banned(exc)
            raise
        grants = []
        for i, raw in enumerate(answer["leases"]):
            g = protocol.LeaseGrant.from_payload(raw, i)
            task = protocol.TaskMessage.from_payload(codec.decode(g.task))
            grants.append(Grant(g.lease_id, g.expires_ms, task.task_id, dict(task.params)))
        self.seen.leases += len(grants)
        self.held.update((g.task_id, g) for g in grants)
        return grants

    def report(self, grants: Sequence[Grant], forge: Forge) -> list[str]:
        """POST /v1/results with `forge`'s output for each grant, in order; the ack of each ("accepted",
        "rejected: <reason>", ...)."""
        if not grants:
            return []
        items = tuple(protocol.ResultItem(g.lease_id, g.task_id, forge(g), 1) for g in grants)
        if self.seen.first_result is None:
            self.seen.first_result = time.monotonic()
        client = self.net.client
        assert client is not None
        envelope = self.key.seal("results", {**protocol.ResultsRequest(items).to_payload(), **fresh()})
        try:
            answer = self.net.run(client.post("/v1/results", envelope))
        except Forbidden as exc:
            self._banned(exc)
            raise
        _, body = open_envelope("results-ack", answer)
        acks = [a.status if a.status != "rejected" else f"rejected: {a.reason}"
                for a in protocol.ResultsAck.from_payload(body).acks]
        self.seen.acks.update(acks)
        self.seen.results += len(items)
        self.reported.update(g.lease_id for g in grants)
        return acks

    def unreported(self) -> dict[str, Grant]:
        """Task id -> lease, for the leases it has not answered yet."""
        return {t: g for t, g in self.held.items() if g.lease_id not in self.reported}

    def _banned(self, exc: Forbidden) -> None:
        if self.seen.banned is None:
            self.seen.banned, self.seen.ban_reason = time.monotonic(), str(exc)


class Background:
    """Calls `step` over and over in a thread until stopped, the step returns False, or its agent is banned."""

    def __init__(self, step: Callable[[], bool | None], name: str = "attack") -> None:
        self.step = step
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.step() is False:
                    return
            except Forbidden:
                return
            except TooManyRequests:
                time.sleep(0.05)
            except (DepinError, TimeoutError, OSError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.2)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(30)


def honest_loop(agent: Agent, wait_ms: int = 500) -> Callable[[], None]:
    """A step that leases and reports honest bands, like a worker."""
    def step() -> None:
        agent.report(agent.lease(64, wait_ms), honest)
    return step


# ---- the outcome of an attack --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one attack did and what it got."""

    attack: str
    honest_ids: list[str]
    agents: list[Agent]
    jobs: list[dict[str, Any]]  # the victim jobs' last status (GET /v1/jobs/{id}); may not have ended
    wrong_bands: int  # tasks of done victim jobs whose band in the merged output differs from the reference
    wrong_accepted: int  # victim tasks whose canonical output was wrong when the victim jobs were first seen ended
    tasks: int
    results: int  # result rows recorded for the victim jobs
    replicas: int
    attacker_credits: int  # rewards to attacker ids, minus slashes from their bond accounts
    honest_banned: list[str]
    honest_too_fast: int  # too-fast flags the honest workers got during the attack
    seconds: float | None  # the victim job under attack, submission to end (None: did not end)
    baseline_seconds: float | None  # the same job with no attacker, same cluster
    stalled: int  # victim jobs not ended within the scenario's bound
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def attacker_ids(self) -> set[str]:
        return {a.id for a in self.agents}

    @property
    def failed(self) -> int:
        return sum(1 for j in self.jobs if j["state"] in ("failed", "cancelled"))

    def evidence(self) -> str:
        """What the attackers did, for failure messages: leases taken, results sent, acks."""
        kinds: dict[str, Counter[str]] = {}
        for a in self.agents:
            c = kinds.setdefault(a.seen.kind, Counter())
            c.update({"identities": 1, "leases": a.seen.leases, "results": a.seen.results,
                      "banned": a.seen.banned is not None})
            c.update(a.seen.acks)
        return "; ".join(f"{k}: " + ", ".join(f"{n} {what}" for what, n in c.items() if n) for k, c in kinds.items())


def _ledger(coord: Coordinator) -> list[dict[str, Any]]:
    return coord.api.ledger()


def credits_kept(entries: list[dict[str, Any]], ids: set[str]) -> int:
    """Rewards paid to `ids`, minus every `slash` entry taken from their `bond:<id>` accounts (a kind a coordinator
    may add; none exists at the time of writing)."""
    bonds = {f"bond:{i}" for i in ids}
    paid = sum(int(e["amount"]) for e in entries if e["kind"] == "reward" and e["to"] in ids)
    slashed = sum(int(e["amount"]) for e in entries
                  if e["kind"] == "slash" and e["from"] in bonds)
    return paid - slashed


def _task_rows(coord: Coordinator, job_ids: Sequence[str]) -> list[tuple[str, str, dict[str, Any], Any]]:
    marks = ",".join("?" * len(job_ids))
    return [(task_id, state, codec.decode(params), canonical) for task_id, state, params, canonical in read_db(
        coord.db, f"SELECT task_id, state, params, canonical FROM tasks WHERE job_id IN ({marks})", tuple(job_ids))]


def wrong_validated(coord: Coordinator, job_ids: Sequence[str], params: dict[str, Any]) -> list[str]:
    """Validated tasks of these jobs whose canonical output is not the reference band."""
    reference = reference_image(params)
    wrong = []
    for task_id, state, p, canonical in _task_rows(coord, job_ids):
        if state == "validated":
            band = codec.array_from_wire(codec.decode(canonical))
            if not np.array_equal(band, reference[p["row_start"]:p["row_end"]]):
                wrong.append(task_id)
    return wrong


def wrong_in_output(coord: Coordinator, key: SigningKey, job: dict[str, Any], params: dict[str, Any]) -> int:
    """Bands of a done job's merged output (POST /v1/jobs/{id}/result) that differ from the reference; every band
    if the output cannot be had."""
    rows = _task_rows(coord, [job["job_id"]])
    try:
        image = codec.array_from_wire(fetch_result(coord.url, key, job["job_id"])["output"])
    except DepinError:
        return len(rows)
    reference = reference_image(params)
    if image.shape != reference.shape:
        return len(rows)
    wrong = [t for t, _, p, _ in rows
             if not np.array_equal(image[p["row_start"]:p["row_end"]], reference[p["row_start"]:p["row_end"]])]
    return len(wrong)


def waiting_reason(job: dict[str, Any]) -> str | None:
    """Why a running job's task waits, if GET /v1/jobs/{id} says so: the first non-empty field of WAITING_FIELDS,
    on the job or on one of its tasks. None today: no such field exists yet (issue 9, attack 6)."""
    for name in WAITING_FIELDS:
        if job.get(name):
            return str(job[name])
    for task in job.get("tasks", []) or []:
        if isinstance(task, dict):
            for name in WAITING_FIELDS:
                if task.get(name):
                    return str(task[name])
    return None


def audit_state(coord: Coordinator, job: dict[str, Any]) -> str | None:
    """Whatever a coordinator exposes about a job's audits (fields `audit`, `audits`, `audited`, `provisional` on
    GET /v1/jobs/{id} or /provenance); None today."""
    for source in (job, _maybe(coord, f"/v1/jobs/{job['job_id']}/provenance")):
        for name in ("audit", "audits", "audited", "provisional", "audit_state"):
            if isinstance(source, dict) and source.get(name) is not None:
                return f"{name}={source[name]!r}"
    return None


def _maybe(coord: Coordinator, path: str) -> Any:
    try:
        return coord.api.get(path)
    except AssertionError:
        return None


# ---- shared scenario steps -----------------------------------------------------------------------------------


@dataclass
class Setup:
    """A coordinator, its honest worker processes and a funded submitter."""

    coord: Coordinator
    honest: list[Worker]
    key: SigningKey

    @property
    def honest_ids(self) -> list[str]:
        return [w.worker_id for w in self.honest]

    def too_fast(self) -> dict[str, int]:
        workers = self.coord.api.workers()
        return {w: workers.get(w, {}).get("too_fast", 0) for w in self.honest_ids}

    def trusted(self, ids: Sequence[str] | None = None) -> list[str]:
        workers = self.coord.api.workers()
        return [w for w in (ids if ids is not None else self.honest_ids)
                if KERNEL_KEY in workers.get(w, {}).get("trusted", [])]


def start(cluster: Cluster, name: str, honest: int, *, lease_timeout: float = 3.0,
          worker_extra: tuple[str, ...] = (), worker_env: dict[str, str] | None = None) -> Setup:
    """A coordinator and `honest` worker processes (in `worker_env`, default the cluster's), registered."""
    coord = cluster.coordinator(f"{name}-coordinator", lease_timeout=lease_timeout)
    workers = [cluster.worker(coord, f"{name}-honest-{i}", batch=HONEST_BATCH, extra=worker_extra, env=worker_env)
               for i in range(honest)]
    add_workers(coord, workers)
    return Setup(coord, workers, SigningKey.generate())


def add_workers(coord: Coordinator, workers: Sequence[Worker]) -> None:
    ids = {w.worker_id for w in workers}
    wait_until(lambda: ids <= set(coord.api.workers()), "the honest workers to register", 60)


def run_job(s: Setup, params: dict[str, Any], tasks: int, *, replicas: int = 2, price: int = 10,
            timeout: float = 60.0) -> tuple[dict[str, Any], float | None]:
    """Submit and wait (at most `timeout`); the job's last status and its time, None if it did not end."""
    job_id = submit(s.coord, s.key, params, tasks=tasks, replicas=replicas, price=price)
    return wait_job(s.coord, job_id, timeout)


def paused_job(s: Setup, params: dict[str, Any], tasks: int, pause: float,
               timeout: float = 60.0) -> float | None:
    """The baseline of an attack staged while the honest workers were busy (paused): the same job, submitted while
    they are paused for as long, and no attacker; seconds from their resume to the job's end."""
    with paused(s.honest, LONG_POLL_END) as p:
        job_id = _submit(s, params, tasks)
        time.sleep(pause)
    job, _ = wait_job(s.coord, job_id, timeout)
    return p.since(job)


def wait_job(coord: Coordinator, job_id: str, timeout: float) -> tuple[dict[str, Any], float | None]:
    """Poll until the job ends or `timeout` passes; its last status and (coordinator clock) time to end."""
    deadline = time.monotonic() + timeout
    while True:
        job = coord.api.job(job_id)
        if job["state"] in TERMINAL:
            return job, (job["finished_ms"] - job["created_ms"]) / 1000
        if time.monotonic() > deadline:
            return job, None
        time.sleep(0.1)


def warm(s: Setup, ids: Sequence[str], *, price: int = 10, tasks: int = 40, rounds: int = 16) -> int:
    """Warm-up jobs until every id in `ids` is trusted for mandelbrot@1; the number of jobs it took."""
    n = 0
    while len(s.trusted(ids)) < len(ids) and n < rounds:
        run_job(s, JOB, tasks, price=price)
        n += 1
    return n


def _outcome(attack: str, s: Setup, agents: list[Agent], jobs: list[dict[str, Any]], params: dict[str, Any],
             *, too_fast_before: dict[str, int], seconds: float | None, baseline: float | None,
             replicas: int = 2, wrong_at_end: int | None = None, **notes: Any) -> Outcome:
    coord = s.coord
    job_ids = [j["job_id"] for j in jobs]
    marks = ",".join("?" * len(job_ids))
    results = read_db(coord.db, f"SELECT COUNT(*) FROM results WHERE job_id IN ({marks})", tuple(job_ids))[0][0]
    wrong_now = len(wrong_validated(coord, job_ids, params))
    workers = coord.api.workers()
    after = s.too_fast()
    for j in jobs:
        state = audit_state(coord, j)
        if state is not None:
            notes.setdefault("audit", []).append(state)
    return Outcome(
        attack=attack, honest_ids=s.honest_ids, agents=agents, jobs=jobs,
        wrong_bands=sum(wrong_in_output(coord, s.key, j, params) for j in jobs if j["state"] == "done"),
        wrong_accepted=wrong_now if wrong_at_end is None else wrong_at_end,
        tasks=sum(j["tasks_total"] for j in jobs), results=results, replicas=replicas,
        attacker_credits=credits_kept(_ledger(coord), {a.id for a in agents}),
        honest_banned=[w for w in s.honest_ids if workers.get(w, {}).get("banned")],
        honest_too_fast=sum(after[w] - too_fast_before.get(w, 0) for w in after),
        seconds=seconds, baseline_seconds=baseline,
        stalled=sum(1 for j in jobs if j["state"] not in TERMINAL), notes=notes)


def _ended(coord: Coordinator, job_id: str) -> bool:
    return bool(coord.api.job(job_id)["state"] in TERMINAL)


def _submit(s: Setup, params: dict[str, Any], tasks: int) -> str:
    return submit(s.coord, s.key, params, tasks=tasks, replicas=2)


# ---- 1. patient cheater with one Sybil -------------------------------------------------------------------------


def patient_cheater(cluster: Cluster, *, honest: int = 2, tasks: int = 60, params: dict[str, Any] | None = None,
                    say: Callable[[str], None] = lambda line: None) -> Outcome:
    """C earns trust honestly; a fresh P takes first leases, C the second ones; both lie where both hold."""
    params = params or JOB
    s = start(cluster, "patient", honest)
    with Net(s.coord.url) as net:
        c = Agent(net, "patient C")
        # Everyone bonds first (C too: a bond is how a stranger becomes trusted sooner, after 3 independent
        # agreements instead of 10), so the warm-up is one or two jobs.
        bond(s, cluster, s.honest, [c])
        with Background(honest_loop(c), "patient-warmup"):
            rounds = warm(s, [c.id, *s.honest_ids])
            say(f"  patient: C and honest trusted after {rounds} warm-up jobs: {len(s.trusted([c.id]))}, "
                f"{len(s.trusted())}/{honest}")
            c_trusted = bool(s.trusted([c.id]))
            # C is still honest during the baseline job: were C gone, an audit of a task both honest workers held
            # would have no auditor left who asks for work, and the job would wait for the audit's give-up time,
            # past run_job's bound (the victim phase then started with the baseline job still open).
            _, baseline = run_job(s, params, tasks)
        c.seen = Seen("patient C", c.id)  # count the attack only
        before = s.too_fast()
        p = Agent(net, "sybil P")
        job_id = first_leases(s, p, params, tasks)
        collude(s.coord, job_id, p, c, colluding(Collusion()))
        job, seconds = wait_job(s.coord, job_id, 60)
        trusted_p = bool(s.trusted([p.id]))
        shared_tasks = len(set(p.held) & set(c.held))
    return _outcome("1 patient cheater + Sybil", s, [c, p], [job], params, too_fast_before=before,
                    seconds=seconds, baseline=baseline, sybil_trusted=trusted_p, shared_tasks=shared_tasks,
                    c_trusted_before=c_trusted, warmup_rounds=rounds)


def first_leases(s: Setup, agent: Agent, params: dict[str, Any], tasks: int) -> str:
    """Submit a victim job while `agent` waits in a long poll for up to 256 leases, so it gets there first; the
    job's id, once the agent holds its first leases."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        polling = pool.submit(agent.lease, 256, 10_000)
        wait_until(lambda: agent.id in s.coord.api.workers(), f"the {agent.seen.kind} to register", 30)
        job_id = submit(s.coord, s.key, params, tasks=tasks, replicas=2)
        polling.result(30)
    return job_id


def collude(coord: Coordinator, job_id: str, first: Agent, second: Agent, lie: Forge, rounds: int = 20) -> None:
    """`first` holds first leases; `second` takes whatever slots it can. On tasks both hold they report the same
    wrong band (`second` first); on every other task they report the true band, so neither is ever caught
    disagreeing with an honest worker. A few rounds, until the job ends."""
    for i in range(rounds):
        if _ended(coord, job_id):
            return
        try:
            if i:
                first.lease(256, 0)
            second.lease(256, 0)
            a, b = first.unreported(), second.unreported()
            shared = sorted(set(a) & set(b))
            second.report([b[t] for t in shared], lie)
            first.report([a[t] for t in shared], lie)
            second.report([g for t, g in b.items() if t not in a], honest)
            first.report([g for t, g in a.items() if t not in b], honest)
        except Forbidden:
            return  # caught and banned: the attack is over
        time.sleep(0.2)


# ---- 2. stripping honest trust with a decoy job --------------------------------------------------------------


def decoy(cluster: Cluster, *, honest: int = 3, tasks: int = 20, decoy_tasks: int = 24,
          params: dict[str, Any] | None = None, say: Callable[[str], None] = lambda line: None) -> Outcome:
    """A decoy job makes honest workers look too fast; two fresh colluders then validate each other."""
    params = params or JOB
    s = start(cluster, "decoy", honest)
    rounds = warm(s, s.honest_ids)
    _, baseline = run_job(s, params, tasks)
    before = s.too_fast()
    trusted_before = len(s.trusted())
    decoy_job, _ = run_job(s, DECOY_JOB, decoy_tasks)
    trusted_after_decoy = len(s.trusted())
    say(f"  decoy: honest trusted {trusted_before} -> {trusted_after_decoy} after the decoy job "
        f"({decoy_job['state']}); too fast {before} -> {s.too_fast()}")
    with Net(s.coord.url) as net:
        a, b = Agent(net, "colluder"), Agent(net, "colluder")
        lie = colluding(Collusion())
        job_id = first_leases(s, a, params, tasks)
        collude(s.coord, job_id, a, b, lie)
        job, seconds = wait_job(s.coord, job_id, 60)
    return _outcome("2 decoy job strips honest trust", s, [a, b], [job], params, too_fast_before=before,
                    seconds=seconds, baseline=baseline, trusted_before=trusted_before,
                    trusted_after_decoy=trusted_after_decoy, warmup_rounds=rounds)


# ---- 3. banning an honest newcomer ---------------------------------------------------------------------------


def ban_newcomer(cluster: Cluster, *, tasks: int = 3, params: dict[str, Any] | None = None,
                 say: Callable[[str], None] = lambda line: None) -> Outcome:
    """A fresh honest identity N takes the first leases; colluders A and B out-vote it on every task."""
    params = params or JOB
    s = start(cluster, "newcomer", 0)
    with Net(s.coord.url) as net:
        n = Agent(net, "honest newcomer")
        a, b = Agent(net, "colluder"), Agent(net, "colluder")
        lie = colluding(Collusion())
        before: dict[str, int] = {}
        job_id = submit(s.coord, s.key, params, tasks=tasks, replicas=2)
        t0 = time.monotonic()
        try:  # a few rounds: a newcomer holds only a couple of leases at a time (its capacity)
            for _ in range(6):
                n.report(n.lease(256, 0), honest)
                a.report(a.lease(256, 0), lie)
                b.report(b.lease(256, 0), lie)
                if n.seen.results >= tasks:
                    break
        except Forbidden:
            pass
        newcomer = s.coord.api.workers().get(n.id, {})
        say(f"  newcomer: {newcomer.get('banned')!r}")
        job = s.coord.api.job(job_id)
        seconds = time.monotonic() - t0
    out = _outcome("3 colluders ban an honest newcomer", s, [a, b], [job], params, too_fast_before=before,
                   seconds=seconds, baseline=None, newcomer=n, newcomer_banned=newcomer.get("banned"),
                   newcomer_results=n.seen.results)
    out.honest_ids = [n.id]
    out.honest_banned = [n.id] if newcomer.get("banned") else []
    return out


# ---- 4. killing a job with error results ---------------------------------------------------------------------


def bond(s: Setup, cluster: Cluster, workers: Sequence[Worker], agents: Sequence[Agent] = (),
         credits: int = 1000) -> None:
    """Grant each honest worker process and each agent `credits` and bond them all (depin bond, POST /v1/bond)."""
    for w in workers:
        s.coord.grant(w.worker_id, credits)
        bonded = cluster.cli("bond", str(credits), "--data-dir", str(w.data_dir), "--coordinator", s.coord.url)
        assert bonded.returncode == 0, bonded.stderr
    for a in agents:
        s.coord.grant(a.id, credits)
        client = a.net.client
        assert client is not None
        a.net.run(client.post_signed("/v1/bond", a.key, "bond", {"amount": credits}))


@dataclass
class Pause:
    resumed: float = 0.0  # wall-clock seconds when the workers were let go on (the coordinator's clock too)

    def since(self, job: dict[str, Any]) -> float | None:
        """Seconds from the resume to the job's end, if it ended."""
        return None if job.get("finished_ms") is None else max(0.0, job["finished_ms"] / 1000 - self.resumed)


# Honest workers of the paused scenarios run with this, which bounds each of their long polls to a second (a worker
# waits no longer than until its next ledger audit), so that a pause of LONG_POLL_END seconds ends the long polls
# they had open: otherwise the coordinator would still lease to a stopped worker whose request it holds.
SHORT_POLLS = ("--audit-interval", "1")
LONG_POLL_END = 1.5


@contextlib.contextmanager
def paused(workers: Sequence[Worker], settle: float = 0.0) -> Iterator[Pause]:
    """Stop the worker processes (SIGSTOP) for the block, then let them go on (SIGCONT). With `settle`, wait that
    long after stopping them before the block runs."""
    pause = Pause()
    for w in workers:
        os.kill(w.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(settle)
        yield pause
    finally:
        for w in workers:
            os.kill(w.proc.pid, signal.SIGCONT)
        pause.resumed = time.time()


def kill_job(cluster: Cluster, *, honest: int = 2, tasks: int = 6, attackers: int = 4,
             params: dict[str, Any] | None = None, say: Callable[[str], None] = lambda line: None,
             name: str = "kill") -> Outcome:
    """Throw-away identities send malformed results until a task passes max_errors."""
    params = params or JOB
    s = start(cluster, name, honest, worker_extra=SHORT_POLLS)
    _, unpaused = run_job(s, params, tasks)  # also measures the work's time (placement: backups)
    before = s.too_fast()
    with Net(s.coord.url) as net:
        agents = [Agent(net, "error sender") for _ in range(attackers)]
        box: dict[str, str] = {}

        def step(agent: Agent) -> Callable[[], bool]:
            def go() -> bool:
                agent.report(agent.lease(256, 500), malformed)
                return not ("job" in box and _ended(s.coord, box["job"]))
            return go

        loops = [Background(step(x), f"error-sender-{i}") for i, x in enumerate(agents)]
        for bg in loops:
            bg.__enter__()
        try:
            wait_until(lambda: {x.id for x in agents} <= set(s.coord.api.workers()), "the attackers to register", 30)
            with paused(s.honest, LONG_POLL_END) as p:  # the attackers get there first, as when the honest are busy
                box["job"] = _submit(s, params, tasks)
                began = time.monotonic()
                wait_until(lambda: sum(x.seen.results for x in agents) >= attackers, "error results to be sent", 30)
                pause = time.monotonic() - began
            job, from_submit = wait_job(s.coord, box["job"], 60)
        finally:
            for bg in loops:
                bg.__exit__()
    seconds, baseline = p.since(job), paused_job(s, params, tasks, pause)
    unpaid = unpaid_honest(s, job, params)
    say(f"  kill: job {job['state']} {job.get('error') or ''}; honest correct results unpaid: {len(unpaid)}")
    return _outcome("4 error results kill a job", s, agents, [job], params, too_fast_before=before,
                    seconds=seconds, baseline=baseline, unpaid_honest=unpaid, pause=pause, unpaused=unpaused,
                    from_submit=from_submit)


def unpaid_honest(s: Setup, job: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Honest results on the job whose output is the correct band but that no reward paid: 'task worker verdict'."""
    paid = {(e["task_id"], e["to"]) for e in _ledger(s.coord) if e["kind"] == "reward"}
    reference = reference_image(params)
    bands = {t: p for t, _, p, _ in _task_rows(s.coord, [job["job_id"]])}
    out = []
    for task_id, worker_id, output, verdict in read_db(
            s.coord.db, "SELECT task_id, worker_id, output, verdict FROM results WHERE job_id = ?", (job["job_id"],)):
        if worker_id not in s.honest_ids or output is None:
            continue
        p = bands[task_id]
        try:
            band = codec.array_from_wire(codec.decode(output))
        except (DepinError, ValueError):
            continue
        if np.array_equal(band, reference[p["row_start"]:p["row_end"]]) and (task_id, worker_id) not in paid:
            out.append(f"{task_id} {worker_id[:8]} {verdict}")
    return out


# ---- 5. stalling a job with abandoned leases -----------------------------------------------------------------


def stall_job(cluster: Cluster, *, honest: int = 2, tasks: int = 6, identities: int = 20, lease_timeout: float = 60.0,
              bound: float = 25.0, params: dict[str, Any] | None = None,
              say: Callable[[str], None] = lambda line: None, name: str = "stall") -> Outcome:
    """Fresh identities lease every free slot and abandon it; the coordinator's lease timeout is long. The honest
    workers (which ran the same job once before: the baseline) are paused (SIGSTOP) while the victim job arrives,
    so the abandoners hold every first slot, then resumed."""
    params = params or JOB
    s = start(cluster, name, honest, lease_timeout=lease_timeout, worker_extra=SHORT_POLLS)
    _, unpaused = run_job(s, params, tasks)  # also measures the work's time (placement: backups)
    before = s.too_fast()
    with Net(s.coord.url) as net:
        agents = [Agent(net, "abandoner") for _ in range(identities)]
        # Every identity waits in its own long poll; what each gets it keeps and never answers.
        loops = [Background(lambda a=a: bool(a.lease(256, 1000)) or None, "abandoner") for a in agents]
        for bg in loops:
            bg.__enter__()
        try:
            wait_until(lambda: {a.id for a in agents} <= set(s.coord.api.workers()), "the abandoners to register", 30)
            with paused(s.honest, LONG_POLL_END) as p:
                job_id = _submit(s, params, tasks)
                began = time.monotonic()
                wait_until(lambda: sum(a.seen.leases for a in agents) >= tasks, "the abandoners to take every task",
                           30)
                pause = time.monotonic() - began
            job, from_submit = wait_job(s.coord, job_id, bound)
        finally:
            for bg in loops:
                bg.__exit__()
        if from_submit is None:
            say(f"  stall: not done after {bound:.0f} s: {job['task_states']} {job['lease_states']}")
            job, _ = wait_job(s.coord, job_id, 0)
    seconds, baseline = p.since(job) if from_submit is not None else None, paused_job(s, params, tasks, pause)
    return _outcome("5 abandoned leases stall a job", s, agents, [job], params, too_fast_before=before,
                    seconds=seconds, baseline=baseline, bound=bound, lease_timeout=lease_timeout, pause=pause,
                    unpaused=unpaused, from_submit=from_submit)


# ---- 6. trusted workers above the job's price ----------------------------------------------------------------


def min_price_stall(cluster: Cluster, *, tasks: int = 4, price: int = 10, bound: float = 40.0,
                    params: dict[str, Any] | None = None, say: Callable[[str], None] = lambda line: None) -> Outcome:
    """Two workers with --min-price 100 earn trust on jobs paying 100; then fresh honest workers face a job paying
    `price`, whose last quorum slots are kept for the trusted workers that will never take them."""
    params = params or JOB
    # Three picky workers: two alone are always each other's partner, and a pair cannot make each other trusted.
    # Each bonds credits first, which makes it trusted after 3 independent agreements instead of 10.
    s = start(cluster, "minprice", 3, worker_extra=("--min-price", "100"))
    bond(s, cluster, s.honest)
    rounds = warm(s, s.honest_ids, price=100)
    picky = list(s.honest)
    fresh_workers = [cluster.worker(s.coord, f"minprice-fresh-{i}") for i in range(2)]
    add_workers(s.coord, fresh_workers)
    s.honest = picky + fresh_workers
    before = s.too_fast()
    workers = s.coord.api.workers()
    picky_trusted = [w.worker_id for w in picky if KERNEL_KEY in workers[w.worker_id]["trusted"]
                     and workers[w.worker_id]["min_price"] > price]
    job_id = submit(s.coord, s.key, params, tasks=tasks, replicas=2, price=price)
    time.sleep(min(5.0, bound / 4))
    waiting = s.coord.api.job(job_id)
    reason = waiting_reason(waiting)
    say(f"  minprice: after 5 s {waiting['state']} {waiting['task_states']}; waiting reason {reason!r}")
    job, seconds = wait_job(s.coord, job_id, bound)
    return _outcome("6 trusted min-price workers stall a job", s, [], [job], params, too_fast_before=before,
                    seconds=seconds, baseline=None, bound=bound, picky_trusted=picky_trusted,
                    waiting_status=waiting, waiting_reason=reason, warmup_rounds=rounds)


# ---- 7. honest workers flagged too fast in an ordinary run ---------------------------------------------------


def demo_run(cluster: Cluster, *, jobs: int = 1, say: Callable[[str], None] = lambda line: None) -> Outcome:
    """`depin demo`'s job (its parameters, task count, replicas, price) on three honest worker processes."""
    from depin.cli.demo import DEMO_JOB, DEMO_PRICE, DEMO_REPLICAS, DEMO_TASKS

    s = start(cluster, "demo", 3)
    before = s.too_fast()
    done = []
    seconds = 0.0
    for _ in range(jobs):
        job, t = run_job(s, DEMO_JOB, DEMO_TASKS, replicas=DEMO_REPLICAS, price=DEMO_PRICE, timeout=150)
        done.append(job)
        seconds += t or 0.0
    say(f"  demo: too fast {s.too_fast()}")
    return _outcome("7 demo-sized honest run", s, [], done, DEMO_JOB, too_fast_before=before, seconds=seconds,
                    baseline=None, replicas=DEMO_REPLICAS)
