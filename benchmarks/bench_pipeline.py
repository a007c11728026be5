"""Benchmark: end-to-end throughput of a real coordinator and real workers on loopback.

    .venv/bin/python benchmarks/bench_pipeline.py                  # the main table in RESULTS.md (~45 s idle)
    .venv/bin/python benchmarks/bench_pipeline.py --workers 2,4    # several worker counts in one run
    .venv/bin/python benchmarks/bench_pipeline.py --profile DIR    # --batch 4 under py-spy: top costs per result
    .venv/bin/python benchmarks/bench_pipeline.py --count-fsync DIR --batches 1,4,32   # fsyncs per result (strace)

Every configuration starts a fresh `depin coordinator` and `--workers` `depin worker --batch B` processes (with
depin.cli.demo's start_coordinator/start_worker/stop, exactly as `depin demo` does), waits until every worker has
registered and finished a small warm-up job, then submits `--jobs` jobs one after another: mandelbrot 256x4096 at
max_iter 32 split into 1024 bands of 4 rows, replicas 2, so each job is 1024 tasks and 2048 results whose kernel
cost is tiny. A job's time is the coordinator's own finished_ms - created_ms, which covers signing and storing the
tasks, every lease, computation, report, quorum check, reward and the final merge.

Baseline, in this same run: the identical computation in this process, KERNEL.run on every task twice, serially.
pipeline time / baseline time is the price of coordination.

Rows marked "tmpfs" put every data dir (coordinator database, worker journals) on /dev/shm, where fsync costs
nothing. That is not a durable configuration; it is there to attribute time to fsync, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import cpu_seconds, loadavg, machine, machine_busy_seconds, py_spy, revision  # noqa: E402

from depin.cli.demo import start_coordinator, start_worker, stop  # noqa: E402
from depin.client import Client  # noqa: E402
from depin.crypto import SigningKey, load_or_create_key  # noqa: E402
from depin.kernels.mandelbrot import KERNEL  # noqa: E402  (numba itself is imported on first use)

JOB = {"width": 256, "height": 4096, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 32}
TASKS = 1024
REPLICAS = 2
PROFILE_HZ = 250
JOB_TIMEOUT_S = 45.0
REGISTER_TIMEOUT_S = 30.0
POLL_S = 0.1  # each GET /v1/jobs/{id} costs the coordinator ~0.5 ms (two SQL counts), so poll gently
GRANT = 10**9  # credits granted to the submitter: far more than every job of a run escrows (51,200 each)
BUDGET_S = 120.0  # configurations that would start after this are skipped, so the script stays under 3 minutes
TMPFS = pathlib.Path("/dev/shm")


@dataclass(frozen=True)
class Config:
    """One system to measure."""

    workers: int
    batch: int
    tmpfs: bool

    @property
    def name(self) -> str:
        return f"w{self.workers}-b{self.batch}" + ("-tmpfs" if self.tmpfs else "")


@dataclass
class JobRun:
    """One timed job."""

    job_id: str
    seconds: float  # coordinator finished_ms - created_ms
    client_seconds: float  # submit call to done observed by polling (includes up to one poll interval)
    results: int  # result rows the coordinator stored for the job
    valid: int
    leases: int  # leases granted for the job (more than results if any expired or were released)
    coordinator_cpu: float  # CPU seconds (user+system) the coordinator process used during the job
    workers_cpu: float  # CPU seconds all worker processes used during the job
    others_cpu: float  # CPU seconds the rest of the machine (not this script, not the system) used meanwhile
    by_worker: dict[str, int]  # results stored per worker id


# ---- measuring --------------------------------------------------------------------------------------------------


def baseline(repeats: int) -> float:
    """Median seconds to run every task of the job twice, serially, in this process."""
    tasks = KERNEL.split(KERNEL.validate(JOB), TASKS)
    KERNEL.warmup()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for t in tasks:
            for _ in range(REPLICAS):
                KERNEL.run(t)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---- the real system --------------------------------------------------------------------------------------------


async def _wait_registered(c: Client, n: int) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while time.monotonic() < deadline:
        if len((await c.get_json("/v1/workers"))["workers"]) >= n:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"fewer than {n} workers registered within {REGISTER_TIMEOUT_S}s")


async def _one_job(c: Client, key: SigningKey, tasks: int) -> tuple[dict[str, Any], float]:
    payload = {"kernel": "mandelbrot", "params": JOB, "tasks": tasks, "replicas": REPLICAS, "max_results": None,
               "price": 10}
    started = time.perf_counter()
    job_id = (await c.post_signed("/v1/jobs", key, "submit", payload))["job_id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job: dict[str, Any] = await c.get_json(f"/v1/jobs/{job_id}")
        if job["state"] in ("done", "failed", "cancelled"):
            if job["state"] != "done":
                raise RuntimeError(f"job {job_id} ended {job['state']}: {job.get('error')}")
            return job, time.perf_counter() - started
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"job {job_id} did not finish within {JOB_TIMEOUT_S}s")


def _counts(db_path: pathlib.Path, job_id: str) -> tuple[int, int, dict[str, int]]:
    """(valid results, leases, results per worker) the coordinator stored for a job, read from its database."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        by_worker = dict(db.execute("SELECT worker_id, COUNT(*) FROM results WHERE job_id = ? GROUP BY worker_id",
                                    (job_id,)).fetchall())
        valid = db.execute("SELECT COUNT(*) FROM results WHERE job_id = ? AND verdict = 'valid'",
                           (job_id,)).fetchone()[0]
        leases = db.execute("SELECT COUNT(*) FROM leases WHERE job_id = ?", (job_id,)).fetchone()[0]
    finally:
        db.close()
    return int(valid), int(leases), by_worker


