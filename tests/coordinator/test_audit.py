"""coordinator.audit.Audit over a real Store: when checkpoints are signed, the refusal to run on a ledger rewritten
after signing, inclusion and consistency proofs (checked with depin.checkpoint and against the RFC's naive
definitions), what is not there (NotFound), and the credits, receipts and provenance answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator import audit as audit_module
from coordinator import views
from coordinator.audit import Audit
from coordinator.store import Store
from depin import checkpoint, ledger, merkle
from depin.checkpoint import Checkpoint
from depin.crypto import SigningKey
from depin.errors import NotFound, UserError, VerificationError
from depin.kernels import wire_digest
from depin.protocol import LeaseGrant
from tests.coordinator.sched_support import (
    COORDINATOR,
    OTHER,
    PRICE,
    SUBMITTER,
    good,
    report,
    stored_market,
    wid,
)


class World:
    """A stored market (13 entries) with checkpoints at 13 and 17 entries, and 3 entries newer than both."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = Store(path)
        self.s, self.jobs = stored_market(self.store)
        self.audit = Audit(self.store, COORDINATOR, every=1, interval_ms=1000)
        assert self.audit.maybe_checkpoint(self.s.book, now=1_000)
        self.grow(4)
        assert self.audit.maybe_checkpoint(self.s.book, now=2_000)
        self.grow(3)

    def grow(self, n: int) -> None:
        for i in range(n):
            self.s.grant(now=500 + self.s.book.size, account=OTHER, amount=10 + i)
            self.store.save(self.s.take_changes())

    @property
    def entries(self) -> list[ledger.Entry]:
        return list(self.store.ledger.entries())

    def leaves(self, size: int | None = None) -> list[bytes]:
        return [ledger.leaf_of(e.hash) for e in self.entries[:size]]

    def reopen(self) -> tuple[Audit, ledger.Book]:
        """What the coordinator does on start: open the store (which repairs the tree), load the book, the audit."""
        self.store.close()
        self.store = Store(self.path)
        book = self.store.load()["book"]
        return Audit(self.store, COORDINATOR, every=1000, interval_ms=5000), book


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "coordinator.sqlite3")
    yield w
    w.store.close()


def _cp(answer: dict[str, Any]) -> Checkpoint:
    cp = Checkpoint.from_json(answer["checkpoint"])
    cp.verify(COORDINATOR.verify_key)
    return cp


# ---- when to sign ----------------------------------------------------------------------------------------------------


