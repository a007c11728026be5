"""Benchmark: one coordinator with thousands of connected workers and jobs of 10^5 to 10^6 tasks (issue 10).

    .venv/bin/python benchmarks/bench_scale.py                # the tables of RESULTS.md section 9
    .venv/bin/python benchmarks/bench_scale.py --quick        # smoke run: N = 0 and 200, small jobs, one run each
    .venv/bin/python benchmarks/bench_scale.py --parts fleet --fleet 10000 --runs 0 --profile DIR   # py-spy only

One real `depin coordinator` per run (started as `depin demo` does, data dir on disk, both rate limits raised far
above anything this script sends) on 127.0.0.1. Every worker is simulated: each identity has its own key and, while
it has a request in flight, its own TCP connection, and speaks the protocol through depin's own code (depin.client,
depin.crypto, depin.protocol). The active identities, whose round trips are timed, run in this process on one
asyncio loop; their results are computed with the real kernels, so they validate. Tasks are decoded but their
signatures are not checked (a real worker does): it keeps this process's CPU, which shares the machine's cores with
the coordinator, for the simulation itself. The idle fleet of part 1 runs in --fleet-procs child processes (default
3, spawned with multiprocessing; each its own loop, connection pool and keys), which this process paces and asks for
their counters over a pipe: on this process's loop, 10,000 long polls made it up to 500 ms late, and that lateness,
not the coordinator's, was most of the measured p99.

1. Idle fleet. N identities each keep a long poll open (POST /v1/lease, wait_ms 20,000, sent again as soon as it
   returns, as the reference worker does). Their min_price is one above the job's price: present and polling, but
   never given work, as in a market where most workers ask more than the one running job pays. They are started at
   most RAMP_AHEAD ahead of the registrations the coordinator has committed (read from its database). Once all N are
   registered, 8 active identities (batch 16, first warmed up past probation on a job of their own) compute a job of
   4,096 one-row mandelbrot bands at replicas 2. Measured: the active identities' lease and results round trips
   (p50, p99), validated tasks/s (a task counts when its second accepted result is acknowledged), and the
   coordinator's VmRSS before the fleet connects and once it is registered: bytes per idle worker. The window ends
   when 90% of the job's tasks are validated (its tail is idle time, not latency) or after --window seconds.
2. Big submit. POST /v1/jobs of 100,000 (then 1,000,000) montecarlo tasks of one sample each, while a probe sends
   GET /v1/info every 10 ms on its own connection: the submit's latency, the longest probe round trip (how long the
   coordinator's event loop was blocked), VmRSS growth per task, GET /v1/jobs/{id} latency at that size.
3. Long job. The 8 active identities, warmed up on montecarlo, compute a 100,000-task montecarlo job (one sample
   per task, replicas 2): validated tasks/s over the first and the last 10% of its tasks.

Each figure is the median of --runs runs, each on a fresh coordinator; submits above 200,000 tasks and the long
job run --long-runs times (default once). --profile DIR adds one more fleet run at the largest N with py-spy
sampling the coordinator during the active window (raw stacks in DIR, summary printed; not counted in the tables).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import math
import multiprocessing
import os
import pathlib
import random
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import aiohttp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import cpu_seconds, loadavg, machine, machine_busy_seconds, py_spy, revision  # noqa: E402
from bench_worker import memory  # noqa: E402

from depin import codec, kernels  # noqa: E402
from depin.cli.demo import start_coordinator, stop  # noqa: E402
from depin.client import Client, fresh  # noqa: E402
from depin.crypto import SigningKey, load_key, open_envelope  # noqa: E402
from depin.errors import DepinError  # noqa: E402
from depin.protocol import LeaseGrant, LeaseRequest, ResultItem, ResultsAck, ResultsRequest, TaskMessage  # noqa: E402

BAND_JOB = {"width": 64, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 32}  # + height
FLEET_TASKS = 4096  # one-row bands: mandelbrot's largest job (height <= 4096)
WARMUP_TASKS = 256  # 64 results per active identity: past probation (3 valid), capacity 2 -> 1024 (9 doublings)
PRICE = 10
IDLE_MIN_PRICE = PRICE + 1
REPLICAS = 2
WAIT_MS = 20_000  # the reference worker's poll_ms: the idle identities' long polls
RETRY_S = 0.02  # an active identity's pause after an empty lease answer
ACTIVE, BATCH = 8, 16
DONE_SHARE = 0.9
RAMP_AHEAD = 200  # idle identities connecting at once beyond those registered
FLEET_PROCS = 3  # child processes the idle fleet is split across (--fleet-procs)
REGISTER_TIMEOUT_S = 600.0
SETTLE_S = 3.0  # after the last registration, before VmRSS is read
IDLE_CPU_S = 5.0  # coordinator CPU measured over this long with only the idle fleet
READ_MARGIN_S = 300.0  # beyond wait_ms, how long a simulated worker waits for an answer before giving up
PROBE_EVERY_S = 0.01
STALL_MS = 50  # issue 10's goal: no other request blocked for more than ~50 ms
ONCE_ABOVE = 200_000  # submits larger than this run once
SUBMIT_TIMEOUT_S = 900.0
GRANT = 10**15
RATE = "1000000"  # --rate-per-address and --rate-per-key: far above what this script sends
PROFILE_HZ = 100
MIN_RESULTS = 3 * ACTIVE  # results round trips a window must hold before it may end short of DONE_SHARE...
MAX_WINDOWS = 5  # ...unless it has lasted this many --window


# ---- the coordinator process ------------------------------------------------------------------------------------


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit (children inherit it); return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Coord:
    """A running `depin coordinator` and what can be read about it from outside."""

    proc: subprocess.Popen[bytes]
    url: str
    data: pathlib.Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        """VmRSS in bytes."""
        return int(memory(self.pid)["VmRSS"] * 2**20)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def open_files(self) -> tuple[int, int]:
        """(descriptors open now, soft limit)."""
        limit = 0
        for line in pathlib.Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                limit = int(line.split()[3])
        return len(os.listdir(f"/proc/{self.pid}/fd")), limit

    def registered(self) -> int:
        """Workers the coordinator has committed to its database (each registration is written before its poll
        waits), read from the database file so that asking costs the coordinator nothing."""
        db = sqlite3.connect(f"file:{self.data / 'coordinator.sqlite3'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM workers").fetchone()[0])
        finally:
            db.close()

    def operator(self) -> SigningKey:
        return load_key(self.data / "coordinator.key")


@contextlib.contextmanager
def coordinator(root: pathlib.Path, label: str) -> Iterator[Coord]:
    """A fresh coordinator in its own data dir under `root`, stopped (SIGTERM) on exit."""
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
    proc, url = start_coordinator(run_dir / "coordinator", run_dir / "coordinator.log",
                                  "--rate-per-address", RATE, "--rate-per-key", RATE)
    try:
        yield Coord(proc, url, run_dir / "coordinator")
    finally:
        stop([proc], timeout_s=60.0)


class _Pool(Client):
    """depin's client without aiohttp's cap of 100 connections: every identity with a request in flight has its
    own TCP connection, as separate machines would."""

    async def __aenter__(self) -> _Pool:
        self._session = aiohttp.ClientSession(timeout=self._timeout, connector=aiohttp.TCPConnector(limit=0))
        return self


async def _submitter(c: Client, coord: Coord) -> SigningKey:
    key = SigningKey.generate()
    await c.post_signed("/v1/grants", coord.operator(), "grant", {"account": key.id, "amount": GRANT})
    return key


async def _submit(c: Client, key: SigningKey, kernel: str, params: dict[str, Any], tasks: int,
                  read_timeout_s: float | None = None) -> str:
    payload = {"kernel": kernel, "params": params, "tasks": tasks, "replicas": REPLICAS, "max_results": None,
               "price": PRICE}
    answer = await c.post_signed("/v1/jobs", key, "submit", payload, read_timeout_s=read_timeout_s)
    return str(answer["job_id"])


def _band_job(tasks: int) -> dict[str, Any]:
    return {**BAND_JOB, "height": tasks}


def _sample_job(tasks: int, seed: int) -> dict[str, Any]:
    return {"func": 0, "samples": tasks, "seed": seed}


# ---- simulated workers ------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the active identities saw: round trips as (start, seconds, tasks leased or reported), when each task
    reached its quorum."""

    lease: list[tuple[float, float, int]] = field(default_factory=list)
    results: list[tuple[float, float, int]] = field(default_factory=list)
    validated: list[float] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)  # task id -> accepted results
    refused: Counter[str] = field(default_factory=Counter)  # "status: reason" of every other ack
    errors: Counter[str] = field(default_factory=Counter)

    def within(self, kind: str, start: float, end: float) -> list[float]:
        """Round-trip seconds of the `kind` requests sent in [start, end)."""
        return [s for t, s, _ in getattr(self, kind) if start <= t < end]

    def empty_leases(self, start: float, end: float) -> int:
        """How many leases sent in [start, end) were answered with no task."""
        return sum(1 for t, _, n in self.lease if start <= t < end and n == 0)


