"""Benchmark: the worker's memory and start-up, as an owner runs it on a laptop or a Raspberry Pi (issue 5).

    .venv/bin/python benchmarks/bench_worker.py             # the tables in RESULTS.md section 5 (~70 s)
    .venv/bin/python benchmarks/bench_worker.py --reps 3    # fewer repetitions of every start-up
    .venv/bin/python benchmarks/bench_worker.py --reps 1 --profile DIR   # py-spy: where the event loop is busy

Everything is a real process on loopback, started as an owner would: one `depin coordinator`; `depin keygen` and
`depin grant` for a submitter, who sends jobs with `depin submit`; and `depin worker --always`, started with a data
dir and stopped with SIGTERM, again and again. The benchmark never sleeps to wait for an event: it reads the
worker's log lines as they arrive on its stderr, polls GET /v1/jobs/{id}, and takes exact times from the
coordinator's own records (leases.issued_ms, results.received_ms).

Start-up. Before each start a one-task job waits at the coordinator (mandelbrot 64x64, max_iter 64: microseconds of
compute; replicas 1), so the worker leases it on its first cycle. COLD = a fresh data dir: new key, new journal,
empty DATA_DIR/numba-cache, so every kernel is compiled. WARM = the same data dir started a second time, so the
kernels load from numba's cache. Workers run with the owner's page on (`--page-port 0`; the default is on).
Milestones, from the moment the process is spawned: the log line "ready" (imports, then every kernel's warm-up),
"connected to coordinator" (GET /v1/info), the first lease issued, the line "computed", the result stored by the
coordinator; then SIGTERM to exit.

Baselines, same run, each its own process spawned the same way and timed to a line it prints: a bare interpreter;
`import numpy, numba`; the product's own imports (`import depin.cli.main, worker.daemon`, which do not import
numba); numba plus every kernel's warm-up with an empty cache and again with that cache warm. They attribute the
worker's start-up to imports and JIT, and show how much of its memory is its own.

Memory. VmRSS and VmHWM from /proc/PID/status; PSS and USS (Private_Clean + Private_Dirty) from
/proc/PID/smaps_rollup. For a warm-cache worker with the page off (`--no-page`), on, and on with glibc's mmap
threshold fixed (MALLOC_MMAP_THRESHOLD_, a comparison for the memory it keeps after big results): idle just after
start (every 100 ms for 2 s from the "connected" line, while it waits on its first long-poll), while computing a
long job (sampled every 50 ms from submission to done), and idle after it. The long job is mandelbrot 2048x2048
at max_iter 500 over a view mostly inside the set, in 4 tasks of 1 Mi pixels each, the largest task the kernel
allows (4 MiB results), replicas 1: one worker leases all 4 (`--batch 4`; the default, auto, would take them one at
a time), computes them one after another, journals them and reports them together, which is the worst case for
memory. Also timed: `depin worker status` (a process) and, with the page on, GET /api/status and GET / on a
kept-alive connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import cpu_seconds, loadavg, machine, machine_busy_seconds, revision  # noqa: E402

from depin.cli.demo import start_coordinator, stop  # noqa: E402

PY = sys.executable
DEPIN = str(pathlib.Path(PY).with_name("depin"))  # the console script `pip install` puts next to the interpreter
TINY = {"width": 64, "height": 64, "max_iter": 64}  # the start-up job: one task, nothing to compute
LONG = {"width": 2048, "height": 2048, "x_min": -0.7, "x_max": 0.2, "y_min": -0.45, "y_max": 0.45, "max_iter": 500}
LONG_TASKS = 4
START_TIMEOUT_S = 90.0  # a cold start compiles every kernel; the machine may be shared
JOB_TIMEOUT_S = 120.0
POLL_S = 0.02  # GET /v1/jobs/{id} while waiting for a start-up milestone (exact times come from the database)
IDLE_SAMPLES, IDLE_EVERY_S = 20, 0.1
COMPUTE_EVERY_S = 0.05
PAGE_REQUESTS = 30
PROFILE_HZ = 250
# glibc raises its mmap threshold each time a big mmapped block is freed, so later big blocks (4 MiB results) come
# from the heap and stay there; this fixes the threshold at its default, as a comparison in the same run.
MALLOC_FIXED = {"MALLOC_MMAP_THRESHOLD_": "131072"}
STATUS_RUNS = 5


# ---- measuring a process ----------------------------------------------------------------------------------------


def memory(pid: int) -> dict[str, float]:
    """MiB figures of a live process: VmRSS, VmHWM, RssAnon, RssFile; Pss, Uss from smaps_rollup; Threads."""
    out: dict[str, float] = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
        elif key == "Threads":
            out[key] = int(value)
    try:
        rollup = {}
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, value = line.partition(":")
            rollup[key] = int(value.split()[0])
        out["Pss"] = rollup["Pss"] / 1024
        out["Uss"] = (rollup["Private_Clean"] + rollup["Private_Dirty"]) / 1024
    except (OSError, KeyError, ValueError):
        pass  # smaps_rollup needs Linux 4.14 and ptrace access to the process
    return out


class Tail:
    """Reads a child's output line by line in a thread, noting when each line arrived (perf_counter)."""

    def __init__(self, stream: IO[bytes], copy_to: pathlib.Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self.closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream, copy_to), daemon=True).start()

    def _read(self, stream: IO[bytes], copy_to: pathlib.Path) -> None:
        with open(copy_to, "a", encoding="utf-8") as out:
            for raw in stream:
                now = time.perf_counter()
                line = raw.decode(errors="replace").rstrip("\n")
                out.write(line + "\n")
                with self._cond:
                    self.lines.append((now, line))
                    self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_for(self, needle: str, timeout_s: float) -> tuple[float, str]:
        """(arrival time, line) of the first line containing `needle`, waiting for it if need be."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for t, line in self.lines:
                    if needle in line:
                        return t, line
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    tail = "\n".join(line for _, line in self.lines[-5:])
                    raise RuntimeError(f"no line with {needle!r} ({'output ended' if self.closed else 'timeout'});"
                                       f" last lines:\n{tail}")
                self._cond.wait(left)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would steer depin or numba (the worker must pick its own cache)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPIN_", "NUMBA_"))}
    return {**env, **extra}


def _spread(values: list[float], unit: float = 1e3, fmt: str = "{:,.0f}") -> str:
    """'median (min–max)' of seconds, shown in ms by default."""
    if not values:
        return "–"
    med = fmt.format(statistics.median(values) * unit)
    return f"{med} ({fmt.format(min(values) * unit)}–{fmt.format(max(values) * unit)})"


# ---- the coordinator and the submitter ----------------------------------------------------------------------------


@dataclass
class Market:
    """A running coordinator and a funded submitter, driven through the CLI."""

    url: str
    coordinator_dir: pathlib.Path
    home: pathlib.Path

    def cli(self, *args: str, remote: bool = True) -> str:
        command = [DEPIN, *args, *(["--coordinator", self.url] if remote else [])]
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"depin {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def submit(self, params: dict[str, Any], tasks: int) -> str:
        flags = [f"-p{k}={v}" for k, v in params.items()]
        answer = json.loads(self.cli("submit", "mandelbrot", *flags, "--tasks", str(tasks), "--replicas", "1",
                                     "--price", "1", "--home", str(self.home), "--json"))
        return str(answer["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/v1/jobs/{job_id}", timeout=10) as r:
            return dict(json.load(r))

    def wait_job(self, job_id: str, until: Callable[[dict[str, Any]], bool], poll_s: float = POLL_S,
                 on_poll: Callable[[], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["state"] in ("failed", "cancelled"):
                raise RuntimeError(f"job {job_id} ended {job['state']}: {job.get('error')}")
            if until(job):
                return job
            if on_poll is not None:
                on_poll()
            time.sleep(poll_s)
        raise RuntimeError(f"job {job_id}: not there within {JOB_TIMEOUT_S}s")

    def first_times(self, job_id: str) -> tuple[int, int]:
        """(first lease issued_ms, first result received_ms) the coordinator stored for a job."""
        db = sqlite3.connect(f"file:{self.coordinator_dir / 'coordinator.sqlite3'}?mode=ro", uri=True)
        try:
            issued = db.execute("SELECT MIN(issued_ms) FROM leases WHERE job_id = ?", (job_id,)).fetchone()[0]
            received = db.execute("SELECT MIN(received_ms) FROM results WHERE job_id = ?", (job_id,)).fetchone()[0]
        finally:
            db.close()
        return int(issued), int(received)


def _returned(job: dict[str, Any]) -> bool:
    return int(job.get("lease_states", {}).get("returned", 0)) > 0 or job["state"] == "done"


# ---- baselines: what a Python process costs before the worker's own code ---------------------------------------


BASELINES: list[tuple[str, str]] = [
    ("bare interpreter", "pass"),
    ("`import numpy, numba`", "import numpy, numba"),
    ("product imports: `import depin.cli.main, worker.daemon`",
     "import depin.cli.main, worker.daemon; assert 'numba' not in sys.modules"),
    ("numba + every kernel's warm-up, empty cache",
     "from depin import kernels; [k.warmup() for k in kernels.all_kernels()]"),
    ("numba + every kernel's warm-up, warm cache",
     "from depin import kernels; [k.warmup() for k in kernels.all_kernels()]"),
]


@dataclass
class Sample:
    """One spawned baseline process."""

    ready_s: float
    mem: dict[str, float]
    exit_s: float  # stdin closed to exit: the interpreter's teardown


def run_baseline(code: str, env: dict[str, str], log: pathlib.Path) -> Sample:
    """Spawn `python -c code`, time it to its 'ready' line, read its memory while it waits on stdin."""
    script = f"import sys\n{code}\nprint('ready', flush=True)\nsys.stdin.read()"
    started = time.perf_counter()
    proc = subprocess.Popen([PY, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(log, "ab"), env=env, cwd=ROOT)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    ready = time.perf_counter() - started
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"baseline {code!r} failed; see {log}")
    mem = memory(proc.pid)
    closed = time.perf_counter()
    proc.stdin.close()
    proc.wait(10)
    return Sample(ready, mem, time.perf_counter() - closed)


def baselines(reps: int, tmp: pathlib.Path) -> dict[str, list[Sample]]:
    """Every baseline `reps` times, round-robin; each empty-cache run gets a fresh cache, warmed by the next."""
    out: dict[str, list[Sample]] = {name: [] for name, _ in BASELINES}
    for rep in range(reps):
        cache = tmp / f"baseline-cache-{rep}"
        for name, code in BASELINES:
            env = child_env(NUMBA_CACHE_DIR=str(cache)) if "warm-up" in name else child_env()
            out[name].append(run_baseline(code, env, tmp / "baselines.log"))
    return out


def import_costs(*args: str, top: int = 8) -> list[tuple[str, float]]:
    """Self import time per top-level package of `python -X importtime ARGS`, largest first."""
    done = subprocess.run([PY, "-X", "importtime", *args], capture_output=True, text=True, env=child_env(), cwd=ROOT,
                          timeout=60)
    per: dict[str, float] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|(\s*)(\S+)", line)
        if m:
            name = m.group(3).split(".")[0]
            per[name] = per.get(name, 0.0) + int(m.group(1)) / 1e6
    return sorted(per.items(), key=lambda kv: -kv[1])[:top]


# ---- the worker --------------------------------------------------------------------------------------------------


@dataclass
class Worker:
    """A running `depin worker`."""

    proc: subprocess.Popen[bytes]
    tail: Tail
    spawned: float  # perf_counter just before the spawn
    spawned_wall: float  # time.time() just before the spawn
    data_dir: pathlib.Path

    def stop(self) -> tuple[float, float]:
        """SIGTERM; (perf_counter when sent, seconds until it exited)."""
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"worker in {self.data_dir} ignored SIGTERM for 30 s") from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"worker in {self.data_dir} exited {self.proc.returncode}")
        return started, time.perf_counter() - started

    def page_port(self) -> int:
        _, line = self.tail.wait_for("owner page on ", START_TIMEOUT_S)
        return int(re.search(r":(\d+)/?\s*$", line).group(1))  # type: ignore[union-attr]


def start_worker(market: Market, data_dir: pathlib.Path, log: pathlib.Path, page: bool,
                 env: dict[str, str] | None = None) -> Worker:
    """`depin worker --always` for `data_dir`, its stderr read by a Tail."""
    flags = ["--page-port", "0"] if page else ["--no-page"]
    # --batch 4: the long job's 4 tasks leased and held at once, the worst case for memory (by default a worker sizes
    # its batches to ~100 ms of work, and would take these one at a time).
    command = [DEPIN, "worker", "--coordinator", market.url, "--data-dir", str(data_dir), "--always", "--batch", "4",
               *flags]
    wall, started = time.time(), time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=child_env(**(env or {})), cwd=data_dir.parent)
    assert proc.stderr is not None
    return Worker(proc, Tail(proc.stderr, log), started, wall, data_dir)


@dataclass
class StartUp:
    """Seconds from spawn to each milestone of one start."""

    ready: float
    warmup_logged: float  # the worker's own "kernels compiled in" figure (0.1 s resolution)
    connected: float
    leased: float
    computed: float
    stored: float
    cpu: float  # CPU seconds the worker had used when its result was stored
    stopped: float  # SIGTERM to the log line "worker stopped" (its loop has ended)
    exit: float  # SIGTERM to exit
    cache_files: int
    cache_bytes: int


def one_start(market: Market, data_dir: pathlib.Path, log: pathlib.Path) -> StartUp:
    """Submit a one-task job, start the worker, time it to the stored result, stop it."""
    job_id = market.submit(TINY, 1)
    w = start_worker(market, data_dir, log, page=True)
    try:
        ready_t, ready_line = w.tail.wait_for(" ready (kernels compiled in ", START_TIMEOUT_S)
        connected_t, _ = w.tail.wait_for("connected to coordinator", START_TIMEOUT_S)
        market.wait_job(job_id, _returned)
        cpu = cpu_seconds(w.proc.pid)
        computed_t, _ = w.tail.wait_for("computed ", START_TIMEOUT_S)
    except BaseException:
        w.proc.kill()
        w.proc.wait()
        raise
    sent, exit_s = w.stop()
    stopped_t, _ = w.tail.wait_for("worker stopped", 10)
    issued_ms, received_ms = market.first_times(job_id)
    cache = [p for p in (data_dir / "numba-cache").rglob("*") if p.is_file()]
    warm = float(re.search(r"compiled in ([\d.]+)s", ready_line).group(1))  # type: ignore[union-attr]
    return StartUp(ready=ready_t - w.spawned, warmup_logged=warm, connected=connected_t - w.spawned,
                   leased=issued_ms / 1000 - w.spawned_wall, computed=computed_t - w.spawned,
                   stored=received_ms / 1000 - w.spawned_wall, cpu=cpu, stopped=stopped_t - sent, exit=exit_s,
                   cache_files=len(cache), cache_bytes=sum(p.stat().st_size for p in cache))


def start_ups(market: Market, reps: int, tmp: pathlib.Path) -> tuple[list[StartUp], list[StartUp]]:
    """COLD (fresh data dir) then WARM (the same dir again), `reps` times."""
    cold, warm = [], []
    for rep in range(reps):
        data_dir = tmp / f"worker-{rep}"
        cold.append(one_start(market, data_dir, tmp / f"worker-{rep}.log"))
        warm.append(one_start(market, data_dir, tmp / f"worker-{rep}.log"))
        print(f"  start-up {rep + 1}/{reps}: cold {cold[-1].stored:.2f} s, warm {warm[-1].stored:.2f} s to the "
              "stored result", flush=True)
    return cold, warm


# ---- memory over a worker's life, and the owner's page ---------------------------------------------------------


@dataclass
class Life:
    """Memory samples of one worker, by phase, and what it answered."""

    page: bool
    env: dict[str, str]  # extra environment of the worker
    idle: list[dict[str, float]] = field(default_factory=list)
    computing: list[dict[str, float]] = field(default_factory=list)
    after: list[dict[str, float]] = field(default_factory=list)
    job_s: float = 0.0  # submission (the `depin submit` process returned) to the job seen done
    compute_cpu: float = 0.0  # CPU seconds the worker used meanwhile
    kernel_ms: int = 0  # the sum of the worker's "computed ... in N ms"
    flush_s: float = 0.0  # the last "computed" line to the coordinator's finished_ms: reporting the batch
    status_cli: list[float] = field(default_factory=list)
    api_first: float = 0.0
    api_idle: list[float] = field(default_factory=list)
    api_computing: list[float] = field(default_factory=list)
    api_slow: list[str] = field(default_factory=list)  # when each answer over 50 ms came, against the log
    stopped: float = 0.0  # SIGTERM to "worker stopped"
    exit: float = 0.0  # SIGTERM to exit
    html: list[float] = field(default_factory=list)
    api_bytes: int = 0

    @property
    def label(self) -> str:
        return ("page on" if self.page else "`--no-page`") + "".join(f", {k}={v}" for k, v in self.env.items())


class Page:
    """A kept-alive connection to the owner's page, as its own script polls it."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path: str) -> tuple[float, int]:
        started = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} on the owner's page: {response.status}")
        return time.perf_counter() - started, len(body)


