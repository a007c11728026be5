"""The market with real processes: a grant funds a job, its escrow pays exactly the validated results and the rest
goes back to the submitter; a job the submitter cannot cover is refused and never exists; a cancel refunds what was
not spent; only the submitter may cancel or fetch; workers are served the best-paying job first and never a job
paying less than they ask; and credits are conserved across coordinator crashes in the middle of jobs.

Balances are read three ways and must agree: GET /v1/accounts, the ledger (as exported by `depin ledger export`),
and the coordinator's own verification (`depin ledger verify --data-dir`).
"""

from __future__ import annotations

import functools
import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from depin.crypto import SigningKey
from tests.integration.support import (
    SLOW_JOB,
    TERMINAL,
    Cluster,
    Coordinator,
    balances,
    check_conservation,
    check_escrow,
    check_rewards,
    free_port,
    one_error_line,
    read_db,
    submit,
    wait_until,
)

SMALL = {"width": 64, "height": 48, "max_iter": 64}
SMALL_ARGS = [arg for k, v in SMALL.items() for arg in ("-p", f"{k}={v}")]


def export(cluster: Cluster, coordinator: Coordinator, path: Path) -> list[dict[str, Any]]:
    """The whole ledger through `depin ledger export` (which, from a coordinator, writes exactly the entries its latest
    signed checkpoint covers: so first wait for one that covers them all)."""
    coordinator.api.wait_checkpointed()
    got = cluster.cli("ledger", "export", "--coordinator", coordinator.url, "-o", str(path))
    assert got.returncode == 0, got.stderr
    return [json.loads(line) for line in path.read_text().splitlines()]


def verify_data_dir(cluster: Cluster, coordinator: Coordinator) -> dict[str, Any]:
    """`depin ledger verify --data-dir --json` (chain and money rules): its report, which must say ok."""
    got = cluster.cli("ledger", "verify", "--data-dir", str(coordinator.data_dir), "--json")
    assert got.returncode == 0, (got.stdout, got.stderr)
    report: dict[str, Any] = json.loads(got.stdout)
    assert report["ok"] is True and report["in_accounts"] + report["in_escrow"] == report["minted"], report
    return report


def accounts_agree(coordinator: Coordinator, entries: list[dict[str, Any]]) -> dict[str, int]:
    """Every account's balance from GET /v1/accounts equals its balance replayed from the ledger; the ledger's."""
    held = check_conservation(entries)
    for account, value in held.items():
        if account != "mint":
            assert coordinator.api.balance(account) == value, account
    return held