async def active_worker(c: Client, key: SigningKey, kernel_key: str, tally: Tally, done: asyncio.Event) -> None:
    """Lease a batch, compute it with the real kernel, report it, again, until `done`. It asks with wait_ms 0 and
    retries an empty answer after RETRY_S: a lease round trip is how long the coordinator takes to answer, never
    a wait for work (placement may leave a worker nothing for a while: every slot left reserved for others)."""
    request = LeaseRequest(max_tasks=BATCH, wait_ms=0, kernels=(kernel_key,)).to_payload()
    while not done.is_set():
        sent = time.perf_counter()
        try:
            answer = await c.post_signed("/v1/lease", key, "lease-request", request, read_timeout_s=READ_MARGIN_S)
        except DepinError as exc:
            tally.errors[f"lease: {exc}"[:100]] += 1
            await asyncio.sleep(0.5)
            continue
        tally.lease.append((sent, time.perf_counter() - sent, len(answer["leases"])))
        items = []
        for i, raw in enumerate(answer["leases"]):
            grant = LeaseGrant.from_payload(raw, i)
            task = TaskMessage.from_payload(codec.decode(grant.task))
            began = time.perf_counter()
            output = kernels.get(task.kernel, task.kernel_version).run(task.params)
            items.append(ResultItem(grant.lease_id, task.task_id, codec.array_to_wire(output),
                                    int((time.perf_counter() - began) * 1000)))
        if not items:
            await asyncio.sleep(RETRY_S)
            continue
        envelope = key.seal("results", {**ResultsRequest(tuple(items)).to_payload(), **fresh()})
        sent = time.perf_counter()
        try:
            answer = await c.post("/v1/results", envelope, read_timeout_s=READ_MARGIN_S)
        except DepinError as exc:
            tally.errors[f"results: {exc}"[:100]] += 1
            continue
        acked = time.perf_counter()
        tally.results.append((sent, acked - sent, len(items)))
        _, body = open_envelope("results-ack", answer)
        for item, ack in zip(items, ResultsAck.from_payload(body).acks, strict=True):
            if ack.status == "accepted":
                tally.accepted[item.task_id] += 1
                if tally.accepted[item.task_id] == REPLICAS:
                    tally.validated.append(acked)
            else:
                tally.refused[f"{ack.status}: {ack.reason}"] += 1