def _number(pattern: str, line: str) -> int:
    found = re.search(pattern, line)
    if found is None:
        raise RuntimeError(f"no {pattern!r} in the log line {line!r}")
    return int(found.group(1))


def _py_spy() -> str:
    found = pathlib.Path(PY).with_name("py-spy")
    if not found.exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return str(found)


def sample_for(pid: int, n: int, every_s: float) -> list[dict[str, float]]:
    samples = []
    for _ in range(n):
        samples.append(memory(pid))
        time.sleep(every_s)  # a sampling period, not a wait for an event
    return samples


def status_cli(data_dir: pathlib.Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([DEPIN, "worker", "status", "--data-dir", str(data_dir)], capture_output=True, text=True,
                          env=child_env(), timeout=30)
    if done.returncode != 0 or "state" not in done.stdout:
        raise RuntimeError(f"depin worker status failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def life(market: Market, data_dir: pathlib.Path, log: pathlib.Path, page: bool, env: dict[str, str],
         spy: pathlib.Path | None = None) -> Life:
    """Idle, a long job, idle again: memory throughout; the status command and the page's API on the way; with
    `spy`, py-spy records the worker (active samples only, so the main thread's are time its event loop was busy)
    from the job's submission to its end, into `spy`."""
    out = Life(page, env)
    w = start_worker(market, data_dir, log, page, env)
    try:
        w.tail.wait_for("connected to coordinator", START_TIMEOUT_S)
        out.idle = sample_for(w.proc.pid, IDLE_SAMPLES, IDLE_EVERY_S)
        out.status_cli = [status_cli(data_dir) for _ in range(STATUS_RUNS)]
        client = Page(w.page_port()) if page else None
        if client is not None:
            out.api_first, out.api_bytes = client.get("/api/status")
            out.api_idle = [client.get("/api/status")[0] for _ in range(PAGE_REQUESTS)]
            out.html = [client.get("/")[0] for _ in range(PAGE_REQUESTS // 3)]

        asked: list[tuple[float, float]] = []  # (perf_counter sent, seconds to answer)

        def during() -> None:
            out.computing.append(memory(w.proc.pid))
            if client is not None:
                sent = time.perf_counter()
                asked.append((sent, client.get("/api/status")[0]))

        recorder = None
        if spy is not None:
            recorder = subprocess.Popen([_py_spy(), "record", "--pid", str(w.proc.pid), "--rate", str(PROFILE_HZ),
                                         "--threads", "--format", "raw", "--output", str(spy), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=open(spy.with_suffix(".log"), "ab"))
        job_id = market.submit(LONG, LONG_TASKS)
        cpu_before, started = cpu_seconds(w.proc.pid), time.perf_counter()
        job = market.wait_job(job_id, lambda j: j["state"] == "done", poll_s=COMPUTE_EVERY_S, on_poll=during)
        out.job_s, out.compute_cpu = time.perf_counter() - started, cpu_seconds(w.proc.pid) - cpu_before
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            recorder.wait(30)
        computed = [(t, line) for t, line in w.tail.lines if f"computed {job_id}-" in line]
        if len(computed) != LONG_TASKS:
            raise RuntimeError(f"expected {LONG_TASKS} 'computed' lines for {job_id}, got {len(computed)}")
        out.kernel_ms = sum(_number(r" in (\d+) ms", line) for _, line in computed)
        out.flush_s = job["finished_ms"] / 1000 - (computed[-1][0] - w.spawned + w.spawned_wall)
        out.api_computing = [dt for _, dt in asked]
        for sent, dt in asked:
            if dt > 0.05:
                before = [i for i, (t, _) in enumerate(computed) if t <= sent + dt]
                where = (f"{(sent - computed[before[-1]][0]) * 1e3:+.0f} ms from \"computed\" #{before[-1] + 1}"
                         if before else "before the first \"computed\"")
                out.api_slow.append(f"{dt * 1e3:.0f} ms (sent {where})")
        out.after = sample_for(w.proc.pid, IDLE_SAMPLES, IDLE_EVERY_S)
    except BaseException:
        w.proc.kill()
        w.proc.wait()
        raise
    sent, out.exit = w.stop()
    out.stopped = w.tail.wait_for("worker stopped", 10)[0] - sent
    return out


# ---- report ----------------------------------------------------------------------------------------------------


def _med(samples: Iterable[dict[str, float]], key: str) -> float:
    values = [s[key] for s in samples if key in s]
    return statistics.median(values) if values else float("nan")


def _mem_cells(samples: list[dict[str, float]], peak: bool = False) -> str:
    rss = f"{_med(samples, 'VmRSS'):.1f}"
    if peak:
        rss += f" (max {max(s['VmRSS'] for s in samples):.1f})"
    last = samples[-1]
    return (f"{rss} | {last['VmHWM']:.1f} | {_med(samples, 'Pss'):.1f} | {_med(samples, 'Uss'):.1f} "
            f"| {_med(samples, 'RssAnon'):.1f} | {_med(samples, 'RssFile'):.1f} | {last['Threads']:.0f}")


def report(base: dict[str, list[Sample]], imports: list[tuple[str, float]], cold: list[StartUp],
           warm: list[StartUp], lives: list[Life], reps: int, status_imports: list[tuple[str, float]]) -> None:
    print(f"\n### Start-up: spawn to first result, {reps} cold and {reps} warm starts, alternating "
          "(ms: median (min–max))\n")
    print("| milestone, from spawn | COLD: fresh data dir, empty numba cache | WARM: same data dir again "
          "| cold − warm (medians) |")
    print("|---|---:|---:|---:|")
    rows: list[tuple[str, Callable[[StartUp], float]]] = [
        ("log line \"ready\": imports + every kernel's warm-up", lambda s: s.ready),
        ("… of which kernel warm-up, as the worker logs it (0.1 s steps)", lambda s: s.warmup_logged),
        ("log line \"connected to coordinator\" (page started, GET /v1/info)", lambda s: s.connected),
        ("first lease issued (coordinator's leases.issued_ms)", lambda s: s.leased),
        ("log line \"computed …\"", lambda s: s.computed),
        ("result stored (coordinator's results.received_ms)", lambda s: s.stored),
        ("CPU seconds the worker had used by then (user+system)", lambda s: s.cpu),
        ("SIGTERM to the log line \"worker stopped\" (final flush and ledger audit done)", lambda s: s.stopped),
        ("SIGTERM to exit", lambda s: s.exit),
    ]
    for label, get in rows:
        c, w = [get(s) for s in cold], [get(s) for s in warm]
        print(f"| {label} | {_spread(c)} | {_spread(w)} | {(statistics.median(c) - statistics.median(w)) * 1e3:,.0f} |")
    print(f"\nnumba cache written by a cold start (DATA_DIR/numba-cache): {cold[0].cache_files} files, "
          f"{cold[0].cache_bytes / 1024:,.0f} KiB; after the warm start: {warm[0].cache_files} files.")

    print(f"\n### Baselines, same run: a process spawned and timed to a line it prints, {reps} times "
          "(memory in MiB, median)\n")
    print("| process | spawn to ready, ms: median (min–max) | exit, ms | VmRSS | PSS | USS | RssAnon | RssFile |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, samples in base.items():
        mems = [s.mem for s in samples]
        print(f"| {name} | {_spread([s.ready_s for s in samples])} "
              f"| {statistics.median(s.exit_s for s in samples) * 1e3:,.0f} | {_med(mems, 'VmRSS'):.1f} "
              f"| {_med(mems, 'Pss'):.1f} | {_med(mems, 'Uss'):.1f} | {_med(mems, 'RssAnon'):.1f} "
              f"| {_med(mems, 'RssFile'):.1f} |")
    print("\nSelf import time by top-level package (`python -X importtime -c \"import depin.cli.main, "
          "worker.daemon, numba\"`, one run; importtime adds its own overhead): "
          + ", ".join(f"{name} {s * 1e3:.0f} ms" for name, s in imports) + ".")

    print("\n### Memory of a worker (warm cache), MiB\n")
    print("| worker | phase | VmRSS, median | VmHWM (peak so far) | PSS | USS | RssAnon | RssFile | threads |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for lf in lives:
        print(f"| {lf.label} | idle, just started ({len(lf.idle)} samples over 2 s) | {_mem_cells(lf.idle)} |")
        print(f"| {lf.label} | computing the long job ({len(lf.computing)} samples) "
              f"| {_mem_cells(lf.computing, True)} |")
        print(f"| {lf.label} | idle after it ({len(lf.after)} samples over 2 s) | {_mem_cells(lf.after)} |")
    own = [s.mem for s in base["numba + every kernel's warm-up, warm cache"]]
    print(f"\nThe worker's own share, idle, over the baseline \"numba + every kernel's warm-up, warm cache\" "
          f"(VmRSS {_med(own, 'VmRSS'):.1f}, RssAnon {_med(own, 'RssAnon'):.1f}): "
          + "; ".join(f"{lf.label} +{_med(lf.idle, 'VmRSS') - _med(own, 'VmRSS'):.1f} MiB VmRSS, "
                      f"+{_med(lf.idle, 'RssAnon') - _med(own, 'RssAnon'):.1f} MiB RssAnon" for lf in lives)
          + ". Kept after the long job, over its own idle start: "
          + "; ".join(f"{lf.label} +{_med(lf.after, 'VmRSS') - _med(lf.idle, 'VmRSS'):.1f} MiB VmRSS"
                      for lf in lives) + ".")
    for lf in lives:
        print(f"\nLong job, {lf.label}: {lf.job_s:.2f} s from submission to done; the worker used "
              f"{lf.compute_cpu:.2f} CPU seconds meanwhile, {lf.kernel_ms / 1000:.2f} s in the kernel (its "
              f"\"computed … in N ms\" lines); from its last \"computed\" line to the job done (the journaled "
              f"results sent, checked, stored): {lf.flush_s * 1e3:,.0f} ms. Then SIGTERM to \"worker stopped\" "
              f"{lf.stopped * 1e3:.0f} ms, to exit {lf.exit * 1e3:.0f} ms.")

    print("\n### Status\n")
    print("| what | worker | ms: median (min–max) | n |")
    print("|---|---|---:|---:|")
    for lf in lives:
        print(f"| `depin worker status` (a whole process), worker idle | {lf.label} | {_spread(lf.status_cli)} "
              f"| {len(lf.status_cli)} |")
    for lf in lives:
        if not lf.page:
            continue
        slow = sum(1 for t in lf.api_computing if t > 0.05)
        p90 = statistics.quantiles(lf.api_computing, n=10)[-1] * 1e3 if len(lf.api_computing) > 1 else float("nan")
        print(f"| GET /api/status, first request ({lf.api_bytes:,} bytes) | {lf.label} | {lf.api_first * 1e3:.1f} "
              "| 1 |")
        print(f"| GET /api/status, worker idle | {lf.label} | {_spread(lf.api_idle, fmt='{:.1f}')} "
              f"| {len(lf.api_idle)} |")
        print(f"| GET /api/status, worker computing (p90 {p90:.1f}; {slow} over 50 ms) | {lf.label} "
              f"| {_spread(lf.api_computing, fmt='{:.1f}')} | {len(lf.api_computing)} |")
        print(f"| GET / (the page itself), worker idle | {lf.label} | {_spread(lf.html, fmt='{:.1f}')} "
              f"| {len(lf.html)} |")
    print("\nSelf import time of `depin worker status` by top-level package (`python -X importtime -m depin.cli.main "
          "worker status`, one run): " + ", ".join(f"{name} {s * 1e3:.0f} ms" for name, s in status_imports) + ".")
    for lf in lives:
        if lf.api_slow:
            print(f"\nGET /api/status answers over 50 ms while computing ({lf.label}): " + "; ".join(lf.api_slow)
                  + ".")


def print_profile(path: pathlib.Path, lf: Life) -> None:
    """Where the worker's threads were busy during the long job (py-spy, active samples only)."""
    from profile_summary import parse, summarise

    main_thread = parse(str(path), "MainThread")
    busy = sum(n for _, n in main_thread) / PROFILE_HZ
    print(f"\n### Profile: the worker ({lf.label}) during the long job, {lf.job_s:.2f} s (raw stacks in {path})\n")
    print(f"Main thread (the event loop) busy {busy:.2f} s of the job; ms = busy wall ms over the whole job:\n")
    print(summarise(main_thread, 15, PROFILE_HZ, 1))
    others = [(f, n) for f, n in parse(str(path), None) if (f, n) not in main_thread]
    print(f"\nOther threads (the executor computing): {sum(n for _, n in others) / PROFILE_HZ:.2f} s busy.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=5, help="cold and warm start-ups, and baseline runs (default 5)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the logs and data dirs")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the worker (page on) during the long job; print where "
                                                     "its event loop was busy")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    profile = pathlib.Path(args.profile).resolve() if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    wall, load_before = time.perf_counter(), loadavg()
    busy_before, self_before = machine_busy_seconds(), sum(os.times()[:4])
    print(f"machine: {machine()}; {revision()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="depin-bench-worker-") as scratch:
        tmp = pathlib.Path(args.keep).resolve() if args.keep else pathlib.Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        coordinator, url = start_coordinator(tmp / "coordinator", tmp / "coordinator.log")
        try:
            market = Market(url, tmp / "coordinator", tmp / "submitter")
            account = json.loads(market.cli("keygen", "--home", str(market.home), "--json", remote=False))["id"]
            market.cli("grant", "--data-dir", str(market.coordinator_dir), account, str(10**9))
            print("baselines …", flush=True)
            base = baselines(args.reps, tmp)
            imports = import_costs("-c", "import depin.cli.main, worker.daemon, numba")
            print("start-ups …", flush=True)
            cold, warm = start_ups(market, args.reps, tmp)
            print("memory …", flush=True)
            spy = profile / "worker.txt" if profile is not None else None
            status_imports = import_costs("-m", "depin.cli.main", "worker", "status", "--data-dir",
                                          str(tmp / "worker-0"))
            lives = [life(market, tmp / "worker-0", tmp / "life-no-page.log", False, {}),
                     life(market, tmp / "worker-0", tmp / "life-page.log", True, {}, spy),
                     life(market, tmp / "worker-0", tmp / "life-page-malloc.log", True, MALLOC_FIXED)]
        finally:
            stop([coordinator])
    others = machine_busy_seconds() - busy_before - (sum(os.times()[:4]) - self_before)
    elapsed = time.perf_counter() - wall
    report(base, imports, cold, warm, lives, args.reps, status_imports)
    if profile is not None:
        print_profile(profile / "worker.txt", lives[1])
    print(f"\nOther load: {others / elapsed:.2f} cores on average, used by processes outside this benchmark "
          f"during its {elapsed:.0f} s. Load average before/after: {load_before} / {loadavg()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
