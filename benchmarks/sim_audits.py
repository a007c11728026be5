"""Simulation: how fast audits catch a bonded "patient cheater", against the audit rate, and what cheating earns it.

    .venv/bin/python benchmarks/sim_audits.py                     # the table of RESULTS.md section 6 (a few minutes)
    .venv/bin/python benchmarks/sim_audits.py --runs 20 --rates 0.1 --fs 0.2   # a quick look

No sockets and no processes: coordinator.scheduler.Scheduler in-process, under the real TrustPolicy() and
PlacementPolicy() and AuditPolicy(single=a) (so bond_per_price = ceil(2/a)), driven the way the shell drives it
(touch_worker, lease, report, expire), with seeded `rand` (spot checks, audit draws) and `pick` (placement draws).

The world: 3 honest workers and one cheater C, all four trusted for mandelbrot@1 (warm-up jobs of pairs), each with
a bond of exactly bond_per_price x price = the least that allows single issue (B = 2 p / a, the most favourable
bond for a cheater). Then round after round a job of 8 tasks (replicas 2, price p = 10) is submitted; C asks first
(up to 4 leases), then each honest worker (up to 8). C answers honestly except on a task it holds *single* (a
trusted worker alone, no replica, no audit lease), where it returns a wrong band (one pixel off) with probability f.
Everybody asks every round, so audits find auditors at once. A run ends when C is convicted (an audit overturned
one of its results: bond slashed, banned), or after it sent `--max-wrong` wrong results (censored: counted as not
caught), then drains the open audits.

Per (a, f), over `--runs` seeded runs: the probability that C is convicted before it sent its 11th (51st) wrong
result; wrong results it sent before conviction (mean; censored runs count `--max-wrong`); wrong bands left in
the merged output of jobs that finished (audits after the conviction only reach unfinished jobs); C's credits net
of slashing, all rewards minus the slash, and the part due to cheating, rewards for wrong results minus the slash;
and the formula of coordinator.auditing for k wrong results, (1 - (1 - a)^k) (p / a - B), at the mean k.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import pathlib
import random
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, revision  # noqa: E402
from coordinator import auditing  # noqa: E402
from coordinator.auditing import AuditPolicy  # noqa: E402
from coordinator.model import Task  # noqa: E402
from coordinator.placement import PlacementPolicy  # noqa: E402
from coordinator.scheduler import Job, Scheduler  # noqa: E402
from coordinator.trust import TrustPolicy  # noqa: E402
from depin import accounts, codec  # noqa: E402
from depin.crypto import SigningKey  # noqa: E402
from depin.protocol import LeaseGrant, ResultItem  # noqa: E402
from tests.coordinator.sched_support import Ids, bad, good, task_of  # noqa: E402

K = "mandelbrot@1"
KERNELS = (K,)
PRICE = 10
ELAPSED = 500  # ms an honest result takes (the same for everyone: nobody is too fast)
HONEST = ("H1", "H2", "H3")
CHEATER = "C"
PARAMS = {"width": 8, "height": 8, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 50}
TASKS_PER_JOB = 8
SUBMITTER = SigningKey(bytes([9]) * 32).id
_KEYS = {n: SigningKey(hashlib.sha256(f"sim worker {n}".encode()).digest()) for n in (*HONEST, CHEATER)}


def wid(name: str) -> str:
    return _KEYS[name].id


@dataclass
class Run:
    """What one seeded run saw."""

    wrong_sent: int = 0
    caught: bool = False
    wrong_left: int = 0  # wrong bands in merged outputs of finished jobs
    rewards: int = 0  # to C, all
    rewards_wrong: int = 0  # to C, for wrong results
    slashed: int = 0  # from bond:C
    singles: int = 0  # tasks C held single
    rounds: int = 0


@dataclass
class World:
    s: Scheduler
    rng: random.Random
    now: int = 0


def _ask(w: World, name: str, max_tasks: int) -> list[LeaseGrant]:
    s = w.s
    s.touch_worker(now=w.now, worker_id=wid(name), public_key=_KEYS[name].public)
    if s.banned(wid(name)):
        return []
    return s.lease(now=w.now, worker_id=wid(name), max_tasks=max_tasks, kernels_ok=KERNELS)


def _send(w: World, name: str, grants: Sequence[LeaseGrant], outputs: Sequence[dict[str, Any]]) -> None:
    if not grants:
        return
    s = w.s
    s.touch_worker(now=w.now + ELAPSED, worker_id=wid(name), public_key=_KEYS[name].public)
    items = [ResultItem(lease_id=g.lease_id, task_id=task_of(g)["task_id"], output=o, elapsed_ms=ELAPSED)
             for g, o in zip(grants, outputs, strict=True)]
    s.report(now=w.now + ELAPSED, worker_id=wid(name), reports=items)


def _new_world(a: float, seed: int) -> World:
    audits = AuditPolicy(single=a)
    rng = random.Random(seed)
    s = Scheduler(key=SigningKey(bytes([7]) * 32), lease_timeout_ms=10_000, new_id=Ids(), policy=TrustPolicy(),
                  rand=rng.random, pick=lambda n: rng.randrange(n), placement_policy=PlacementPolicy(),
                  audit_policy=audits)
    w = World(s, rng)
    s.grant(now=0, account=SUBMITTER, amount=10**12)
    bond = audits.bond_per_price * PRICE
    for n in (*HONEST, CHEATER):
        s.grant(now=0, account=wid(n), amount=bond)
        s.touch_worker(now=0, worker_id=wid(n), public_key=_KEYS[n].public)
        s.bond(now=0, worker_id=wid(n), amount=bond)
    # Warm-up: every pair computes one-task jobs honestly until all four are trusted (bonded: bonded_trust_after).
    names = (*HONEST, CHEATER)
    for _ in range(40):
        if all(s.trust.trusted(wid(n), K) for n in names):
            break
        for first, second in itertools.combinations(names, 2):
            w.now += 2 * PlacementPolicy().presence_ms  # only this pair is present: the second slot is drawn for it
            s.submit(now=w.now, submitter=SUBMITTER, kernel_name="mandelbrot", params=dict(PARAMS), n_tasks=1,
                     replicas=2, max_results=None, price=PRICE, quorum=None, max_errors=None)
            for n in (first, second):
                gs = _ask(w, n, 8)
                _send(w, n, gs, [good(g) for g in gs])
            w.now += ELAPSED
    w.now += AuditPolicy().give_up_ms + 2 * PlacementPolicy().presence_ms
    s.expire(w.now)  # warm-up audits nobody was around for are skipped
    assert all(s.trust.trusted(wid(n), K) for n in names), "warm-up did not make everyone trusted"
    s.take_changes()
    return w


def one_run(a: float, f: float, seed: int, max_wrong: int, max_rounds: int) -> Run:
    w = _new_world(a, seed)
    s, r = w.s, Run()
    c = wid(CHEATER)
    lie = random.Random(seed ^ 0x5EED)  # the cheater's own coin, apart from the coordinator's draws
    wrong_tasks: dict[str, tuple[Task, bytes]] = {}  # task id -> (task, the wrong wire it sent), until its job ends
    wrong_ids: set[str] = set()
    jobs: dict[str, Job] = {}
    draining = 0
    for _ in range(max_rounds):
        r.rounds += 1
        w.now += 2 * ELAPSED
        s.expire(w.now)
        done = r.caught or r.wrong_sent >= max_wrong
        if not done:
            job = s.submit(now=w.now, submitter=SUBMITTER, kernel_name="mandelbrot", params=dict(PARAMS),
                           n_tasks=TASKS_PER_JOB, replicas=2, max_results=None, price=PRICE, quorum=None,
                           max_errors=None)
            jobs[job.job_id] = job
        grants = _ask(w, CHEATER, 4)
        outs = []
        for g in grants:
            t = s.tasks[task_of(g)["task_id"]]
            alone = t.single == g.lease_id and t.state == "pending"
            r.singles += alone
            if alone and not done and lie.random() < f:
                out = bad(g)
                outs.append(out)
                wrong_tasks[t.task_id] = (t, codec.encode(out))
                wrong_ids.add(t.task_id)
                r.wrong_sent += 1
            else:
                outs.append(good(g))
        try:
            _send(w, CHEATER, grants, outs)
        except Exception:  # noqa: BLE001 - a banned worker's report is refused; nothing more to count
            pass
        for n in HONEST:
            gs = _ask(w, n, 8)
            _send(w, n, gs, [good(g) for g in gs])
        for e in s.take_changes().entries:
            if e.kind == "reward" and e.to == c:
                r.rewards += e.amount
                if e.task_id in wrong_ids:
                    r.rewards_wrong += e.amount
            elif e.kind == "slash" and e.from_ == accounts.bond_account(c):
                r.slashed += e.amount
        r.caught = r.caught or r.slashed > 0 or s.banned(c) is not None
        for task_id, (t, wire) in list(wrong_tasks.items()):
            if jobs[t.job_id].state == "done":  # its output is merged: what the task holds now stays
                r.wrong_left += t.canonical == wire
                del wrong_tasks[task_id]
        if done:
            draining += 1
            if all(j.state == "done" for j in jobs.values()) or draining > 200:
                break
    return r


@dataclass
class Row:
    a: float
    f: float
    runs: list[Run]


def _table(rows: list[Row], max_wrong: int) -> str:
    out = ["| audit rate a (bond B = 2p/a) | f | runs | caught within 10 wrong | within 50 | wrong results before "
           "conviction, mean (median) | not caught by " + str(max_wrong) + " | wrong bands left in finished jobs, "
           "mean | C's credits net of slashing, mean (rewards - slash) | cheating's part: wrong-result rewards - "
           "slash, mean | expected, (1 - (1-a)^k)(p/a - B) at the mean k |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        policy = AuditPolicy(single=row.a)
        bond = policy.bond_per_price * PRICE
        n = len(row.runs)
        sent = [x.wrong_sent for x in row.runs]
        within = {k: sum(1 for x in row.runs if x.caught and x.wrong_sent <= k) / n for k in (10, 50)}
        net = statistics.mean(x.rewards - x.slashed for x in row.runs)
        rew = statistics.mean(x.rewards for x in row.runs)
        sl = statistics.mean(x.slashed for x in row.runs)
        cheat = statistics.mean(x.rewards_wrong - x.slashed for x in row.runs)
        g = auditing.expected_gain(price=PRICE, bond=bond, audit=row.a, wrong=round(statistics.mean(sent)))
        out.append(f"| {row.a:g} ({bond}) | {row.f:g} | {n} | {within[10]:.0%} | {within[50]:.0%} | "
                   f"{statistics.mean(sent):.1f} ({statistics.median(sent):g}) | "
                   f"{sum(1 for x in row.runs if not x.caught)} | "
                   f"{statistics.mean(x.wrong_left for x in row.runs):.2f} | {net:.0f} ({rew:.0f} - {sl:.0f}) | "
                   f"{cheat:.0f} | {g:.1f} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", default="0.02,0.05,0.1,0.2", help="audit rates a (AuditPolicy.single)")
    parser.add_argument("--fs", default="0.05,0.2,1.0", help="the cheater's lying probabilities f")
    parser.add_argument("--runs", type=int, default=100, help="seeded runs per (a, f)")
    parser.add_argument("--max-wrong", type=int, default=100, help="wrong results after which a run stops")
    parser.add_argument("--max-rounds", type=int, default=4000, help="rounds (jobs) after which a run stops")
    args = parser.parse_args()
    print(f"# sim_audits: {revision()}; {machine()}")
    print(f"command: {shlex.join(['.venv/bin/python', 'benchmarks/sim_audits.py', *sys.argv[1:]])}\n")
    started = time.monotonic()
    rows = []
    for a in (float(x) for x in args.rates.split(",")):
        for f in (float(x) for x in args.fs.split(",")):
            t0 = time.monotonic()
            runs = [one_run(a, f, seed, args.max_wrong, args.max_rounds) for seed in range(args.runs)]
            rows.append(Row(a, f, runs))
            print(f"  a={a:g} f={f:g}: {time.monotonic() - t0:.0f} s, rounds mean "
                  f"{statistics.mean(x.rounds for x in runs):.0f}, C single tasks mean "
                  f"{statistics.mean(x.singles for x in runs):.0f}", file=sys.stderr, flush=True)
    print(_table(rows, args.max_wrong))
    print(f"\nWhole run: {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
