"""coordinator.ledger_store.LedgerStore: entries and their queries, the Merkle nodes written with them, repair, the
running Book rebuilt on restart (balances, escrow states, tree frontier), and signed checkpoints. Real SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.ledger_store import LedgerStore
from coordinator.scheduler import Job, Scheduler
from coordinator.store import Store
from depin import accounts, checkpoint, ledger, merkle
from depin.crypto import SigningKey
from depin.errors import LedgerError, VerificationError
from tests.coordinator.sched_support import (
    COORDINATOR,
    OTHER,
    PRICE,
    SUBMITTER,
    stored_market,
    wid,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "coordinator.sqlite3")
    yield s
    s.close()


@pytest.fixture
def market(store: Store) -> tuple[Scheduler, dict[str, Job]]:
    return stored_market(store)


def _entries(store: Store) -> list[ledger.Entry]:
    return list(store.ledger.entries())


def _leaves(entries: list[ledger.Entry]) -> list[bytes]:
    return [ledger.leaf_of(e.hash) for e in entries]


def _rows(store: Store) -> dict[tuple[int, int], bytes]:
    return {(level, idx): bytes(h) for level, idx, h in store.db.execute("SELECT level, idx, hash FROM merkle")}


def _all_nodes(tree: merkle.MemoryTree) -> dict[tuple[int, int], bytes]:
    """Every perfect-subtree hash of a tree: n >> L of them at level L."""
    out = {}
    level = 0
    while tree.size >> level:
        for idx in range(tree.size >> level):
            out[(level, idx)] = tree.node(level, idx)
        level += 1
    return out


def _grow(store: Store, s: Scheduler, n: int) -> None:
    """n more grants, each saved on its own (the tree grows one leaf per transaction)."""
    for i in range(n):
        s.grant(now=100 + i, account=OTHER, amount=1 + i)
        store.save(s.take_changes())


# ---- entries and their queries ---------------------------------------------------------------------------------------


def test_entries_head_size_and_single_reads(store: Store, market: tuple[Scheduler, dict[str, Job]]) -> None:
    s, _ = market
    entries = _entries(store)
    assert [e.seq for e in entries] == list(range(13))
    assert ledger.verify(entries).head_hash == entries[-1].hash
    assert store.ledger.head() == entries[-1] == s.book.head
    assert store.ledger.size() == 13
    assert store.ledger.entry(4) == entries[4] and store.ledger.entry(13) is None
    assert list(store.ledger.entries(start=11)) == entries[11:]
    assert list(store.ledger.entries(start=2, limit=3)) == entries[2:5]
    assert list(store.ledger.entries(start=13)) == [] and list(store.ledger.entries(limit=0)) == []


def test_an_empty_ledger(store: Store) -> None:
    assert (store.ledger.head(), store.ledger.size(), store.ledger.entry(0)) == (None, 0, None)
    assert store.ledger.credits_to(SUBMITTER, -1, 10) == [] and store.ledger.of_job("x") == []
    book = store.ledger.book([])
    assert (book.size, book.root(), book.accounts.balances) == (0, merkle.EMPTY_ROOT, {})


def test_credits_to(store: Store, market: tuple[Scheduler, dict[str, Job]]) -> None:
    entries = _entries(store)
    for account in (SUBMITTER, OTHER, wid("A"), wid("D"), "escrow:id0001", ledger.MINT, "nobody"):
        mine = [e for e in entries if e.to == account]
        assert store.ledger.credits_to(account, -1, 100) == mine
        for after in (-1, 0, 3, 7, 12, 13):
            assert store.ledger.credits_to(account, after, 100) == [e for e in mine if e.seq > after]
            assert store.ledger.credits_to(account, after, 1) == [e for e in mine if e.seq > after][:1]
    assert [e.seq for e in store.ledger.credits_to(SUBMITTER, -1, 100)] == [0, 7, 12]  # the grant, two refunds


def test_of_job_and_reward_for(store: Store, market: tuple[Scheduler, dict[str, Job]]) -> None:
    _, jobs = market
    entries = _entries(store)
    for job in jobs.values():
        assert store.ledger.of_job(job.job_id) == [e for e in entries if e.job_id == job.job_id]
    done = jobs["done"].job_id
    assert [e.kind for e in store.ledger.of_job(done)] == ["escrow"] + ["reward"] * 4 + ["refund"]
    assert [e.kind for e in store.ledger.of_job(jobs["open"].job_id)] == ["escrow"]
    assert store.ledger.of_job("nope") == []
    for e in entries:
        if e.kind == "reward":
            assert store.ledger.reward_for(e.task_id or "", e.to) == e
    assert store.ledger.reward_for(f"{done}-0", wid("C")) is None
    assert store.ledger.reward_for(f"{jobs['open'].job_id}-0", wid("A")) is None  # pending: not paid
    assert store.ledger.reward_for(f"{done}-0", SUBMITTER) is None  # the refund has no task


# ---- the Merkle table ------------------------------------------------------------------------------------------------


def test_the_nodes_written_with_the_entries_are_the_trees(store: Store, market: tuple[Scheduler, dict[str, Job]]
                                                          ) -> None:
    s, _ = market
    for more in (0, 3, 16, 1):  # sizes 13, 16 (a perfect tree), 32, 33
        _grow(store, s, more)
        entries = _entries(store)
        tree = merkle.MemoryTree(_leaves(entries))
        assert _rows(store) == _all_nodes(tree)
        assert merkle.subtree_root(store.ledger, 0, len(entries)) == tree.root() == s.book.root()
        assert merkle.naive_root(_leaves(entries)) == tree.root()


def test_a_missing_node_is_a_ledger_error(store: Store) -> None:
    with pytest.raises(LedgerError, match=r"^Merkle node \(0, 0\) is missing from the database$"):
        store.ledger.node(0, 0)


def test_nodes_are_written_only_with_their_entries(store: Store, market: tuple[Scheduler, dict[str, Job]]) -> None:
    s, _ = market
    s.grant(now=50, account=OTHER, amount=1)
    changes = s.take_changes()
    changes.entries.append(changes.entries[0])  # a failing insert: neither the entry nor its nodes are kept
    with pytest.raises(sqlite3.IntegrityError):
        store.save(changes)
    assert store.ledger.size() == 13 and max(idx for (level, idx) in _rows(store) if level == 0) == 12


def test_repair_is_a_no_op_when_the_table_is_consistent(store: Store,
                                                        market: tuple[Scheduler, dict[str, Job]]) -> None:
    before, writes = _rows(store), store.db.total_changes
    assert store.ledger.repair() == 13
    assert _rows(store) == before and store.db.total_changes == writes  # nothing rewritten


@pytest.mark.parametrize("damage", [
    "DELETE FROM merkle",
    "DELETE FROM merkle WHERE level = 0 AND idx >= 9",
    "DELETE FROM merkle WHERE level = 0 AND idx = 4",
    "DELETE FROM merkle WHERE idx > 0",
    "INSERT INTO merkle VALUES (0, 13, zeroblob(32))",
    "INSERT INTO merkle VALUES (0, 99, zeroblob(32))",
    "INSERT INTO merkle VALUES (40, 0, zeroblob(32))",
    "UPDATE merkle SET hash = zeroblob(32) WHERE level = 0 AND idx = 12",  # the newest leaf
    "DELETE FROM merkle WHERE level = 3",  # a frontier node (and the count)
])
def test_repair_rebuilds_a_deleted_or_truncated_table(store: Store, market: tuple[Scheduler, dict[str, Job]],
                                                      damage: str) -> None:
    good = _rows(store)
    store.db.execute(damage)
    assert _rows(store) != good
    assert store.ledger.repair() == 13
    assert _rows(store) == good == _all_nodes(merkle.MemoryTree(_leaves(_entries(store))))


@pytest.mark.parametrize("damage", [
    "DELETE FROM merkle WHERE level > 0",
    "UPDATE merkle SET hash = zeroblob(32) WHERE level = 0 AND idx = 12",
])
def test_repair_rebuilds_a_table_with_every_leaf_row_but_wrong_nodes(store: Store,
                                                                     market: tuple[Scheduler, dict[str, Job]],
                                                                     damage: str) -> None:
    good = _rows(store)
    store.db.execute(damage)
    assert _rows(store) != good
    store.ledger.repair()
    assert _rows(store) == good


def test_reopening_the_store_repairs_the_table(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    first = Store(path)
    s, _ = stored_market(first)
    good = _rows(first)
    first.db.execute("DELETE FROM merkle WHERE level > 0 OR idx > 5")
    first.close()
    second = Store(path)
    assert _rows(second) == good
    assert second.load()["book"].root() == s.book.root()
    second.close()


def test_repair_of_an_empty_ledger_drops_stray_nodes(store: Store) -> None:
    store.db.execute("INSERT INTO merkle VALUES (0, 0, zeroblob(32))")
    assert store.ledger.repair() == 0
    assert _rows(store) == {}


# ---- the book, rebuilt -----------------------------------------------------------------------------------------------


def _open_ids(s: Scheduler) -> list[str]:
    return [j.job_id for j in s.jobs.values() if j.state not in ("done", "failed", "cancelled")]


def test_the_book_restores_balances_and_the_frontier(store: Store, market: tuple[Scheduler, dict[str, Job]]) -> None:
    s, jobs = market
    book = store.ledger.book(_open_ids(s))
    summary = ledger.verify(_entries(store))
    assert book.accounts.balances == {k: v for k, v in summary.balances.items() if v}
    assert book.accounts.balances[accounts.escrow_account(jobs["paying"].job_id)] == jobs["paying"].max_cost - 3
    assert accounts.escrow_account(jobs["done"].job_id) not in book.accounts.balances  # 0: not listed
    assert (book.head, book.size, book.root().hex()) == (s.book.head, 13, summary.root_hash)
    assert book.frontier.hashes == s.book.frontier.hashes
    assert {name: book.accounts.funder(j.job_id) for name, j in jobs.items()} == {
        "done": SUBMITTER, "paying": SUBMITTER, "open": OTHER, "cancelled": SUBMITTER}
    assert book.accounts.funder("nope") is None
    # The next entry, appended to either book, is the same entry and completes the same nodes.
    live = s.book.append(time=99, kind="grant", from_=ledger.MINT, to=OTHER, amount=5)
    assert book.append(time=99, kind="grant", from_=ledger.MINT, to=OTHER, amount=5) == live


def test_a_closed_escrow_refuses_rewards_after_a_restore(store: Store,
                                                         market: tuple[Scheduler, dict[str, Job]]) -> None:
    s, jobs = market
    book = store.ledger.book(_open_ids(s))
    for name in ("done", "cancelled"):
        job = jobs[name]
        pot = accounts.escrow_account(job.job_id)
        with pytest.raises(LedgerError, match=f"the escrow of job {job.job_id} was already refunded"):
            book.append(time=99, kind="reward", from_=pot, to=wid("E"), amount=job.price, job_id=job.job_id,
                        task_id=f"{job.job_id}-0")
        with pytest.raises(LedgerError, match=f"the escrow of job {job.job_id} was already refunded"):
            book.append(time=99, kind="refund", from_=pot, to=SUBMITTER, amount=1, job_id=job.job_id)
        with pytest.raises(LedgerError, match=f"job {job.job_id} is already funded"):
            book.append(time=99, kind="escrow", from_=SUBMITTER, to=pot, amount=1, job_id=job.job_id)
    assert book.size == 13


def test_an_open_escrow_remembers_what_it_paid_after_a_restore(store: Store,
                                                               market: tuple[Scheduler, dict[str, Job]]) -> None:
    s, jobs = market
    book = store.ledger.book(_open_ids(s))
    paying = jobs["paying"]
    pot = accounts.escrow_account(paying.job_id)
    with pytest.raises(LedgerError, match=f"task {paying.job_id}-0 already rewarded {wid('D')}"):
        book.append(time=99, kind="reward", from_=pot, to=wid("D"), amount=3, job_id=paying.job_id,
                    task_id=f"{paying.job_id}-0")
    entry, _ = book.append(time=99, kind="reward", from_=pot, to=wid("D"), amount=3, job_id=paying.job_id,
                           task_id=f"{paying.job_id}-1")
    assert entry.seq == 13
    with pytest.raises(LedgerError, match=f"a refund must return the whole escrow \\({paying.max_cost - 6} credits\\)"):
        book.append(time=99, kind="refund", from_=pot, to=SUBMITTER, amount=1, job_id=paying.job_id)
    with pytest.raises(LedgerError, match=f"a refund for job {paying.job_id} must go to its funder {SUBMITTER}"):
        book.append(time=99, kind="refund", from_=pot, to=OTHER, amount=paying.max_cost - 6, job_id=paying.job_id)
    book.append(time=99, kind="refund", from_=pot, to=SUBMITTER, amount=paying.max_cost - 6, job_id=paying.job_id)
    assert book.accounts.balance(pot) == 0


def test_slashes_are_remembered_after_a_restore_even_for_ended_jobs(store: Store,
                                                                   market: tuple[Scheduler, dict[str, Job]]) -> None:
    s, jobs = market
    done, paying = jobs["done"].job_id, jobs["paying"].job_id
    worker, bond = wid("D"), accounts.bond_account(wid("D"))
    book = store.ledger.book(_open_ids(s))
    written = [book.append(time=99, kind="grant", from_=ledger.MINT, to=worker, amount=10),
               book.append(time=99, kind="bond", from_=worker, to=bond, amount=6),
               book.append(time=99, kind="slash", from_=bond, to=SUBMITTER, amount=2, job_id=done,
                           task_id=f"{done}-0"),  # the job ended before the slash
               book.append(time=99, kind="slash", from_=bond, to=SUBMITTER, amount=1, job_id=paying,
                           task_id=f"{paying}-1")]
    store.ledger.write([e for e, _ in written], [n for _, nodes in written for n in nodes])
    restored = store.ledger.book(_open_ids(s))
    assert restored.accounts.bonded(worker) == book.accounts.bonded(worker) == 3
    for job_id, task in ((done, f"{done}-0"), (paying, f"{paying}-1")):
        with pytest.raises(LedgerError, match=f"task {task} already slashed {worker}$"):
            restored.append(time=99, kind="slash", from_=bond, to=SUBMITTER, amount=1, job_id=job_id, task_id=task)
    with pytest.raises(LedgerError, match=f"{bond} has 3 credits, cannot pay 4$"):
        restored.append(time=99, kind="unbond", from_=bond, to=worker, amount=4)
    restored.append(time=99, kind="slash", from_=bond, to=SUBMITTER, amount=1, job_id=done, task_id=f"{done}-1")
    assert restored.size == 18 and restored.root() != book.root()


def test_the_store_loads_the_book_the_scheduler_had(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite3")
    s, _ = stored_market(store)
    s2 = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=1000, new_id=lambda: "x", **store.load())
    assert (s2.book.head, s2.book.root(), s2.book.frontier.hashes) == (s.book.head, s.book.root(),
                                                                       s.book.frontier.hashes)
    assert s2.book.accounts.balance(wid("A")) == 2 * PRICE
    store.close()


def test_a_book_whose_tree_and_chain_disagree_is_refused(store: Store,
                                                         market: tuple[Scheduler, dict[str, Job]]) -> None:
    head = store.ledger.head()
    with pytest.raises(LedgerError, match="Merkle tree has 12 leaves but the chain 13 entries"):
        ledger.Book(head, accounts.Accounts(), merkle.Frontier.from_source(store.ledger, 12))


# ---- checkpoints -----------------------------------------------------------------------------------------------------


def test_checkpoints_are_kept_and_read_back(store: Store, market: tuple[Scheduler, dict[str, Job]]) -> None:
    s, _ = market
    ls: LedgerStore = store.ledger
    assert ls.latest_checkpoint(COORDINATOR.id) is None and ls.checkpoint_at(COORDINATOR.id, 13) is None
    first = checkpoint.sign(COORDINATOR, size=5, root=merkle.subtree_root(ls, 0, 5), time=1_000)
    second = checkpoint.sign(COORDINATOR, size=13, root=s.book.root(), time=2_000)
    ls.add_checkpoint(second)
    ls.add_checkpoint(first)  # kept out of order: the latest is the largest
    assert ls.latest_checkpoint(COORDINATOR.id) == second
    assert ls.checkpoint_at(COORDINATOR.id, 5) == first and ls.checkpoint_at(COORDINATOR.id, 6) is None
    for cp in (first, second):
        cp.verify(COORDINATOR.verify_key)
    again = checkpoint.sign(COORDINATOR, size=13, root=s.book.root(), time=3_000)
    ls.add_checkpoint(again)  # the same size signed again replaces the older signature
    assert ls.latest_checkpoint(COORDINATOR.id) == again
    assert store.db.execute("SELECT COUNT(*) FROM checkpoints").fetchone() == (2,)
    # A checkpoint read back under another coordinator's id does not verify for that coordinator.
    other = SigningKey(bytes([3]) * 32)
    stranger = ls.latest_checkpoint(other.id)
    assert stranger is not None and stranger.coordinator == other.id
    with pytest.raises(VerificationError):
        stranger.verify(other.verify_key)


def test_a_corrupted_inner_node_is_not_rehashed_at_start_up_but_no_proof_through_it_verifies(
        store: Store, market: tuple[Scheduler, dict[str, Job]]) -> None:
    # Start-up checks O(log n) rows (count, newest leaf, frontier), not every hash: a stored node corrupted in place
    # survives it. It cannot forge anything: every proof through it fails the client's check against the root.
    store.db.execute("UPDATE merkle SET hash = zeroblob(32) WHERE level = 0 AND idx = 5")
    root = merkle.naive_root(_leaves(_entries(store)))
    assert store.ledger.repair() == 13
    entry = store.ledger.entry(4)
    assert entry is not None
    proof = merkle.inclusion_proof(store.ledger, 4, 13)  # 4's path starts with its sibling, the corrupted leaf 5
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(ledger.leaf_of(entry.hash), 4, 13, proof, root)