async def _drive(url: str, data: pathlib.Path, procs: list[subprocess.Popen[bytes]], jobs: int,
                 on_ready: Callable[[], None], on_end: Callable[[], None]) -> list[JobRun]:
    key = load_or_create_key(data / "submitter.key")
    # The coordinator refuses a job its submitter cannot pay for (402); only its own key may grant credits.
    operator = load_or_create_key(data / "coordinator" / "coordinator.key")
    runs = []
    async with Client(url) as c:
        await c.post_signed("/v1/grants", operator, "grant", {"account": key.id, "amount": GRANT})
        await _wait_registered(c, len(procs) - 1)
        await _one_job(c, key, 2 * (len(procs) - 1))  # every worker has leased, computed and reported once
        on_ready()
        for _ in range(jobs):
            before = [cpu_seconds(p.pid) for p in procs]
            machine_before, self_before = machine_busy_seconds(), cpu_seconds(os.getpid())
            job, client_s = await _one_job(c, key, TASKS)
            cpu = [cpu_seconds(p.pid) - b for p, b in zip(procs, before, strict=True)]
            others = (machine_busy_seconds() - machine_before - sum(cpu)
                      - (cpu_seconds(os.getpid()) - self_before))
            valid, leases, by_worker = _counts(data / "coordinator" / "coordinator.sqlite3", job["job_id"])
            runs.append(JobRun(job["job_id"], (job["finished_ms"] - job["created_ms"]) / 1000, client_s,
                               sum(by_worker.values()), valid, leases, cpu[0], sum(cpu[1:]), others, by_worker))
        on_end()
    return runs


def run_config(cfg: Config, root: pathlib.Path, jobs: int, profile: pathlib.Path | None,
               syscalls: pathlib.Path | None = None) -> list[JobRun]:
    """Start a coordinator and workers, time `jobs` jobs, stop everything."""
    data = root / cfg.name
    data.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    spies: list[subprocess.Popen[bytes]] = []

    def attach(command: list[str], log_path: pathlib.Path) -> None:
        with open(log_path, "wb") as log:
            spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log))

    def start_spies() -> None:
        # Only while the timed jobs run. py-spy samples the coordinator and worker 0; --idle keeps samples where a
        # thread waits (epoll, fsync), so shares are of wall time. strace counts fsync-family calls of every process.
        if profile is not None:
            for label, proc in (("coordinator", procs[0]), ("worker-0", procs[1])):
                attach([py_spy(), "record", "--pid", str(proc.pid), "--rate", str(PROFILE_HZ), "--threads", "--idle",
                     "--format", "raw", "--output", str(profile / f"{label}.txt"), "--nonblocking"],
                    profile / f"{label}.py-spy.log")
        if syscalls is not None:
            for i, proc in enumerate(procs):
                label = "coordinator" if i == 0 else f"worker-{i - 1}"
                attach(["strace", "-f", "-c", "-w", "-e", "trace=fsync,fdatasync,sync_file_range", "-o",
                     str(syscalls / f"{label}.txt"), "-p", str(proc.pid)], syscalls / f"{label}.strace.log")
        if spies:
            time.sleep(0.5)  # let the tools attach before the first timed job

    def stop_spies() -> None:
        for tool in spies:
            tool.send_signal(signal.SIGINT)  # py-spy and strace write their output on SIGINT
        for tool in spies:
            tool.wait(30)

    try:
        coordinator, url = start_coordinator(data / "coordinator", data / "coordinator.log")
        procs.append(coordinator)
        for i in range(cfg.workers):
            # --always: the workers share this machine and would take one another for its user (issue 5 policy)
            procs.append(start_worker(url, data / f"worker-{i}", data / f"worker-{i}.log",
                                      "--batch", str(cfg.batch), "--always", "--no-page"))
        runs = asyncio.run(_drive(url, data, procs, jobs, start_spies, stop_spies))
        if profile is not None:
            _print_profile(profile, runs, load_or_create_key(data / "worker-0" / "worker.key").id)
        if syscalls is not None:
            _print_syscalls(syscalls, runs, cfg.workers)
        return runs
    finally:
        for tool in spies:
            if tool.poll() is None:
                tool.kill()
                tool.wait()
        stop(procs[1:])
        stop(procs[:1])


