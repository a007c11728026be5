"""coordinator.store.Store: rows round-trip, a change set is all or nothing, one reward per (task, worker), and
migrations (schema 1 -> 2 -> 3; a schema-2 ledger from before escrow is refused). The ledger's own tables and queries
are tested in test_ledger_store.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator import store as store_module
from coordinator.model import Job, Published, Task, Worker
from coordinator.scheduler import Changes, Scheduler
from coordinator.store import SCHEMA_VERSION, Store
from coordinator.trust import Trust
from depin import accounts, codec, ledger, merkle
from depin.errors import UserError
from tests.coordinator.sched_support import (
    COORDINATOR,
    FUNDS,
    PRICE,
    SUBMITTER,
    TIMEOUT,
    WORKER_KEYS,
    Ids,
    bad,
    balance,
    good,
    lease,
    new_scheduler,
    report,
    submit,
    task_of,
    wid,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data" / "coordinator.sqlite3")
    yield s
    s.close()


def _plain(rows: dict[str, Any]) -> dict[str, Any]:
    """Store.load()'s rows with the Book replaced by what it holds (a Book has no equality of its own)."""
    book = rows["book"]
    return {**rows, "book": (book.head, {k: v for k, v in book.accounts.balances.items() if v}, book.root(),
                             book.frontier.hashes)}


def _same_book(loaded: ledger.Book, live: ledger.Book) -> None:
    assert loaded.head == live.head and loaded.size == live.size
    assert loaded.root() == live.root() and loaded.frontier.hashes == live.frontier.hashes
    assert loaded.accounts.balances == {k: v for k, v in live.accounts.balances.items() if v}


def _busy_scheduler(store: Store) -> Scheduler:
    """Two jobs: one mid-flight (a validated task, a disagreement, expired and active leases), one done."""
    s = new_scheduler()
    submit(s, now=0, tasks=3, replicas=2)
    store.save(s.take_changes())
    ga0, ga1, ga2 = lease(s, "A", now=1)
    gb0, gb1, _ = lease(s, "B", now=1)
    store.save(s.take_changes())
    report(s, "A", ga0, good(ga0), now=2)
    report(s, "B", gb0, good(gb0), now=3)
    report(s, "A", ga1, good(ga1), now=4)
    report(s, "B", gb1, bad(gb1), now=5)
    store.save(s.take_changes())
    s.expire(1 + TIMEOUT)
    store.save(s.take_changes())
    done = submit(s, now=2 + TIMEOUT, tasks=1, replicas=1)
    grants = lease(s, "C", now=2 + TIMEOUT)  # the two open tasks of the first job, and the new one
    assert [task_of(g)["task_id"] for g in grants] == ["id0001-1", "id0001-2", f"{done.job_id}-0"]
    report(s, "C", grants[2], good(grants[2]), now=3 + TIMEOUT)
    assert s.jobs[done.job_id].state == "done"
    store.save(s.take_changes())
    return s


def test_save_then_load_round_trip(store: Store) -> None:
    s = _busy_scheduler(store)
    rows = store.load()
    assert rows["jobs"] == list(s.jobs.values())
    open_job = "id0001"
    assert {t.task_id for t in rows["tasks"]} == {f"{open_job}-{i}" for i in range(3)}  # the done job's are not loaded
    for t in rows["tasks"]:
        mine = s.tasks[t.task_id]
        assert (t.job_id, t.index, t.params, t.payload, t.sig, t.state, t.canonical) == (
            mine.job_id, mine.index, mine.params, mine.payload, mine.sig, mine.state, mine.canonical)
    assert sorted(rows["leases"], key=lambda x: x.lease_id) == sorted(s.leases.values(), key=lambda x: x.lease_id)
    assert sorted(rows["results"], key=lambda r: r.lease_id) == sorted(s.results.values(), key=lambda r: r.lease_id)
    assert {x.state for x in rows["leases"]} == {"returned", "expired", "active"}
    loaded_workers = {w.worker_id: w for w in rows["workers"]}
    assert set(loaded_workers) == set(s.workers)
    for w_id, w in s.workers.items():
        lw = loaded_workers[w_id]
        assert (lw.public_key, lw.first_seen_ms, lw.validated, lw.rejected, lw.min_price) == (
            w.public_key, w.first_seen_ms, w.validated, w.rejected, w.min_price)
    _same_book(rows["book"], s.book)


