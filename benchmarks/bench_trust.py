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

Row `cost` ("done means" of issue 9: extra compute on replication and audits <= 1.3x the honest minimum for a
network of trusted workers): three clusters of 4 honest workers with no attacker, trusted after warm-up jobs; on one
the operator grants each worker id credits and each bonds them with `depin bond` (single issue needs a bond of at
least bond_per_price x price); one runs its workers with auto-bonding off, the suite's setting (no bond); on the
third the workers run with the default settings, so they bond what the warm-up jobs pay them (worker/bonding.py),
and more warm-up jobs run until each has bonded its target for the jobs' price; results recorded per task over two
300-task jobs, replicas 2, audits included; the bonded clusters' job times are given over the unbonded one's.
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
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, revision  # noqa: E402
from tests.integration import trust_attacks as ta  # noqa: E402
from tests.integration.hostile import JOB, Phase, Scenario, run_scenario  # noqa: E402
from tests.integration.support import Cluster, compile_numba_cache, read_db  # noqa: E402

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


REPEATS = 3  # the kill and stall rows time a job of some 60 ms: each is run this many times, the median shown


def _median(runs: list[ta.Outcome]) -> tuple[ta.Outcome, str]:
    # The run with the median time ratio (a run that did not end counts as the slowest), and every run's ratio.
    def ratio(o: ta.Outcome) -> float:
        return o.seconds / o.baseline_seconds if o.seconds is not None and o.baseline_seconds else float("inf")
    runs = sorted(runs, key=ratio)
    return runs[len(runs) // 2], "time ratios of the runs: " + ", ".join(f"{ratio(o):.1f}x" for o in runs)


def kill(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o, ratios = _median([ta.kill_job(c, honest=2, tasks=6, say=say, name=f"kill{i}") for i in range(REPEATS)])
    [job] = o.jobs
    return [_row(o, f"job {job['state']} {job.get('error') or ''}; honest correct results unpaid: "
                    f"{len(o.notes['unpaid_honest'])}; {_paused(o)}; {ratios}")]


def _paused(o: ta.Outcome) -> str:
    # The kill and stall rows pause the honest workers while the attackers take the first slots; their baseline is
    # the same job with the same pause and no attacker (trust_attacks.paused_job).
    # Times are from the honest workers' resume to the job's end.
    return (f"times from the honest workers' resume (paused {o.notes['pause']:.1f} s at submission in both runs; "
            f"unpaused, no attacker, from submission: {o.notes['unpaused']:.2f} s)")


def stall(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o, ratios = _median([ta.stall_job(c, honest=2, tasks=6, bound=70.0, say=say, name=f"stall{i}")
                                for i in range(REPEATS)])
    return [_row(o, f"lease timeout {o.notes['lease_timeout']:.0f} s; abandoners took "
                    f"{sum(a.seen.leases for a in o.agents)} leases; {_paused(o)}; {ratios}")]


def minprice(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.min_price_stall(c, bound=30.0, say=say)
    [job] = o.jobs
    return [_row(o, f"2 trusted workers at --min-price 100, job at price 10: {job['task_states']}; waiting reason "
                    f"shown: {o.notes['waiting_reason']!r}")]


def demo(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    o = ta.demo_run(c, jobs=5, say=say)
    return [_row(o, "no attacker: five `depin demo` jobs (960x720, max_iter 500, 24 tasks) on 3 workers")]


COST_TASKS = 300  # per measured job; COST_JOBS of them on each cluster
COST_JOBS = 2
COST_BOND = 1000  # per worker: 100 x the price, so exposure (single results since a clean audit) never runs out


COST_PRICE = 10
AUTO_BOND_WAIT_S = 300.0  # the most the auto-bond cluster waits for its bonds (they follow the 30 s ledger audits)


def _auto_bonded(s: ta.Setup, say: Callable[[str], None]) -> tuple[int, int]:
    """Warm-up jobs and waits until every worker of `s` has auto-bonded its target at COST_PRICE (what a worker with
    the default settings holds once it has earned enough at that price); (extra jobs run, the target)."""
    from depin.config import BondSettings
    from worker import bonding

    rules = bonding.Rules.from_info(s.coord.api.info())
    assert rules is not None
    goal = bonding.target(rules, BondSettings().max_bond, COST_PRICE)
    deadline, jobs = time.monotonic() + AUTO_BOND_WAIT_S, 0
    while True:
        workers = s.coord.api.workers()
        short = {w: workers[w] for w in s.honest_ids if workers[w]["bond"] < goal}
        if not short:
            return jobs, goal
        if time.monotonic() > deadline:
            raise AssertionError(f"bonds below the target {goal} after {AUTO_BOND_WAIT_S:.0f} s: {short}")
        if all(w["balance"] < min(rules.min_bond, goal - w["bond"]) for w in short.values()):
            ta.run_job(s, JOB, 40, price=COST_PRICE)  # too little to bond: earn more, as the warm-up does
            jobs += 1
        else:
            time.sleep(1.0)  # earned enough: the workers bond it at their next ledger audit


def _cost_cluster(c: Cluster, name: str, bond: int, say: Callable[[str], None], *,
                  auto: bool = False) -> dict[str, Any]:
    """4 honest `depin worker` processes, trusted (and bonded with `bond` credits each via `depin bond`, if any; or,
    with `auto`, running with the default settings, which bond on their own), then COST_JOBS jobs of COST_TASKS
    tasks, replicas 2, price COST_PRICE: what they cost in results, singles and audits."""
    env = None
    if auto:
        env = c.env()
        del env["DEPIN_WORKER_AUTO_BOND"]  # the tests' setting (off): here the default, on
    s = ta.start(c, name, 4, worker_env=env)
    if bond:
        for w in s.honest:
            s.coord.grant(w.worker_id, bond)  # the operator's grant, signed with the coordinator's key
            got = c.cli("bond", str(bond), "--data-dir", str(w.data_dir), "--coordinator", s.coord.url)
            assert got.returncode == 0, got.stderr
    rounds = ta.warm(s, s.honest_ids, price=COST_PRICE)
    target = 0
    if auto:
        extra, target = _auto_bonded(s, say)
        rounds += extra
    bonds_before = [s.coord.api.workers()[w]["bond"] for w in s.honest_ids]
    trusted = len(s.trusted())
    before = s.too_fast()
    jobs, seconds = [], []
    for _ in range(COST_JOBS):
        job, t = ta.run_job(s, BIG_JOB, COST_TASKS, price=COST_PRICE, timeout=120)
        jobs.append(job)
        seconds.append(t)
    ids = tuple(j["job_id"] for j in jobs)
    marks = ",".join("?" * len(ids))
    results = read_db(s.coord.db, f"SELECT COUNT(*) FROM results WHERE job_id IN ({marks})", ids)[0][0]
    single = read_db(s.coord.db, f"SELECT COUNT(*) FROM tasks WHERE job_id IN ({marks}) AND single IS NOT NULL",
                     ids)[0][0]
    audits = dict(read_db(s.coord.db, f"SELECT audit, COUNT(*) FROM tasks WHERE job_id IN ({marks}) AND audit IS NOT "
                                      "NULL GROUP BY audit", ids))
    workers = s.coord.api.workers()
    after = s.too_fast()
    wrong = sum(ta.wrong_in_output(s.coord, s.key, j, BIG_JOB) for j in jobs if j["state"] == "done")
    tasks = sum(j["tasks_total"] for j in jobs)
    done = [t for t in seconds if t is not None]
    bonds_after = [workers[w]["bond"] for w in s.honest_ids]
    say(f"  {name}: warm-up {rounds} jobs, trusted {trusted}/4, bonds {bonds_before} -> {bonds_after}; {results} "
        f"results for {tasks} tasks, {single} single, audits {audits}; job times {seconds}")
    return dict(tasks=tasks, results=results, single=single, audits=audits, wrong=wrong, jobs=jobs, target=target,
                bonds_before=bonds_before, bonds_after=bonds_after,
                seconds=sum(done) / len(done) if done else None, stalled=len(seconds) - len(done),
                banned=sum(1 for w in s.honest_ids if workers.get(w, {}).get("banned")),
                too_fast=sum(after[w] - before.get(w, 0) for w in after), trusted=trusted, rounds=rounds)


def cost(c: Cluster, say: Callable[[str], None]) -> list[Row]:
    """Done means: extra compute on replication and audits, over the honest minimum 1.0, for trusted workers."""
    out = {}
    for name, bond in (("unbonded", 0), ("bonded", COST_BOND)):
        out[name] = _cost_cluster(c, f"cost-{name}", bond, say)
    out["auto"] = _cost_cluster(c, "cost-auto", 0, say, auto=True)
    rows = []
    for name, label in (("bonded", f"4 trusted, each bonded {COST_BOND} (100 x price)"),
                        ("auto", "4 trusted, default settings (auto-bond)"),
                        ("unbonded", "4 trusted, no bond")):
        o = out[name]
        bonds = (f"; auto-bonded {o['bonds_before']} before the jobs (target {o['target']}), {o['bonds_after']} "
                 f"after" if name == "auto" else "")
        per_task = o["results"] / o["tasks"]
        audits = ", ".join(f"{n} {k}" for k, n in sorted(o["audits"].items())) or "none"
        rows.append(Row(
            name=f"trusted-network cost: {label}", attackers="none",
            wrong=f"{o['wrong']} ({o['wrong']}) of {o['tasks']}", credits=0,
            honest=f"{o['banned']} / {o['too_fast']}",
            jobs=f"{sum(1 for j in o['jobs'] if j['state'] in ('failed', 'cancelled'))} / {o['stalled']} of "
                 f"{len(o['jobs'])}",
            time=(_ratio(o["seconds"], out["unbonded"]["seconds"]) if name != "unbonded"
                  else f"{o['seconds']:.2f} s (the baseline)" if o["seconds"] else "not ended"),
            compute=f"{per_task:.2f} ({per_task:.2f}x; {per_task / 2:.2f}x of 2 replicas)",
            note=f"{COST_JOBS} jobs of {COST_TASKS} tasks after {o['rounds']} warm-up jobs ({o['trusted']}/4 "
                 f"trusted): {o['single']} tasks single ({o['single'] / o['tasks']:.0%}); audits: {audits}{bonds}"))
    return rows


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
    "demo": demo, "kinds": kinds, "cost": cost,
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
