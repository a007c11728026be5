"""Hostile workers, and a scenario runner that sets them on a live cluster; shared by the integration test
(tests/integration/test_e2e_hostile_workers.py) and the benchmark (benchmarks/bench_hostile.py).

Honest workers are real `depin worker` processes (support.Cluster). Hostile workers are asyncio clients in this
process, each with a fresh key, speaking the real protocol through depin.client.Client. They all run on one event
loop in a background thread (`Swarm`), so the runner drives the cluster synchronously with support's bounded waits
while they work. The kinds:

    random     right dtype and shape, random values
    lazy       all zeros
    copier     the honest output of a *different* band of the same image, of the right shape
    replayer   re-posts its old signed results envelopes byte for byte (409 expected), and re-signs its old
               outputs as the results of new leases
    abandoner  leases tasks and never returns them: waits each lease out, then leases more
    colluder   every colluder returns the same subtly wrong band for a task (the honest band with one pixel changed,
               the pixel picked from the task id); the answer is shared through memory (`Collusion`)
    sleeper    honest until GET /v1/workers says it is trusted for mandelbrot@1, then returns the colluders' answer
               (not among the kinds the test requires; the benchmark measures what adaptive replication lets through)

Honest outputs (for the copier, the colluders and the reference images) come from the plain-Python reference
tests/reference/cref.python_reference, independent of depin's kernel.

A scenario starts a coordinator with a short lease timeout and N honest workers, runs warm-up jobs until every
honest worker is trusted for mandelbrot@1 (GET /v1/workers), then runs phases: a phase's hostile workers join, its
measured jobs run one after another (and a few more while a hostile that only returns wrong results is not banned
yet), the hostiles stop, and the outcome is read back from the public API and, read-only, the coordinator's
database. Nothing here asserts; the test asserts on the outcomes and the benchmark prints them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depin import codec, ledger, protocol
from depin.client import Client, fresh
from depin.crypto import SigningKey, open_envelope
from depin.errors import Conflict, DepinError, Forbidden, TooManyRequests
from tests.integration.support import (
    HONEST_BATCH,
    JOB_TIMEOUT_S,
    Api,
    Cluster,
    Coordinator,
    fetch_result,
    read_db,
    submit,
    wait_until,
)
from tests.reference import cref

KINDS = ("random", "lazy", "copier", "replayer", "abandoner", "colluder", "sleeper")
WRONG_ONLY = ("random", "lazy", "copier", "replayer", "colluder")  # every result they send is wrong: must be banned
KERNEL_KEY = "mandelbrot@1"

# Bands of one row of 40 pixels at max_iter 64: microseconds of kernel time, so the protocol, not the arithmetic,
# sets the pace. The set is symmetric about the real axis, so some rows repeat others: the copier checks that the
# band it copies differs from the true one.
JOB: dict[str, Any] = {"width": 40, "height": 120, "x_min": -2.1, "x_max": 0.9, "y_min": -1.05, "y_max": 1.35,
                       "max_iter": 64}


# ---- honest answers ----------------------------------------------------------------------------------------


def honest_band(p: dict[str, Any], row_start: int, row_end: int) -> np.ndarray:
    """The correct uint32 band, from the independent plain-Python reference."""
    return _band(p["width"], p["height"], p["x_min"], p["x_max"], p["y_min"], p["y_max"], p["max_iter"],
                 row_start, row_end).copy()


@functools.lru_cache(maxsize=4096)
def _band(width: int, height: int, x_min: float, x_max: float, y_min: float, y_max: float, max_iter: int,
          row_start: int, row_end: int) -> np.ndarray:
    return cref.python_reference(width, height, x_min, x_max, y_min, y_max, max_iter, row_start, row_end)


def reference_image(params: dict[str, Any]) -> np.ndarray:
    """The whole image of a job's parameters."""
    return honest_band(params, 0, params["height"])


# ---- hostile workers -----------------------------------------------------------------------------------------


