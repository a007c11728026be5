"""coordinator.scheduler.Scheduler, driven by events with an explicit clock and deterministic ids (no I/O)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coordinator import fresh
from coordinator.scheduler import LAST_SEEN_PERSIST_MS, Changes, Scheduler
from coordinator.store import Store
from depin import accounts, codec, ledger
from depin.crypto import SigningKey
from depin.errors import Conflict, Forbidden, NotFound, UserError, VerificationError
from depin.kernels import mandelbrot
from depin.protocol import AckItem, ResultItem
from tests.coordinator.sched_support import (
    COORDINATOR,
    FUNDS,
    KERNELS,
    NO_AUDITS,
    OPEN_PLACEMENT,
    PARAMS,
    PRICE,
    SUBMITTER,
    TIMEOUT,
    WORKER_KEYS,
    Ids,
    bad,
    balance,
    escrow,
    good,
    item,
    lease,
    new_scheduler,
    open_policy,
    refunds,
    report,
    rewards,
    submit,
    task_of,
    whole_image,
    wid,
)
from tests.reference import cref
from tests.spec_examples import SPEC


def _accepted(ack: AckItem) -> None:
    assert (ack.status, ack.reason) == ("accepted", ""), ack


def _entries(changes: Changes) -> list[tuple[str, str, int]]:
    """(task_id, to, amount) of every entry: rewards name their task, a refund has none."""
    return [(e.task_id or "", e.to, e.amount) for e in changes.entries]


# ---- submit ---------------------------------------------------------------------------------------------------


def test_submit_creates_signed_tasks() -> None:
    s = new_scheduler()
    job = submit(s, now=5, tasks=3, replicas=2, price=PRICE)
    assert (job.job_id, job.state, job.n_tasks, job.replicas, job.max_results, job.price) == (
        "id0001", "queued", 3, 2, 5, PRICE)
    assert (job.submitter, job.created_ms, job.kernel, job.kernel_version) == (SUBMITTER, 5, "mandelbrot", 1)
    assert job.params == mandelbrot.validate(PARAMS)
    assert job.max_cost == PRICE * 3 * 5 and escrow(s, job) == job.max_cost
    assert balance(s, SUBMITTER) == FUNDS - job.max_cost
    bands = mandelbrot.split(job.params, 3)
    assert s.tasks == {} and job.materialized == 0  # tasks are made as lease walks reach them (coordinator.fresh)
    assert len(lease(s, "A", now=6, max_tasks=3)) == 3
    assert list(s.tasks) == ["id0001-0", "id0001-1", "id0001-2"] and job.materialized == 3
    for index, task in enumerate(s.tasks.values()):
        assert (task.index, task.state, task.wanted, task.params) == (index, "pending", 1, bands[index])
        assert codec.decode_canonical(task.payload) == {
            "task_id": f"id0001-{index}", "job_id": "id0001", "kernel": "mandelbrot", "kernel_version": 1,
            "params": bands[index], "coordinator": COORDINATOR.id, "price": PRICE,
        }
        COORDINATOR.verify_key.verify("task", task.payload, task.sig)
        with pytest.raises(VerificationError):
            COORDINATOR.verify_key.verify("results", task.payload, task.sig)
        with pytest.raises(VerificationError):
            WORKER_KEYS["A"].verify_key.verify("task", task.payload, task.sig)


def test_submit_explicit_max_results() -> None:
    s = new_scheduler()
    assert submit(s, replicas=3, max_results=3).max_results == 3
    assert submit(s, replicas=16).max_results == 19
    assert submit(s, replicas=1, max_results=64).max_results == 64


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"replicas": 0}, UserError, "quorum must be between 1 and 16"),
        ({"replicas": 17}, UserError, r"replicas must be between quorum \(2\) and 16"),
        ({"replicas": 1, "quorum": 2}, UserError, r"replicas must be between quorum \(2\) and 1"),
        ({"quorum": 0}, UserError, "quorum must be between 1 and 16"),
        ({"max_errors": -1}, UserError, "max_errors must be between 0 and 64"),
        ({"replicas": 3, "max_results": 2}, UserError, r"max_results must be between replicas \(3\) and 64"),
        ({"max_results": 65}, UserError, r"max_results must be between replicas \(2\) and 64"),
        ({"price": 0}, UserError, "price must be a whole number of credits from 1 to 1099511627775"),
        ({"price": 2**40}, UserError, "price must be a whole number of credits from 1 to 1099511627775"),
        ({"tasks": 7}, UserError, "--tasks must be between 1 and 6 \\(the image height\\)"),
        ({"params": {**PARAMS, "width": 0}}, UserError, "parameter width: 0 is outside"),
        ({"params": {**PARAMS, "colour": 1}}, UserError, "unknown parameter 'colour'"),
    ],
)
def test_submit_refuses_without_side_effects(changes: dict[str, Any], error: type[Exception], message: str) -> None:
    s = new_scheduler()
    s.take_changes()
    with pytest.raises(error, match=message):
        submit(s, **changes)
    assert s.jobs == {} and s.tasks == {}
    assert not s.take_changes()
    assert (s.book.size, balance(s, SUBMITTER)) == (1, FUNDS)  # nothing escrowed


def test_submit_unknown_kernel() -> None:
    s = new_scheduler()
    with pytest.raises(UserError, match="unknown kernel 'julia'"):
        s.submit(now=0, submitter=SUBMITTER, kernel_name="julia", params={}, n_tasks=1, replicas=1,
                 max_results=None, price=1)
    assert s.jobs == {}


def test_protocol_md_task_and_lease_example() -> None:
    ex = SPEC["task"]
    key = SigningKey(bytes.fromhex(ex["coordinator_seed_hex"]))
    worker = SigningKey(bytes.fromhex(ex["worker_seed_hex"]))
    assert (key.public.hex(), key.id, worker.id) == (ex["coordinator_public_key_hex"], ex["coordinator_id"],
                                                    ex["worker_id"])
    ids = iter([ex["job_id"], ex["lease_id"]])
    issued = ex["expires_ms"] - 60_000
    s = Scheduler(key=key, lease_timeout_ms=60_000, new_id=lambda: next(ids), pick=lambda n: 0,
                  order_key=lambda: b"")  # task 0 first
    s.grant(now=0, account=SUBMITTER, amount=8)  # exactly the job's max cost: 2 tasks x 4 results x 1 credit
    job = s.submit(now=issued - 1, submitter=SUBMITTER, kernel_name="mandelbrot", params=ex["params"],
                   n_tasks=ex["tasks"], replicas=1, max_results=None, price=1)
    s.touch_worker(now=issued, worker_id=worker.id, public_key=worker.public)
    grants = s.lease(now=issued, worker_id=worker.id, max_tasks=1, kernels_ok=KERNELS)
    task = s.tasks[f"{job.job_id}-0"]  # made by the lease walk
    assert task.payload.hex() == ex["task0_payload_hex"]
    assert task.sig.hex() == ex["task0_sig_hex"]
    assert codec.encode({"leases": [g.to_payload() for g in grants]}).hex() == ex["lease_answer_hex"]


# ---- leasing ------------------------------------------------------------------------------------------------------


def test_replicas_go_to_distinct_workers() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=3)
    grants = {name: lease(s, name, now=0) for name in "ABCD"}
    assert [len(grants[n]) for n in "ABCD"] == [1, 1, 1, 0]
    leases = [s.leases[grants[n][0].lease_id] for n in "ABC"]
    assert [x.worker_id for x in leases] == [wid("A"), wid("B"), wid("C")]
    assert {x.task_id for x in leases} == {"id0001-0"}


def test_a_worker_never_gets_two_replicas_of_one_task() -> None:
    s = new_scheduler()
    submit(s, tasks=2, replicas=3)
    first = lease(s, "A", now=0, max_tasks=10)
    assert [task_of(g)["task_id"] for g in first] == ["id0001-0", "id0001-1"]
    assert lease(s, "A", now=1) == []
    assert s.tasks["id0001-0"].wanted == 2


def test_lease_fields_and_job_starts_running() -> None:
    s = new_scheduler()
    job = submit(s, tasks=1, replicas=1)
    (grant,) = lease(s, "A", now=100)
    assert grant.lease_id == "id0002"
    assert grant.expires_ms == 100 + TIMEOUT
    assert grant.task == s.tasks["id0001-0"].payload and grant.sig == s.tasks["id0001-0"].sig
    stored = s.leases[grant.lease_id]
    assert (stored.state, stored.issued_ms, stored.expires_ms, stored.worker_id) == ("active", 100, 100 + TIMEOUT,
                                                                                    wid("A"))
    assert job.state == "running"
    assert s.next_expiry_ms() == 100 + TIMEOUT


def test_lease_respects_max_tasks_and_job_order() -> None:
    s = new_scheduler()
    first = submit(s, now=0, tasks=2, replicas=1)
    second = submit(s, now=1, tasks=2, replicas=1)
    got = lease(s, "A", now=2, max_tasks=3)
    assert [task_of(g)["task_id"] for g in got] == [f"{first.job_id}-0", f"{first.job_id}-1", f"{second.job_id}-0"]
    assert [task_of(g)["task_id"] for g in lease(s, "B", now=2, max_tasks=3)] == [f"{second.job_id}-1"]


@pytest.mark.parametrize("accepted", [(), ("mandelbrot@2",), ("julia@1", "mandelbrot")])
def test_lease_only_offers_kernels_the_worker_runs(accepted: tuple[str, ...]) -> None:
    s = new_scheduler()
    job = submit(s)
    assert s.lease(now=0, worker_id=wid("A"), max_tasks=4, kernels_ok=accepted) == []
    assert job.state == "queued"


def test_lease_expiry_reoffers_the_task_to_another_worker() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    assert lease(s, "B", now=TIMEOUT - 1) == []
    (gb,) = lease(s, "B", now=TIMEOUT)  # expires_ms <= now: expired
    assert task_of(gb)["task_id"] == task_of(ga)["task_id"]
    assert s.leases[ga.lease_id].state == "expired"
    assert lease(s, "A", now=TIMEOUT) == []  # the slow worker does not get its own task back
    assert lease(s, "C", now=TIMEOUT) == []  # exactly one replacement


def test_expire_counts_and_next_expiry() -> None:
    s = new_scheduler()
    assert s.next_expiry_ms() is None
    submit(s, tasks=2, replicas=1)
    lease(s, "A", now=0, max_tasks=1)
    lease(s, "B", now=5, max_tasks=1)
    assert s.next_expiry_ms() == TIMEOUT
    assert s.expire(TIMEOUT - 1) == 0
    assert s.expire(TIMEOUT) == 1
    assert s.next_expiry_ms() == TIMEOUT + 5
    assert s.expire(TIMEOUT + 5) == 1
    assert s.next_expiry_ms() is None
    assert s.expire(10 * TIMEOUT) == 0


def test_expiry_skips_leases_that_ended_otherwise() -> None:
    s = new_scheduler()
    job = submit(s, tasks=2, replicas=1)
    g0, g1 = lease(s, "A", now=0)
    report(s, "A", g0, good(g0), now=1)  # returned
    assert s.next_expiry_ms() == TIMEOUT  # g1 is still active
    s.cancel(now=2, job_id=job.job_id, requester=SUBMITTER)  # g1 cancelled with its job
    assert s.next_expiry_ms() is None
    assert s.expire(10 * TIMEOUT) == 0


def test_expiry_with_replicas_asks_only_for_the_missing_one() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=2)
    lease(s, "A", now=0)
    lease(s, "B", now=TIMEOUT // 2)
    assert s.expire(TIMEOUT) == 1
    assert s.tasks["id0001-0"].wanted == 1
    assert len(lease(s, "C", now=TIMEOUT)) == 1
    assert lease(s, "D", now=TIMEOUT) == []


def test_late_result_on_an_expired_lease_still_counts() -> None:
    s = new_scheduler()
    job = submit(s, tasks=2, replicas=1)
    (ga,) = lease(s, "A", now=0, max_tasks=1)
    (gb,) = lease(s, "B", now=TIMEOUT, max_tasks=1)
    assert task_of(gb)["task_id"] == task_of(ga)["task_id"] == "id0001-0"
    s.take_changes()
    _accepted(report(s, "A", ga, good(ga), now=TIMEOUT + 500))
    task = s.tasks["id0001-0"]
    assert task.state == "validated"
    assert s.leases[ga.lease_id].state == "returned"
    assert s.leases[gb.lease_id].state == "cancelled"  # the replacement is no longer needed
    changes = s.take_changes()
    assert _entries(changes) == [("id0001-0", wid("A"), PRICE)]
    assert changes.entries[0].time == TIMEOUT + 500
    assert report(s, "B", gb, good(gb), now=TIMEOUT + 600) == AckItem(gb.lease_id, "rejected",
                                                                      "task already validated")
    assert not s.take_changes().entries
    assert job.state == "running" and job.tasks_validated == 1


# ---- results and quorum ----------------------------------------------------------------------------------------


def test_agreeing_quorum_validates_and_pays_each_worker_once() -> None:
    s = new_scheduler()
    job = submit(s, tasks=1, replicas=2)
    (ga,), (gb,) = lease(s, "A", now=0), lease(s, "B", now=0)
    s.take_changes()
    _accepted(report(s, "A", ga, good(ga), now=100))
    assert s.tasks["id0001-0"].state == "pending"
    assert s.take_changes().entries == []
    _accepted(report(s, "B", gb, good(gb), now=200))
    changes = s.take_changes()
    left = job.max_cost - 2 * PRICE
    assert _entries(changes) == [("id0001-0", wid("A"), PRICE), ("id0001-0", wid("B"), PRICE), ("", SUBMITTER, left)]
    pot = accounts.escrow_account(job.job_id)
    assert [(e.seq, e.kind, e.from_, e.job_id, e.time) for e in changes.entries] == [
        (2, "reward", pot, job.job_id, 200), (3, "reward", pot, job.job_id, 200), (4, "refund", pot, job.job_id, 200)]
    assert s.book.head == changes.entries[-1]
    for name in "AB":
        w = s.workers[wid(name)]
        assert (w.validated, w.rejected, balance(s, name)) == (1, 0, PRICE)
    assert (escrow(s, job), balance(s, SUBMITTER)) == (0, FUNDS - 2 * PRICE)
    assert {r.lease_id: r.verdict for r in changes.results.values()} == {ga.lease_id: "valid", gb.lease_id: "valid"}
    assert job.state == "done" and job.tasks_validated == 1 and job.finished_ms == 200


def test_disagreement_leases_exactly_one_more_replica() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=2)
    (ga,), (gb,) = lease(s, "A", now=0), lease(s, "B", now=0)
    _accepted(report(s, "A", ga, good(ga), now=10))
    _accepted(report(s, "B", gb, bad(gb), now=20))
    assert s.tasks["id0001-0"].state == "pending"
    assert s.tasks["id0001-0"].wanted == 1
    assert lease(s, "A", now=30) == [] and lease(s, "B", now=30) == []
    (gc,) = lease(s, "C", now=30)
    assert lease(s, "D", now=30) == []
    s.take_changes()
    _accepted(report(s, "C", gc, good(gc), now=40))
    changes = s.take_changes()
    assert rewards(changes) == [("id0001-0", wid("A"), PRICE), ("id0001-0", wid("C"), PRICE)]
    assert refunds(changes) == [("id0001", SUBMITTER, 5 * PRICE - 2 * PRICE)]  # 5 results escrowed, 2 paid
    verdicts = {r.lease_id: r.verdict for r in changes.results.values()}
    assert verdicts == {ga.lease_id: "valid", gb.lease_id: "invalid", gc.lease_id: "valid"}
    b = s.workers[wid("B")]
    assert (b.validated, b.rejected, balance(s, "B")) == (0, 1, 0)


def test_too_many_disagreeing_results_fail_the_task_and_the_job() -> None:
    s = new_scheduler()
    job = submit(s, tasks=2, replicas=2, max_results=3)
    (ga,), (gb,) = lease(s, "A", now=0, max_tasks=1), lease(s, "B", now=0, max_tasks=1)
    (gd,), (ge,) = lease(s, "D", now=0, max_tasks=1), lease(s, "E", now=0, max_tasks=1)
    assert task_of(gd)["task_id"] == task_of(ge)["task_id"] == "id0001-1"  # task 1 is fully leased
    _accepted(report(s, "A", ga, good(ga), now=10))
    _accepted(report(s, "B", gb, bad(gb, 1), now=20))
    (gc,) = lease(s, "C", now=30, max_tasks=1)
    assert task_of(gc)["task_id"] == "id0001-0"
    s.take_changes()
    _accepted(report(s, "C", gc, bad(gc, 2), now=40))
    assert job.state == "failed"
    assert job.error == "task 0: no 2 agreeing results among 3 (limit 3)"
    assert job.finished_ms == 40
    changes = s.take_changes()
    assert _entries(changes) == [("", SUBMITTER, job.max_cost)]  # nothing was paid: the whole escrow goes back
    assert (changes.entries[0].kind, changes.entries[0].time, escrow(s, job)) == ("refund", 40, 0)
    assert {t.task_id: t.state for t in changes.tasks.values()} == {"id0001-0": "failed", "id0001-1": "cancelled"}
    assert changes.leases[gd.lease_id].state == "cancelled"
    assert {r.lease_id: r.verdict for r in changes.results.values()} == {
        ga.lease_id: "void", gb.lease_id: "void", gc.lease_id: "void"}
    for name in "ABC":  # nobody is judged when nobody can tell who was wrong
        assert (s.workers[wid(name)].validated, s.workers[wid(name)].rejected) == (0, 0)
    assert s.tasks == {} and s.leases == {} and s.results == {}
    assert report(s, "D", gd, good(gd), now=50) == AckItem(gd.lease_id, "rejected",
                                                           "unknown lease, or its job has ended")


def test_malformed_output_is_rejected_and_counted_against_the_worker() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    short = codec.array_to_wire(mandelbrot.run(task_of(ga)["params"])[:5])
    s.take_changes()
    ack = report(s, "A", ga, short, now=10)
    assert ack == AckItem(ga.lease_id, "rejected", "malformed output: output must be uint32[6, 8], got uint32[5, 8]")
    a = s.workers[wid("A")]
    assert (a.validated, a.rejected) == (0, 1)
    changes = s.take_changes()
    result = changes.results[ga.lease_id]
    assert (result.verdict, result.output, result.error) == ("invalid", None,
                                                             "output must be uint32[6, 8], got uint32[5, 8]")
    assert s.tasks["id0001-0"].state == "pending" and s.tasks["id0001-0"].wanted == 1
    assert lease(s, "A", now=20) == []
    (gb,) = lease(s, "B", now=20)
    _accepted(report(s, "B", gb, good(gb), now=30))
    assert _entries(s.take_changes()) == [("id0001-0", wid("B"), PRICE), ("", SUBMITTER, 4 * PRICE - PRICE)]


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ({"dtype": "uint32", "shape": [6, 8]}, "malformed output: array must be a map with exactly dtype, shape, data"),
        ({"dtype": "uint32", "shape": [6, 8], "data": bytes(10)},
         r"malformed output: array.data: 10 bytes do not fit shape [6, 8] of uint32"),
        ({"dtype": "int64", "shape": [6, 8], "data": bytes(6 * 8 * 8)},
         "malformed output: output must be uint32[6, 8], got int64[6, 8]"),
        ({"dtype": "bool", "shape": [6, 8], "data": bytes(48)}, "malformed output: array.dtype: unsupported 'bool'"),
    ],
)
def test_malformed_wire_maps(output: dict[str, Any], reason: str) -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    assert report(s, "A", ga, output, now=1) == AckItem(ga.lease_id, "rejected", reason)
    assert s.workers[wid("A")].rejected == 1


def test_malformed_results_count_towards_max_results() -> None:
    s = new_scheduler()
    job = submit(s, tasks=1, replicas=1, max_results=1)
    (ga,) = lease(s, "A", now=0)
    assert report(s, "A", ga, {"x": 1}, now=1).status == "rejected"
    assert job.state == "failed"
    assert job.error == "task 0: no 1 agreeing results among 1 (limit 1)"
    assert refunds(s.take_changes()) == [(job.job_id, SUBMITTER, PRICE)]


def test_duplicate_report_is_acknowledged_but_never_paid_twice() -> None:
    s = new_scheduler()
    submit(s, tasks=2, replicas=2)
    ga0, ga1 = lease(s, "A", now=0)
    gb0, gb1 = lease(s, "B", now=0)
    _accepted(report(s, "A", ga0, good(ga0), now=10))
    assert report(s, "A", ga0, good(ga0), now=11) == AckItem(ga0.lease_id, "duplicate", "result already received")
    assert report(s, "A", ga0, bad(ga0), now=12) == AckItem(
        ga0.lease_id, "rejected", "a different result was already received for this lease")
    _accepted(report(s, "B", gb0, good(gb0), now=20))
    assert rewards(s.take_changes()) == [("id0001-0", wid("A"), PRICE), ("id0001-0", wid("B"), PRICE)]
    # The task is validated but the job is still running: a resend is still recognised.
    for now in (30, 31):
        assert report(s, "A", ga0, good(ga0), now=now).status == "duplicate"
        assert report(s, "B", gb0, good(gb0), now=now).status == "duplicate"
    assert s.take_changes().entries == []
    assert (s.workers[wid("A")].validated, balance(s, "A")) == (1, PRICE)


def test_duplicates_within_one_batch() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=2)
    (ga,) = lease(s, "A", now=0)
    acks = s.report(now=1, worker_id=wid("A"), reports=[item(ga, good(ga)), item(ga, good(ga))])
    assert [a.status for a in acks] == ["accepted", "duplicate"]


def _archived(tmp_path: Path) -> tuple[Store, Scheduler]:
    """A funded scheduler whose finished jobs' results can be looked up in a store, as the service wires it."""
    store = Store(tmp_path / "coordinator.sqlite3")
    s = Scheduler(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=Ids(), archive=store.result_verdict)
    s.grant(now=0, account=SUBMITTER, amount=FUNDS)
    return store, s