def test_the_first_checkpoint_is_signed_at_once_even_for_an_empty_ledger(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite3")
    audit = Audit(store, COORDINATOR, every=1000, interval_ms=5000)
    book = store.load()["book"]
    assert audit.latest is None and audit.maybe_checkpoint(book, now=7)
    cp = audit.latest
    assert cp is not None and (cp.size, cp.root, cp.time) == (0, merkle.EMPTY_ROOT, 7)
    cp.verify(COORDINATOR.verify_key)
    assert store.ledger.latest_checkpoint(COORDINATOR.id) == cp
    assert not audit.maybe_checkpoint(book, now=10**12)  # time alone is no reason: the log did not grow
    store.close()


def test_a_checkpoint_is_due_every_n_entries_or_after_the_interval(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite3")
    s, _ = stored_market(store)
    audit = Audit(store, COORDINATOR, every=5, interval_ms=1000)
    assert audit.maybe_checkpoint(s.book, now=0) and audit.latest is not None and audit.latest.size == 13

    def grow(n: int) -> None:
        for _ in range(n):
            s.grant(now=0, account=OTHER, amount=1)
            store.save(s.take_changes())

    grow(4)
    assert not audit.maybe_checkpoint(s.book, now=999)  # 4 < 5 entries and 999 < 1000 ms
    assert audit.maybe_checkpoint(s.book, now=1000)  # the interval passed and the log grew
    assert (audit.latest.size, audit.latest.time) == (17, 1000)
    grow(5)
    assert audit.maybe_checkpoint(s.book, now=1001)  # 5 new entries: due at once
    assert audit.latest.size == 22 and audit.latest.root == s.book.root()
    assert not audit.maybe_checkpoint(s.book, now=10**9)
    kept = [r[0] for r in store.db.execute("SELECT size FROM checkpoints ORDER BY size")]
    assert kept == [13, 17, 22]
    # A new Audit (a restart) starts from the newest stored checkpoint.
    assert Audit(store, COORDINATOR, every=5, interval_ms=1000).latest == audit.latest
    store.close()


# ---- refusing a rewritten ledger -------------------------------------------------------------------------------------


def _rewrite(store: Store, seq: int, **fields: Any) -> None:
    """Change entry `seq` and re-hash it and every later entry, so the chain is valid again (a careful forger)."""
    entries = [e.to_dict() for e in store.ledger.entries()]
    assert all(entries[seq][k] != v for k, v in fields.items()), "not a change"
    entries[seq].update(fields)
    prev = ledger.GENESIS_PREV if seq == 0 else entries[seq - 1]["hash"]
    for e in entries[seq:]:
        e["prev_hash"] = prev
        e["hash"] = prev = ledger.entry_hash(e)
        store.db.execute(
            "UPDATE ledger SET to_account = ?, amount = ?, time = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (e["to"], e["amount"], e["time"], e["prev_hash"], e["hash"], e["seq"]))


def test_an_untouched_ledger_extends_its_own_checkpoint(world: World) -> None:
    audit, book = world.reopen()
    assert audit.latest is not None and audit.latest.size == 17
    audit.check_against_own_checkpoint(book)
    world.grow(2)
    audit.check_against_own_checkpoint(world.store.load()["book"])


def test_no_checkpoint_nothing_to_check(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite3")
    stored_market(store)
    Audit(store, COORDINATOR, every=1, interval_ms=1000).check_against_own_checkpoint(store.load()["book"])
    store.close()


@pytest.mark.parametrize(("seq", "fields"), [(4, {"to": wid("E")}),  # a reward redirected to another worker
                                             (0, {"time": 1}),
                                             (16, {"amount": 14})])  # the last entry the checkpoint covers
def test_a_ledger_rewritten_under_a_checkpoint_is_refused(world: World, seq: int, fields: dict[str, Any]) -> None:
    _rewrite(world.store, seq, **fields)
    world.store.db.execute("DELETE FROM merkle")  # and the tree rebuilt from the forged entries on open
    ledger.verify(world.entries)  # the forgery keeps the chain and the money rules
    audit, book = world.reopen()
    with pytest.raises(UserError, match=f"^the ledger in {world.path} does not extend the checkpoint this coordinator"
                                        " signed at size 17: the database was altered; refusing to serve a"
                                        " rewritten ledger$"):
        audit.check_against_own_checkpoint(book)


def test_a_ledger_truncated_below_its_checkpoint_is_refused(world: World) -> None:
    world.store.db.execute("DELETE FROM ledger WHERE seq >= 15")
    audit, book = world.reopen()
    assert book.size == 15
    with pytest.raises(UserError, match="does not extend the checkpoint this coordinator signed at size 17"):
        audit.check_against_own_checkpoint(book)


def test_entries_after_the_checkpoint_are_not_covered_by_it(world: World) -> None:
    _rewrite(world.store, 18, amount=99)
    world.store.db.execute("DELETE FROM merkle")
    audit, book = world.reopen()
    audit.check_against_own_checkpoint(book)


def test_a_ledger_rewritten_under_a_checkpoint_is_refused_even_if_the_tree_was_left_alone(world: World) -> None:
    _rewrite(world.store, 4, to=wid("E"))
    audit, book = world.reopen()
    with pytest.raises(UserError, match="does not extend the checkpoint"):
        audit.check_against_own_checkpoint(book)


def test_a_checkpoint_not_signed_by_this_key_is_refused(world: World) -> None:
    stranger = SigningKey(bytes([3]) * 32)
    with pytest.raises(VerificationError):
        Audit(world.store, stranger, every=1, interval_ms=1).check_against_own_checkpoint(world.s.book)


# ---- proofs ----------------------------------------------------------------------------------------------------------


def test_checkpoint_answers(world: World) -> None:
    latest = world.audit.checkpoint()
    stored = world.store.ledger.latest_checkpoint(COORDINATOR.id)
    assert stored is not None and latest == stored.to_json()
    assert set(latest) == {"coordinator", "size", "root", "time", "sig"}
    assert (latest["coordinator"], latest["size"], latest["time"]) == (COORDINATOR.id, 17, 2_000)
    assert latest["root"] == merkle.naive_root(world.leaves(17)).hex()
    assert world.audit.checkpoint(13)["root"] == merkle.naive_root(world.leaves(13)).hex()
    for size in (0, 12, 14, 20):
        with pytest.raises(NotFound, match=f"^no checkpoint of size {size}$"):
            world.audit.checkpoint(size)


@pytest.mark.parametrize("size", [None, 13, 17])
def test_inclusion_proofs_verify_and_equal_the_naive_ones(world: World, size: int | None) -> None:
    n = size or 17
    leaves = world.leaves(n)
    for e in world.entries[:n]:
        answer = world.audit.inclusion(e.seq, size)
        assert answer["entry"] == e.to_dict() and set(answer) == {"entry", "checkpoint", "proof"}
        cp = _cp(answer)
        assert cp.size == n
        proof = checkpoint.hashes_from_json(answer["proof"])
        checkpoint.check_included(answer["entry"], cp, proof)
        assert proof == merkle.naive_inclusion_proof(leaves, e.seq)
    wrong = {**world.entries[3].to_dict(), "amount": 1}
    wrong["hash"] = ledger.entry_hash(wrong)
    with pytest.raises(VerificationError, match="is not in the signed ledger"):
        checkpoint.check_included(wrong, cp, checkpoint.hashes_from_json(world.audit.inclusion(3, size)["proof"]))


def test_consistency_proofs_verify_and_equal_the_naive_ones(world: World) -> None:
    leaves = world.leaves(17)
    old = Checkpoint.from_json(world.audit.checkpoint(13))
    answer = world.audit.consistency(13, None)
    assert (answer["from"], _cp(answer).size) == (13, 17)
    checkpoint.check_consistent(old, _cp(answer), checkpoint.hashes_from_json(answer["proof"]))
    for m in range(18):
        for new in (None, 17):
            answer = world.audit.consistency(m, new)
            proof = checkpoint.hashes_from_json(answer["proof"])
            assert proof == merkle.naive_consistency_proof(leaves, m)
            merkle.verify_consistency(m, 17, merkle.naive_root(leaves[:m]), _cp(answer).root, proof)
    for m in range(14):
        proof = checkpoint.hashes_from_json(world.audit.consistency(m, 13)["proof"])
        assert proof == merkle.naive_consistency_proof(leaves[:13], m)


def test_what_a_checkpoint_does_not_hold_is_not_found(world: World) -> None:
    assert world.store.ledger.entry(18) is not None  # there, but newer than every checkpoint
    for seq, size in ((17, None), (18, None), (13, 13), (25, None), (10**12, None)):
        with pytest.raises(NotFound, match=f"^no entry {seq} in the checkpoint of size {size or 17}$"):
            world.audit.inclusion(seq, size)
    with pytest.raises(NotFound, match="^no checkpoint of size 20$"):
        world.audit.inclusion(0, 20)
    for old, new in ((18, None), (14, 13), (2**62, None)):
        with pytest.raises(NotFound, match=f"^cannot prove consistency from size {old} to size {new or 17}$"):
            world.audit.consistency(old, new)
    with pytest.raises(NotFound, match="^no checkpoint of size 18$"):
        world.audit.consistency(0, 18)


# ---- credits, receipts, provenance -----------------------------------------------------------------------------------


def test_credits_come_with_proofs_up_to_the_checkpoint(world: World) -> None:
    other_credits = [e for e in world.entries if e.to == OTHER]
    assert [e.seq for e in other_credits] == [1] + list(range(13, 20))
    answer = world.audit.credits(OTHER, -1, 100)
    assert (answer["account"], answer["checkpoint"]) == (OTHER, world.audit.checkpoint())
    assert [c["entry"] for c in answer["credits"]] == [e.to_dict() for e in other_credits]
    cp = _cp(answer)
    for credit in answer["credits"]:
        if credit["entry"]["seq"] < 17:
            checkpoint.check_included(credit["entry"], cp, checkpoint.hashes_from_json(credit["proof"]))
        else:
            assert credit["proof"] is None  # newer than the checkpoint: nothing to prove it against yet
    older = world.audit.credits(OTHER, 1, 2, size=13)
    assert [c["entry"]["seq"] for c in older["credits"]] == [13, 14]
    assert [c["proof"] for c in older["credits"]] == [None, None]
    assert world.audit.credits("nobody", -1, 10)["credits"] == []
    with pytest.raises(NotFound):
        world.audit.credits(OTHER, -1, 10, size=14)


def test_a_credits_page_is_capped(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "MAX_PAGE", 3)
    assert [c["entry"]["seq"] for c in world.audit.credits(OTHER, 0, 1000)["credits"]] == [1, 13, 14]


def test_receipts_show_every_result_and_prove_each_reward(world: World) -> None:
    done, open_job = world.jobs["done"], world.jobs["open"]
    answer = world.audit.receipts(wid("A"), 0, 100)
    assert (answer["worker_id"], answer["offset"], answer["checkpoint"]) == (wid("A"), 0, world.audit.checkpoint())
    rows = answer["receipts"]
    assert [(r["task_id"], r["verdict"], r["price"]) for r in rows] == [
        (f"{done.job_id}-0", "valid", PRICE), (f"{done.job_id}-1", "valid", PRICE),
        (f"{open_job.job_id}-0", "pending", 11)]
    cp = _cp(answer)
    for r in rows[:2]:
        reward = r["reward"]["entry"]
        assert (reward["kind"], reward["to"], reward["amount"], reward["task_id"]) == (
            "reward", wid("A"), PRICE, r["task_id"])
        checkpoint.check_included(reward, cp, checkpoint.hashes_from_json(r["reward"]["proof"]))
        assert r["formula"] == f"{PRICE} credits: the price job {done.job_id} posted per validated result"
    assert rows[2]["reward"] is None
    assert set(rows[0]) == {"lease_id", "task_id", "job_id", "verdict", "received_ms", "error", "kernel",
                            "kernel_version", "price", "quorum", "reward", "formula"}
    assert world.audit.receipts(wid("A"), 1, 1)["receipts"] == rows[1:2]
    assert world.audit.receipts(wid("C"), 0, 100)["receipts"][0]["reward"] is None  # pending, unpaid
    assert world.audit.receipts("nobody", 0, 100)["receipts"] == []


def test_a_reward_newer_than_the_checkpoint_has_no_proof_yet(world: World) -> None:
    paying = world.jobs["paying"]
    (held,) = [x for x in world.s.leases.values() if x.task_id == f"{paying.job_id}-1"]  # D's, since the market
    task = world.s.tasks[held.task_id]
    grant = LeaseGrant(held.lease_id, held.expires_ms, task.payload, task.sig)
    assert report(world.s, "D", grant, good(grant), now=3_000).status == "accepted"
    world.store.save(world.s.take_changes())
    rows = world.audit.receipts(wid("D"), 0, 10)["receipts"]
    assert [r["task_id"] for r in rows] == [f"{paying.job_id}-0", f"{paying.job_id}-1"]
    assert rows[0]["reward"]["entry"]["seq"] == 9 and rows[0]["reward"]["proof"] is not None
    assert rows[1]["reward"]["entry"]["seq"] == 20 and rows[1]["reward"]["proof"] is None


def test_provenance_of_a_done_job(world: World) -> None:
    done = world.jobs["done"]
    answer = world.audit.provenance(done, world.s.book.accounts.held(done.job_id))
    assert answer["job"] == views.job_view(done, 0)  # a finished job's escrow is empty
    merged = world.store.job_result(done.job_id)
    assert merged is not None and answer["output_digest"] == wire_digest(merged).hex()
    assert [(t["task_id"], t["index"], t["state"]) for t in answer["tasks"]] == [
        (f"{done.job_id}-0", 0, "validated"), (f"{done.job_id}-1", 1, "validated")]
    canon = dict(world.store.db.execute("SELECT task_id, canonical FROM tasks WHERE job_id = ?", (done.job_id,)))
    for t in answer["tasks"]:
        assert t["digest"] == wire_digest(canon[t["task_id"]]).hex()
        assert sorted(t["agreed"]) == sorted([wid("A"), wid("B")])
        assert {(r["worker_id"], r["verdict"]) for r in t["results"]} == {(wid("A"), "valid"), (wid("B"), "valid")}
        assert all(r["digest"] == t["digest"] for r in t["results"])
    cp = _cp(answer)
    assert [p["entry"] for p in answer["entries"]] == [e.to_dict() for e in world.store.ledger.of_job(done.job_id)]
    for p in answer["entries"]:
        checkpoint.check_included(p["entry"], cp, checkpoint.hashes_from_json(p["proof"]))
    kinds = [p["entry"]["kind"] for p in answer["entries"]]
    assert kinds == ["escrow"] + ["reward"] * 4 + ["refund"]


def test_provenance_of_a_running_job(world: World) -> None:
    open_job = world.jobs["open"]
    answer = world.audit.provenance(open_job, world.s.book.accounts.held(open_job.job_id))
    assert answer["job"]["escrow"] == open_job.max_cost > 0  # nothing paid yet: everything still held
    assert answer["output_digest"] is None
    (task,) = answer["tasks"]
    assert (task["state"], task["digest"], task["agreed"]) == ("pending", None, [])
    assert {(r["worker_id"], r["verdict"]) for r in task["results"]} == {(wid("A"), "pending"), (wid("C"), "pending")}
    assert [p["entry"]["kind"] for p in answer["entries"]] == ["escrow"]
    # A job submitted after the checkpoint: its escrow is listed, without a proof yet.
    late = world.s.submit(now=4_000, submitter=SUBMITTER, kernel_name="mandelbrot",
                          params={"width": 4, "height": 2, "max_iter": 8}, n_tasks=1, replicas=1, max_results=None,
                          price=1)
    world.store.save(world.s.take_changes())
    answer = world.audit.provenance(late, world.s.book.accounts.held(late.job_id))
    assert [(p["entry"]["kind"], p["proof"]) for p in answer["entries"]] == [("escrow", None)]
    assert answer["tasks"][0]["results"] == []
