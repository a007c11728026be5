"""coordinator.views: the status API shows each worker's standing (banned, too fast, outlier) and trust per kernel,
and the money: balances from the ledger's book, each job's max cost and escrow, the ledger's totals."""

from __future__ import annotations

from typing import Any

from coordinator import views
from coordinator.scheduler import Scheduler
from depin import ledger, merkle
from tests.coordinator.sched_support import (
    FUNDS,
    PARAMS,
    PRICE,
    SUBMITTER,
    WORKER_KEYS,
    bad,
    good,
    lease,
    new_scheduler,
    open_policy,
    report,
    submit,
    wid,
)

K = "mandelbrot@1"
ONLINE = 60_000
_MALFORMED = {"dtype": "uint32", "shape": [1], "data": b"\0\0\0\0"}


def _scene() -> tuple[Scheduler, int]:
    """A and B trusted (five cross-checked tasks at 100 ms each), then D banned, C too fast, E an outlier."""
    s = new_scheduler(policy=open_policy(trust_after=3, speed_samples=5, outlier_min_judged=5), rand=lambda: 0.0)
    now = 0
    for _ in range(5):
        submit(s, now=now, tasks=1, replicas=2)
        (ga,), (gb,) = lease(s, "A", now=now), lease(s, "B", now=now)
        report(s, "A", ga, good(ga), now=now + 100)
        report(s, "B", gb, good(gb), now=now + 100)
        now += 1000
    submit(s, now=now, tasks=3, replicas=2, params=dict(PARAMS, height=18))  # each task the same work as before
    for g in lease(s, "D", now=now):
        report(s, "D", g, _MALFORMED, now=now + 1)
    (gc,) = lease(s, "C", now=now, max_tasks=1)
    report(s, "C", gc, good(gc), now=now + 1)  # 1 ms for work A and B took 100 ms for
    # E: 2 invalid of 5 judged, against a median of 0: an outlier, though too few invalid to be banned.
    for _ in range(3):
        s.trust.judged_valid(wid("E"), K, partners=[wid("A")])
    for _ in range(2):
        s.trust.judged_invalid(wid("E"), K)
    s.touch_worker(now=now, worker_id=wid("E"), public_key=WORKER_KEYS["E"].public)
    return s, now + 2


def _rows(s: Scheduler, now: int) -> dict[str, dict[str, Any]]:
    rows = views.status_view(s, now, ONLINE)["workers"]
    return {r["worker_id"]: r for r in rows}


def test_status_view_shows_trust_and_standing() -> None:
    s, now = _scene()
    rows = _rows(s, now)
    a = rows[wid("A")]
    assert (a["banned"], a["too_fast"], a["outlier"], a["trusted"]) == (None, 0, False, [K])
    assert a["trust"] == {K: {"consecutive_valid": 5, "valid": 5, "invalid": 0}}
    assert (a["balance"], a["tasks_validated"], a["tasks_rejected"], a["online"]) == (5 * PRICE, 5, 0, True)
    c = rows[wid("C")]
    assert (c["banned"], c["too_fast"], c["outlier"], c["trusted"]) == (None, 1, False, [])
    assert all(t["consecutive_valid"] == 0 for t in c["trust"].values())
    d = rows[wid("D")]
    assert (d["banned"], d["too_fast"], d["outlier"], d["trusted"]) == ("3 invalid results out of 3", 0, False, [])
    assert d["trust"] == {K: {"consecutive_valid": 0, "valid": 0, "invalid": 3}}
    assert d["tasks_rejected"] == 3
    e = rows[wid("E")]
    assert (e["banned"], e["outlier"], e["trusted"]) == (None, True, [])
    assert e["trust"] == {K: {"consecutive_valid": 0, "valid": 3, "invalid": 2}}


def test_an_outlier_with_a_streak_is_still_shown_untrusted() -> None:
    s, now = _scene()
    for _ in range(3):
        s.trust.judged_valid(wid("E"), K, partners=[wid("A")])  # streak 3, but 2 of 8 invalid
    e = _rows(s, now)[wid("E")]
    assert e["trust"][K]["consecutive_valid"] == 3
    assert (e["outlier"], e["trusted"]) == (True, [])


def test_trust_is_listed_per_kernel_in_name_order() -> None:
    s, now = _scene()
    for kernel in ("zeta@1", "alpha@2"):
        for _ in range(3):
            s.trust.judged_valid(wid("A"), kernel, partners=[wid("B")] if kernel == "zeta@1" else [])
    a = _rows(s, now)[wid("A")]
    assert list(a["trust"]) == ["alpha@2", K, "zeta@1"]
    assert a["trust"]["alpha@2"] == {"consecutive_valid": 0, "valid": 3, "invalid": 0}
    assert a["trusted"] == [K, "zeta@1"]


def test_worker_view_without_a_trust_book() -> None:
    s, now = _scene()
    row = views.worker_view(s.workers[wid("D")], now, ONLINE)
    assert (row["banned"], row["too_fast"], row["outlier"], row["trusted"], row["trust"]) == (
        "3 invalid results out of 3", 0, False, [], {})