def test_resend_after_the_job_is_done_is_still_a_duplicate(tmp_path: Path) -> None:
    # The worker's journal resends a result whose acknowledgement was lost; if that result finished the job, the
    # coordinator must still say "duplicate" (worker/journal.py promises it), not count it as rejected.
    store, s = _archived(tmp_path)
    job = submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    _accepted(report(s, "A", ga, good(ga), now=10))
    assert job.state == "done"
    store.save(s.take_changes())
    assert report(s, "A", ga, good(ga), now=20) == AckItem(ga.lease_id, "duplicate", "result already received")
    assert report(s, "A", ga, bad(ga), now=21) == AckItem(
        ga.lease_id, "rejected", "a different result was already received for this lease")
    assert report(s, "B", ga, good(ga), now=22) == AckItem(ga.lease_id, "rejected", "lease belongs to another worker")
    wrong_task = ResultItem(ga.lease_id, "some-other-task", good(ga), 1)
    assert s.report(now=23, worker_id=wid("A"), reports=[wrong_task]) == [
        AckItem(ga.lease_id, "rejected", "task_id does not match the lease")]
    assert s.take_changes().entries == []
    store.close()


def test_resend_after_a_failed_job_gets_its_void_verdict(tmp_path: Path) -> None:
    store, s = _archived(tmp_path)
    submit(s, tasks=1, replicas=2, max_results=2)
    (ga,), (gb,) = lease(s, "A", now=0), lease(s, "B", now=0)
    report(s, "A", ga, good(ga), now=1)
    report(s, "B", gb, bad(gb), now=2)
    store.save(s.take_changes())
    assert report(s, "A", ga, good(ga), now=3) == AckItem(ga.lease_id, "rejected",
                                                          "result already received and judged void")
    store.close()