_EMPTY: dict[str, Any] = {"jobs": [], "tasks": [], "leases": [], "results": [], "workers": [], "trust": [],
                          "book": (None, {}, merkle.EMPTY_ROOT, ()), "published": []}


def test_load_of_an_empty_database(store: Store) -> None:
    rows = store.load()
    assert _plain(rows) == _EMPTY
    assert rows["book"].size == 0 and rows["book"].accounts.minted == 0
    assert store.ledger.head() is None
    assert list(store.ledger.entries()) == []


def test_a_saved_database_restores_a_scheduler(store: Store) -> None:
    s = _busy_scheduler(store)
    s2 = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=Ids(), **store.load())
    assert s2.jobs == s.jobs and s2.leases == s.leases and s2.results == s.results
    _same_book(s2.book, s.book)
    assert {t: x.wanted for t, x in s2.tasks.items()} == {t: x.wanted for t, x in s.tasks.items()}


def test_empty_change_set_writes_nothing(store: Store) -> None:
    store.save(Changes())
    assert store.load()["jobs"] == []


def test_ledger_reads(store: Store) -> None:
    s = _busy_scheduler(store)
    entries = list(store.ledger.entries())
    # grant, escrow of the first job, two rewards for its validated task, escrow of the second job, its reward and
    # the refund of what it did not use
    assert [e.kind for e in entries] == ["grant", "escrow", "reward", "reward", "escrow", "reward", "refund"]
    assert entries[-1] == s.book.head
    assert [e.seq for e in store.ledger.entries(start=5)] == [5, 6]
    assert [e.seq for e in store.ledger.entries(start=1, limit=1)] == [1]
    assert store.ledger.head() == s.book.head
    summary = ledger.verify(entries)
    assert s.book.head is not None and summary.head_hash == s.book.head.hash
    assert summary.root_hash == s.book.root().hex()


def test_job_result(store: Store) -> None:
    s = new_scheduler()
    job = submit(s, replicas=1)
    (g,) = lease(s, "A", now=0)
    report(s, "A", g, good(g), now=1)
    changes = s.take_changes()
    store.save(changes)
    assert store.job_result(job.job_id) == changes.merged[job.job_id]
    assert store.job_result("nope") is None


def test_failing_save_leaves_nothing(store: Store) -> None:
    s = new_scheduler()
    submit(s, replicas=1)
    (g,) = lease(s, "A", now=0)
    report(s, "A", g, good(g), now=1)
    changes = s.take_changes()
    assert changes.jobs and changes.tasks and changes.leases and changes.results and changes.workers
    assert [e.kind for e in changes.entries] == ["grant", "escrow", "reward", "refund"]
    entry = changes.entries[-1]
    changes.entries.append(entry)  # the same seq twice: the ledger insert fails after every other table is written
    with pytest.raises(sqlite3.IntegrityError):
        store.save(changes)
    assert _plain(store.load()) == _EMPTY
    counts = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("jobs", "tasks", "leases", "results", "workers", "trust", "ledger", "merkle")}
    assert counts == dict.fromkeys(counts, 0)
    # The connection is usable afterwards, and the same change set without the fault goes through.
    changes.entries.pop()
    store.save(changes)
    assert store.ledger.head() == entry
    _same_book(store.load()["book"], s.book)


def test_failing_save_keeps_earlier_commits(store: Store) -> None:
    s = new_scheduler()
    job = submit(s, replicas=1)
    store.save(s.take_changes())
    lease(s, "A", now=0)
    changes = s.take_changes()
    changes.entries.append(ledger.make_entry(None, time=0, kind="reward", from_="mint", to="x", amount=1))
    changes.entries.append(ledger.make_entry(None, time=0, kind="reward", from_="mint", to="y", amount=1))
    with pytest.raises(sqlite3.IntegrityError):
        store.save(changes)
    rows = store.load()
    assert [j.state for j in rows["jobs"]] == ["queued"] and rows["leases"] == [] and rows["workers"] == []
    assert rows["jobs"][0].job_id == job.job_id


