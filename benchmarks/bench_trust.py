"""Benchmark: what each attack of issue 9 (and each hostile kind of bench_hostile) gets past the cross-check, and
what it costs the honest side.

    .venv/bin/python benchmarks/bench_trust.py                       # every row (about 4 minutes idle)
    .venv/bin/python benchmarks/bench_trust.py --rows patient,stall  # some of them

One run per row, each on its own fresh cluster: a real `depin coordinator` and real `depin worker` processes on
127.0.0.1; the attackers are protocol clients in this process (tests/integration/trust_attacks.py, and
tests/integration/hostile.py for the earlier kinds). Where a row has a baseline, the same victim job first runs
with no attacker on the same cluster, and "time" is the victim job's time under attack over that baseline.

Per row: wrong bands in the merged output of the victim jobs (POST /v1/jobs/{id}/result against the plain-Python
reference), and in brackets the wrong tasks accepted when the jobs were first seen ended ("before audits": the
same figure unless a coordinator re-checks later); credits kept by attacker ids (rewards minus `slash` entries from
`bond:<id>`); honest workers banned, and too-fast flags they got during the attack; victim jobs failed or stalled
(not ended within the row's bound); time under attack / baseline; extra compute, results recorded per task (the
honest minimum is 1.0, every task run single), also over the job's replicas.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, revision  # noqa: E402
from tests.integration import trust_attacks as ta  # noqa: E402
from tests.integration.hostile import JOB, Phase, Scenario, run_scenario  # noqa: E402
from tests.integration.support import Cluster, compile_numba_cache  # noqa: E402

BIG_JOB = {**JOB, "height": 300}  # 300 one-row tasks, as in the issue


@dataclass
class Row:
    name: str
    attackers: str
    wrong: str
    credits: int
    honest: str
    jobs: str
    time: str
    compute: str
    note: str


def _ratio(seconds: float | None, baseline: float | None, bound: float | None = None) -> str:
    if seconds is None:
        return f"not ended in {bound:.0f} s" if bound else "not ended"
    if not baseline:
        return f"{seconds:.2f} s (no baseline)"
    return f"{seconds / baseline:.1f}x ({seconds:.2f} s / {baseline:.2f} s)"


def _row(o: ta.Outcome, note: str) -> Row:
    kinds: dict[str, int] = {}
    for a in o.agents:
        kinds[a.seen.kind] = kinds.get(a.seen.kind, 0) + 1
    per_task = o.results / max(1, o.tasks)
    return Row(
        name=o.attack,
        attackers=", ".join(f"{n} {k}" for k, n in kinds.items()) or "none",
        wrong=f"{o.wrong_bands} ({o.wrong_accepted}) of {o.tasks}",
        credits=o.attacker_credits,
        honest=f"{len(o.honest_banned)} / {o.honest_too_fast}",
        jobs=f"{o.failed} / {o.stalled} of {len(o.jobs)}",
        time=_ratio(o.seconds, o.baseline_seconds, o.notes.get("bound")),
        compute=f"{per_task:.2f} ({per_task:.2f}x; {per_task / o.replicas:.2f}x of {o.replicas} replicas)",
        note=note)


def patient(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.patient_cheater(c, honest=4, tasks=300, params=BIG_JOB, say=say)
    return [_row(o, f"C and P held {o.notes['shared_tasks']} tasks together; P trusted after: "
                    f"{o.notes['sybil_trusted']}")]


def decoy(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.decoy(c, honest=3, tasks=20, say=say)
    return [_row(o, f"honest trusted {o.notes['trusted_before']} -> {o.notes['trusted_after_decoy']} after the "
                    f"decoy job")]


def newcomer(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.ban_newcomer(c, say=say)
    return [_row(o, f"honest newcomer (protocol client) banned: {o.notes['newcomer_banned']!r}")]


def kill(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.kill_job(c, honest=2, tasks=6, say=say)
    [job] = o.jobs
    return [_row(o, f"job {job['state']} {job.get('error') or ''}; honest correct results unpaid: "
                    f"{len(o.notes['unpaid_honest'])}")]


def stall(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.stall_job(c, honest=2, tasks=6, bound=70.0, say=say)
    return [_row(o, f"lease timeout {o.notes['lease_timeout']:.0f} s; abandoners took "
                    f"{sum(a.seen.leases for a in o.agents)} leases")]


def minprice(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.min_price_stall(c, bound=30.0, say=say)
    [job] = o.jobs
    return [_row(o, f"2 trusted workers at --min-price 100, job at price 10: {job['task_states']}; waiting reason "
                    f"shown: {o.notes['waiting_reason']!r}")]


def demo(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.demo_run(c, jobs=5, say=say)
    return [_row(o, "no attacker: five `depin demo` jobs (960x720, max_iter 500, 24 tasks) on 3 workers")]


def kinds(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    names = ("random", "lazy", "copier", "replayer", "abandoner")
    sc = Scenario("kinds", honest=4, job={**JOB, "height": 60}, phases=(
        Phase("baseline", (), jobs=1, tasks=60, extra_jobs=0),
        *(Phase(k, (k,), jobs=1, tasks=60) for k in names),
        Phase("colluder", ("colluder",) * 2, jobs=1, tasks=60)))
    out = run_scenario(c, sc, say=say)
    base = out.phases[0]
    base_time = sum(base.job_seconds) / max(1, len(base.job_seconds))
    rows, too_fast = [], base.honest_too_fast
    for ph in out.phases[1:]:
        times = ph.job_seconds
        banned = sum(1 for s in ph.seen if s.banned is not None)
        rows.append(Row(
            name=f"hostile kind: {ph.name}", attackers=f"{len(ph.seen)} {ph.name}",
            wrong=f"{len(ph.wrong_tasks)} ({len(ph.wrong_tasks)}) of {ph.tasks}", credits=ph.hostile_credits,
            honest=f"{len(ph.honest_banned)} / {ph.honest_too_fast - too_fast}",
            jobs=f"{sum(1 for j in ph.jobs if j['state'] != 'done')} / 0 of {len(ph.jobs)}",
            time=_ratio(sum(times) / max(1, len(times)), base_time),
            compute=f"{ph.results_per_task:.2f} ({ph.results_per_task:.2f}x; {ph.results_per_task / 2:.2f}x of 2 "
                    f"replicas)",
            note=f"{banned}/{len(ph.seen)} banned"))
        too_fast = ph.honest_too_fast
    return rows


ROWS: dict[str, Callable[[Cluster, Callable[[str], None]], list[Row]]] = {
    "patient": patient, "decoy": decoy, "newcomer": newcomer, "kill": kill, "stall": stall, "minprice": minprice,
    "demo": demo, "kinds": kinds,
}


def table(rows: list[Row]) -> str:
    out = ["| attack | attackers | wrong bands in merged output (accepted before audits) | attacker credits net "
           "of slashing | honest banned / too-fast flags | victim jobs failed / stalled | time under attack / "
           "baseline | results per task (/ min 1.0; / replicas) | what happened |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    out += [f"| {r.name} | {r.attackers} | {r.wrong} | {r.credits} | {r.honest} | {r.jobs} | {r.time} "
            f"| {r.compute} | {r.note} |" for r in rows]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep the data dirs and logs there")
    args = parser.parse_args()
    names = [n for n in args.rows.split(",") if n]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {sorted(ROWS)}")
    print(f"# bench_trust: {revision()}; {machine()}")
    print(f"command: {shlex.join(['.venv/bin/python', 'benchmarks/bench_trust.py', *sys.argv[1:]])}\n")
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="depin-bench-trust-") as tmp:
        root = pathlib.Path(args.keep) if args.keep else pathlib.Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        cache = compile_numba_cache(root / "numba-cache")
        for name in names:
            (root / name).mkdir(exist_ok=True)
            cluster = Cluster(root / name, cache)
            t0 = time.monotonic()
            try:
                rows += ROWS[name](cluster, say)
            finally:
                cluster.close()
            say(f"{name}: {time.monotonic() - t0:.0f} s")
    print(table(rows))
    print(f"\nWhole run: {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