def test_resend_after_the_job_is_done_before_its_rows_are_taken_is_still_a_duplicate() -> None:
    # The job ended and left memory, but the shell has not taken the change set yet: the result is found there.
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    _accepted(report(s, "A", ga, good(ga), now=10))
    assert report(s, "A", ga, good(ga), now=20) == AckItem(ga.lease_id, "duplicate", "result already received")


def test_resend_after_the_job_is_done_without_an_archive() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    _accepted(report(s, "A", ga, good(ga), now=10))
    s.take_changes()
    assert report(s, "A", ga, good(ga), now=20) == AckItem(ga.lease_id, "rejected",
                                                           "unknown lease, or its job has ended")


def test_resend_of_a_result_judged_invalid_is_rejected_again() -> None:
    s = new_scheduler()
    submit(s, tasks=2, replicas=2)
    ga0, _ = lease(s, "A", now=0)
    gb0, _ = lease(s, "B", now=0)
    short = codec.array_to_wire(mandelbrot.run(task_of(gb0)["params"])[:1])
    assert report(s, "B", gb0, short, now=1).status == "rejected"
    assert report(s, "B", gb0, short, now=2) == AckItem(gb0.lease_id, "rejected",
                                                        "result already received and judged invalid")
    _accepted(report(s, "A", ga0, good(ga0), now=3))
    (gc0,) = lease(s, "C", now=4, max_tasks=1)
    _accepted(report(s, "C", gc0, bad(gc0), now=5))
    (gd0,) = lease(s, "D", now=6, max_tasks=1)
    _accepted(report(s, "D", gd0, good(gd0), now=7))
    assert s.tasks["id0001-0"].state == "validated"
    assert report(s, "C", gc0, bad(gc0), now=8) == AckItem(gc0.lease_id, "rejected",
                                                           "result already received and judged invalid")
    assert report(s, "A", ga0, good(ga0), now=8).status == "duplicate"
    assert s.workers[wid("B")].rejected == 1 and s.workers[wid("C")].rejected == 1


