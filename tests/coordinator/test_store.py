"""coordinator.store.Store: rows round-trip, a change set is all or nothing, and one reward per (task, worker)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator import store as store_module
from coordinator.model import Job, Task
from coordinator.scheduler import Changes, Scheduler
from coordinator.store import Store
from depin import codec, ledger
from depin.errors import UserError
from tests.coordinator.sched_support import (
    COORDINATOR,
    TIMEOUT,
    WORKER_KEYS,
    Ids,
    bad,
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
        assert (lw.public_key, lw.first_seen_ms, lw.validated, lw.rejected, lw.balance) == (
            w.public_key, w.first_seen_ms, w.validated, w.rejected, w.balance)
    assert rows["head"] == s.head


def test_load_of_an_empty_database(store: Store) -> None:
    assert store.load() == {"jobs": [], "tasks": [], "leases": [], "results": [], "workers": [], "trust": [],
                            "head": None}
    assert store.ledger_head() is None
    assert list(store.ledger_entries()) == []


def test_a_saved_database_restores_a_scheduler(store: Store) -> None:
    s = _busy_scheduler(store)
    s2 = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=Ids(), **store.load())
    assert s2.jobs == s.jobs and s2.leases == s.leases and s2.results == s.results and s2.head == s.head
    assert {t: x.wanted for t, x in s2.tasks.items()} == {t: x.wanted for t, x in s.tasks.items()}


def test_empty_change_set_writes_nothing(store: Store) -> None:
    store.save(Changes())
    assert store.load()["jobs"] == []


def test_ledger_reads(store: Store) -> None:
    s = _busy_scheduler(store)
    entries = list(store.ledger_entries())
    assert len(entries) == 3 and entries[-1] == s.head
    assert [e.seq for e in store.ledger_entries(start=1)] == [1, 2]
    assert [e.seq for e in store.ledger_entries(start=1, limit=1)] == [1]
    assert store.ledger_head() == s.head
    raw = list(store.ledger_rows_raw())
    assert raw == [e.to_dict() for e in entries]
    assert s.head is not None and ledger.verify(raw).head_hash == s.head.hash


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
    (entry,) = changes.entries
    changes.entries.append(entry)  # the same seq twice: the ledger insert fails after every other table is written
    with pytest.raises(sqlite3.IntegrityError):
        store.save(changes)
    assert store.load() == {"jobs": [], "tasks": [], "leases": [], "results": [], "workers": [], "trust": [],
                            "head": None}
    counts = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("jobs", "tasks", "leases", "results", "workers", "trust", "ledger")}
    assert counts == dict.fromkeys(counts, 0)
    # The connection is usable afterwards, and the same change set without the fault goes through.
    changes.entries.pop()
    store.save(changes)
    assert store.ledger_head() == entry


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
    assert store.ledger_head() == e0
    other_worker = ledger.make_entry(e0, time=2, kind="reward", from_="mint", to="w2", amount=5, job_id="j",
                                     task_id="j-0")
    store.save(Changes(entries=[other_worker]))
    other_task = ledger.make_entry(other_worker, time=3, kind="reward", from_="mint", to="w1", amount=5,
                                   job_id="j", task_id="j-1")
    store.save(Changes(entries=[other_task]))
    assert [e.seq for e in store.ledger_entries()] == [0, 1, 2]


def test_balances_are_loaded_from_the_ledger(store: Store) -> None:
    s = _busy_scheduler(store)
    loaded = {w.worker_id: w.balance for w in store.load()["workers"]}
    assert loaded == {wid("A"): 7, wid("B"): 7, wid("C"): 7}
    assert loaded == {w: s.workers[w].balance for w in s.workers}


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    first = Store(path)
    s = _busy_scheduler(first)
    before = first.load()
    first.close()
    second = Store(path)
    assert second.load() == before
    assert second.ledger_head() == s.head
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
    with pytest.raises(UserError, match="has schema version 99, this depin needs 2"):
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


def _schema_1_database(path: Path) -> tuple[Job, Task]:
    """A database exactly as depin wrote it before trust: schema 1 tables, one job/task/lease/result/worker row."""
    s = new_scheduler()
    job = submit(s, now=0, tasks=1, replicas=3)
    (g,) = lease(s, "A", now=1)
    task = s.tasks[f"{job.job_id}-0"]
    db = sqlite3.connect(path)
    db.executescript(store_module._SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
               (job.job_id, job.kernel, job.kernel_version, codec.encode(job.params), job.n_tasks, job.replicas,
                job.max_results, job.price, job.submitter, "running", job.created_ms, None, None, 0, None))
    db.execute("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?)",
               (task.task_id, job.job_id, 0, codec.encode(task.params), task.payload, task.sig, "pending", None))
    db.execute("INSERT INTO leases VALUES (?,?,?,?,?,?,?)",
               (g.lease_id, task.task_id, job.job_id, wid("A"), 1, g.expires_ms, "returned"))
    db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?)",
               (g.lease_id, task.task_id, job.job_id, wid("A"), b"\1" * 32, codec.encode(good(g)), "pending", 2,
                None))
    db.execute("INSERT INTO workers VALUES (?,?,?,?,?,?)", (wid("A"), WORKER_KEYS["A"].public, 1, 2, 0, 0))
    db.commit()
    db.close()
    return job, task


def test_a_schema_1_database_is_migrated_to_2(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    job, task = _schema_1_database(path)
    store = Store(path)
    assert store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    rows = store.load()
    (j,) = rows["jobs"]
    assert (j.job_id, j.replicas, j.quorum, j.max_errors, j.max_results) == (job.job_id, 3, 3, 3, job.max_results)
    (t,) = rows["tasks"]
    assert (t.task_id, t.quorum, t.single, t.payload, t.params) == (task.task_id, 3, None, task.payload, task.params)
    (r,) = rows["results"]
    assert (r.verified, r.trusted, r.too_fast, r.verdict) == (None, False, False, "pending")
    (w,) = rows["workers"]
    assert (w.worker_id, w.owner, w.address, w.banned, w.too_fast) == (wid("A"), None, None, None, 0)
    assert rows["trust"] == [] and rows["head"] is None
    snapshot = store.load()  # restore below mutates the rows it is given
    s = Scheduler.restore(key=COORDINATOR, lease_timeout_ms=TIMEOUT, new_id=Ids(), now=3, **rows)
    restored = s.tasks[task.task_id]
    assert (restored.quorum, restored.results, restored.wanted) == (3, [r.lease_id], 2)  # all 3 must agree
    store.close()
    again = Store(path)  # reopening a migrated database changes nothing
    assert again.load() == snapshot
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
    assert cols == {"worker_id", "kernel", "consecutive_valid", "valid", "invalid", "max_speed", "samples"}
    store.close()