@dataclass
class Seen:
    """What one hostile identity did and what it was told."""

    kind: str
    worker_id: str
    connected: float | None = None  # monotonic: its first request
    first_result: float | None = None  # monotonic: its first results request
    banned: float | None = None  # monotonic: the first 403 it received
    ban_reason: str | None = None
    leases: int = 0
    results: int = 0
    acks: Counter[str] = field(default_factory=Counter)  # "accepted", "duplicate", "rejected: <reason>"
    replays: int = 0  # results envelopes it re-posted byte for byte
    replays_refused: int = 0  # ... answered 409
    replay_answers: Counter[str] = field(default_factory=Counter)
    too_many: int = 0  # 429 answers
    turned: float | None = None  # monotonic: when a sleeper, now trusted, began to lie
    errors: list[str] = field(default_factory=list)

    def time_to_ban(self) -> float | None:
        """Seconds from its first request to its first 403."""
        if self.banned is None or self.connected is None:
            return None
        return self.banned - self.connected

    def result_to_ban(self) -> float | None:
        """Seconds from its first results request to its first 403."""
        if self.banned is None or self.first_result is None:
            return None
        return self.banned - self.first_result


class Collusion:
    """The colluders' shared memory: one wrong band per task id, the same for every member."""

    def __init__(self) -> None:
        self.answers: dict[str, np.ndarray] = {}

    def answer(self, task_id: str, params: dict[str, Any]) -> np.ndarray:
        if task_id not in self.answers:
            band = honest_band(params, params["row_start"], params["row_end"])
            digest = hashlib.sha256(task_id.encode()).digest()
            flat = band.reshape(-1)
            i = int.from_bytes(digest[:4], "big") % flat.size
            flat[i] = flat[i] + 1 if flat[i] < params["max_iter"] else flat[i] - 1
            self.answers[task_id] = band
        return self.answers[task_id]


def _other_band(params: dict[str, Any]) -> np.ndarray:
    """The honest output of another band of the same shape whose content differs from this band's."""
    start, end, height = params["row_start"], params["row_end"], params["height"]
    rows = end - start
    mine = honest_band(params, start, end)
    for shift in range(rows, height, rows):
        other = (start + shift) % (height - rows + 1)
        if other != start:
            band = honest_band(params, other, other + rows)
            if not np.array_equal(band, mine):
                return band
    raise AssertionError(f"no other band of {rows} rows differs from rows {start}..{end}")


class Hostile:
    """One hostile worker of `kind` with a fresh key."""

    def __init__(self, kind: str, url: str, collusion: Collusion, *, batch: int = 4, poll_ms: int = 1000) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown hostile kind {kind!r}")
        self.kind = kind
        self.url = url
        self.collusion = collusion
        self.batch = batch
        self.poll_ms = poll_ms
        self.key = SigningKey.generate()
        self.seen = Seen(kind, self.key.id)
        self._rng = np.random.default_rng()
        self._envelopes: list[dict[str, bytes]] = []  # the replayer's sent results envelopes
        self._outputs: list[dict[str, Any]] = []  # the replayer's old outputs
        self._lying = False  # a sleeper that has earned trust

    async def run(self) -> None:
        """Lease, forge, report until banned (or cancelled)."""
        async with Client(self.url, timeout_s=30.0) as client:
            while True:
                try:
                    grants = await self._lease(client)
                    if not grants:
                        continue
                    if self.kind == "abandoner":
                        # Sit on the leases until they expire, then ask for more.
                        latest = max(g.expires_ms for g in grants)
                        await asyncio.sleep(max(0.0, latest / 1000 - time.time()) + 0.2)
                        continue
                    if self.kind == "sleeper" and not self._lying:
                        await self._check_trust(client)
                    await self._report(client, grants)
                except Forbidden as exc:
                    self.seen.banned, self.seen.ban_reason = time.monotonic(), str(exc)
                    return
                except TooManyRequests:
                    self.seen.too_many += 1
                    await asyncio.sleep(0.05)
                except DepinError as exc:
                    self.seen.errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.2)

    async def _lease(self, client: Client) -> list[protocol.LeaseGrant]:
        if self.seen.connected is None:
            self.seen.connected = time.monotonic()
        req = protocol.LeaseRequest(max_tasks=self.batch, wait_ms=self.poll_ms, kernels=(KERNEL_KEY,))
        answer = await client.post_signed("/v1/lease", self.key, "lease-request", req.to_payload(),
                                          read_timeout_s=self.poll_ms / 1000 + 15)
        grants = [protocol.LeaseGrant.from_payload(g, i) for i, g in enumerate(answer["leases"])]
        self.seen.leases += len(grants)
        return grants

    async def _check_trust(self, client: Client) -> None:
        workers = (await client.get_json("/v1/workers"))["workers"]
        if any(w["worker_id"] == self.key.id and KERNEL_KEY in w["trusted"] for w in workers):
            self._lying, self.seen.turned = True, time.monotonic()

    def _forge(self, grant: protocol.LeaseGrant) -> protocol.ResultItem:
        task = protocol.TaskMessage.from_payload(codec.decode(grant.task))
        p = task.params
        shape = (p["row_end"] - p["row_start"], p["width"])
        if self.kind == "random":
            wire = codec.array_to_wire(self._rng.integers(0, 2**32, size=shape, dtype=np.uint32))
        elif self.kind == "lazy":
            wire = codec.array_to_wire(np.zeros(shape, dtype=np.uint32))
        elif self.kind == "copier":
            wire = codec.array_to_wire(_other_band(p))
        elif self.kind == "colluder" or (self.kind == "sleeper" and self._lying):
            wire = codec.array_to_wire(self.collusion.answer(task.task_id, p))
        elif self.kind == "sleeper":
            wire = codec.array_to_wire(honest_band(p, p["row_start"], p["row_end"]))
        else:  # replayer: an old output of the same shape if it has one, else random values
            old = [o for o in self._outputs if o["shape"] == list(shape)]
            wire = old[0] if old else codec.array_to_wire(self._rng.integers(0, 2**32, size=shape, dtype=np.uint32))
            self._outputs.append(wire)
        return protocol.ResultItem(grant.lease_id, task.task_id, wire, 0)

    async def _report(self, client: Client, grants: list[protocol.LeaseGrant]) -> None:
        items = tuple(self._forge(g) for g in grants)
        if self.seen.first_result is None:
            self.seen.first_result = time.monotonic()
        envelope = self.key.seal("results", {**protocol.ResultsRequest(items).to_payload(), **fresh()})
        answer = await client.post("/v1/results", envelope)
        _, body = open_envelope("results-ack", answer)
        for ack in protocol.ResultsAck.from_payload(body).acks:
            self.seen.acks[ack.status if ack.status != "rejected" else f"rejected: {ack.reason}"] += 1
        self.seen.results += len(items)
        if self.kind == "replayer":
            self._envelopes.append(envelope)
            for old in (self._envelopes[0], envelope):  # the oldest and the one just acknowledged
                await self._replay(client, old)

    async def _replay(self, client: Client, envelope: dict[str, bytes]) -> None:
        self.seen.replays += 1
        try:
            await client.post("/v1/results", envelope)
        except Conflict as exc:
            self.seen.replays_refused += 1
            self.seen.replay_answers[f"409 {exc}"] += 1
        except DepinError as exc:
            self.seen.replay_answers[f"{type(exc).__name__} {exc}"] += 1
        else:
            self.seen.replay_answers["200 (accepted a replay)"] += 1