def test_duplicate_after_the_job_is_done_is_never_paid() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    _accepted(report(s, "A", ga, good(ga), now=10))
    s.take_changes()
    assert report(s, "A", ga, good(ga), now=20).status != "accepted"
    assert s.take_changes().entries == []
    assert balance(s, "A") == PRICE


def test_someone_elses_lease_is_rejected() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=2)
    (ga,) = lease(s, "A", now=0)
    ack = report(s, "B", ga, good(ga), now=1)
    assert ack == AckItem(ga.lease_id, "rejected", "lease belongs to another worker")
    assert s.leases[ga.lease_id].state == "active" and s.results == {}
    _accepted(report(s, "A", ga, good(ga), now=2))  # the real holder is unaffected


def test_unknown_lease_and_wrong_task_id() -> None:
    s = new_scheduler()
    submit(s, tasks=2, replicas=1)
    ga0, ga1 = lease(s, "A", now=0)
    s.touch_worker(now=1, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)
    wrong = item(ga0, good(ga0))
    wrong = type(wrong)(lease_id=ga0.lease_id, task_id="id0001-1", output=wrong.output, elapsed_ms=1)
    unknown = type(wrong)(lease_id="nope", task_id="id0001-0", output=wrong.output, elapsed_ms=1)
    acks = s.report(now=1, worker_id=wid("A"), reports=[wrong, unknown])
    assert acks == [AckItem(ga0.lease_id, "rejected", "task_id does not match the lease"),
                    AckItem("nope", "rejected", "unknown lease, or its job has ended")]
    assert s.leases[ga0.lease_id].state == "active"