def test_unique_index_refuses_a_second_reward_for_the_same_task_and_worker(store: Store) -> None:
    e0 = ledger.make_entry(None, time=1, kind="reward", from_="mint", to="w1", amount=5, job_id="j", task_id="j-0")
    store.save(Changes(entries=[e0]))
    again = ledger.make_entry(e0, time=2, kind="reward", from_="mint", to="w1", amount=5, job_id="j", task_id="j-0")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: ledger.task_id, ledger.to_account"):
        store.save(Changes(entries=[again]))
    assert store.ledger.head() == e0
    other_worker = ledger.make_entry(e0, time=2, kind="reward", from_="mint", to="w2", amount=5, job_id="j",
                                     task_id="j-0")
    store.save(Changes(entries=[other_worker]))
    other_task = ledger.make_entry(other_worker, time=3, kind="reward", from_="mint", to="w1", amount=5,
                                   job_id="j", task_id="j-1")
    store.save(Changes(entries=[other_task]))
    assert [e.seq for e in store.ledger.entries()] == [0, 1, 2]


def test_balances_are_loaded_from_the_ledger(store: Store) -> None:
    s = _busy_scheduler(store)
    loaded = store.load()["book"].accounts
    first, second = sorted(s.jobs.values(), key=lambda j: j.created_ms)
    assert loaded.balances == {
        ledger.MINT: -FUNDS, wid("A"): PRICE, wid("B"): PRICE, wid("C"): PRICE,
        SUBMITTER: FUNDS - first.max_cost - PRICE,  # the second job was refunded all but its one reward
        accounts.escrow_account(first.job_id): first.max_cost - 2 * PRICE,
    }
    assert {w: loaded.balance(w) for w in s.workers} == {w: balance(s, w) for w in s.workers}
    assert (loaded.funder(first.job_id), loaded.funder(second.job_id)) == (SUBMITTER, SUBMITTER)


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    first = Store(path)
    s = _busy_scheduler(first)
    before = _plain(first.load())
    first.close()
    second = Store(path)
    assert _plain(second.load()) == before
    assert second.ledger.head() == s.book.head
    second.close()


def test_readonly_open(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"no coordinator database at {tmp_path / 'missing.sqlite3'}"):
        Store(tmp_path / "missing.sqlite3", readonly=True)
    path = tmp_path / "c.sqlite3"
    Store(path).close()
    ro = Store(path, readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.save(Changes(entries=[ledger.make_entry(None, time=0, kind="reward", from_="m", to="w", amount=1)]))
    ro.close()


def test_wrong_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(UserError, match=f"has schema version 99, this depin needs {SCHEMA_VERSION}"):
        Store(path)


def test_not_a_database_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match=f"cannot open coordinator database {path}"):
        Store(path)


def test_result_verdict_archive(store: Store) -> None:
    s = _busy_scheduler(store)
    for lease_id, r in s.results.items():
        assert store.result_verdict(lease_id) == (r.worker_id, r.task_id, r.digest, r.verdict)
    assert store.result_verdict("nope") is None


def test_state_counts(store: Store) -> None:
    _busy_scheduler(store)
    assert store.state_counts("tasks", "id0001") == {"validated": 1, "pending": 2}
    assert store.state_counts("leases", "id0001") == {"returned": 4, "expired": 2, "active": 2}
    assert store.state_counts("tasks", "nope") == {}


# ---- migration from schema 1 ---------------------------------------------------------------------------------------


def _schema_1_database(path: Path, *, state: str = "done", entries: int = 0) -> tuple[Job, Task]:
    """A database exactly as depin wrote it before trust: schema 1 tables, one job/task/lease/result/worker row (the
    job in `state`), and `entries` ledger rows as that version wrote them (rewards out of the mint)."""
    s = new_scheduler()
    job = submit(s, now=0, tasks=1, replicas=3)
    (g,) = lease(s, "A", now=1)
    task = s.tasks[f"{job.job_id}-0"]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(store_module._SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
               (job.job_id, job.kernel, job.kernel_version, codec.encode(job.params), job.n_tasks, job.replicas,
                job.max_results, job.price, job.submitter, state, job.created_ms, None, None, 0, None))
    db.execute("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?)",
               (task.task_id, job.job_id, 0, codec.encode(task.params), task.payload, task.sig, "pending", None))
    db.execute("INSERT INTO leases VALUES (?,?,?,?,?,?,?)",
               (g.lease_id, task.task_id, job.job_id, wid("A"), 1, g.expires_ms, "returned"))
    db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?)",
               (g.lease_id, task.task_id, job.job_id, wid("A"), b"\1" * 32, codec.encode(good(g)), "pending", 2,
                None))
    db.execute("INSERT INTO workers VALUES (?,?,?,?,?,?)", (wid("A"), WORKER_KEYS["A"].public, 1, 2, 0, 0))
    _old_rewards(db, entries, job.job_id)
    db.commit()
    db.close()
    return job, task