class Swarm:
    """Hostile workers on one event loop in a background thread. Use as a context manager."""

    def __init__(self, url: str, kinds: Sequence[str], *, batch: int = 4, poll_ms: int = 1000) -> None:
        self.collusion = Collusion()
        self.workers = [Hostile(k, url, self.collusion, batch=batch, poll_ms=poll_ms) for k in kinds]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="hostile-swarm", daemon=True)
        self.crashed: list[str] = []

    @property
    def seen(self) -> list[Seen]:
        return [w.seen for w in self.workers]

    @property
    def ids(self) -> list[str]:
        return [w.key.id for w in self.workers]

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        tasks = [asyncio.create_task(w.run()) for w in self.workers]
        self._ready.set()
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        for t, outcome in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                self.crashed.append(f"{t.get_name()}: {type(outcome).__name__}: {outcome}")

    def __enter__(self) -> Swarm:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the hostile swarm's event loop did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


# ---- scenarios -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """Hostile workers join; `jobs` measured jobs of `tasks` tasks run; then up to `extra_jobs` more while a hostile
    that reports results (any kind but the abandoner) has not been banned."""

    name: str
    hostile: tuple[str, ...]
    jobs: int = 2
    tasks: int = 60
    extra_jobs: int = 3


@dataclass(frozen=True)
class Scenario:
    """N honest workers, warmed up until trusted, then phases one after another on the same cluster."""

    name: str
    honest: int
    phases: tuple[Phase, ...]
    warmup_tasks: int = 40
    warmup_rounds: int = 10
    lease_timeout_s: float = 3.0
    replicas: int = 2
    job: dict[str, Any] = field(default_factory=lambda: dict(JOB))
    bond: int = 1000  # credits each honest worker is granted and bonds at the start (0: none), so it may go single


@dataclass
class Warmup:
    """How long it took the honest workers to earn trust."""

    rounds: int
    tasks: int
    seconds: float
    trusted: int


@dataclass
class PhaseOutcome:
    """Everything measured in one phase."""

    name: str
    honest_ids: list[str]
    seen: list[Seen]
    jobs: list[dict[str, Any]]  # final GET /v1/jobs/{id} of each measured job
    tasks: int
    validated: int
    wrong_tasks: list[str]  # validated tasks whose canonical output differs from the reference
    wrong_jobs: list[str]  # done jobs whose merged result differs from the reference
    hostile_credits: int  # every reward paid to a hostile id, in the phase's jobs or not
    hostile_rewards: list[dict[str, Any]]
    wrong_credits: int  # rewards paid (to anyone) for results that were wrong
    results: Counter[str]  # recorded result rows: "honest", "hostile"
    verdicts: Counter[str]  # (honest|hostile) verdict
    single_tasks: int  # tasks a trusted worker ran alone
    honest_single: dict[str, tuple[int, int]]  # honest worker -> (results on tasks it ran single, all its results)
    honest_trusted_after: int
    honest_banned: list[str]
    honest_too_fast: int  # results of honest workers the coordinator flagged as implausibly fast, all phases so far
    seconds: float
    crashed: list[str]
    coordinator_alive: bool

    @property
    def hostile_ids(self) -> set[str]:
        return {s.worker_id for s in self.seen}

    @property
    def done_jobs(self) -> int:
        return sum(1 for j in self.jobs if j["state"] == "done")

    @property
    def job_seconds(self) -> list[float]:
        """Each measured job's time on the coordinator's clock (finished_ms - created_ms)."""
        return [(j["finished_ms"] - j["created_ms"]) / 1000 for j in self.jobs if j["finished_ms"] is not None]

    @property
    def results_per_task(self) -> float:
        return sum(self.results.values()) / max(1, self.tasks)

    def honest_single_share(self) -> float:
        singles = sum(s for s, _ in self.honest_single.values())
        return singles / max(1, sum(n for _, n in self.honest_single.values()))


@dataclass
class ScenarioOutcome:
    """A scenario's warm-up and phases, and whether its whole ledger verifies."""

    name: str
    honest: int
    warmup: Warmup
    phases: list[PhaseOutcome]
    ledger_ok: str  # "ok: N entries" or the verification error