def test_release_reoffers_the_task() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    assert s.release(now=1, worker_id=wid("B"), lease_ids=[ga.lease_id]) == 0  # not B's to give back
    assert s.release(now=1, worker_id=wid("A"), lease_ids=["nope"]) == 0
    assert s.leases[ga.lease_id].state == "active"
    s.take_changes()
    assert s.release(now=2, worker_id=wid("A"), lease_ids=[ga.lease_id, ga.lease_id]) == 1
    assert s.take_changes().leases[ga.lease_id].state == "released"
    assert s.tasks["id0001-0"].wanted == 1
    (gb,) = lease(s, "B", now=3)
    assert task_of(gb)["task_id"] == "id0001-0"
    assert report(s, "A", ga, good(ga), now=4) == AckItem(ga.lease_id, "rejected", "lease was given back")
    _accepted(report(s, "B", gb, good(gb), now=5))


def test_released_task_may_go_back_to_the_same_worker() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    s.release(now=1, worker_id=wid("A"), lease_ids=[ga.lease_id])
    (again,) = lease(s, "A", now=2)
    assert again.lease_id != ga.lease_id and task_of(again)["task_id"] == "id0001-0"


def test_expired_lease_cannot_be_released() -> None:
    s = new_scheduler()
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    s.expire(TIMEOUT)
    assert s.release(now=TIMEOUT, worker_id=wid("A"), lease_ids=[ga.lease_id]) == 0
    assert s.leases[ga.lease_id].state == "expired"