def _old_rewards(db: sqlite3.Connection, n: int, job_id: str) -> None:
    """`n` ledger rows of the kind schemas 1 and 2 wrote: a reward straight out of the mint."""
    prev = None
    for i in range(n):
        prev = ledger.make_entry(prev, time=i, kind="reward", from_=ledger.MINT, to=wid("A"), amount=PRICE,
                                 job_id=job_id, task_id=f"{job_id}-{i}")
        db.execute("INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (prev.seq, prev.time, prev.kind, prev.from_, prev.to, prev.amount, prev.job_id, prev.task_id,
                    prev.prev_hash, prev.hash))


def _dump(path: Path) -> list[str]:
    """Every schema object and row of a database, as SQL (read without changing it)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def _version(store: Store) -> str:
    return str(store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def _migrated_to_current(store: Store) -> None:
    assert _version(store) == str(SCHEMA_VERSION)
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    assert {"merkle", "checkpoints", "ledger_to", "ledger_job", "results_worker", "trust"} <= tables
    assert {"min_price", "capacity", "expired"} <= {row[1] for row in store.db.execute("PRAGMA table_info(workers)")}
    assert {"audit", "fell_back", "waiting_since", "audit_since"} <= {
        row[1] for row in store.db.execute("PRAGMA table_info(tasks)")}


def test_a_schema_1_database_is_migrated_to_current(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    job, task = _schema_1_database(path)
    store = Store(path)
    _migrated_to_current(store)
    rows = store.load()
    (j,) = rows["jobs"]
    assert (j.job_id, j.state, j.replicas, j.quorum, j.max_errors, j.max_results) == (
        job.job_id, "done", 3, 3, 3, job.max_results)
    assert rows["tasks"] == rows["leases"] == rows["results"] == []  # a finished job's rows stay on disk
    assert store.db.execute("SELECT task_id, quorum, single, payload FROM tasks").fetchall() == [
        (task.task_id, 3, None, task.payload)]
    assert store.db.execute("SELECT verified, trusted, too_fast, verdict FROM results").fetchall() == [
        (None, 0, 0, "pending")]
    (w,) = rows["workers"]
    assert (w.worker_id, w.owner, w.address, w.banned, w.too_fast, w.min_price) == (wid("A"), None, None, None, 0, 0)
    assert rows["trust"] == [] and rows["book"].size == 0
    snapshot = _plain(store.load())
    store.close()
    again = Store(path)  # reopening a migrated database changes nothing
    assert _plain(again.load()) == snapshot
    again.close()


def test_migration_keeps_old_columns_and_fills_new_ones_for_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    _schema_1_database(path)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO jobs (job_id, kernel, kernel_version, params, n_tasks, replicas, max_results, price, "
               "submitter, state, created_ms, tasks_validated) VALUES ('j2', 'mandelbrot', 1, x'80', 1, 1, 4, 1, "
               "'s', 'done', 5, 1)")
    db.commit()
    db.close()
    store = Store(path)
    quorums = dict(store.db.execute("SELECT job_id, quorum FROM jobs").fetchall())
    assert quorums["j2"] == 1 and set(quorums.values()) == {1, 3}
    cols = {row[1] for row in store.db.execute("PRAGMA table_info(trust)")}
    assert cols == {"worker_id", "kernel", "consecutive_valid", "valid", "invalid", "max_speed", "samples",
                    "disputed", "earned", "partners"}
    store.close()


@pytest.mark.parametrize(("state", "entries", "counts"), [("running", 0, "0 entries, 1 unfinished jobs"),
                                                          ("done", 2, "2 entries, 0 unfinished jobs")])
def test_a_schema_1_database_with_money_is_refused(tmp_path: Path, state: str, entries: int, counts: str) -> None:
    path = tmp_path / "old.sqlite3"
    _schema_1_database(path, state=state, entries=entries)
    with pytest.raises(UserError, match=rf"^{path} holds a ledger from before escrow \({counts}\), which this depin"
                                        r" cannot carry forward; keep it with `depin ledger export`"):
        Store(path)


def test_a_refused_schema_1_database_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    _schema_1_database(path, state="done", entries=1)
    before = _dump(path)
    with pytest.raises(UserError, match="holds a ledger from before escrow"):
        Store(path)
    assert _dump(path) == before


# ---- migration from schema 2 ---------------------------------------------------------------------------------------


def _schema_2_database(path: Path, *, running: bool = False, entries: int = 0) -> None:
    """A database as depin wrote it with trust but before escrow (the DDL of schemas 1 and 2 as store.py keeps it):
    a done job, a worker and a trust row, plus an unfinished job and `entries` old ledger rows if asked."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(store_module._SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.executescript("BEGIN;" + store_module._MIGRATE_2 + "COMMIT;")
    assert db.execute("SELECT value FROM meta").fetchone() == ("2",)
    job = ("INSERT INTO jobs (job_id, kernel, kernel_version, params, n_tasks, replicas, quorum, max_errors, "
           "max_results, price, submitter, state, created_ms, tasks_validated) VALUES (?, 'mandelbrot', 1, x'80', "
           "1, 2, 2, 3, 5, 7, ?, ?, ?, 0)")
    db.execute(job, ("j-done", SUBMITTER, "done", 1))
    if running:
        db.execute(job, ("j-open", SUBMITTER, "running", 2))
    db.execute("INSERT INTO workers (worker_id, public_key, first_seen_ms, last_seen_ms, validated, rejected, owner)"
               " VALUES (?, ?, 1, 2, 3, 0, ?)", (wid("A"), WORKER_KEYS["A"].public, "a" * 32))
    db.execute("INSERT INTO trust VALUES (?, 'mandelbrot@1', 3, 3, 0, 24.0, 3)", (wid("A"),))
    db.execute("BEGIN")
    _old_rewards(db, entries, "j-done")
    db.execute("COMMIT")
    db.close()