def _trusted(api: Api, ids: Sequence[str]) -> list[str]:
    workers = api.workers()
    return [w for w in ids if KERNEL_KEY in workers.get(w, {}).get("trusted", [])]


def _job(coord: Coordinator, sc: Scenario, tasks: int, key: SigningKey) -> dict[str, Any]:
    # `submit` has the operator grant the submitter what the job may cost first: every job is paid from escrow.
    job_id = submit(coord, key, sc.job, tasks=tasks, replicas=sc.replicas)
    return coord.api.wait_job(job_id, JOB_TIMEOUT_S)


def warm_up(coord: Coordinator, sc: Scenario, honest_ids: list[str], key: SigningKey,
            say: Callable[[str], None]) -> Warmup:
    """Run warm-up jobs until every honest worker is trusted (at most `warmup_rounds` jobs)."""
    started = time.monotonic()
    rounds = tasks = 0
    while len(_trusted(coord.api, honest_ids)) < len(honest_ids) and rounds < sc.warmup_rounds:
        job = _job(coord, sc, sc.warmup_tasks, key)
        rounds, tasks = rounds + 1, tasks + job["tasks_total"]
        say(f"  warm-up job {rounds}: {job['state']}; trusted {len(_trusted(coord.api, honest_ids))}"
            f"/{len(honest_ids)}")
    return Warmup(rounds, tasks, time.monotonic() - started, len(_trusted(coord.api, honest_ids)))


def run_phase(coord: Coordinator, sc: Scenario, phase: Phase, honest_ids: list[str], key: SigningKey,
              say: Callable[[str], None]) -> PhaseOutcome:
    """Let the phase's hostile workers loose next to the honest ones while its measured jobs run."""
    api = coord.api
    started = time.monotonic()
    jobs: list[dict[str, Any]] = []
    with Swarm(coord.url, phase.hostile) as swarm:
        # Every hostile is registered (its first lease request is in) before the first measured job exists.
        wait_until(lambda: set(swarm.ids) <= set(api.workers()), "the hostile workers to register", 30)

        def unbanned() -> list[str]:
            return [s.kind for s in swarm.seen if s.kind != "abandoner" and s.banned is None]

        while len(jobs) < phase.jobs or (unbanned() and len(jobs) < phase.jobs + phase.extra_jobs):
            job = _job(coord, sc, phase.tasks, key)
            jobs.append(job)
            say(f"  {phase.name} job {len(jobs)}: {job['state']} {job['error'] or ''}; not banned yet: {unbanned()}")
    seen = swarm.seen
    return _measure(coord, sc, phase, honest_ids, seen, jobs, time.monotonic() - started, swarm.crashed, key)


