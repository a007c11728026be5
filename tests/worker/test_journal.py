"""worker.journal.Journal: finished results survive restarts until acknowledged; each result's story, and the
ledger evidence the witness keeps (checkpoints, proved credits, alarms)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin import codec
from depin.checkpoint import Checkpoint, sign
from depin.crypto import SigningKey
from depin.errors import UserError
from depin.protocol import LeaseGrant, ResultItem
from worker import tasks
from worker.journal import KEEP_RELEASED, Journal, ProgressStore


def _item(lease_id: str, value: int = 1) -> ResultItem:
    data = value.to_bytes(4, "little") * 6
    return ResultItem(lease_id=lease_id, task_id=f"task-of-{lease_id}",
                      output={"dtype": "uint32", "shape": [2, 3], "data": data}, elapsed_ms=value)


def test_add_pending_remove(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    assert j.count() == 0 and j.pending(10) == []
    j.add(_item("L1", 1), now_ms=100)
    j.add(_item("L2", 2), now_ms=200)
    assert j.count() == 2
    assert j.pending(10) == [_item("L1", 1), _item("L2", 2)]
    assert j.pending(1) == [_item("L1", 1)]
    j.remove(["L1", "not-there"])
    assert j.pending(10) == [_item("L2", 2)]
    j.remove([])
    assert j.count() == 1
    j.close()


def test_pending_is_oldest_first_then_by_lease(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add(_item("c"), now_ms=300)
    j.add(_item("b"), now_ms=100)
    j.add(_item("a"), now_ms=300)
    assert [i.lease_id for i in j.pending(10)] == ["b", "a", "c"]
    j.close()


def test_adding_a_lease_again_replaces_it(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add(_item("L1", 1), now_ms=100)
    j.add(_item("L1", 5), now_ms=50)
    assert j.pending(10) == [_item("L1", 5)]
    assert j.count() == 1
    j.close()


def test_everything_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.sqlite3"
    j = Journal(path)
    j.add(_item("L1", 1), now_ms=100)
    j.add(_item("L2", 2), now_ms=200)
    j.add(_item("L3", 3), now_ms=300)
    j.remove(["L2"])
    j.close()
    again = Journal(path)
    assert again.pending(10) == [_item("L1", 1), _item("L3", 3)]
    again.remove(["L1"])
    again.close()
    third = Journal(path)
    assert third.pending(10) == [_item("L3", 3)]
    third.close()


def test_unreadable_journal_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match=f"cannot open the worker journal {path}"):
        Journal(path)


def test_pending_caps_the_batch_by_encoded_size(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    for n in range(5):
        j.add(_item(f"L{n}", n + 1), now_ms=n)
    size = len(codec.encode(_item("L0", 1).to_payload()))  # every item here encodes to the same size
    assert [i.lease_id for i in j.pending(10, max_bytes=3 * size)] == ["L0", "L1", "L2"]
    assert [i.lease_id for i in j.pending(10, max_bytes=3 * size - 1)] == ["L0", "L1"]
    assert [i.lease_id for i in j.pending(2, max_bytes=100 * size)] == ["L0", "L1"]
    assert [i.lease_id for i in j.pending(10, max_bytes=1)] == ["L0"]  # at least one, however large
    assert len(j.pending(10)) == 5
    j.close()


def test_set_aside_moves_a_result_out_of_the_queue_and_keeps_it(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add(_item("L1"), now_ms=1)
    j.add(_item("L2"), now_ms=2)
    j.set_aside("L1", "malformed", now_ms=3)
    assert [i.lease_id for i in j.pending(10)] == ["L2"]
    j.close()
    again = Journal(tmp_path / "journal.sqlite3")
    assert again.refused() == [("L1", "malformed")]
    assert again.count() == 1
    again.close()


# ---- each result's story: computed -> acknowledged -> credited ------------------------------------------------------


def test_add_starts_the_story_of_a_result(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add(_item("L1"), now_ms=100, job_id="J", price=7)
    assert j.story() == [{"lease_id": "L1", "task_id": "task-of-L1", "job_id": "J", "price": 7, "computed": 100,
                          "status": "computed", "reason": None, "acked": None, "seq": None, "amount": None,
                          "checkpoint": None}]
    j.close()


def test_remove_with_acks_records_how_each_result_was_acknowledged(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    for n, lease in enumerate(["L1", "L2", "L3", "L4"]):
        j.add(_item(lease), now_ms=n, job_id="J", price=7)
    j.remove(["L1", "L2", "L3"], [("accepted", ""), ("rejected", "lease was given back"),
                                  ("duplicate", "result already received")], now_ms=50)
    assert [(s["lease_id"], s["status"], s["reason"], s["acked"]) for s in j.story()] == [
        ("L1", "accepted", None, 50), ("L2", "rejected", "lease was given back", 50),
        ("L3", "duplicate", "result already received", 50), ("L4", "computed", None, None)]
    assert [i.lease_id for i in j.pending(10)] == ["L4"]
    j.remove(["L4"])  # without acks (an old caller): forgotten, its story untouched
    assert j.count() == 0 and j.story()[-1]["status"] == "computed"
    j.close()


def test_adding_a_lease_again_keeps_its_first_story(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add(_item("L1", 1), now_ms=100, job_id="J", price=7)
    j.add(_item("L1", 5), now_ms=200, job_id="J", price=7)
    assert [(s["lease_id"], s["computed"]) for s in j.story()] == [("L1", 100)]
    j.close()


def test_add_is_one_transaction(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    statements: list[str] = []
    j.db.set_trace_callback(statements.append)
    j.add(_item("L1"), now_ms=1, job_id="J", price=7)
    j.db.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert [s.split()[0] for s in statements[1:-1]] == ["INSERT", "INSERT", "DELETE"]  # the last: its progress
    j.close()


def test_add_many_is_one_transaction_for_a_whole_batch(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    statements: list[str] = []
    j.db.set_trace_callback(statements.append)
    j.add_many([(_item(f"L{n}", n), "J", 7) for n in range(1, 6)], now_ms=1)
    j.add_many([], now_ms=2)  # nothing to add: no transaction
    j.db.set_trace_callback(None)
    verbs = [s.split()[0] for s in statements]  # executemany traces each row
    assert (verbs[0], verbs[-1], verbs.count("BEGIN"), verbs.count("COMMIT")) == ("BEGIN", "COMMIT", 1, 1)
    assert verbs.count("INSERT") == 10 and verbs.count("DELETE") == 5
    assert [i.lease_id for i in j.pending(10)] == ["L1", "L2", "L3", "L4", "L5"]
    assert [(s["lease_id"], s["job_id"], s["price"], s["status"]) for s in j.story()] == [
        (f"L{n}", "J", 7, "computed") for n in range(1, 6)]
    j.close()


def test_remove_is_one_transaction_for_a_whole_ack(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add_many([(_item(f"L{n}"), "J", 7) for n in range(3)], now_ms=1)
    statements: list[str] = []
    j.db.set_trace_callback(statements.append)
    j.remove(["L0", "L1", "L2"], [("accepted", "")] * 3, now_ms=2)
    j.db.set_trace_callback(None)
    verbs = [s.split()[0] for s in statements]
    assert (verbs[0], verbs[-1], verbs.count("BEGIN"), verbs.count("COMMIT")) == ("BEGIN", "COMMIT", 1, 1)
    assert j.count() == 0
    j.close()


def _fail_on_sent(j: Journal) -> None:
    """Make the second statement of `add` fail, as a full disk would."""
    j.db.execute("CREATE TRIGGER fail_sent BEFORE INSERT ON sent BEGIN SELECT RAISE(ABORT, 'disk full'); END")


@pytest.mark.parametrize("batch", [False, True])
def test_a_failed_add_stores_nothing(tmp_path: Path, batch: bool) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    _fail_on_sent(j)
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        if batch:  # none of the batch
            j.add_many([(_item("L1"), "J", 7), (_item("L2"), "J", 7)], now_ms=1)
        else:
            j.add(_item("L1"), now_ms=1, job_id="J", price=7)
    j.close()
    again = Journal(path)
    assert again.count() == 0 and again.story() == []
    again.close()


def test_the_journal_stays_usable_after_a_failed_write(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    _fail_on_sent(j)
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        j.add(_item("L1"), now_ms=1, job_id="J", price=7)
    j.db.execute("DROP TRIGGER fail_sent")
    assert j.count() == 0  # this connection must not see half of the failed add either
    j.add(_item("L2"), now_ms=2, job_id="J", price=7)
    assert [i.lease_id for i in j.pending(10)] == ["L2"]
    j.close()


# ---- ledger evidence: checkpoints, proved credits, alarms --------------------------------------------------------

COORD = SigningKey(bytes([7]) * 32)
WORKER = "w" * 32


def _cp(size: int, time: int = 1000) -> Checkpoint:
    return sign(COORD, size=size, root=bytes([size]) * 32, time=time)


def _credit(seq: int, task_id: str | None, amount: int = 7, kind: str = "reward") -> dict[str, Any]:
    return {"seq": seq, "time": seq, "kind": kind, "from": "escrow:J", "to": WORKER, "amount": amount, "job_id": "J",
            "task_id": task_id, "prev_hash": "00" * 32, "hash": "11" * 32}


def test_no_evidence_at_first(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    assert (j.latest_checkpoint(), j.checkpoints(), j.last_credit_seq(), j.alarms()) == (None, [], -1, [])
    j.close()


def test_checkpoints_are_kept_and_the_largest_is_the_latest(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add_evidence(_cp(5), [], now_ms=1)
    j.add_evidence(_cp(12), [], now_ms=2)
    j.add_evidence(_cp(8), [], now_ms=3)
    j.add_evidence(_cp(12, time=9999), [], now_ms=4)  # the same size again: the first one stays
    assert j.latest_checkpoint() == _cp(12)
    assert j.checkpoints() == [_cp(5), _cp(8), _cp(12)]
    j.latest_checkpoint().verify(COORD.verify_key)  # type: ignore[union-attr]
    j.close()


def test_credits_are_kept_with_their_proof_and_checkpoint(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add_evidence(_cp(10), [(_credit(3, "J-0"), ["aa" * 32]), (_credit(7, "J-1"), [])], now_ms=1)
    assert j.last_credit_seq() == 7
    rows = j.db.execute("SELECT seq, kind, task_id, amount, entry, proof, checkpoint FROM credits ORDER BY seq")
    assert [(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6]) for r in rows] == [
        (3, "reward", "J-0", 7, _credit(3, "J-0"), ["aa" * 32], 10), (7, "reward", "J-1", 7, _credit(7, "J-1"), [], 10)]
    j.close()


def test_the_story_joins_each_result_to_its_proved_reward(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add(ResultItem("L1", "J-0", _item("x").output, 1), now_ms=1, job_id="J", price=7)
    j.add(ResultItem("L2", "J-1", _item("x").output, 1), now_ms=2, job_id="J", price=7)
    j.add(ResultItem("L3", "J-2", _item("x").output, 1), now_ms=3, job_id="J", price=7)
    j.remove(["L1", "L2", "L3"], [("accepted", ""), ("accepted", ""), ("rejected", "late")], now_ms=4)
    # A refund to this worker (it also submits) names no task and pays no result.
    j.add_evidence(_cp(20), [(_credit(11, "J-0"), []), (_credit(12, None, 40, "refund"), [])], now_ms=5)
    story = {s["lease_id"]: (s["status"], s["seq"], s["amount"], s["checkpoint"]) for s in j.story()}
    assert story == {"L1": ("accepted", 11, 7, 20), "L2": ("accepted", None, None, None),
                     "L3": ("rejected", None, None, None)}
    j.close()


def test_alarms_are_kept_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    j.alarm("LEDGER FORK: second", now_ms=20)
    j.alarm("LEDGER FORK: first", now_ms=10)
    j.close()
    again = Journal(path)
    assert again.alarms() == [(10, "LEDGER FORK: first"), (20, "LEDGER FORK: second")]
    again.close()


def test_evidence_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    j.add_evidence(_cp(4), [(_credit(2, "J-0"), ["bb" * 32])], now_ms=1)
    j.close()
    again = Journal(path)
    assert (again.latest_checkpoint(), again.last_credit_seq()) == (_cp(4), 2)
    again.close()


def test_a_journal_from_before_the_ledger_evidence_opens_and_gains_the_new_tables(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE pending (lease_id TEXT PRIMARY KEY, item BLOB NOT NULL, added INTEGER NOT NULL);"
        "CREATE TABLE refused (lease_id TEXT PRIMARY KEY, item BLOB NOT NULL, reason TEXT NOT NULL,"
        " refused INTEGER NOT NULL);")
    old.execute("INSERT INTO pending VALUES (?, ?, ?)", ("L1", codec.encode(_item("L1").to_payload()), 1))
    old.commit()
    old.close()
    j = Journal(path)
    assert j.pending(10) == [_item("L1")]
    assert j.story() == [] and j.latest_checkpoint() is None  # no story for a result computed before the upgrade
    j.remove(["L1"], [("accepted", "")], now_ms=2)
    assert j.count() == 0
    j.close()


# ---- partial progress of chunked tasks -------------------------------------------------------------------------

TASK_PARAMS = {"width": 8, "height": 6, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 50,
               "row_start": 2, "row_end": 5}


def _checked(lease_id: str = "L1", task_id: str = "J-0", max_iter: int = 50) -> tasks.Checked:
    task = {"task_id": task_id, "job_id": "J", "kernel": "mandelbrot", "kernel_version": 1,
            "params": dict(TASK_PARAMS, max_iter=max_iter), "coordinator": COORD.id, "price": 7}
    body = codec.encode(task)
    return tasks.check(LeaseGrant(lease_id, 10, body, COORD.sign("task", body)), COORD.verify_key)


def _partial(done: int = 9, elapsed_ms: int = 1234) -> tasks.Partial:
    state = np.zeros((3, 8), dtype=np.uint32)
    state.reshape(-1)[:done] = np.arange(1, done + 1)
    return tasks.Partial(done, state, elapsed_ms)


def _same(a: tasks.Partial | None, b: tasks.Partial) -> bool:
    return (a is not None and (a.done, a.elapsed_ms) == (b.done, b.elapsed_ms) and a.state.dtype == b.state.dtype
            and a.state.shape == b.state.shape and a.state.tobytes() == b.state.tobytes())


def test_progress_round_trip_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    assert j.progress.load(_checked()) is None and j.unfinished() == []
    j.progress.save(_checked(), _partial())
    assert _same(j.progress.load(_checked()), _partial())
    # A crash: nothing closed; another process opens the file.
    again = Journal(path)
    assert _same(again.progress.load(_checked()), _partial())
    assert again.unfinished() == [_checked().grant]
    again.close()
    j.close()


def test_progress_is_one_row_per_task_replaced_at_each_save(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked(), _partial(4, 10))
    j.progress.save(_checked(), _partial(12, 20))
    j.progress.save(_checked("L2", "J-1"), _partial(3, 5))
    assert _same(j.progress.load(_checked()), _partial(12, 20))
    assert j.db.execute("SELECT COUNT(*) FROM progress").fetchone()[0] == 2
    j.close()


def test_progress_of_another_task_under_the_same_id_is_not_loaded(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked(), _partial())
    assert j.progress.load(_checked(max_iter=51)) is None  # other signed task bytes
    assert _same(j.progress.load(_checked(lease_id="L9")), _partial())  # the same task, leased again
    j.close()


def test_unfinished_lists_the_grants_least_recently_saved_first(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    clock = iter([300, 100, 200])
    j.progress.close()
    j.progress = ProgressStore(path, clock_ms=lambda: next(clock))
    j.progress.save(_checked("L1", "J-0"), _partial())
    j.progress.save(_checked("L2", "J-1"), _partial())
    j.progress.save(_checked("L3", "J-2"), _partial())
    assert [g.lease_id for g in j.unfinished()] == ["L2", "L3", "L1"]
    assert j.db.execute("SELECT saved FROM progress WHERE lease_id = 'L1'").fetchone()[0] == 300
    j.close()


def test_journaling_the_result_clears_the_progress_in_the_same_transaction(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked(lease_id="L1"), _partial())
    j.progress.save(_checked(lease_id="L2", task_id="J-1"), _partial())
    item = ResultItem("L1", "J-0", _item("x").output, 1)
    statements: list[str] = []
    j.db.set_trace_callback(statements.append)
    j.add(item, now_ms=1)
    j.db.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert "DELETE FROM progress" in statements[-2]
    assert j.progress.load(_checked()) is None
    assert [g.lease_id for g in j.unfinished()] == ["L2"]
    j.close()


def test_a_failed_add_keeps_the_progress(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked(), _partial())
    _fail_on_sent(j)
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        j.add(ResultItem("L1", "J-0", _item("x").output, 1), now_ms=1, job_id="J", price=7)
    assert _same(j.progress.load(_checked()), _partial())
    j.close()


def test_drop_progress_forgets_tasks_given_back(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    for n in range(3):
        j.progress.save(_checked(f"L{n}", f"J-{n}"), _partial())
    j.drop_progress(["L0", "L2", "not-there"])
    assert [g.lease_id for g in j.unfinished()] == ["L1"]
    j.drop_progress([])
    j.close()


def test_progress_of_a_lease_given_back_waits_for_the_task_to_come_back(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked("L1", "J-0"), _partial())
    j.progress.save(_checked("L2", "J-1"), _partial())
    j.released(["L1"])
    assert [g.lease_id for g in j.unfinished()] == ["L2"]  # a restart must not report on a lease given back
    back = _checked("L7", "J-0")  # the same task, leased to us again (PROTOCOL.md 12.1)
    assert _same(j.progress.load(back), _partial())
    j.progress.save(back, _partial(12, 99))
    assert sorted(g.lease_id for g in j.unfinished()) == ["L2", "L7"]  # held again
    j.close()


def test_only_the_most_recent_progress_given_back_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    clock = iter(range(100, 200))
    j.progress.close()
    j.progress = ProgressStore(path, clock_ms=lambda: next(clock))
    for n in range(KEEP_RELEASED + 2):
        j.progress.save(_checked(f"L{n}", f"J-{n}"), _partial())
    j.progress.save(_checked("held", "J-held"), _partial())
    j.released([f"L{n}" for n in range(KEEP_RELEASED + 2)])
    kept = [r[0] for r in j.db.execute("SELECT lease_id FROM progress ORDER BY saved")]
    assert kept == [f"L{n}" for n in range(2, KEEP_RELEASED + 2)] + ["held"]
    j.close()


def test_progress_is_as_durable_as_results(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    for db in (j.db, j.progress.db):
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync at every commit
    statements: list[str] = []
    j.progress.db.set_trace_callback(statements.append)
    j.progress.save(_checked(), _partial())
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    j.close()


def test_progress_is_saved_and_loaded_from_another_thread(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    seen: list[tasks.Partial | None] = []

    def compute() -> None:
        j.progress.save(_checked(), _partial())
        seen.append(j.progress.load(_checked()))

    thread = threading.Thread(target=compute)
    thread.start()
    thread.join()
    assert _same(seen[0], _partial()) and [g.lease_id for g in j.unfinished()] == ["L1"]
    j.close()


def test_a_failed_save_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked(), _partial(4, 10))
    j.db.execute("CREATE TRIGGER full BEFORE INSERT ON progress BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    j.progress.save(_checked(), _partial(12, 20))
    assert "cannot save the progress of task J-0: disk full" in caplog.text
    assert _same(j.progress.load(_checked()), _partial(4, 10))  # the earlier save stands
    j.close()


def test_a_failed_load_is_logged_and_the_task_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked(), _partial())
    j.progress.db.close()  # as when the journal is closed under a computing thread
    assert j.progress.load(_checked()) is None
    assert "cannot read the progress of task J-0" in caplog.text
    j.db.close()


def test_unreadable_progress_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.progress.save(_checked("L1", "J-0"), _partial())
    j.progress.save(_checked("L2", "J-1"), _partial())
    j.db.execute("UPDATE progress SET lease = x'c1', state = x'c1' WHERE lease_id = 'L1'")
    assert [g.lease_id for g in j.unfinished()] == ["L2"]
    assert "progress of lease L1 is unreadable" in caplog.text
    assert j.progress.load(_checked("L1", "J-0")) is None
    j.close()


def test_a_journal_from_before_progress_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    old = sqlite3.connect(path)
    old.execute("DROP TABLE progress")
    old.close()
    j = Journal(path)
    j.progress.save(_checked(), _partial())
    assert _same(j.progress.load(_checked()), _partial())
    j.close()