class Actives:
    """The active identities; `run_until` lets them work until a condition on the tally holds."""

    def __init__(self, c: Client, count: int) -> None:
        self.c = c
        self.keys = [SigningKey.generate() for _ in range(count)]

    async def run_until(self, kernel_key: str, tally: Tally, finished: Callable[[], bool],
                        at_end: Callable[[], None] = lambda: None) -> float:
        """Work until `finished()` (checked every 20 ms), call `at_end()`, then let the round trips in flight
        end. Returns perf_counter() at the moment `finished()` held.

        Nothing is cancelled mid-request: the coordinator may not notice a request its client gave up on, and a
        lease granted to nobody holds its task slot until the lease timeout."""
        done = asyncio.Event()
        tasks = [asyncio.create_task(active_worker(self.c, k, kernel_key, tally, done)) for k in self.keys]
        try:
            while not finished():
                await asyncio.sleep(0.02)
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            end = time.perf_counter()
            at_end()
            done.set()
            await asyncio.wait(tasks, timeout=2 * READ_MARGIN_S)
            return end
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def job(self, submitter: SigningKey, kernel: str, params: dict[str, Any], tasks: int) -> Tally:
        """Submit a job and compute all of it (the warm-up)."""
        await _submit(self.c, submitter, kernel, params, tasks)
        tally = Tally()
        await self.run_until(f"{kernel}@1", tally, lambda: len(tally.validated) >= tasks)
        return tally


def _fleet_child(conn: Connection, url: str, n: int, kernel_key: str) -> None:
    """A fleet process's entry point (spawned): n idle identities of its own, driven by the parent over `conn`."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Shard(conn, n, kernel_key).serve(url))


class _Shard:
    """One fleet process's idle identities, each keeping one long poll open, re-sent as soon as it returns. The
    parent sends ("start", k): run k polls in all; ("report",): answer the counters; ("stop",): end them, answer
    the counters one last time. Counters go back as ("counts", sent, answered, leased, {error: count})."""

    def __init__(self, conn: Connection, n: int, kernel_key: str) -> None:
        self.conn = conn
        self.keys = [SigningKey.generate() for _ in range(n)]
        self.request = LeaseRequest(max_tasks=1, wait_ms=WAIT_MS, kernels=(kernel_key,),
                                    min_price=IDLE_MIN_PRICE).to_payload()
        self.sent = self.answered = self.leased = 0
        self.errors: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def _counts(self) -> tuple[str, int, int, int, dict[str, int]]:
        return "counts", self.sent, self.answered, self.leased, dict(self.errors)

    async def serve(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        async with _Pool(url, timeout_s=120.0) as c:
            loop.add_reader(self.conn.fileno(), self._command, c)
            self.conn.send(("ready",))
            await self._stop.wait()
            loop.remove_reader(self.conn.fileno())
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            self.conn.send(self._counts())

    def _command(self, c: Client) -> None:
        try:
            message = self.conn.recv()
        except EOFError:  # the parent is gone
            message = ("stop",)
        if message[0] == "start":
            for key in self.keys[len(self._tasks):message[1]]:
                self._tasks.append(asyncio.create_task(self._poll(c, key)))
        elif message[0] == "report":
            self.conn.send(self._counts())
        else:
            self._stop.set()

    async def _poll(self, c: Client, key: SigningKey) -> None:
        while True:
            self.sent += 1
            try:
                answer = await c.post_signed("/v1/lease", key, "lease-request", self.request,
                                             read_timeout_s=WAIT_MS / 1000 + READ_MARGIN_S)
            except DepinError as exc:
                self.errors[str(exc)[:100]] += 1
                await asyncio.sleep(1 + random.random())
                continue
            self.answered += 1
            self.leased += len(answer["leases"])  # never, if min_price keeps them idle


async def _recv(conn: Connection, timeout_s: float = 60.0) -> Any:
    """The next message on `conn`, awaited without blocking this loop."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    loop.add_reader(conn.fileno(), lambda: readable.done() or readable.set_result(None))
    try:
        await asyncio.wait_for(readable, timeout_s)
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv()