def _measure(coord: Coordinator, sc: Scenario, phase: Phase, honest_ids: list[str], seen: list[Seen],
             jobs: list[dict[str, Any]], seconds: float, crashed: list[str], key: SigningKey) -> PhaseOutcome:
    api = coord.api
    job_ids = [j["job_id"] for j in jobs]
    marks = ",".join("?" * len(job_ids))
    hostile = {s.worker_id for s in seen}
    reference = reference_image(sc.job)
    wrong_tasks, validated, singles = [], 0, 0
    single_leases: set[str] = set()
    for task_id, state, params, canonical, single in read_db(
            coord.db, f"SELECT task_id, state, params, canonical, single FROM tasks WHERE job_id IN ({marks})",
            tuple(job_ids)):
        if single is not None:
            singles += 1
            single_leases.add(single)
        if state != "validated":
            continue
        validated += 1
        p = codec.decode(params)
        band = codec.array_from_wire(codec.decode(canonical))
        if not np.array_equal(band, reference[p["row_start"]:p["row_end"]]):
            wrong_tasks.append(task_id)
    wrong_jobs = []
    for job in jobs:
        if job["state"] == "done":
            try:  # only the submitter may fetch a result: the request is signed with its key
                image = codec.array_from_wire(fetch_result(coord.url, key, job["job_id"])["output"])
            except DepinError:
                image = None
            if image is None or not np.array_equal(image, reference):
                wrong_jobs.append(job["job_id"])
    results: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    honest_single: dict[str, tuple[int, int]] = {w: (0, 0) for w in honest_ids}
    for lease_id, worker_id, verdict in read_db(
            coord.db, f"SELECT lease_id, worker_id, verdict FROM results WHERE job_id IN ({marks})", tuple(job_ids)):
        who = "hostile" if worker_id in hostile else "honest"
        results[who] += 1
        verdicts[f"{who} {verdict}"] += 1
        if worker_id in honest_single:
            s, n = honest_single[worker_id]
            honest_single[worker_id] = (s + (lease_id in single_leases), n + 1)
    entries = api.ledger()
    rewards = [e for e in entries if e["kind"] == "reward" and e["to"] in hostile]
    wrong = set(wrong_tasks)
    workers = api.workers()
    return PhaseOutcome(
        name=phase.name, honest_ids=honest_ids, seen=seen, jobs=jobs,
        tasks=sum(j["tasks_total"] for j in jobs), validated=validated, wrong_tasks=wrong_tasks,
        wrong_jobs=wrong_jobs, hostile_credits=sum(e["amount"] for e in rewards), hostile_rewards=rewards,
        wrong_credits=sum(e["amount"] for e in entries if e["kind"] == "reward" and e["task_id"] in wrong),
        results=results, verdicts=verdicts, single_tasks=singles, honest_single=honest_single,
        honest_trusted_after=len(_trusted(api, honest_ids)),
        honest_banned=[w for w in honest_ids if workers.get(w, {}).get("banned")],
        honest_too_fast=sum(workers[w]["too_fast"] for w in honest_ids if w in workers),
        seconds=seconds, crashed=crashed, coordinator_alive=coord.proc.alive() and api.up(),
    )


def _ledger_ok(api: Api) -> str:
    """"ok: ..." if the whole ledger verifies (chain and money rules), the parties and escrows together hold exactly
    what was minted, and every ended job's escrow is empty; else what is wrong."""
    try:
        summary = ledger.verify(api.ledger())
    except DepinError as exc:
        return f"ledger does not verify: {exc}"
    held = sum(v for k, v in summary.balances.items() if k != ledger.MINT)
    if held != summary.minted:
        return f"credits not conserved: {summary.minted} minted, {held} held"
    left = {j["job_id"]: j["escrow"] for j in api.get("/v1/jobs")["jobs"]
            if j["state"] in ("done", "failed", "cancelled") and j["escrow"]}
    if left:
        return f"ended jobs still hold escrow: {left}"
    return f"ok: {summary.entries} entries, {summary.minted} credits minted, all held by parties or open escrows"