# ---- cancel -----------------------------------------------------------------------------------------------------


def test_cancel_by_someone_else_is_forbidden() -> None:
    s = new_scheduler()
    job = submit(s)
    lease(s, "A", now=0)
    with pytest.raises(Forbidden, match="only the job's submitter can cancel it"):
        s.cancel(now=1, job_id=job.job_id, requester=wid("A"))
    assert job.state == "running"


def test_cancel_by_the_submitter() -> None:
    s = new_scheduler()
    job = submit(s, tasks=2, replicas=2)
    ga0, ga1 = lease(s, "A", now=0)
    (gb0, gb1) = lease(s, "B", now=0)
    _accepted(report(s, "A", ga0, good(ga0), now=5))
    s.take_changes()
    assert s.cancel(now=10, job_id=job.job_id, requester=SUBMITTER) is job
    assert (job.state, job.finished_ms, job.error) == ("cancelled", 10, None)
    changes = s.take_changes()
    assert changes.jobs == {job.job_id: job}
    assert {t.task_id: t.state for t in changes.tasks.values()} == {"id0001-0": "cancelled", "id0001-1": "cancelled"}
    assert {x.lease_id: x.state for x in changes.leases.values()} == {
        ga1.lease_id: "cancelled", gb0.lease_id: "cancelled", gb1.lease_id: "cancelled"}
    assert {r.lease_id: (r.verdict, r.output) for r in changes.results.values()} == {ga0.lease_id: ("void", None)}
    assert _entries(changes) == [("", SUBMITTER, job.max_cost)]  # nothing validated: every credit goes back
    assert (escrow(s, job), balance(s, SUBMITTER)) == (0, FUNDS)
    assert s.tasks == {} and s.leases == {} and s.results == {}
    assert lease(s, "C", now=11) == []
    assert report(s, "B", gb0, good(gb0), now=12).reason == "unknown lease, or its job has ended"
    with pytest.raises(Conflict, match=f"job {job.job_id} is already cancelled"):
        s.cancel(now=13, job_id=job.job_id, requester=SUBMITTER)


def test_cancel_a_queued_job_and_finished_jobs() -> None:
    s = new_scheduler()
    queued = submit(s)
    s.cancel(now=1, job_id=queued.job_id, requester=SUBMITTER)
    assert queued.state == "cancelled"
    done = submit(s, replicas=1)
    (g,) = lease(s, "A", now=2)
    report(s, "A", g, good(g), now=3)
    assert done.state == "done"
    with pytest.raises(Conflict, match=f"job {done.job_id} is already done"):
        s.cancel(now=4, job_id=done.job_id, requester=SUBMITTER)
    with pytest.raises(NotFound, match="no job nope"):
        s.cancel(now=4, job_id="nope", requester=SUBMITTER)


# ---- a whole job ---------------------------------------------------------------------------------------------------


def test_done_job_result_equals_the_whole_image() -> None:
    s = new_scheduler()
    job = submit(s, tasks=3, replicas=1)
    grants = lease(s, "A", now=0)
    assert len(grants) == 3
    s.take_changes()
    acks = s.report(now=10, worker_id=wid("A"), reports=[item(g, good(g)) for g in reversed(grants)])
    assert [a.status for a in acks] == ["accepted"] * 3
    assert (job.state, job.tasks_validated, job.finished_ms) == ("done", 3, 10)
    changes = s.take_changes()
    merged = codec.array_from_wire(codec.decode(changes.merged[job.job_id]))
    assert merged.dtype == np.uint32 and merged.shape == (6, 8)
    assert merged.tobytes() == whole_image().tobytes()
    p = job.params
    ref = cref.python_reference(p["width"], p["height"], p["x_min"], p["x_max"], p["y_min"], p["y_max"],
                                p["max_iter"])
    assert np.array_equal(merged, ref)
    assert _entries(changes) == [(f"id0001-{i}", wid("A"), PRICE) for i in (2, 1, 0)] + [
        ("", SUBMITTER, job.max_cost - 3 * PRICE)]
    assert s.tasks == {} and s.leases == {} and s.results == {}
    assert balance(s, "A") == 3 * PRICE


def test_rewards_are_unique_per_task_and_worker_over_a_busy_job() -> None:
    s = new_scheduler()
    submit(s, tasks=3, replicas=2)
    now = 0
    all_entries: list[ledger.Entry] = []
    pending = {name: lease(s, name, now=now) for name in "ABC"}
    while any(pending.values()):
        now += 1
        for name, grants in pending.items():
            for g in grants:
                out = bad(g) if name == "C" else good(g)
                report(s, name, g, out, now=now)
                report(s, name, g, out, now=now)  # and a resend of each
        all_entries += s.take_changes().entries
        pending = {name: lease(s, name, now=now) for name in "ABCD"}
        if now > 20:
            break
    paid = rewards(all_entries)
    pairs = Counter((task_id, to) for task_id, to, _ in paid)
    assert set(pairs.values()) == {1}
    assert len(paid) == 6
    assert wid("C") not in {e.to for e in all_entries}
    assert [e.kind for e in all_entries] == ["grant", "escrow"] + ["reward"] * 6 + ["refund"]
    assert ledger.verify(all_entries).balances[SUBMITTER] == FUNDS - 6 * PRICE


