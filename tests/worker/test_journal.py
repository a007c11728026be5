"""worker.journal.Journal: finished results survive restarts until acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest

from depin import codec
from depin.errors import UserError
from depin.protocol import ResultItem
from worker.journal import Journal


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