def test_an_empty_schema_2_database_is_migrated_to_current(tmp_path: Path) -> None:
    path = tmp_path / "two.sqlite3"
    _schema_2_database(path)
    store = Store(path)
    _migrated_to_current(store)
    rows = store.load()
    assert [(j.job_id, j.state, j.quorum) for j in rows["jobs"]] == [("j-done", "done", 2)]
    (w,) = rows["workers"]
    assert (w.worker_id, w.owner, w.validated, w.min_price) == (wid("A"), "a" * 32, 3, 0)
    assert [(t.worker_id, t.consecutive_valid) for t in rows["trust"]] == [(wid("A"), 3)]
    assert rows["book"].size == 0 and store.ledger.repair() == 0
    # The migrated database takes the new money flow from its first entry.
    s = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=Ids(), **rows)
    s.grant(now=5, account=SUBMITTER, amount=100)
    submit(s, now=5, replicas=1)
    store.save(s.take_changes())
    assert [e.kind for e in store.ledger.entries()] == ["grant", "escrow"]
    store.close()
    assert _version(again := Store(path)) == str(SCHEMA_VERSION)
    again.close()


@pytest.mark.parametrize(("running", "entries", "counts"), [(False, 3, "3 entries, 0 unfinished jobs"),
                                                            (True, 0, "0 entries, 1 unfinished jobs"),
                                                            (True, 1, "1 entries, 1 unfinished jobs")])
def test_a_schema_2_database_with_money_is_refused_and_left_unchanged(tmp_path: Path, running: bool, entries: int,
                                                                       counts: str) -> None:
    path = tmp_path / "two.sqlite3"
    _schema_2_database(path, running=running, entries=entries)
    before = _dump(path)
    for _ in range(2):  # and again: the first refusal left nothing behind that would let a second open pass
        with pytest.raises(UserError) as caught:
            Store(path)
        assert str(caught.value) == (
            f"{path} holds a ledger from before escrow ({counts}), which this depin cannot carry forward; keep it"
            " with `depin ledger export` from the old version and start this one on a new data dir")
        assert _dump(path) == before
    with pytest.raises(UserError, match=f"has schema version 2, this depin needs {SCHEMA_VERSION}"):
        Store(path, readonly=True)


