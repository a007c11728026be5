"""Benchmark: what hostile workers cost a live cluster whose honest workers are trusted, and what they get out of it.

    .venv/bin/python benchmarks/bench_hostile.py                    # every scenario (about 5 minutes idle)
    .venv/bin/python benchmarks/bench_hostile.py --scenarios a,c    # some of them

The simulation is tests/integration/hostile.py, shared with tests/integration/test_e2e_hostile_workers.py: real
`depin coordinator` (--lease-timeout 3) and `depin worker` processes on 127.0.0.1, hostile workers as asyncio clients
of the real protocol in this process, warm-up jobs until every honest worker is trusted for mandelbrot@1, then
phases of measured jobs (mandelbrot 40x200 at max_iter 64, one row per task, replicas 2). Each scenario's first
phase runs the same jobs with no hostile worker at all: that is the same-run baseline for replication and job time.

    a  12 honest + random, lazy, copier, replayer, abandoner        (5 of 17 identities, 29%)
    b  8 honest + 2 colluders                                       (20%)
    c  4 honest + each kind alone (2 colluders, since one cannot collude), one phase per kind: time to ban
    d  8 honest + 1 sleeper: honest until trusted, then it lies like a colluder (not a kind the test requires)

Metrics (per phase): wrong results accepted (every validated task's canonical output and every done job's merged
image, GET /v1/jobs/{id}/result, against the plain-Python reference), credits paid to hostile ids (GET /v1/ledger),
results recorded per task (from the coordinator's database, read-only; the honest minimum is 1.0, every task run
single by a trusted worker), the share of tasks run single, the share of the honest workers' results that were on
single tasks, job times, and per hostile identity: leases, results, acks, and the time from its first request (and
from its first result) to its first 403.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import loadavg  # noqa: E402

from tests.integration.hostile import JOB, Phase, Scenario, ScenarioOutcome, markdown, run_scenario  # noqa: E402
from tests.integration.support import Cluster, compile_numba_cache  # noqa: E402

BENCH_JOB = {**JOB, "height": 200}
TASKS = 200  # one row each


def baseline(jobs: int) -> Phase:
    return Phase("honest only (baseline)", (), jobs=jobs, tasks=TASKS, extra_jobs=0)


SCENARIOS = {
    "a": Scenario("a", honest=12, job=BENCH_JOB, phases=(
        baseline(3),
        Phase("a: 29% mixed", ("random", "lazy", "copier", "replayer", "abandoner"), jobs=3, tasks=TASKS),
    )),
    "b": Scenario("b", honest=8, job=BENCH_JOB, phases=(
        baseline(3),
        Phase("b: 20% colluders", ("colluder",) * 2, jobs=3, tasks=TASKS),
    )),
    "c": Scenario("c", honest=4, job=BENCH_JOB, phases=(
        baseline(1),
        *(Phase(f"c: {kind} alone", (kind,), jobs=1, tasks=TASKS)
          for kind in ("random", "lazy", "copier", "replayer", "abandoner")),
        Phase("c: 2 colluders alone", ("colluder",) * 2, jobs=1, tasks=TASKS),
    )),
    "d": Scenario("d", honest=8, job=BENCH_JOB, phases=(
        baseline(2),
        Phase("d: 1 sleeper", ("sleeper",), jobs=4, tasks=TASKS, extra_jobs=4),
    )),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenarios", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep the data dirs and logs there")
    args = parser.parse_args()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {sorted(SCENARIOS)}")
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    print(f"# bench_hostile: Python {platform.python_version()}, {os.cpu_count()} cores, code {commit}, "
          f"load average {loadavg()}\n")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="depin-bench-hostile-") as tmp:
        root = pathlib.Path(args.keep) if args.keep else pathlib.Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        cache = compile_numba_cache(root / "numba-cache")
        outcomes: list[ScenarioOutcome] = []
        for name in names:
            cluster = Cluster(root / name, cache)
            (root / name).mkdir(exist_ok=True)
            t0 = time.monotonic()
            try:
                outcome = run_scenario(cluster, SCENARIOS[name], say=lambda line: print(line, file=sys.stderr))
            finally:
                cluster.close()
            outcomes.append(outcome)
            print(markdown(outcome))
            print(f"\nScenario {name}: {time.monotonic() - t0:.0f} s.\n", flush=True)
    print(f"Whole run: {time.monotonic() - started:.0f} s; load average after: {loadavg()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
