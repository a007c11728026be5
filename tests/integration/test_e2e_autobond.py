"""Auto-bonding with real processes: workers with the default bond settings earn credits on replicated jobs, lock
them in their bonds on their own (POST /v1/bond signed with each worker's key: `bond` ledger entries from each
worker), are trusted after the bonded streak, and then take tasks of the next job single. The owner reads the bond
in `depin worker status`. The plan itself is unit-tested in tests/worker/test_bonding.py, the daemon's handling of
refusals in tests/worker/test_daemon.py."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from depin.crypto import SigningKey
from tests.integration.hostile import JOB, KERNEL_KEY
from tests.integration.support import Cluster, read_db, submit, wait_until

MIN_BOND, BOND_PER_PRICE = 100, 20  # the reference coordinator's rules (PROTOCOL.md 12.6), as /v1/info gives them
MAX_BOND = 1000  # the worker's default max_bond: the target at price 50 (3 x 20 x 50 = 3000, capped)
ROUNDS = 6
EARN_PRICE = 50  # two results pay a worker min_bond: a first job of 6 tasks on 2 workers pays each 300
SINGLE_PRICE = 5  # a bond of min_bond covers a task at this price alone: 20 x 5 = 100


@pytest.mark.timeout(120)
def test_workers_with_default_settings_bond_what_they_earn_and_then_take_tasks_single(cluster: Cluster) -> None:
    coord = cluster.coordinator(extra=("--checkpoint-interval", "0.2"))  # credits provable soon after they are paid
    info = coord.api.info()
    assert (info["min_bond"], info["bond_per_price"]) == (MIN_BOND, BOND_PER_PRICE)
    env = cluster.env()
    del env["DEPIN_WORKER_AUTO_BOND"]  # the suite turns it off for every other scenario: here it is the default, on
    # --audit-interval sets the pace of the ledger audit, and so of auto-bonding: 0.5 s instead of 30 s.
    workers = [cluster.worker(coord, f"w{i}", env=env, extra=("--audit-interval", "0.5")) for i in range(2)]
    ids = [w.worker_id for w in workers]
    key = SigningKey.generate()

    def bonds() -> dict[str, int]:
        return {w: coord.api.balance(quote(f"bond:{w}", safe="")) for w in ids}

    def settled() -> dict[str, int] | None:
        # Every worker has bonded what its balance allows: steps of min_bond, up to its target.
        held = bonds()
        return held if all(held[w] >= MAX_BOND or coord.api.balance(w) < MIN_BOND for w in ids) else None

    for _ in range(ROUNDS):  # earn: replicated jobs, until every worker is bonded and trusted
        job = coord.api.wait_job(submit(coord, key, JOB, tasks=6, replicas=2, price=EARN_PRICE))
        assert job["state"] == "done", job
        held = wait_until(settled, "the workers to bond what they earned", 60)
        trusted = [w for w, v in coord.api.workers().items() if KERNEL_KEY in v["trusted"]]
        if all(held[w] >= MIN_BOND for w in ids) and set(ids) <= set(trusted):
            break
    else:
        raise AssertionError(f"bonds {bonds()}, trusted {trusted} after {ROUNDS} jobs")
    entries = [e for e in coord.api.ledger() if e["kind"] == "bond"]
    assert {e["from"] for e in entries} == set(ids)  # each worker bonded, with its own key
    assert all(e["to"] == f"bond:{e['from']}" and e["amount"] >= MIN_BOND for e in entries), entries

    job = coord.api.wait_job(submit(coord, key, JOB, tasks=12, replicas=2, price=SINGLE_PRICE))
    assert job["state"] == "done", job
    single = read_db(coord.db, "SELECT l.worker_id FROM tasks t JOIN leases l ON l.lease_id = t.single"
                               " WHERE t.job_id = ?", (job["job_id"],))
    assert single, "no task of the job went out single"
    assert {w for (w,) in single} <= set(ids)

    got = cluster.cli("worker", "status", "--data-dir", str(workers[0].data_dir))
    assert got.returncode == 0, got.stderr
    [line] = [x for x in got.stdout.splitlines() if x.startswith("bond ")]
    assert line.split(None, 1)[1].startswith(f"{bonds()[ids[0]]} credits bonded, "), line
    for w in workers:
        assert "auto-bond refused" not in w.proc.log() and "Traceback" not in w.proc.log(), w.proc.tail()