class Fleet:
    """N idle identities split across `procs` spawned child processes, each with its own event loop, connection
    pool and keys (a `_Shard`), so that their polls never make the timing process's loop late. This side only
    paces their start and sums their counters (as of the last `update()` or `close()`)."""

    def __init__(self, url: str, n: int, kernel_key: str, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        k = min(procs, n)
        self.n = n
        self.shares = [n // k + (i < n % k) for i in range(k)]
        self._started = [0] * k
        self._conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for i, share in enumerate(self.shares):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_fleet_child, args=(theirs, url, share, kernel_key), name=f"fleet-{i}",
                               daemon=True)
            proc.start()
            theirs.close()
            self._conns.append(mine)
            self.procs.append(proc)
        self.sent = self.answered = self.leased = 0
        self.errors: Counter[str] = Counter()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    async def ready(self) -> None:
        """Wait until every fleet process has made its keys and opened its pool."""
        for conn in self._conns:
            await _recv(conn, timeout_s=120.0)

    def _check(self) -> None:
        for p in self.procs:
            if not p.is_alive():
                raise RuntimeError(f"fleet process {p.name} exited (code {p.exitcode})")

    async def connect(self, registered: Callable[[], int]) -> None:
        """Start every identity's poll loop, at most RAMP_AHEAD ahead of the registrations the coordinator has
        committed (`registered()`): faster, its listen backlog overflows and connections time out and retry. The
        allowance is dealt round-robin, so each process runs its share of it."""
        base, k = registered(), len(self._conns)
        while sum(self._started) < self.n:
            self._check()
            allowed = min(self.n, registered() + RAMP_AHEAD - base)
            for i, conn in enumerate(self._conns):
                want = min(self.shares[i], allowed // k + (i < allowed % k))
                if want > self._started[i]:
                    conn.send(("start", want))
                    self._started[i] = want
            await asyncio.sleep(0.05)

    def _add(self, counts: list[tuple[str, int, int, int, dict[str, int]]]) -> None:
        self.sent = sum(c[1] for c in counts)
        self.answered = sum(c[2] for c in counts)
        self.leased = sum(c[3] for c in counts)
        self.errors = sum((Counter(c[4]) for c in counts), Counter())

    async def update(self) -> None:
        """Fetch every fleet process's counters now."""
        for conn in self._conns:
            conn.send(("report",))
        self._add([await _recv(conn) for conn in self._conns])

    async def close(self) -> None:
        """Stop every poll, take the last counters, wait for the processes to exit."""
        for conn in self._conns:
            conn.send(("stop",))
        self._add([await _recv(conn, timeout_s=120.0) for conn in self._conns])
        for p in self.procs:
            p.join(30)
        self.kill()

    def kill(self) -> None:
        """End any fleet process still running (after close(), none are), and close the pipes."""
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        for conn in self._conns:
            conn.close()
        self._conns = []


async def _lag(out: list[float], done: asyncio.Event) -> None:
    # How late this process's own event loop wakes up: if it is late, the round trips measured here are too.
    while not done.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.05)
        out.append(time.perf_counter() - before - 0.05)


class Spy:
    """py-spy recording the coordinator's stacks (raw format) until stopped."""

    def __init__(self, pid: int, out: pathlib.Path) -> None:
        with open(out.with_suffix(".log"), "wb") as log:
            self.proc = subprocess.Popen(
                [py_spy(), "record", "--pid", str(pid), "--rate", str(PROFILE_HZ), "--threads", "--idle",
                 "--nonblocking", "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL, stderr=log)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        self.proc.wait(120)


# ---- 1. idle fleet ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """CPU seconds used so far by the coordinator, by this process, by the fleet processes and by the whole
    machine, at one moment."""

    wall: float
    coordinator: float
    own: float
    fleet: float
    machine: float

    @classmethod
    def now(cls, coord: Coord, fleet: Fleet) -> Usage:
        return cls(time.perf_counter(), coord.cpu(), cpu_seconds(os.getpid()),
                   sum(cpu_seconds(pid) for pid in fleet.pids), machine_busy_seconds())

    def cores(self, before: Usage) -> tuple[float, float, float, float]:
        """Cores used since `before`: (the coordinator, this process, the fleet processes, everything else)."""
        wall = self.wall - before.wall
        coord, own, fleet = self.coordinator - before.coordinator, self.own - before.own, self.fleet - before.fleet
        return coord / wall, own / wall, fleet / wall, (self.machine - before.machine - coord - own - fleet) / wall


@dataclass
class FleetRun:
    """One fleet measurement."""

    n: int
    lease: list[float]
    results: list[float]
    empty_leases: int  # lease answers with no task (retried after RETRY_S)
    validated: int  # tasks validated within the window
    window_s: float
    coordinator_ms_per_task: float | None  # coordinator CPU in the window per task validated in it
    rss_before: int  # after the warm-up, before any idle identity connected
    rss_idle: int  # the fleet registered and settled
    rss_end: int
    polls_before_rss: int  # lease requests the fleet had sent when rss_idle was read (each nonce kept 10 min)
    register_s: float  # from the first idle identity to the last one registered
    idle_cores: tuple[float, float, float, float]  # with only the fleet: coordinator, this process, fleet, others
    window_cores: tuple[float, float, float, float]  # during the window
    lag_max_ms: float  # this (the timing) process's worst event-loop lateness during the window
    fleet_procs: int  # child processes the idle identities ran in
    fds: int
    fd_limit: int
    fleet_errors: Counter[str]
    fleet_leased: int
    refused: Counter[str]
    errors: Counter[str]
    tasks_validated: int  # as the coordinator reports at the end

    @property
    def per_worker(self) -> float | None:
        return (self.rss_idle - self.rss_before) / self.n if self.n else None

    @property
    def validated_per_s(self) -> float:
        return self.validated / self.window_s


async def fleet_run(coord: Coord, n: int, tasks: int, window_s: float, procs: int,
                    spy: pathlib.Path | None) -> FleetRun:
    """Warm up the actives, connect n idle identities (in `procs` child processes), time one job of `tasks`
    one-row bands."""
    kernel_key = "mandelbrot@1"
    async with _Pool(coord.url, timeout_s=120.0) as c:
        submitter = await _submitter(c, coord)
        actives = Actives(c, ACTIVE)
        await actives.job(submitter, "mandelbrot", _band_job(WARMUP_TASKS), WARMUP_TASKS)
        fleet = Fleet(coord.url, n, kernel_key, procs)
        try:
            await fleet.ready()
            await asyncio.sleep(1.0)
            rss_before = coord.rss()
            started = time.perf_counter()
            connecting = asyncio.create_task(fleet.connect(coord.registered))
            while coord.registered() < n + ACTIVE:
                if connecting.done():
                    connecting.result()  # raises what ended it early
                if time.perf_counter() - started > REGISTER_TIMEOUT_S:
                    await fleet.update()
                    raise RuntimeError(f"only {coord.registered() - ACTIVE} of {n} idle identities registered in "
                                       f"{REGISTER_TIMEOUT_S:.0f} s; errors: {dict(fleet.errors.most_common(3))}")
                await asyncio.sleep(0.2)
            await connecting
            register_s = time.perf_counter() - started
            await asyncio.sleep(SETTLE_S)
            rss_idle = coord.rss()
            await fleet.update()
            polls = fleet.sent
            fds, fd_limit = coord.open_files()
            before = Usage.now(coord, fleet)
            await asyncio.sleep(IDLE_CPU_S)
            idle_cores = Usage.now(coord, fleet).cores(before)

            job_id = await _submit(c, submitter, "mandelbrot", _band_job(tasks), tasks)
            tally, lags, lag_done = Tally(), [], asyncio.Event()
            lagger = asyncio.create_task(_lag(lags, lag_done))
            spying = Spy(coord.pid, spy) if spy is not None else None
            before = Usage.now(coord, fleet)
            ended: list[Usage] = []

            def finished() -> bool:
                # 90% validated; or the window is over and there are enough round trips to speak of (or far over)
                took = time.perf_counter() - before.wall
                return (len(tally.validated) >= DONE_SHARE * tasks or took >= MAX_WINDOWS * window_s
                        or (took >= window_s and len(tally.results) >= MIN_RESULTS))

            end = await actives.run_until(kernel_key, tally, finished,
                                          lambda: ended.append(Usage.now(coord, fleet)))
            if spying is not None:
                spying.stop()
            lag_done.set()
            await lagger
            validated = sum(1 for t in tally.validated if t < end)
            job = await c.get_json(f"/v1/jobs/{job_id}")
            rss_end = coord.rss()
            await fleet.close()
        finally:
            fleet.kill()
    start, cpu = before.wall, ended[0].coordinator - before.coordinator
    return FleetRun(n, tally.within("lease", start, end), tally.within("results", start, end),
                    tally.empty_leases(start, end), validated, end - start,
                    cpu / validated * 1e3 if validated else None, rss_before, rss_idle, rss_end, polls, register_s,
                    idle_cores, ended[0].cores(before), max(lags, default=0.0) * 1e3, len(fleet.procs), fds,
                    fd_limit, fleet.errors, fleet.leased, tally.refused, tally.errors, int(job["tasks_validated"]))


# ---- 2. big submit ----------------------------------------------------------------------------------------------


@dataclass
class SubmitRun:
    """One big submit."""

    tasks: int
    submit_s: float | None  # None: it failed (error says how)
    error: str | None
    stall_s: float  # the longest GET /v1/info round trip while the submit ran
    slow_probes: int  # probes over STALL_MS
    probes: int
    rss_growth: int
    job_get_s: float | None  # median of 5 GET /v1/jobs/{id}
    submit_cpu_s: float  # coordinator CPU seconds from sending the submit to its answer (probes included)

    @property
    def per_task(self) -> float:
        return self.rss_growth / self.tasks


async def _probe(c: Client, out: list[float], done: asyncio.Event) -> None:
    while not done.is_set():
        sent = time.perf_counter()
        await c.get_json("/v1/info")
        took = time.perf_counter() - sent
        out.append(took)
        await asyncio.sleep(max(0.0, PROBE_EVERY_S - took))


async def submit_run(coord: Coord, tasks: int) -> SubmitRun:
    """Submit one job of `tasks` tasks while probing GET /v1/info."""
    async with Client(coord.url, timeout_s=SUBMIT_TIMEOUT_S) as c, Client(coord.url, timeout_s=SUBMIT_TIMEOUT_S) as p:
        submitter = await _submitter(c, coord)
        await asyncio.sleep(0.5)
        rss0 = coord.rss()
        probes: list[float] = []
        done = asyncio.Event()
        prober = asyncio.create_task(_probe(p, probes, done))
        await asyncio.sleep(0.3)
        sent, cpu0 = time.perf_counter(), coord.cpu()
        job_id: str | None = None
        error = None
        try:
            job_id = await _submit(c, submitter, "montecarlo", _sample_job(tasks, 1), tasks,
                                   read_timeout_s=SUBMIT_TIMEOUT_S)
        except DepinError as exc:
            error = f"{type(exc).__name__}: {exc}"
        submit_s, cpu = time.perf_counter() - sent, coord.cpu() - cpu0
        await asyncio.sleep(0.5)
        done.set()
        await prober
        await asyncio.sleep(0.5)
        rss1 = coord.rss()
        gets = []
        if job_id is not None:
            for _ in range(5):
                sent = time.perf_counter()
                await c.get_json(f"/v1/jobs/{job_id}")
                gets.append(time.perf_counter() - sent)
    return SubmitRun(tasks, None if error else submit_s, error, max(probes), sum(s * 1e3 > STALL_MS for s in probes),
                     len(probes), rss1 - rss0, statistics.median(gets) if gets else None, cpu)


# ---- 3. long job ------------------------------------------------------------------------------------------------


@dataclass
class LongRun:
    """One long job: when each task was validated, seen from the workers."""

    tasks: int
    submitted: float  # perf_counter() when the submit was answered
    validated: list[float]
    finished: bool
    job_s: float | None  # the coordinator's finished_ms - created_ms
    cpu: list[tuple[float, float]]  # (perf_counter(), coordinator CPU seconds), every 20 ms or so

    def _span(self, first: float, last: float) -> tuple[int, float, float] | None:
        # (tasks, from, to): the moments the `first` and `last` shares of the tasks were validated
        lo, hi = int(first * self.tasks), int(last * self.tasks)
        if hi > len(self.validated):
            return None
        return hi - lo, self.submitted if lo == 0 else self.validated[lo - 1], self.validated[hi - 1]

    def rate(self, first: float, last: float) -> float | None:
        """Validated tasks/s between the moments the `first` and `last` shares of the tasks were validated."""
        span = self._span(first, last)
        return None if span is None else span[0] / (span[2] - span[1])

    def cpu_ms(self, first: float, last: float) -> float | None:
        """Coordinator CPU milliseconds per task validated over the same span."""
        span = self._span(first, last)
        if span is None:
            return None
        times = [t for t, _ in self.cpu]

        def at(t: float) -> float:
            return self.cpu[min(len(self.cpu) - 1, bisect.bisect_left(times, t))][1]

        return (at(span[2]) - at(span[1])) / span[0] * 1e3


async def long_run(coord: Coord, tasks: int, budget_s: float) -> LongRun:
    """Warm up the actives on montecarlo, then time one job of `tasks` tasks (at most `budget_s`)."""
    async with _Pool(coord.url, timeout_s=SUBMIT_TIMEOUT_S) as c:
        submitter = await _submitter(c, coord)
        actives = Actives(c, ACTIVE)
        await actives.job(submitter, "montecarlo", _sample_job(WARMUP_TASKS, 2), WARMUP_TASKS)
        job_id = await _submit(c, submitter, "montecarlo", _sample_job(tasks, 3), tasks,
                               read_timeout_s=SUBMIT_TIMEOUT_S)
        submitted = time.perf_counter()
        tally = Tally()
        cpu = [(submitted, coord.cpu())]

        def finished() -> bool:
            cpu.append((time.perf_counter(), coord.cpu()))
            return len(tally.validated) >= tasks or time.perf_counter() - submitted > budget_s

        await actives.run_until("montecarlo@1", tally, finished)
        job = await c.get_json(f"/v1/jobs/{job_id}")
    end = job["finished_ms"]
    return LongRun(tasks, submitted, sorted(tally.validated), len(tally.validated) >= tasks,
                   None if end is None else (end - job["created_ms"]) / 1000, cpu)


# ---- report -----------------------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _med(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _ms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "–"
    return f"{seconds * 1e3:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1e3:.1f} ms"


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def report_fleet(runs: dict[int, list[FleetRun]], tasks: int, window_s: float) -> None:
    print(f"\n### 1. Idle fleet: {ACTIVE} active identities (batch {BATCH}) on {tasks} one-row mandelbrot bands, "
          f"replicas {REPLICAS}, while N identities long-poll (wait_ms {WAIT_MS:,}, min_price {IDLE_MIN_PRICE} "
          f"> price {PRICE})\n")
    print("| idle workers N | lease p50 | lease p99 | results p50 | results p99 | validated tasks/s "
          "| coordinator CPU per task | coordinator VmRSS, fleet idle | per idle worker "
          "| coordinator CPU, fleet idle | runs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, rs in runs.items():
        def m(f: Callable[[FleetRun], float | None], rs: list[FleetRun] = rs) -> float | None:
            return _med([f(r) for r in rs])
        per, cpu = m(lambda r: r.per_worker), m(lambda r: r.coordinator_ms_per_task)
        print(f"| {n:,} | {_ms(m(lambda r: _pct(r.lease, 0.5)))} | {_ms(m(lambda r: _pct(r.lease, 0.99)))} "
              f"| {_ms(m(lambda r: _pct(r.results, 0.5)))} | {_ms(m(lambda r: _pct(r.results, 0.99)))} "
              f"| {m(lambda r: r.validated_per_s):,.1f} | {'–' if cpu is None else f'{cpu:.2f} ms'} "
              f"| {_mib(m(lambda r: r.rss_idle) or 0)} MiB | {'–' if per is None else f'{per / 1024:,.1f} KiB'} "
              f"| {m(lambda r: r.idle_cores[0]):.2f} cores | {len(rs)} |")
    procs = max(r.fleet_procs for rs in runs.values() for r in rs)
    print(f"\nMedians over the runs (each on a fresh coordinator) of each run's own figures. The N idle identities "
          f"run in {procs} child processes (spawned; each its own event loop, connection pool and keys), not in this "
          f"process: the timing process holds only the {ACTIVE} active identities, so its loop's lateness is not the "
          f"fleet's (the machine's cores are still shared). A round trip is timed in "
          f"this process from sending the request to reading the answer; the active identities lease with wait_ms "
          f"0, so a lease round trip never includes a wait for work. The window runs from the job's submit until "
          f"{DONE_SHARE:.0%} of its tasks are validated, or {window_s:.0f} s have passed and the window holds "
          f"{MIN_RESULTS} results round trips, or {MAX_WINDOWS * window_s:.0f} s have passed. Coordinator CPU per "
          f"task = its CPU seconds in the window / tasks validated in it. Per idle worker = (VmRSS with the fleet "
          f"registered - VmRSS before it connected) / N; it includes the nonce the coordinator keeps for 10 minutes "
          f"of each request. CPU with the fleet idle: over {IDLE_CPU_S:.0f} s before the job. Cores per run are "
          f"reported as coordinator / this (timing) process / the fleet processes together / everything else on the "
          f"machine. Per run:")
    for n, rs in runs.items():
        for r in rs:
            wc, ic = r.window_cores, r.idle_cores
            print(f"- N={n:,}: {len(r.lease)} leases ({r.empty_leases} answered empty), {len(r.results)} results "
                  f"requests, {r.validated} tasks validated in {r.window_s:.1f} s (the coordinator counted "
                  f"{r.tasks_validated} by the end); VmRSS {_mib(r.rss_before)} -> {_mib(r.rss_idle)} -> "
                  f"{_mib(r.rss_end)} MiB at the end, read after {r.polls_before_rss:,} idle polls; fleet registered "
                  f"in {r.register_s:.0f} s ({r.fleet_procs} fleet processes); coordinator fds {r.fds:,} (limit "
                  f"{r.fd_limit:,}); cores (coordinator/this process/fleet processes/other load): fleet idle "
                  f"{ic[0]:.2f}/{ic[1]:.2f}/{ic[2]:.2f}/{ic[3]:.2f}, window {wc[0]:.2f}/{wc[1]:.2f}/{wc[2]:.2f}/"
                  f"{wc[3]:.2f}; this process's loop at most {r.lag_max_ms:,.0f} ms late"
                  + (f"; fleet errors {dict(r.fleet_errors.most_common(3))}" if r.fleet_errors else "")
                  + (f"; idle identities leased {r.fleet_leased}" if r.fleet_leased else "")
                  + (f"; refused acks {dict(r.refused.most_common(3))}" if r.refused else "")
                  + (f"; errors {dict(r.errors.most_common(3))}" if r.errors else ""))


def report_submit(runs: dict[int, list[SubmitRun]]) -> None:
    print(f"\n### 2. Big submit: montecarlo, one sample per task, replicas {REPLICAS}, while GET /v1/info is sent "
          f"every {PROBE_EVERY_S * 1e3:.0f} ms\n")
    print(f"| tasks | submit answered in | coordinator CPU for it | longest GET /v1/info | probes over {STALL_MS} ms "
          "| VmRSS growth | per task | GET /v1/jobs/{id} | runs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tasks, rs in runs.items():
        ok = [r for r in rs if r.error is None] or rs
        growth = _med([r.rss_growth for r in ok]) or 0
        print(f"| {tasks:,} | {_ms(_med([r.submit_s for r in ok]))} | {_ms(_med([r.submit_cpu_s for r in ok]))} "
              f"| {_ms(_med([r.stall_s for r in ok]))} | {_med([r.slow_probes for r in ok]):,.0f} "
              f"| {_mib(growth)} MiB | {growth / tasks:,.0f} B | {_ms(_med([r.job_get_s for r in ok]))} "
              f"| {len(rs)} |")
    print("\nVmRSS growth: from before the submit to 0.5 s after its answer. GET /v1/jobs/{id}: the median of 5, "
          "after the submit. Per run:")
    for tasks, rs in runs.items():
        for r in rs:
            print(f"- {tasks:,} tasks: " + (f"failed after {_ms(r.submit_s)}: {r.error}; " if r.error else "")
                  + f"answered in {_ms(r.submit_s)}, {r.probes} probes, the longest {_ms(r.stall_s)}, "
                  f"{r.slow_probes} over {STALL_MS} ms, VmRSS +{_mib(r.rss_growth)} MiB")


def report_long(runs: list[LongRun]) -> None:
    tasks = runs[0].tasks
    print(f"\n### 3. Long job: {ACTIVE} active identities (batch {BATCH}) on {tasks:,} montecarlo tasks of one "
          f"sample, replicas {REPLICAS}\n")
    spans = {"first 10%": (0.0, 0.1), "45-55%": (0.45, 0.55), "last 10%": (0.9, 1.0), "whole job": (0.0, 1.0)}
    print("| tasks validated | tasks/s | coordinator CPU per task |")
    print("|---|---:|---:|")
    rates = {}
    for label, (a, b) in spans.items():
        rates[label] = _med([r.rate(a, b) for r in runs])
        cpu = _med([r.cpu_ms(a, b) for r in runs])
        print(f"| {label} | {'–' if rates[label] is None else f'{rates[label]:,.0f}'} "
              f"| {'–' if cpu is None else f'{cpu:.2f} ms'} |")
    first, last = rates["first 10%"], rates["last 10%"]
    job_s = _med([r.job_s for r in runs])
    print(f"\nLast 10% / first 10%: {'–' if first is None or last is None else f'{last / first:.2f}'}. Job time "
          f"(the coordinator's finished_ms - created_ms, submit included): "
          f"{'–' if job_s is None else f'{job_s:,.0f} s'}. Median of {len(runs)} run(s). A span runs from the "
          "moment its first share of the tasks was validated (the submit's answer, for the first) to the moment "
          "its last share was; the CPU is the coordinator's over the same span.")
    for r in runs:
        if not r.finished:
            print(f"- a run stopped at the budget with {len(r.validated):,} of {r.tasks:,} tasks validated")


def report_profile(path: pathlib.Path, top: int = 15) -> None:
    from profile_summary import parse, summarise

    print(f"\n### Coordinator profile during the window (py-spy --idle at {PROFILE_HZ} Hz; raw stacks in {path})\n")
    print(summarise(parse(str(path), "MainThread"), top))
    print("\nInnermost frames by line:\n")
    print(summarise(parse(str(path), "MainThread", lines=True), top).rsplit("\n\n", 1)[1])


# ---- main -------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: N = 0,200, 512-task jobs, one run each")
    ap.add_argument("--parts", default="fleet,submit,long", help="which parts (default fleet,submit,long)")
    ap.add_argument("--fleet", help="idle identities N, a list (default 0,1000,5000,10000)")
    ap.add_argument("--fleet-procs", type=int, default=FLEET_PROCS,
                    help=f"child processes the idle identities are split across (default {FLEET_PROCS})")
    ap.add_argument("--fleet-tasks", type=int, help=f"tasks of the active job (default {FLEET_TASKS})")
    ap.add_argument("--window", type=float, default=60.0, help="longest active window in seconds (default 60)")
    ap.add_argument("--big", help="big submit sizes (default 100000,1000000)")
    ap.add_argument("--long-tasks", type=int, help="tasks of the long job (default 100000)")
    ap.add_argument("--long-budget", type=float, default=600.0, help="stop the long job after this many seconds")
    ap.add_argument("--runs", type=int, help="runs per figure, median shown (default 3)")
    ap.add_argument("--long-runs", type=int, default=1, help="runs of the long job (default 1)")
    ap.add_argument("--profile", metavar="DIR", help="one more fleet run at the largest N under py-spy")
    args = ap.parse_args()
    quick = args.quick
    fleet = [int(x) for x in (args.fleet or ("0,200" if quick else "0,1000,5000,10000")).split(",") if x]
    fleet_tasks = args.fleet_tasks or (512 if quick else FLEET_TASKS)
    big = [int(x) for x in (args.big or ("20000" if quick else "100000,1000000")).split(",") if x]
    long_tasks = args.long_tasks or (2000 if quick else 100_000)
    runs = args.runs if args.runs is not None else (1 if quick else 3)
    parts = set(args.parts.split(","))

    limit = raise_open_files()
    if max(fleet) + 1000 > limit:
        raise SystemExit(f"N = {max(fleet):,} needs about {max(fleet) + 1000:,} open files in the coordinator; the "
                         f"hard limit is {limit:,} (raise it: ulimit -Hn, or limits.conf)")
    wall = time.perf_counter()
    load_before = loadavg()
    print(f"machine: {machine()}; {revision()}; open files limit {limit:,} (this process, the fleet "
          "processes and the coordinator)")
    print("command: .venv/bin/python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="depin-scale-") as tmp:
        root = pathlib.Path(tmp)
        # One numba cache for every run; this process computes every result, so compile here once.
        os.environ["NUMBA_CACHE_DIR"] = str(root / "numba-cache")
        for k in kernels.all_kernels():
            k.warmup()
        if "fleet" in parts:
            fleet_runs: dict[int, list[FleetRun]] = {}
            for i in range(runs):
                for n in fleet:
                    with coordinator(root, f"fleet{n}") as coord:
                        r = asyncio.run(fleet_run(coord, n, fleet_tasks, args.window, args.fleet_procs, None))
                    fleet_runs.setdefault(n, []).append(r)
                    print(f"  fleet N={n:,} run {i + 1}: lease p99 {_ms(_pct(r.lease, 0.99))}, results p99 "
                          f"{_ms(_pct(r.results, 0.99))}, {r.validated_per_s:,.0f} tasks/s", flush=True)
            if fleet_runs:
                report_fleet(fleet_runs, fleet_tasks, args.window)
            if args.profile:
                out = pathlib.Path(args.profile).resolve()
                out.mkdir(parents=True, exist_ok=True)
                with coordinator(root, "profile") as coord:
                    asyncio.run(fleet_run(coord, max(fleet), fleet_tasks, args.window, args.fleet_procs,
                                          out / "coordinator.txt"))
                report_profile(out / "coordinator.txt")
        if "submit" in parts:
            submit_runs: dict[int, list[SubmitRun]] = {}
            for tasks in big:
                for i in range(runs if tasks <= ONCE_ABOVE else min(runs, args.long_runs)):
                    with coordinator(root, f"submit{tasks}") as coord:
                        s = asyncio.run(submit_run(coord, tasks))
                    submit_runs.setdefault(tasks, []).append(s)
                    print(f"  submit {tasks:,} run {i + 1}: {_ms(s.submit_s)}"
                          + (f" ({s.error})" if s.error else "") + f", longest probe {_ms(s.stall_s)}", flush=True)
            report_submit(submit_runs)
        if "long" in parts:
            long_runs = []
            for i in range(args.long_runs):
                with coordinator(root, "long") as coord:
                    lr = asyncio.run(long_run(coord, long_tasks, args.long_budget))
                long_runs.append(lr)
                print(f"  long job run {i + 1}: {len(lr.validated):,} tasks validated", flush=True)
            report_long(long_runs)
    print(f"\nLoad average before/after: {load_before} / {loadavg()}. Whole benchmark: "
          f"{time.perf_counter() - wall:,.0f} s wall.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