def test_worker_view_online_flag_follows_last_seen() -> None:
    s, now = _scene()
    w = s.workers[wid("A")]
    assert views.worker_view(w, w.last_seen_ms + ONLINE, ONLINE, s.trust)["online"] is True
    assert views.worker_view(w, w.last_seen_ms + ONLINE + 1, ONLINE, s.trust)["online"] is False


def test_a_new_worker_has_a_clean_row() -> None:
    s = new_scheduler()
    s.touch_worker(now=5, worker_id=wid("F"), public_key=WORKER_KEYS["F"].public)
    (row,) = views.status_view(s, 5, ONLINE)["workers"]
    assert {k: row[k] for k in ("banned", "too_fast", "outlier", "trusted", "trust")} == {
        "banned": None, "too_fast": 0, "outlier": False, "trusted": [], "trust": {}}


# ---- money -----------------------------------------------------------------------------------------------------------


def test_job_and_worker_views_take_money_from_the_book() -> None:
    s = new_scheduler()
    open_job = submit(s, now=0, tasks=2, replicas=2, price=PRICE)  # max cost 2 x 5 x 7 = 70
    done = submit(s, now=1, tasks=1, replicas=1, price=3 * PRICE)  # max cost 1 x 4 x 21 = 84, leased first
    (gd,) = lease(s, "C", now=2, max_tasks=1, min_price=2 * PRICE)
    report(s, "C", gd, good(gd), now=3)
    ga0, _ = lease(s, "A", now=4)
    (gb0,) = lease(s, "B", now=4, max_tasks=1)
    report(s, "A", ga0, good(ga0), now=5)
    report(s, "B", gb0, good(gb0), now=5)
    jobs = {j["job_id"]: j for j in views.status_view(s, 6, ONLINE)["jobs"]}
    assert list(jobs) == [done.job_id, open_job.job_id]  # newest first
    assert {k: jobs[done.job_id][k] for k in ("state", "price", "max_cost", "escrow")} == {
        "state": "done", "price": 3 * PRICE, "max_cost": 84, "escrow": 0}
    assert {k: jobs[open_job.job_id][k] for k in ("state", "price", "max_cost", "escrow")} == {
        "state": "running", "price": PRICE, "max_cost": 70, "escrow": 70 - 2 * PRICE}
    assert views.job_view(open_job)["escrow"] is None  # no ledger at hand
    rows = _rows(s, 6)
    assert {n: (rows[wid(n)]["balance"], rows[wid(n)]["min_price"]) for n in "ABC"} == {
        "A": (PRICE, 0), "B": (PRICE, 0), "C": (3 * PRICE, 2 * PRICE)}
    workers = views.status_view(s, 6, ONLINE)["workers"]
    assert [w["worker_id"] for w in workers] == [wid("C"), *sorted([wid("A"), wid("B")])]  # biggest balance first


def test_the_ledger_section_adds_up() -> None:
    s = new_scheduler()
    job = submit(s, now=0, tasks=1, replicas=2, max_results=3)
    (ga,), (gb,) = lease(s, "A", now=1), lease(s, "B", now=1)
    report(s, "A", ga, good(ga), now=2)
    report(s, "B", gb, bad(gb), now=2)
    view = views.status_view(s, 3, ONLINE)["ledger"]
    assert view == {"entries": 2, "head_hash": s.book.head.hash if s.book.head else None,
                    "root_hash": s.book.root().hex(), "minted": FUNDS, "in_escrow": job.max_cost, "in_bonds": 0,
                    "in_accounts": FUNDS - job.max_cost, "total_credits": 0}
    (gc,) = lease(s, "C", now=4)
    report(s, "C", gc, good(gc), now=5)  # agrees with A: the job is done and the rest refunded
    view = views.status_view(s, 6, ONLINE)["ledger"]
    summary = ledger.verify(_all_entries(s))
    assert (view["entries"], view["head_hash"], view["root_hash"]) == (5, summary.head_hash, summary.root_hash)
    assert (view["minted"], view["in_escrow"], view["total_credits"]) == (FUNDS, 0, 2 * PRICE)
    assert view["in_accounts"] == FUNDS  # submitters' and workers' credits together: everything minted
    assert summary.balances[SUBMITTER] == FUNDS - 2 * PRICE


def test_an_empty_ledger() -> None:
    s = new_scheduler(funds=0)
    view = views.status_view(s, 0, ONLINE)["ledger"]
    assert view == {"entries": 0, "head_hash": None, "root_hash": merkle.EMPTY_ROOT.hex(), "minted": 0,
                    "in_escrow": 0, "in_bonds": 0, "in_accounts": 0, "total_credits": 0}


def _all_entries(s: Scheduler) -> list[ledger.Entry]:
    """Every entry so far: the test never took the scheduler's changes before."""
    return s.take_changes().entries