# ---- changes and persistence ---------------------------------------------------------------------------------


def test_take_changes_returns_the_touched_rows_once() -> None:
    s = new_scheduler(funds=0)
    assert not s.take_changes()
    grant = s.grant(now=0, account=SUBMITTER, amount=FUNDS)
    ch = s.take_changes()
    assert ch.entries == [grant] and ch.nodes == [(0, 0, ledger.leaf_of(grant.hash))]
    assert not (ch.jobs or ch.tasks or ch.leases or ch.results or ch.workers or ch.merged)
    job = submit(s, tasks=2, replicas=1)
    ch = s.take_changes()
    assert list(ch.jobs) == [job.job_id] and not ch.tasks  # tasks are made as lease walks reach them
    (escrowed,) = ch.entries  # the escrow is written with the job, in the same change set
    assert (escrowed.seq, escrowed.kind, escrowed.amount) == (1, "escrow", job.max_cost)
    assert [(level, index) for level, index, _ in ch.nodes] == [(0, 1), (1, 0)]
    assert not (ch.leases or ch.results or ch.workers or ch.merged)
    assert not s.take_changes()
    s.touch_worker(now=0, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)
    grants = s.lease(now=0, worker_id=wid("A"), max_tasks=1, kernels_ok=KERNELS)
    ch = s.take_changes()
    assert list(ch.workers) == [wid("A")] and ch.workers[wid("A")].first_seen_ms == 0
    assert list(ch.leases) == [grants[0].lease_id] and list(ch.jobs) == [job.job_id]  # queued -> running
    assert list(ch.tasks) == ["id0001-0"] and job.materialized == 1  # the task leased was made
    report(s, "A", grants[0], good(grants[0]), now=1)
    ch = s.take_changes()
    assert list(ch.results) == list(ch.leases) == [grants[0].lease_id]
    assert list(ch.tasks) == ["id0001-0"] and ch.tasks["id0001-0"].canonical is not None
    assert list(ch.workers) == [wid("A")] and ch.workers[wid("A")].validated == 1
    assert rewards(ch) == [("id0001-0", wid("A"), PRICE)] and len(ch.entries) == 1 and list(ch.jobs) == [job.job_id]
    assert not ch.merged


def test_last_seen_is_persisted_at_least_every_interval() -> None:
    s = new_scheduler()
    step = LAST_SEEN_PERSIST_MS // 4
    s.touch_worker(now=0, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)
    s.take_changes()
    persisted = []
    for now in range(step, 3 * LAST_SEEN_PERSIST_MS + 1, step):
        s.touch_worker(now=now, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)
        if wid("A") in s.take_changes().workers:
            persisted.append(now)
    assert persisted and persisted[0] <= LAST_SEEN_PERSIST_MS + step


def test_touch_worker_keeps_first_seen_and_latest_last_seen() -> None:
    s = new_scheduler()
    w = s.touch_worker(now=100, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)
    s.touch_worker(now=90, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)  # a request that raced
    assert (w.first_seen_ms, w.last_seen_ms, w.public_key) == (100, 100, WORKER_KEYS["A"].public)
    s.touch_worker(now=100 + LAST_SEEN_PERSIST_MS, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)
    assert s.workers[wid("A")].last_seen_ms == 100 + LAST_SEEN_PERSIST_MS


def _save_all(store: Store, s: Scheduler) -> None:
    store.save(s.take_changes())


def _restore(path: Path, ids: Ids) -> tuple[Store, Scheduler]:
    store = Store(path)
    s = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=ids, archive=store.result_verdict,
                          policy=open_policy(), placement_policy=OPEN_PLACEMENT, audit_policy=NO_AUDITS,
                          pick=lambda n: 0, **store.load())
    return store, s