def run_scenario(cluster: Cluster, sc: Scenario, say: Callable[[str], None] = lambda line: None) -> ScenarioOutcome:
    """Start the coordinator and honest workers in `cluster`, warm them up, run every phase."""
    coord = cluster.coordinator(f"{sc.name}-coordinator", lease_timeout=sc.lease_timeout_s)
    honest = [cluster.worker(coord, f"{sc.name}-honest-{i}", batch=HONEST_BATCH) for i in range(sc.honest)]
    honest_ids = [w.worker_id for w in honest]
    wait_until(lambda: set(honest_ids) <= set(coord.api.workers()), "the honest workers to register", 60)
    key = SigningKey.generate()
    say(f"{sc.name}: {sc.honest} honest workers up")
    if sc.bond:
        for w in honest:
            coord.grant(w.worker_id, sc.bond)
            bonded = cluster.cli("bond", str(sc.bond), "--data-dir", str(w.data_dir), "--coordinator", coord.url)
            assert bonded.returncode == 0, bonded.stderr
    warmup = warm_up(coord, sc, honest_ids, key, say)
    phases = []
    for phase in sc.phases:
        if len(_trusted(coord.api, honest_ids)) < len(honest_ids):
            say(f"  {phase.name}: honest workers lost trust; warming up again")
            warm_up(coord, sc, honest_ids, key, say)
        phases.append(run_phase(coord, sc, phase, honest_ids, key, say))
    ledger_ok = _ledger_ok(coord.api)
    return ScenarioOutcome(sc.name, sc.honest, warmup, phases, ledger_ok)


# ---- reporting -----------------------------------------------------------------------------------------------


def _secs(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f} s"


def markdown(outcome: ScenarioOutcome) -> str:
    """Markdown tables of one scenario's outcome: one row per phase, then one row per hostile identity."""
    w = outcome.warmup
    out = [f"**{outcome.name}**: {outcome.honest} honest `depin worker` processes; warm-up: {w.rounds} job(s) of "
           f"{w.tasks} tasks in all, {w.seconds:.1f} s, then {w.trusted}/{outcome.honest} trusted. "
           f"Ledger {outcome.ledger_ok}.", "",
           "| phase | hostile identities (share) | jobs done | tasks | wrong results accepted "
           "| credits to hostile ids (paid for wrong results) "
           "| results / task (honest + hostile) | / minimum 1.0 | tasks run single | honest results on single tasks "
           "| job time, mean (max) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ph in outcome.phases:
        kinds = Counter(s.kind for s in ph.seen)
        share = len(ph.seen) / (len(ph.seen) + len(ph.honest_ids))
        hostile = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "none"
        failed = "; ".join(f"{j['state']}: {j['error']}" for j in ph.jobs if j["state"] != "done")
        honest, bad = (ph.results[k] / max(1, ph.tasks) for k in ("honest", "hostile"))
        times = ph.job_seconds
        mean = sum(times) / max(1, len(times))
        out.append(
            f"| {ph.name} | {hostile} ({share:.0%}) | {ph.done_jobs}/{len(ph.jobs)}{f' ({failed})' if failed else ''} "
            f"| {ph.tasks} | {len(ph.wrong_tasks)} | {ph.hostile_credits} ({ph.wrong_credits}) "
            f"| {ph.results_per_task:.2f} ({honest:.2f} + {bad:.2f}) | {ph.results_per_task:.2f}x "
            f"| {ph.single_tasks / max(1, ph.tasks):.0%} "
            f"| {ph.honest_single_share():.0%} | {mean:.2f} s ({max(times, default=0):.2f} s) |")
    rows = [(ph.name, s) for ph in outcome.phases for s in ph.seen]
    if rows:
        out += ["", "| phase | hostile kind | leases taken | results sent | acks | time to ban: from first request "
                "| from first result | ban reason | replays sent / refused 409 |",
                "|---|---|---:|---:|---|---:|---:|---|---:|"]
        for name, s in rows:
            acks = ", ".join(f"{n} {k}" for k, n in sorted(s.acks.items())) or "–"
            replays = f"{s.replays} / {s.replays_refused}" if s.kind == "replayer" else "–"
            out.append(f"| {name} | {s.kind} | {s.leases} | {s.results} | {acks} | {_secs(s.time_to_ban())} "
                       f"| {_secs(s.result_to_ban())} | {s.ban_reason or '–'} | {replays} |")
    return "\n".join(out)