# The columns each schema added, newest first: dropping them takes a current database back to an older schema.
_ADDED = {
    6: (("tasks", "platform"), ("kernels", None)),
    5: (("tasks", "fell_back"), ("tasks", "waiting_since"), ("tasks", "audit_since"), ("jobs", "materialized"),
        ("jobs", "order_key")),
    4: (("workers", "capacity"), ("workers", "expired"), ("workers", "exposure"), ("workers", "audits_passed"),
        ("workers", "audits_failed"), ("tasks", "audit"), ("trust", "disputed"), ("trust", "earned"),
        ("trust", "partners")),
}


def _back_to(path: Path, version: int) -> None:
    db = sqlite3.connect(path)
    for added in range(SCHEMA_VERSION, version, -1):
        for table, col in _ADDED[added]:
            db.execute(f"DROP TABLE {table}" if col is None else f"ALTER TABLE {table} DROP COLUMN {col}")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.commit()
    db.close()


def _migrated_from(store: Store, path: Path, version: int) -> tuple[Store, dict[str, Any]]:
    """Close `store`, take its database back to `version`, open it again (migrating it) and load it."""
    store.close()
    _back_to(path, version)
    store = Store(path)
    _migrated_to_current(store)
    return store, store.load()


def test_a_schema_3_database_keeps_its_workers_and_trust_and_gains_the_schema_4_columns(tmp_path: Path) -> None:
    path = tmp_path / "three.sqlite3"
    store = Store(path)
    ch = Changes()
    ch.workers[wid("A")] = Worker(worker_id=wid("A"), public_key=b"k" * 32, first_seen_ms=1, last_seen_ms=2,
                                  validated=12, capacity=64, expired=1)
    ch.trust[(wid("A"), "mandelbrot@1")] = Trust(wid("A"), "mandelbrot@1", consecutive_valid=12, valid=12,
                                                 disputed=1, earned=84, partners={wid("B"): 3})
    store.save(ch)
    store, rows = _migrated_from(store, path, 3)
    (w,) = rows["workers"]
    assert (w.validated, w.capacity, w.expired) == (12, 2, 0)  # capacity is earned again, from the start
    (t,) = rows["trust"]
    assert (t.consecutive_valid, t.valid, t.disputed, t.earned, t.partners) == (12, 12, 0, 0, {})
    store.close()


def test_a_schema_4_database_keeps_its_tasks_and_gains_the_schema_5_waits(tmp_path: Path) -> None:
    path = tmp_path / "four.sqlite3"
    store = Store(path)
    s = new_scheduler()
    job = submit(s, now=1, tasks=1, replicas=2)
    assert len(lease(s, "A", now=2)) == 1  # the task is made
    store.save(s.take_changes())
    store, rows = _migrated_from(store, path, 4)
    (t,) = rows["tasks"]
    assert (t.job_id, t.fell_back, t.waiting_since, t.audit_since) == (job.job_id, False, None, 0)
    (j,) = rows["jobs"]
    assert (j.materialized, j.order_key) == (j.n_tasks, b"")  # a job from before had every task made, in order
    store.close()


def test_a_schema_5_database_keeps_its_tasks_and_gains_published_kernels_and_task_platforms(tmp_path: Path) -> None:
    path = tmp_path / "five.sqlite3"
    store = Store(path)
    s = new_scheduler()
    job = submit(s, now=1, tasks=1, replicas=2)
    assert len(lease(s, "A", now=2)) == 1
    store.save(s.take_changes())
    store, rows = _migrated_from(store, path, 5)
    (t,) = rows["tasks"]
    assert (t.job_id, t.platform) == (job.job_id, None) and rows["published"] == []
    row = Published(kernel_id="ab" * 32, source=b"x", name="k", publisher=wid("A"), published_ms=3)
    ch = Changes()
    ch.kernels[row.kernel_id] = row
    store.save(ch)
    store.save(ch)  # published twice: kept once
    assert store.load()["published"] == [row]
    store.close()