def _print_syscalls(directory: pathlib.Path, runs: list[JobRun], workers: int) -> None:
    results = sum(r.results for r in runs)
    tasks = TASKS * len(runs)

    def calls(label: str) -> tuple[int, float]:
        # strace -c -w table rows: "% time  seconds  usecs/call  calls  [errors]  syscall"; -w: wall-clock time.
        count, seconds = 0, 0.0
        for line in (directory / f"{label}.txt").read_text().splitlines():
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync", "sync_file_range") and parts[3].isdigit():
                count, seconds = count + int(parts[3]), seconds + float(parts[1])
        return count, seconds

    c_n, c_s = calls("coordinator")
    w = [calls(f"worker-{i}") for i in range(workers)]
    w_n, w_s = sum(n for n, _ in w), sum(s for _, s in w)
    print(f"fsync-family calls while {len(runs)} job(s) ran ({tasks} tasks, {results} results): "
          f"coordinator {c_n} = {c_n / results:.2f} per result, {c_s / max(c_n, 1) * 1e6:.0f} us each (wall); "
          f"workers {w_n} = {w_n / results:.2f} per result, {w_s / max(w_n, 1) * 1e6:.0f} us each. "
          "strace slows every process: this run's job times are not comparable with the others.")


def _print_profile(profile: pathlib.Path, runs: list[JobRun], worker0: str) -> None:
    from profile_summary import callers, parse, summarise

    results = sum(r.results for r in runs)
    mine = sum(r.by_worker.get(worker0, 0) for r in runs)
    coordinator = parse(str(profile / "coordinator.txt"), "MainThread")
    worker_main = parse(str(profile / "worker-0.txt"), "MainThread")
    worker_all = parse(str(profile / "worker-0.txt"), None)
    kernel = sum(n for frames, n in worker_all if any(f.startswith("run (depin/kernels/") for f in frames))
    print(f"\n### Coordinator, main thread: {results} results while sampling at {PROFILE_HZ} Hz "
          "(ms = wall ms per result)\n")
    print(summarise(coordinator, 25, PROFILE_HZ, results))
    print("\n" + callers(coordinator, "Store.save", 3))
    print(f"\n### worker-0, main thread: {mine} of those results were its own (ms = wall ms per own result)\n")
    print(summarise(worker_main, 25, PROFILE_HZ, mine))
    print("\n" + callers(worker_main, "Journal.", 2))
    print(f"\nworker-0 executor thread inside KERNEL.run: {kernel / PROFILE_HZ / mine * 1e3:.3f} ms per own result.")


# ---- report -----------------------------------------------------------------------------------------------------