# ---- a funded job ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_job_funded_from_a_grant_pays_exactly_the_validated_results_and_refunds_the_rest(
        cluster: Cluster, tmp_path: Path) -> None:
    tasks, replicas, price, granted = 3, 2, 7, 1000
    coordinator = cluster.coordinator()
    url = coordinator.url
    workers = [cluster.worker(coordinator, f"worker-{i}") for i in range(2)]
    submitter = cluster.home_id()
    got = cluster.cli("grant", submitter, str(granted), "--data-dir", str(coordinator.data_dir), "--coordinator", url,
                      "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["balance"] == granted

    got = cluster.cli("submit", "--coordinator", url, "--json", "mandelbrot", *SMALL_ARGS, "--tasks", str(tasks),
                      "--replicas", str(replicas), "--price", str(price))
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    max_cost = tasks * (replicas + 3) * price  # max_results defaults to replicas + 3
    assert (answer["tasks"], answer["price"], answer["escrow"], answer["balance"]) == (
        tasks, price, max_cost, granted - max_cost)
    job_id = answer["job_id"]
    job = coordinator.api.wait_job(job_id)
    assert job["state"] == "done", job
    assert (job["max_cost"], job["escrow"]) == (max_cost, 0)

    entries = export(cluster, coordinator, tmp_path / "ledger.jsonl")
    paid = tasks * replicas * price
    assert [(e["kind"], e["from"], e["to"], e["amount"]) for e in entries[:2]] == [
        ("grant", "mint", submitter, granted), ("escrow", submitter, f"escrow:{job_id}", max_cost)]
    assert [e["kind"] for e in entries[2:]] == ["reward"] * (tasks * replicas) + ["refund"]
    assert (entries[-1]["from"], entries[-1]["to"], entries[-1]["amount"]) == (
        f"escrow:{job_id}", submitter, max_cost - paid)
    rewards = check_rewards(coordinator.api, job)
    assert {e["to"] for e in rewards} == {w.worker_id for w in workers}

    # The balances: the submitter paid exactly the validated results; each worker got the price of each of its
    # valid results; the escrow is empty; everything minted is held by somebody.
    held = accounts_agree(coordinator, entries)
    assert held[submitter] == granted - paid
    assert held[f"escrow:{job_id}"] == 0
    views = coordinator.api.workers()
    for w in workers:
        assert held[w.worker_id] == views[w.worker_id]["balance"] == price * views[w.worker_id]["tasks_validated"]
    assert sum(held[w.worker_id] for w in workers) == paid
    book = coordinator.api.status()["ledger"]
    assert (book["minted"], book["in_escrow"], book["total_credits"]) == (granted, 0, paid)
    report = verify_data_dir(cluster, coordinator)
    assert (report["entries"], report["minted"], report["in_escrow"]) == (len(entries), granted, 0)
    mine = cluster.cli("balance", "--coordinator", url, "--json")
    assert json.loads(mine.stdout) == {"account": submitter, "balance": granted - paid}

    # Only the submitter gets the result.
    got = cluster.cli("result", "--coordinator", url, job_id, "-o", str(tmp_path / "mine.npy"))
    assert got.returncode == 0, got.stderr
    stranger = tmp_path / "stranger"
    cluster.home_id(stranger)  # someone else, with a key of their own
    got = cluster.cli("result", "--coordinator", url, job_id, "-o", str(tmp_path / "theirs.npy"), "--home",
                      str(stranger))
    line = one_error_line(got)
    assert got.returncode == 2 and "only the job's submitter" in line, line
    assert not (tmp_path / "theirs.npy").exists()


@pytest.mark.timeout(120)
def test_a_job_the_submitter_cannot_cover_is_refused_and_never_exists(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    url = coordinator.url
    submitter = cluster.fund(coordinator, 99)  # 2 tasks x 5 results x 10 credits would need 100
    job = ["submit", "--coordinator", url, "mandelbrot", *SMALL_ARGS, "--tasks", "2", "--replicas", "2",
           "--price", "10"]
    for extra in ((), ("--json",)):
        got = cluster.cli(*job, *extra)
        line = one_error_line(got)
        assert got.returncode == 2, line
        assert line.startswith("depin: error: insufficient funds"), line
        assert "100" in line and "99" in line, line
        assert got.stdout == ""
    assert coordinator.api.get("/v1/jobs")["jobs"] == []
    assert [e["kind"] for e in coordinator.api.ledger()] == ["grant"]
    assert coordinator.api.balance(submitter) == 99
    # One credit more and the same job goes in, taking the whole balance into its escrow.
    coordinator.grant(submitter, 1)
    got = cluster.cli(*job, "--json")
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert (answer["escrow"], answer["balance"]) == (100, 0)
    assert coordinator.api.balance(f"escrow:{answer['job_id']}") == 100
    # ... and nothing is left for a second one.
    assert one_error_line(cluster.cli(*job)).startswith("depin: error: insufficient funds")
    assert len(coordinator.api.get("/v1/jobs")["jobs"]) == 1
    check_conservation(coordinator.api.ledger())


@pytest.mark.timeout(180)
def test_cancel_mid_job_refunds_the_unspent_escrow_and_only_the_submitter_may_cancel(
        cluster: Cluster, submitter: Any, tmp_path: Path) -> None:
    tasks, price = 4, 5
    coordinator = cluster.coordinator()
    url = coordinator.url
    worker = cluster.worker(coordinator, "worker", batch=1)  # one task at a time: the job is half done a while
    job_id = submit(coordinator, submitter, SLOW_JOB, tasks=tasks, replicas=1, price=price)
    granted = coordinator.api.ledger()[0]["amount"]
    max_cost = tasks * 4 * price  # max_results = replicas + 3 = 4

    def part_done() -> bool:
        job = coordinator.api.job(job_id)
        assert job["state"] in ("queued", "running"), "the job ended before it could be cancelled in the middle"
        return bool(1 <= job["tasks_validated"] < tasks and coordinator.active_leases(worker.worker_id))

    wait_until(part_done, "some but not all tasks validated, and the worker computing another")
    stranger = tmp_path / "stranger"
    cluster.home_id(stranger)  # someone else, with a key of their own
    refused = cluster.cli("cancel", "--coordinator", url, job_id, "--home", str(stranger))
    line = one_error_line(refused)
    assert refused.returncode == 2 and "only the job's submitter" in line, line
    got = cluster.cli("cancel", "--coordinator", url, job_id, "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"job_id": job_id, "state": "cancelled"}

    # The task in the worker's hands when the job was cancelled comes back after the refund and is not paid.
    leased = [x["lease_id"] for x in coordinator.leases() if x["worker_id"] == worker.worker_id]
    assert "cancelled" in {x["state"] for x in coordinator.leases()}, "no task was in hand: the test proves less"

    def stories() -> dict[str, str] | None:
        rows = dict(read_db(worker.data_dir / "journal.sqlite3", "SELECT lease_id, status FROM sent"))
        return rows if len(rows) == len(leased) and "computed" not in rows.values() else None

    story = wait_until(stories, "the worker to report every task it leased, the one in hand included")
    assert Counter(story.values())["rejected"] >= 1, story
    job = coordinator.api.job(job_id)
    assert (job["state"], job["escrow"]) == ("cancelled", 0), job
    entries = coordinator.api.ledger()
    check_escrow(entries, job)
    rewards = [e for e in entries if e["kind"] == "reward"]
    assert 1 <= len(rewards) < tasks and {e["to"] for e in rewards} == {worker.worker_id}
    assert len(rewards) == job["tasks_validated"]
    [refund] = [e for e in entries if e["kind"] == "refund"]
    assert refund["amount"] == max_cost - len(rewards) * price
    held = accounts_agree(coordinator, entries)
    assert held[submitter.id] == granted - len(rewards) * price
    assert held[worker.worker_id] == len(rewards) * price
    verify_data_dir(cluster, coordinator)
    # A cancelled job has no result, even for its submitter; and a stranger is refused before that.
    got = cluster.cli("result", "--coordinator", url, job_id, "-o", str(tmp_path / "x.npy"))
    assert got.returncode == 2 and "cancelled" in one_error_line(got)
    got = cluster.cli("result", "--coordinator", url, job_id, "-o", str(tmp_path / "x.npy"), "--home", str(stranger))
    assert got.returncode == 2 and "submitter" in one_error_line(got)


# ---- prices and leasing ---------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_worker_asking_more_than_a_job_pays_never_gets_its_tasks(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    picky = cluster.worker(coordinator, "picky", extra=("--min-price", "50"))
    wait_until(lambda: coordinator.api.workers().get(picky.worker_id, {}).get("min_price") == 50,
               "the picky worker to ask for work at 50 credits or more")
    cheap = submit(coordinator, SigningKey.generate(), SMALL, tasks=4, replicas=1, price=10)
    # The cheap job waits while the picky worker long-polls; a worker with no minimum then takes all of it.
    plain = cluster.worker(coordinator, "plain")
    job = coordinator.api.wait_job(cheap)
    assert job["state"] == "done", job
    leases = coordinator.leases()
    assert [x for x in leases if x["worker_id"] == picky.worker_id] == [], "the picky worker leased a cheap task"
    assert {x["worker_id"] for x in leases} == {plain.worker_id}
    assert {e["to"] for e in check_rewards(coordinator.api, job)} == {plain.worker_id}

    # A job paying what the picky worker asks is served to it (the plain one is gone, so it gets all of it).
    plain.proc.signal(signal.SIGTERM)
    assert plain.proc.wait() == 0, plain.proc.tail()
    dear = submit(coordinator, SigningKey.generate(), SMALL, tasks=3, replicas=1, price=50)
    job = coordinator.api.wait_job(dear)
    assert job["state"] == "done", job
    assert {e["to"] for e in check_rewards(coordinator.api, job)} == {picky.worker_id}
    view = coordinator.api.workers()[picky.worker_id]
    assert (view["balance"], view["min_price"]) == (3 * 50, 50)
    assert picky.proc.alive(), picky.proc.tail()
    check_conservation(coordinator.api.ledger())


@pytest.mark.timeout(180)
def test_the_best_paying_job_is_leased_first_then_the_oldest(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    key = SigningKey.generate()
    # Queued before any worker exists: the oldest pays least; two newer ones pay the same, more.
    low = submit(coordinator, key, SMALL, tasks=3, replicas=1, price=5)
    high_old = submit(coordinator, key, SMALL, tasks=3, replicas=1, price=9)
    high_new = submit(coordinator, key, SMALL, tasks=3, replicas=1, price=9)
    worker = cluster.worker(coordinator, "worker", batch=1)
    for job_id in (low, high_old, high_new):
        assert coordinator.api.wait_job(job_id)["state"] == "done"
    rows = read_db(coordinator.db, "SELECT job_id, worker_id FROM leases ORDER BY issued_ms, rowid")
    assert {w for _, w in rows} == {worker.worker_id}
    order = [job_id for job_id, _ in rows]
    assert order == [high_old] * 3 + [high_new] * 3 + [low] * 3, order


# ---- conservation across crashes ------------------------------------------------------------------------------


@pytest.mark.timeout(420)
def test_credits_are_conserved_across_coordinator_crashes_mid_job(cluster: Cluster, submitter: Any,
                                                                  tmp_path: Path) -> None:
    tasks, replicas = 8, 2
    prices = (3, 4)
    coordinator = cluster.coordinator(port=free_port(), lease_timeout=5)
    workers = [cluster.worker(coordinator, f"worker-{i}", batch=2) for i in range(3)]
    jobs = [submit(coordinator, submitter, SLOW_JOB, tasks=tasks, replicas=replicas, price=p) for p in prices]
    # A third job pays least, so it waits behind the others; it is cancelled between two crashes.
    doomed = submit(coordinator, submitter, SLOW_JOB, tasks=tasks, replicas=replicas, price=1)
    total = len(jobs) * tasks

    def validated() -> int:
        views = [coordinator.api.job(j) for j in jobs]
        assert any(v["state"] not in TERMINAL for v in views), "every job ended before the crashes were over"
        return sum(v["tasks_validated"] for v in views)

    def reached(target: int) -> bool:
        return validated() >= target

    for crash, target in enumerate((2, total // 2, total - 4)):
        wait_until(functools.partial(reached, target), f"{target} validated tasks before crash {crash + 1}")
        coordinator.proc.signal(signal.SIGKILL)
        assert coordinator.proc.wait() == -signal.SIGKILL
        coordinator = cluster.restart(coordinator)
        check_conservation(coordinator.api.ledger())
        if crash == 0:
            got = cluster.cli("cancel", "--coordinator", coordinator.url, doomed)
            assert got.returncode == 0, got.stderr

    ended = [coordinator.api.wait_job(j) for j in jobs]
    assert [j["state"] for j in ended] == ["done", "done"], ended
    wait_until(lambda: all(w.journal_empty() for w in workers), "every worker's journal to empty")

    # The chain and the money rules hold in the data dir the coordinator was killed on three times.
    entries = export(cluster, coordinator, tmp_path / "ledger.jsonl")
    report = verify_data_dir(cluster, coordinator)
    assert report["entries"] == len(entries) and report["in_escrow"] == 0
    held = accounts_agree(coordinator, entries)
    assert held["mint"] == -report["minted"] and sum(v for k, v in held.items() if k != "mint") == report["minted"]
    # Every job's escrow was funded once and closed by one refund of exactly what its rewards left.
    for job in ended + [coordinator.api.job(doomed)]:
        check_escrow(entries, job)
        assert held[f"escrow:{job['job_id']}"] == 0
    # No (task, worker) pair was paid twice; every reward pays a valid result, at its job's price, from its escrow;
    # every validated task was paid (once per agreeing worker: a worker that earned trust may have run it alone).
    pairs = Counter((e["task_id"], e["to"]) for e in entries if e["kind"] == "reward")
    assert pairs and max(pairs.values()) == 1, [p for p, n in pairs.items() if n > 1]
    valid = read_db(coordinator.db, "SELECT task_id, worker_id FROM results WHERE verdict = 'valid'")
    assert set(pairs) == set(valid)
    price_of = {j["job_id"]: j["price"] for j in ended + [coordinator.api.job(doomed)]}
    for e in entries:
        if e["kind"] == "reward":
            assert (e["from"], e["amount"]) == (f"escrow:{e['job_id']}", price_of[e["job_id"]]), e
    for job in ended:
        paid_tasks = Counter(t for t, _ in pairs if t.startswith(job["job_id"] + "-"))
        # (one more where an audit passed, PROTOCOL.md 12.6)
        assert len(paid_tasks) == job["tasks_total"] and set(paid_tasks.values()) <= set(range(1, replicas + 2))
    earned: dict[str, int] = {}
    for task_id, worker_id in valid:
        earned[worker_id] = earned.get(worker_id, 0) + price_of[task_id.rsplit("-", 1)[0]]
    for w in workers:
        assert held.get(w.worker_id, 0) == earned.get(w.worker_id, 0), w.worker_id
        assert coordinator.api.workers()[w.worker_id]["balance"] == held.get(w.worker_id, 0)
    # The submitter paid exactly what the validated results cost.
    granted = sum(e["amount"] for e in entries if e["kind"] == "grant" and e["to"] == submitter.id)
    assert held[submitter.id] == granted - sum(earned.values())
    assert balances(entries) == held
