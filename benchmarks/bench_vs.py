"""Benchmark: depin beside a ProcessPoolExecutor, Dask distributed and Ray, on the same work, in one run (issue 10).

    .venv/bin/pip install -e '.[bench]'                  # dask[distributed], ray, py-spy: for this benchmark only
    .venv/bin/python benchmarks/bench_vs.py              # the table of RESULTS.md section 7
    .venv/bin/python benchmarks/bench_vs.py --quick      # 1 run of each, 1,000 tiny tasks: checks the harness
    .venv/bin/python benchmarks/bench_vs.py --profile DIR            # then one tiny-task job under py-spy
    .venv/bin/python benchmarks/bench_vs.py --systems pool,depin-r1  # some of the systems

The work, as the same kernel calls everywhere:
  mandelbrot  mandelbrot 2048x2048, max_iter 1000, the default view, split by the kernel into 64 bands of 32 rows;
  tiny        --tiny tasks (10,000): montecarlo func 0 (the indicator of the quarter disc), seed 7, samples 10,000, one
              sample per task: the smallest task a built-in kernel makes in one job (a mandelbrot job cannot split
              past 4,096 one-row bands), output float64 [f, f^2]; the kernel call costs about a microsecond. Not
              nonce, although its tasks are as small: a kernel with a cheap check (`verify`) never goes single
              (coordinator/leasing.py), so nonce could not show what trusted workers change.
Every baseline calls the kernel's own `run` (depin.kernels.<name>.run: the numba function a depin worker calls) on the
task parameters the kernel's `split` made, the ones depin's coordinator sends its workers; each result comes back
to this process. Every system's merged output is compared with the serial one (a mismatch is reported, not hidden).

The systems, one after another, each set up once (depin fresh: once per run):
  serial      the kernel in this process, one core: the work itself (its outputs are the reference);
  pool        concurrent.futures.ProcessPoolExecutor(2), spawn, pool.map (chunksize 1: one task per message);
  dask        distributed.LocalCluster in each setting of DASK_SETTINGS, client.map(pure=False) + client.gather;
  ray         ray.init(num_cpus=2), one remote call per task, ray.get;
  depin-r1    a real `depin coordinator` and 2 real `depin worker` processes on 127.0.0.1 (tests/integration's
              Cluster, data on /tmp's disk, default flags), jobs at --replicas 1;
  depin-trusted  the same at --replicas 2, each worker granted and bonded BOND credits (`depin bond`, PROTOCOL.md 12.6)
              and warmed up until GET /v1/workers lists both as trusted for both kernels;
  depin-fresh a new coordinator and 2 new, unbonded workers for every run (no warm-up job: fresh identities, on
              probation), --replicas 2.
Per work, a warm-up (not timed: one mandelbrot job; one WARM_TINY-task tiny job), then --runs timed runs; the table
shows the median. depin-trusted first runs rounds of a mandelbrot job and a TRUST_TINY-task tiny job until both
workers are trusted for both kernels. Baselines: the wall time of the call that submits every task
and gathers every result. depin: from just before POST /v1/jobs (signed by the submitter, as `depin submit` does) to
the coordinator's own finished_ms (the merged result is stored); the job is waited on as `depin wait` does
(depin.cli.commands.wait_for, 4 polls a second; a watchdog reads the job every WATCH_S); the result is fetched
after (POST /v1/jobs/{id}/result), timed apart. "other load": CPU used meanwhile by processes that are not this
script or its descendants, in cores.

A depin job whose validated count stands still for STALL_S is reported stuck (with how many of its tasks wait at a
quorum raised above the job's), and that work's remaining runs on that system are skipped. --workers N runs depin
with N workers.

--profile DIR: after the timed runs of --profile-system (default depin-fresh), one more tiny job on that system
with py-spy recording the coordinator and every worker (all threads, idle included, PROFILE_HZ); raw stacks in DIR,
summaries printed (benchmarks/profile_summary.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import cpu_seconds, loadavg, machine, machine_busy_seconds, py_spy, revision  # noqa: E402

from depin import codec, kernels  # noqa: E402
from depin.cli.commands import wait_for  # noqa: E402
from depin.client import Client  # noqa: E402
from depin.crypto import SigningKey, load_or_create_key  # noqa: E402
from depin.kernels import Kernel, Params  # noqa: E402
from tests.integration.support import Cluster, Coordinator, Worker, compile_numba_cache, read_db, wait_until  # noqa: E402

MANDELBROT = {"width": 2048, "height": 2048, "max_iter": 1000}
MANDELBROT_TASKS = 64
TINY_SEED = 7
WARM_TINY = 1_000
TRUST_TINY = 100
PRICE = 10
BOND = 10_000  # 1,000 x price: far above the 20 x price single issue needs, so exposure never holds a task back
GRANT = 10**9  # the submitter's credits: more than every escrow of a run
MAX_TRUST_ROUNDS = 4
WATCH_S = 5.0  # how often the stall watchdog reads the job (each GET /v1/jobs/{id} recounts the job's tasks)
STALL_S = 60.0  # a depin job whose validated count does not move for this long is reported stuck
PROFILE_HZ = 100
DASK_SETTINGS: dict[str, dict[str, Any]] = {
    "processes, 2 workers x 1 thread": {"processes": True, "n_workers": 2, "threads_per_worker": 1},
    "processes, 1 worker x 2 threads": {"processes": True, "n_workers": 1, "threads_per_worker": 2},
    "processes, 2 workers x 2 threads": {"processes": True, "n_workers": 2, "threads_per_worker": 2},
    "threads, 1 worker x 2 threads (in this process)": {"processes": False, "n_workers": 1, "threads_per_worker": 2},
}
DEPIN_MODES = {"depin-r1": "depin, replicas 1", "depin-trusted": "depin, replicas 2, trusted (bonded) workers",
               "depin-fresh": "depin, replicas 2, fresh workers"}
SYSTEMS = ("serial", "pool", "dask", "ray", *DEPIN_MODES)


@dataclass(frozen=True)
class Work:
    """A job: a kernel, its job parameters and how many tasks the kernel splits it into."""

    name: str
    kernel: Kernel
    params: Params
    tasks: int

    def split(self) -> list[Params]:
        """The per-task parameters, as the coordinator makes them."""
        return self.kernel.split(self.kernel.validate(self.params), self.tasks)

    def merge(self, outputs: list[np.ndarray]) -> np.ndarray:
        return self.kernel.merge(self.kernel.validate(self.params), outputs)


def tiny(n: int) -> Work:
    """n montecarlo tasks of one sample each."""
    return Work("tiny", kernels.get("montecarlo"), {"func": 0, "samples": n, "seed": TINY_SEED}, n)


@dataclass
class Run:
    """One timed run of one work on one system."""

    seconds: float
    output: np.ndarray
    others: float | None = None  # cores other processes used meanwhile
    detail: dict[str, Any] = field(default_factory=dict)  # depin: counts and CPU of the job


# ---- measuring --------------------------------------------------------------------------------------------------


def _family() -> list[int]:
    """This process and all its descendants (a pool's, Dask's and Ray's processes, depin's daemons)."""
    children: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = cpu_seconds(pid)
    return out


def timed(go: Callable[[], Run]) -> Run:
    """Run `go`, adding the CPU that processes outside this script's family used meanwhile (in cores), unless `go`
    measured it itself (processes it starts and stops are not in the family before or after)."""
    before, busy0, wall0 = _cpu_of(_family()), machine_busy_seconds(), time.perf_counter()
    run = go()
    after, wall = _cpu_of(_family()), time.perf_counter() - wall0
    ours = sum(after[p] - before.get(p, 0.0) for p in after)
    if run.others is None:
        run.others = (machine_busy_seconds() - busy0 - ours) / max(wall, 1e-9)
    return run


# ---- the baselines ----------------------------------------------------------------------------------------------


class Serial:
    """The kernel in this process, one task after another."""

    label = "serial (1 core, in-process)"

    def __init__(self) -> None:
        for k in kernels.all_kernels():
            k.warmup()

    def run(self, work: Work, tasks: list[Params]) -> Run:
        started = time.perf_counter()
        outputs = [work.kernel.run(t) for t in tasks]
        return Run(time.perf_counter() - started, work.merge(outputs))

    def close(self) -> None:
        pass


class Pool:
    """concurrent.futures.ProcessPoolExecutor with 2 spawned processes."""

    label = "ProcessPoolExecutor(2)"

    def __init__(self) -> None:
        self.pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))

    def run(self, work: Work, tasks: list[Params]) -> Run:
        started = time.perf_counter()
        outputs = list(self.pool.map(work.kernel.run, tasks))
        return Run(time.perf_counter() - started, work.merge(outputs))

    def close(self) -> None:
        self.pool.shutdown()


class Dask:
    """A distributed.LocalCluster in one setting and its Client."""

    def __init__(self, setting: str) -> None:
        from distributed import Client as DaskClient
        from distributed import LocalCluster

        self.label = f"Dask: {setting}"
        self.cluster = LocalCluster(dashboard_address=None, silence_logs=logging.ERROR, **DASK_SETTINGS[setting])
        self.client = DaskClient(self.cluster)

    def run(self, work: Work, tasks: list[Params]) -> Run:
        started = time.perf_counter()
        outputs = self.client.gather(self.client.map(work.kernel.run, tasks, pure=False))
        return Run(time.perf_counter() - started, work.merge(outputs))

    def close(self) -> None:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # workers' heartbeats racing the shutdown
        self.client.close()
        self.cluster.close()


class Ray:
    """A local Ray instance with 2 CPUs; one remote call per task."""

    label = "Ray (num_cpus=2)"

    def __init__(self) -> None:
        import ray

        self.ray = ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        self.remotes = {k.name: ray.remote(k.run) for k in kernels.all_kernels()}

    def run(self, work: Work, tasks: list[Params]) -> Run:
        remote = self.remotes[work.kernel.name]
        started = time.perf_counter()
        outputs = self.ray.get([remote.remote(t) for t in tasks])
        return Run(time.perf_counter() - started, work.merge(outputs))

    def close(self) -> None:
        self.ray.shutdown()


# ---- depin ------------------------------------------------------------------------------------------------------


@dataclass
class Nodes:
    """One coordinator and its 2 workers."""

    cluster: Cluster
    coord: Coordinator
    workers: list[Worker]
    key: SigningKey  # the submitter's

    @property
    def pids(self) -> list[int]:
        return [self.coord.proc.pid, *(w.proc.pid for w in self.workers)]

    def trusted(self, works: list[Work]) -> bool:
        """Every worker trusted for the kernel of every work (GET /v1/workers)."""
        shown = self.coord.api.workers()
        want = {w.kernel.key for w in works}
        return all(want <= set(shown.get(w.worker_id, {}).get("trusted", [])) for w in self.workers)

    def flags(self) -> str:
        """Too-fast flags, bans and trust of the workers, as GET /v1/workers shows them."""
        shown = self.coord.api.workers()
        return "; ".join(f"worker-{i}: too_fast {shown[w.worker_id]['too_fast']}, banned {shown[w.worker_id]['banned']}"
                         f", trusted {shown[w.worker_id]['trusted']}" for i, w in enumerate(self.workers))


class Depin:
    """Real depin processes on loopback, in one of DEPIN_MODES."""

    def __init__(self, mode: str, workers: int, root: pathlib.Path, numba_cache: pathlib.Path,
                 say: Callable[[str], None]) -> None:
        self.mode, self.n_workers, self.root, self.numba_cache, self.say = mode, workers, root, numba_cache, say
        self.label = DEPIN_MODES[mode] + ("" if workers == 2 else f" ({workers} workers)")
        self.replicas = 1 if mode == "depin-r1" else 2
        self.starts = 0
        self.notes: list[str] = []
        self.last_flags = ""
        self.nodes = None if mode == "depin-fresh" else self._start()

    def _start(self) -> Nodes:
        self.starts += 1
        root = self.root / f"{self.mode}-{self.starts}"
        root.mkdir(parents=True)
        cluster = Cluster(root, self.numba_cache)
        coord = cluster.coordinator()
        workers = [cluster.worker(coord, f"worker-{i}") for i in range(self.n_workers)]
        ids = {w.worker_id for w in workers}
        wait_until(lambda: ids <= set(coord.api.workers()), "both workers to register", 60)
        cluster.fund(coord, GRANT)
        if self.mode == "depin-trusted":
            for w in workers:
                coord.grant(w.worker_id, BOND)
                bonded = cluster.cli("bond", str(BOND), "--data-dir", str(w.data_dir), "--coordinator", coord.url)
                if bonded.returncode != 0:
                    raise RuntimeError(f"depin bond failed: {bonded.stderr.strip()}")
        return Nodes(cluster, coord, workers, load_or_create_key(cluster.home / "key"))

    def prepare(self, works: list[Work]) -> None:
        """depin-trusted: jobs until every worker is trusted for every work's kernel, on small jobs (a bonded worker
        is trusted after 3 independent agreements)."""
        if self.mode != "depin-trusted" or self.nodes is None:
            return
        rounds = 0
        while rounds < MAX_TRUST_ROUNDS and not self.nodes.trusted(works):
            rounds += 1
            for w in (*works[:1], tiny(TRUST_TINY)):
                self._job(self.nodes, w)
        state = "trusted" if self.nodes.trusted(works) else "NOT trusted"
        self.notes.append(f"trust: {rounds} round(s) of mandelbrot + {TRUST_TINY} tiny tasks, then {state}")
        self.say(f"  {self.notes[-1]}")

    def warm(self, work: Work) -> None:
        """One job of `work`, untimed (none for fresh identities, by definition)."""
        if self.nodes is not None:
            self._job(self.nodes, work)

    def run(self, work: Work, tasks: list[Params]) -> Run:
        if self.nodes is not None:
            return self._job(self.nodes, work)
        nodes = self._start()
        try:
            run = timed(lambda: self._job(nodes, work))  # while the new processes are alive, so they are ours
            self.last_flags = nodes.flags()
            return run
        finally:
            nodes.cluster.close()

    def _job(self, nodes: Nodes, work: Work) -> Run:
        before = _cpu_of(nodes.pids)
        run = asyncio.run(self._submit_and_wait(nodes, work))
        cpu = [cpu_seconds(p) - before[p] for p in nodes.pids]
        job_id = run.detail["job_id"]
        rows = read_db(nodes.coord.db, "SELECT COUNT(*), SUM(verdict = 'valid') FROM results WHERE job_id = ?",
                       (job_id,))
        singles = read_db(nodes.coord.db, "SELECT COUNT(*) FROM tasks WHERE job_id = ? AND single IS NOT NULL",
                          (job_id,))
        run.detail.update(results=rows[0][0], valid=rows[0][1] or 0, single=singles[0][0], coordinator_cpu=cpu[0],
                          workers_cpu=sum(cpu[1:]))
        return run

    async def _submit_and_wait(self, nodes: Nodes, work: Work) -> Run:
        payload = {"kernel": work.kernel.name, "params": work.params, "tasks": work.tasks,
                   "replicas": self.replicas, "max_results": None, "price": PRICE}
        async with Client(nodes.coord.url) as c:
            started, t0 = time.time(), time.perf_counter()
            job_id = (await c.post_signed("/v1/jobs", nodes.key, "submit", payload))["job_id"]
            submit_s = time.perf_counter() - t0
            job = await self._wait(c, nodes, job_id)
            seen_s = time.perf_counter() - t0
            if job["state"] != "done":
                raise RuntimeError(f"job {job_id} ended {job['state']}: {job.get('error')}")
            t1 = time.perf_counter()
            answer = await c.post_signed(f"/v1/jobs/{job_id}/result", nodes.key, "result-request", {"job_id": job_id})
            output = codec.array_from_wire(answer["output"])
            fetch_s = time.perf_counter() - t1
        return Run(job["finished_ms"] / 1000 - started, output,
                   detail={"job_id": job_id, "submit_s": submit_s, "seen_s": seen_s, "fetch_s": fetch_s})

    @staticmethod
    async def _wait(c: Client, nodes: Nodes, job_id: str) -> dict[str, Any]:
        """`depin wait`'s loop, watched: a job whose validated count stays still for STALL_S is reported stuck."""
        waiting = asyncio.ensure_future(wait_for(c, job_id, show=False))  # `depin wait`: 4 polls a second
        seen, since = -1, time.monotonic()
        try:
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=WATCH_S)
                if waiting.done():
                    break
                job = await c.get_json(f"/v1/jobs/{job_id}")
                if job["tasks_validated"] != seen:
                    seen, since = job["tasks_validated"], time.monotonic()
                elif time.monotonic() - since > STALL_S:
                    fell_back = read_db(nodes.coord.db, "SELECT COUNT(*) FROM tasks WHERE job_id = ? AND state = "
                                        "'pending' AND quorum > ?", (job_id, job["quorum"]))[0][0]
                    raise RuntimeError(f"job stuck: {seen}/{job['tasks_total']} tasks validated and no progress for "
                                       f"{STALL_S:.0f} s; pending tasks whose quorum was raised above the job's "
                                       f"{job['quorum']}: {fell_back}; waiting: {job.get('waiting')}")
            return waiting.result()
        finally:
            waiting.cancel()

    def profile(self, work: Work, directory: pathlib.Path) -> None:
        """One more job of `work` with py-spy recording the coordinator and every worker; print the summaries."""
        nodes = self.nodes or self._start()
        spies = []
        try:
            names = ["coordinator", *(f"worker-{i}" for i in range(len(nodes.workers)))]
            for name, pid in zip(names, nodes.pids, strict=True):
                with open(directory / f"{name}.py-spy.log", "wb") as log:
                    spies.append(subprocess.Popen(
                        [py_spy(), "record", "--pid", str(pid), "--rate", str(PROFILE_HZ), "--threads", "--idle",
                         "--nonblocking", "--format", "raw", "--output", str(directory / f"{name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=log))
            time.sleep(1.0)  # let py-spy attach before the job
            run = timed(lambda: self._job(nodes, work))
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            for spy in spies:
                spy.wait(60)
            per_worker = dict(read_db(nodes.coord.db, "SELECT worker_id, COUNT(*) FROM results WHERE job_id = ? "
                                      "GROUP BY worker_id", (run.detail["job_id"],)))
            _print_profile(directory, work, run, [per_worker.get(w.worker_id, 0) for w in nodes.workers])
        finally:
            for spy in spies:
                if spy.poll() is None:
                    spy.kill()
                    spy.wait()
            if self.nodes is None:
                nodes.cluster.close()

    def close(self) -> None:
        if self.nodes is not None:
            self.last_flags = self.nodes.flags()
            self.nodes.cluster.close()
        if self.last_flags:
            self.notes.append(("last run's cluster: " if self.nodes is None else "after the runs: ") + self.last_flags)
            self.say(f"  {self.label}: {self.notes[-1]}")


def _print_profile(directory: pathlib.Path, work: Work, run: Run, results: list[int]) -> None:
    from profile_summary import callers, parse, summarise

    d = run.detail
    print(f"\n## Profile: one {work.name} job of {work.tasks} tasks under py-spy ({PROFILE_HZ} Hz, idle included, "
          f"raw stacks in {directory})\n")
    print(f"job {run.seconds:.2f} s ({work.tasks / run.seconds:,.0f} tasks/s under the profiler); "
          f"{d['results']} results ({' + '.join(map(str, results))}), {d['single']} tasks single; CPU: coordinator "
          f"{d['coordinator_cpu']:.2f} s ({d['coordinator_cpu'] / run.seconds:.0%} of one core, "
          f"{d['coordinator_cpu'] / d['results'] * 1e3:.3f} ms per result), workers {d['workers_cpu']:.2f} s "
          f"({d['workers_cpu'] / d['results'] * 1e3:.3f} ms per result); other load {run.others or 0.0:.2f} cores")
    coordinator = parse(str(directory / "coordinator.txt"), "MainThread")
    print(f"\n### Coordinator, main thread (ms = wall ms per result, {d['results']} results)\n")
    print(summarise(coordinator, 30, PROFILE_HZ, d["results"]))
    print("\n" + callers(coordinator, "Store.save", 3))
    for i, own in enumerate(results):
        path = str(directory / f"worker-{i}.txt")
        print(f"\n### worker-{i}, main thread (ms = wall ms per own result, {own} results)\n")
        print(summarise(parse(path, "MainThread"), 30, PROFILE_HZ, max(own, 1)))
        print(f"\n### worker-{i}, other threads (the executor computing)\n")
        print(summarise(parse(path, "MainThread", exclude=True), 12, PROFILE_HZ, max(own, 1)))


# ---- the run ----------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """Every run of one system."""

    label: str
    runs: dict[str, list[Run]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # per work
    error: str | None = None  # in set-up: no work ran
    notes: list[str] = field(default_factory=list)

    def median(self, work: str) -> float | None:
        runs = self.runs.get(work)
        return statistics.median(r.seconds for r in runs) if runs else None


def _systems(names: list[str], workers: int, root: pathlib.Path, numba_cache: pathlib.Path,
             say: Callable[[str], None]) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    """(name, label, factory) for every system to measure; a missing package is said once and skipped."""
    for name in names:
        if name == "serial":
            yield name, Serial.label, Serial
        elif name == "pool":
            yield name, Pool.label, Pool
        elif name == "dask":
            try:
                import distributed  # noqa: F401
            except ImportError:
                say("skip: Dask (package dask[distributed] is not installed: .venv/bin/pip install -e '.[bench]')")
                continue
            for setting in DASK_SETTINGS:
                yield name, f"Dask: {setting}", lambda s=setting: Dask(s)
        elif name == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                say("skip: Ray (package ray is not installed: .venv/bin/pip install -e '.[bench]')")
                continue
            yield name, Ray.label, Ray
        else:
            yield name, DEPIN_MODES[name], lambda n=name: Depin(n, workers, root, numba_cache, say)


def measure(factory: Callable[[], Any], label: str, works: list[Work], warm: dict[str, Work], runs: int,
            reference: dict[str, np.ndarray], say: Callable[[str], None],
            profile: tuple[Work, pathlib.Path] | None) -> Measured:
    """Set the system up, then per work: a warm-up, `runs` timed runs. A failure is recorded for its work (or, in
    set-up, for the system) and the rest goes on."""
    out = Measured(label)
    started = time.perf_counter()
    system = None
    try:
        system = factory()
        if isinstance(system, Depin):
            system.prepare(works)
        for w in works:
            try:
                if isinstance(system, Depin):
                    system.warm(warm[w.name])
                else:
                    system.run(warm[w.name], warm[w.name].split())
                tasks = w.split()
                for _ in range(runs):
                    run = timed(lambda w=w, tasks=tasks: system.run(w, tasks))
                    if w.name in reference and not np.array_equal(run.output, reference[w.name]):
                        out.notes.append(f"{w.name}: OUTPUT DIFFERS from the serial reference")
                    out.runs.setdefault(w.name, []).append(run)
                say(f"  {label}: {w.name}: " + ", ".join(f"{r.seconds:.3f} s" for r in out.runs[w.name])
                    + f" (other load {max(r.others or 0.0 for r in out.runs[w.name]):.2f} cores at most)")
            except Exception as exc:  # reported in the table, not fatal to the other works and systems
                out.errors[w.name] = f"{type(exc).__name__}: {exc}"
                say(f"  {label}: {w.name} FAILED: {out.errors[w.name]}")
        if profile is not None and isinstance(system, Depin):
            system.profile(*profile)
    except Exception as exc:
        out.error = f"{type(exc).__name__}: {exc}"
        say(f"  {label}: FAILED: {out.error}")
    finally:
        if system is not None:
            with contextlib.suppress(Exception):
                system.close()
            out.notes += getattr(system, "notes", [])
    say(f"  {label}: {time.perf_counter() - started:.0f} s in all")
    return out


# ---- report -----------------------------------------------------------------------------------------------------


def _cell(m: Measured, work: Work, best: float | None) -> str:
    med = m.median(work.name)
    if med is None:
        why = m.errors.get(work.name) or m.error
        return "–" if why is None else "stuck" if "stuck" in why else "failed"
    if work.name == "tiny":
        rate = work.tasks / med
        return f"{rate:,.0f}/s" + (f" ({rate / (work.tasks / best):.2f}x)" if best else "")
    return f"{med:.2f} s" + (f" ({med / best:.2f}x)" if best else "")


def report(measured: list[Measured], works: list[Work], runs: int, argv: str) -> None:
    baselines = [m for m in measured if m.label.startswith(("ProcessPool", "Dask", "Ray"))]
    dask = [m for m in baselines if m.label.startswith("Dask")]
    depin = [m for m in measured if m.label.startswith("depin")]
    serial = [m for m in measured if m.label.startswith("serial")]

    def best_of(ms: list[Measured], work: str) -> Measured | None:
        ok = [m for m in ms if m.median(work) is not None]
        return min(ok, key=lambda m: m.median(work) or 0.0) if ok else None

    print(f"\n## Before: {revision()}\n\n```\n{argv}\n```\n")
    cols: list[tuple[str, Callable[[str], Measured | None]]] = []
    for m in baselines:
        if not m.label.startswith("Dask"):
            cols.append((m.label, lambda w, m=m: m))
    if dask:
        cols.append(("Dask (best setting)", lambda w: best_of(dask, w)))
    cols += [(m.label.replace("depin, ", "depin "), lambda w, m=m: m) for m in depin]
    print("| work | " + " | ".join(c for c, _ in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for w in works:
        top = best_of(baselines, w.name)
        best = top.median(w.name) if top else None
        cells = []
        for _, pick in cols:
            m = pick(w.name)
            cells.append("–" if m is None else _cell(m, w, best if m.label.startswith("depin") else None))
        print(f"| {w.name}: {_describe(w)} | " + " | ".join(cells) + " |")
    print()
    for w in works:
        top = best_of(baselines, w.name)
        print(f"Best baseline for {w.name}: {top.label if top else 'none ran'}. "
              + ("Ratios: depin time / its time (lower is better)." if w.name != "tiny"
                 else "Ratios: depin tasks/s / its tasks/s (higher is better)."))
    print(f"\nEach figure: the median of {runs} run(s) after a warm-up.")
    print("\n### Every system and setting\n")
    print("| system | " + " | ".join(f"{w.name}: median (runs) | other load" for w in works) + " | notes |")
    print("|---|" + "---:|---:|" * len(works) + "---|")
    for m in serial + baselines + depin:
        cells = []
        for w in works:
            rs = m.runs.get(w.name, [])
            if not rs:
                cells += [_cell(m, w, None), "–"]
                continue
            cells.append(f"{_cell(m, w, None)} ({', '.join(f'{r.seconds:.2f}' for r in rs)} s)")
            cells.append(f"{max(r.others or 0.0 for r in rs):.2f}")
        notes = "; ".join(m.notes + [f"{w} FAILED: {e}" for w, e in m.errors.items()]
                          + ([f"FAILED: {m.error}"] if m.error else []))
        print(f"| {m.label} | " + " | ".join(cells) + f" | {notes} |")
    if depin:
        print("\n### depin jobs in detail (medians over the timed runs)\n")
        print("| system | work | results / task | tasks single | coordinator CPU / task | workers' CPU / task "
              "| coordinator busy | submit answered | done seen by polling | result fetch |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m in depin:
            for w in works:
                rs = m.runs.get(w.name, [])
                if not rs:
                    continue

                def med(f: Callable[[Run], float], rs: list[Run] = rs) -> float:
                    return statistics.median(f(r) for r in rs)
                print(f"| {m.label} | {w.name} | {med(lambda r: r.detail['results']) / w.tasks:.2f} "
                      f"| {med(lambda r: r.detail['single']) / w.tasks:.0%} "
                      f"| {med(lambda r: r.detail['coordinator_cpu']) / w.tasks * 1e3:.3f} ms "
                      f"| {med(lambda r: r.detail['workers_cpu']) / w.tasks * 1e3:.3f} ms "
                      f"| {med(lambda r: r.detail['coordinator_cpu'] / r.seconds):.0%} "
                      f"| {med(lambda r: r.detail['submit_s']):.2f} s | {med(lambda r: r.detail['seen_s']):.2f} s "
                      f"| {med(lambda r: r.detail['fetch_s']):.3f} s |")


def _describe(w: Work) -> str:
    if w.name == "tiny":
        return f"{w.tasks:,} tiny tasks (montecarlo, 1 sample each)"
    p = w.params
    return f"mandelbrot {p['width']}x{p['height']}, max_iter {p['max_iter']}, {w.tasks} tasks"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each work per system (median; default 3)")
    ap.add_argument("--tiny", type=int, default=10_000, help="tasks of the tiny work (default 10,000)")
    ap.add_argument("--quick", action="store_true", help="--runs 1 --tiny 1000: a check of the harness")
    ap.add_argument("--profile", metavar="DIR", help="then profile one tiny job of --profile-system with py-spy")
    ap.add_argument("--profile-system", default="depin-fresh", choices=DEPIN_MODES)
    ap.add_argument("--workers", type=int, default=2, help="depin worker processes (default 2)")
    ap.add_argument("--keep", metavar="DIR", help="keep every data dir and log in DIR (default: a temporary dir)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.tiny = 1, 1_000
    names = [n for n in args.systems.split(",") if n]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown:
        ap.error(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    if "serial" not in names:
        names.insert(0, "serial")  # the reference outputs every other system is checked against
    profile_dir = pathlib.Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None:
        py_spy()
        profile_dir.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no telemetry from the Ray baseline
    wall, load_before = time.perf_counter(), loadavg()
    works = [Work("mandelbrot", kernels.get("mandelbrot"), MANDELBROT, MANDELBROT_TASKS), tiny(args.tiny)]
    warm = {"mandelbrot": works[0], "tiny": tiny(min(WARM_TINY, args.tiny))}
    measured: list[Measured] = []
    with contextlib.ExitStack() as stack:
        root = pathlib.Path(args.keep).resolve() if args.keep else pathlib.Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="depin-bench-vs-")))
        root.mkdir(parents=True, exist_ok=True)
        # One numba cache for every process of the run (set before anything here imports numba; spawned processes
        # and depin's daemons inherit it), compiled once: every system loads the same compiled kernels.
        numba_cache = compile_numba_cache(root / "numba-cache")
        os.environ["NUMBA_CACHE_DIR"] = str(numba_cache)
        print(f"machine: {machine()}; {revision()}; load average before: {load_before}")
        reference: dict[str, np.ndarray] = {}
        for name, label, factory in _systems(names, args.workers, root, numba_cache, say):
            say(f"{label} ...")
            profile = (works[1], profile_dir) if profile_dir is not None and name == args.profile_system else None
            m = measure(factory, label, works, warm, args.runs, reference, say, profile)
            if label.startswith("serial"):
                reference = {w: rs[0].output for w, rs in m.runs.items()}
            measured.append(m)
    report(measured, works, args.runs, "python benchmarks/bench_vs.py " + " ".join(sys.argv[1:]))
    print(f"\nLoad average before/after: {load_before} / {loadavg()}. Whole run: {time.perf_counter() - wall:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