def _row(label: str, runs: list[JobRun], base_s: float) -> str:
    med = statistics.median(r.seconds for r in runs)
    results = statistics.median(r.results for r in runs)
    coord_ms = statistics.median(r.coordinator_cpu / r.results * 1e3 for r in runs)
    busy = statistics.median(r.coordinator_cpu / r.seconds for r in runs)
    work_ms = statistics.median(r.workers_cpu / r.results * 1e3 for r in runs)
    others = statistics.median(r.others_cpu / r.seconds for r in runs)
    counts = " ; ".join(f"{r.leases}/{r.results}/{r.valid}" for r in runs)
    return (f"| {label} | {med:.2f} | {TASKS / med:,.0f} | {results / med:,.0f} | {med / base_s:,.0f}x "
            f"| {coord_ms:.2f} ms | {busy:.0%} | {work_ms:.2f} ms | {others:.2f} | {counts} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--workers", default="2", help="worker processes; a list runs each (default 2: one per core)")
    ap.add_argument("--batches", help="worker --batch values, data on disk (default 1,4,32; with --profile 4)")
    ap.add_argument("--tmpfs-batches", help="worker --batch values with every data dir on /dev/shm "
                                            "(default 4,32; with --profile none; '' for none)")
    ap.add_argument("--jobs", type=int, default=3, help="timed jobs per configuration (median; default 3)")
    ap.add_argument("--profile", metavar="DIR", help="run under py-spy, keep raw stacks in DIR, print top costs")
    ap.add_argument("--count-fsync", metavar="DIR", help="count fsync calls with strace (output in DIR)")
    args = ap.parse_args()
    profile = pathlib.Path(args.profile).resolve() if args.profile else None
    syscalls = pathlib.Path(args.count_fsync).resolve() if args.count_fsync else None
    tooled = profile is not None or syscalls is not None
    batches = args.batches if args.batches is not None else ("4" if tooled else "1,4,32")
    tmpfs_batches = args.tmpfs_batches if args.tmpfs_batches is not None else ("" if tooled else "4,32")
    counts = [int(w) for w in args.workers.split(",")]
    configs = [Config(w, int(b), False) for w in counts for b in batches.split(",") if b]
    if TMPFS.is_dir():
        configs += [Config(w, int(b), True) for w in counts for b in tmpfs_batches.split(",") if b]

    wall = time.perf_counter()
    load_before = loadavg()
    rows: list[tuple[Config, list[JobRun]]] = []
    with tempfile.TemporaryDirectory(prefix="depin-bench-") as disk, \
            tempfile.TemporaryDirectory(prefix="depin-bench-", dir=TMPFS if TMPFS.is_dir() else None) as shm:
        # One numba cache for the whole run, shared by the baseline and every worker (a worker keeps an inherited
        # NUMBA_CACHE_DIR), so only this process compiles. Set before anything imports numba.
        os.environ["NUMBA_CACHE_DIR"] = str(pathlib.Path(disk) / "numba-cache")
        print(f"machine: {machine()}; {revision()}")
        base_s = baseline(repeats=5)
        print(f"baseline: KERNEL.run on all {TASKS} tasks x {REPLICAS} replicas, serially in-process: "
              f"{base_s * 1e3:.1f} ms (median of 5)")
        for cfg in configs:
            if time.perf_counter() - wall > BUDGET_S:
                print(f"  {cfg.name}: skipped, over the {BUDGET_S:.0f} s budget")
                continue
            spy_dir = sys_dir = None
            if profile is not None:
                spy_dir = profile / cfg.name
                spy_dir.mkdir(parents=True, exist_ok=True)
                print(f"\n## Profile of {cfg.name} (raw py-spy stacks in {spy_dir})")
            if syscalls is not None:
                sys_dir = syscalls / cfg.name
                sys_dir.mkdir(parents=True, exist_ok=True)
                print(f"\n## fsync count of {cfg.name}")
            runs = run_config(cfg, pathlib.Path(shm if cfg.tmpfs else disk), args.jobs, spy_dir, sys_dir)
            rows.append((cfg, runs))
            print(f"  {cfg.name}: " + ", ".join(f"{r.seconds:.2f}s" for r in runs), flush=True)

    print()
    print(f"Job: mandelbrot {JOB['width']}x{JOB['height']} max_iter {JOB['max_iter']}, {TASKS} tasks of 4 rows, "
          f"replicas {REPLICAS} (= {TASKS * REPLICAS} results); median of {args.jobs} jobs per row.")
    print()
    print("| configuration | job time (s) | validated tasks/s | results/s | job time / baseline "
          "| coordinator CPU per result | coordinator busy | workers' CPU per result | other load (cores) "
          "| leases/results/valid per job |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    job_work = TASKS * REPLICAS
    print(f"| baseline: KERNEL.run x{REPLICAS} per task, serial, in-process | {base_s:.3f} | {TASKS / base_s:,.0f} "
          f"| {job_work / base_s:,.0f} | 1x | – | – | {base_s / job_work * 1e3:.3f} ms | – | – |")
    for cfg, runs in rows:
        label = f"{cfg.workers} workers, --batch {cfg.batch}" + (", data on tmpfs (no fsync cost)" if cfg.tmpfs else "")
        print(_row(label, runs, base_s))
    print()
    print("Job time: the coordinator's finished_ms - created_ms. CPU: user+system seconds from /proc over each job, "
          "per result; 'coordinator busy' = coordinator CPU / job time (100% = one core; its event loop is one "
          "thread). 'other load' = CPU used meanwhile by processes outside this benchmark, in cores: well above 0 "
          "means the row is disturbed. Client-observed submit-to-done (polling every 100 ms): "
          + "; ".join(f"{c.name}: " + ", ".join(f"{r.client_seconds:.2f}s" for r in runs) for c, runs in rows) + ".")
    print(f"Load average before/after: {load_before} / {loadavg()}. Whole benchmark: "
          f"{time.perf_counter() - wall:.0f} s wall.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