def test_restore_from_the_store_and_continue(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.sqlite3"
    ids = Ids()
    s = new_scheduler(ids)
    store = Store(path)
    job = submit(s, tasks=2, replicas=2)
    _save_all(store, s)
    ga0, ga1 = lease(s, "A", now=10)
    gb0, gb1 = lease(s, "B", now=10)
    _save_all(store, s)
    _accepted(report(s, "A", ga0, good(ga0), now=20))
    _accepted(report(s, "B", gb0, good(gb0), now=20))
    _save_all(store, s)
    _accepted(report(s, "A", ga1, good(ga1), now=30))
    _save_all(store, s)
    store.close()

    store2, s2 = _restore(path, ids)
    # State survives.
    assert s2.jobs == s.jobs
    assert list(s2.tasks) == list(s.tasks) == ["id0001-0", "id0001-1"]
    for tid, t in s.tasks.items():
        t2 = s2.tasks[tid]
        assert (t2.state, t2.canonical, t2.payload, t2.sig, t2.params, t2.wanted, t2.workers) == (
            t.state, t.canonical, t.payload, t.sig, t.params, t.wanted, t.workers)
        assert sorted(t2.leases) == sorted(t.leases) and t2.results == t.results
    assert s2.leases == s.leases
    assert s2.results == s.results
    for w_id, w in s.workers.items():
        w2 = s2.workers[w_id]
        assert (w2.validated, w2.rejected, w2.public_key, w2.first_seen_ms) == (
            w.validated, w.rejected, w.public_key, w.first_seen_ms)
    assert s2.book.accounts.balances == {k: v for k, v in s.book.accounts.balances.items() if v}
    assert s2.book.head == s.book.head and s2.book.head is not None and s2.book.head.seq == 3
    assert s2.book.root() == s.book.root()
    assert s2.next_expiry_ms() == s.next_expiry_ms() == 10 + TIMEOUT

    # Resent results are duplicates, with no second reward.
    assert report(s2, "A", ga0, good(ga0), now=40).status == "duplicate"
    assert report(s2, "A", ga1, good(ga1), now=40).status == "duplicate"
    assert lease(s2, "C", now=40) == []  # B still holds the second replica of task 1
    _accepted(report(s2, "B", gb1, good(gb1), now=50))
    changes = s2.take_changes()
    assert [(e.seq, e.task_id, e.to) for e in changes.entries] == [(4, "id0001-1", wid("A")),
                                                                   (5, "id0001-1", wid("B")), (6, None, SUBMITTER)]
    assert s.book.head is not None and changes.entries[0].prev_hash == s.book.head.hash
    assert job.job_id in changes.merged
    merged = codec.array_from_wire(codec.decode(changes.merged[job.job_id]))
    assert merged.tobytes() == whole_image().tobytes()
    assert s2.jobs[job.job_id].state == "done"
    store2.save(changes)

    summary = ledger.verify(e.to_dict() for e in store2.ledger.entries())
    assert summary.entries == 7 and summary.head_hash == changes.entries[-1].hash
    assert summary.balances == {ledger.MINT: -FUNDS, wid("A"): 2 * PRICE, wid("B"): 2 * PRICE,
                                SUBMITTER: FUNDS - 4 * PRICE, accounts.escrow_account(job.job_id): 0}
    assert summary.root_hash == s2.book.root().hex()
    assert store2.job_result(job.job_id) == changes.merged[job.job_id]
    store2.close()

    store3, s3 = _restore(path, ids)  # a done job leaves no tasks behind, and the balances come from the ledger
    assert s3.tasks == {} and s3.jobs[job.job_id].state == "done"
    assert report(s3, "B", gb1, good(gb1), now=60).status == "duplicate"  # found in the store's archive
    assert s3.take_changes().entries == []
    assert {name: balance(s3, name) for name in "AB"} == {"A": 2 * PRICE, "B": 2 * PRICE}
    assert s3.book.head == changes.entries[-1] and s3.book.root() == s2.book.root()
    assert balance(s3, SUBMITTER) == FUNDS - 4 * PRICE and escrow(s3, job) == 0
    store3.close()


def test_restore_keeps_lease_deadlines(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.sqlite3"
    ids = Ids()
    s = new_scheduler(ids)
    store = Store(path)
    submit(s, tasks=1, replicas=1)
    (ga,) = lease(s, "A", now=0)
    _save_all(store, s)
    store.close()
    store2, s2 = _restore(path, ids)
    assert lease(s2, "B", now=TIMEOUT - 1) == []
    (gb,) = lease(s2, "B", now=TIMEOUT)
    assert gb.lease_id not in {ga.lease_id} and task_of(gb)["task_id"] == "id0001-0"
    assert lease(s2, "A", now=TIMEOUT) == []  # A's expired lease still counts as A's replica
    _accepted(report(s2, "A", ga, good(ga), now=TIMEOUT + 1))  # and its late result still counts
    store2.save(s2.take_changes())
    store2.close()


def test_restore_after_disagreement_still_wants_one_more(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.sqlite3"
    ids = Ids()
    s = new_scheduler(ids)
    store = Store(path)
    submit(s, tasks=1, replicas=2)
    (ga,), (gb,) = lease(s, "A", now=0), lease(s, "B", now=0)
    report(s, "A", ga, good(ga), now=1)
    report(s, "B", gb, bad(gb), now=2)
    _save_all(store, s)
    store.close()
    store2, s2 = _restore(path, ids)
    assert s2.tasks["id0001-0"].wanted == 1
    assert lease(s2, "A", now=3) == [] and lease(s2, "B", now=3) == []
    (gc,) = lease(s2, "C", now=3)
    _accepted(report(s2, "C", gc, bad(gc), now=4))  # agrees with B this time
    changes = s2.take_changes()
    assert _entries(changes) == [("id0001-0", wid("B"), PRICE), ("id0001-0", wid("C"), PRICE),
                                 ("", SUBMITTER, 3 * PRICE)]
    assert s2.workers[wid("A")].rejected == 1
    store2.save(changes)
    store2.close()


def test_a_restart_goes_on_making_a_jobs_tasks_where_it_stopped_in_the_same_order(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.sqlite3"
    ids = Ids()
    s = new_scheduler(ids, order_key=lambda: b"the job's own secret order")
    store = Store(path)
    job = submit(s, tasks=6, replicas=1, quorum=1, params={**PARAMS, "height": 6})
    untouched = submit(s, tasks=2, replicas=1, quorum=1)  # nothing of it is made before the restart
    first = [task_of(g)["task_id"] for g in lease(s, "A", now=0, max_tasks=2)]
    _save_all(store, s)
    store.close()
    store, s = _restore(path, ids)
    assert s.jobs[job.job_id].materialized == 2 and s.jobs[untouched.job_id].materialized == 0
    rest = [task_of(g)["task_id"] for g in lease(s, "B", now=1, max_tasks=8)]
    made = first + [t for t in rest if t.startswith(job.job_id + "-")]
    order = [f"{job.job_id}-{fresh.nth(job.order_key, 6, k)}" for k in range(6)]
    assert made == order  # every task once, in the job's secret order, across the restart
    assert sorted(t for t in rest if t.startswith(untouched.job_id + "-")) == [f"{untouched.job_id}-{i}"
                                                                               for i in range(2)]
    store.close()
