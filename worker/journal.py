"""The worker's journal: finished results until acknowledged, what became of each, and the ledger evidence.

A result is written (and fsync'd: SQLite synchronous=FULL; a batch's results in one transaction) before it is sent,
and deleted from `pending` only when the coordinator's signed acknowledgement for it has been checked (all the
results of one acknowledgement in one transaction). On start the worker resends whatever is still there. Resending
is safe: the coordinator answers "duplicate" for a result it already has, and never pays twice.
`sent` keeps every result's story (computed, acknowledged how); `checkpoints` every ledger checkpoint the worker
verified; `credits` every ledger entry paying this worker, with the inclusion proof that was checked; `alarms`
what the witness caught (worker.witness).

`progress` holds the partial state of tasks computed in chunks (worker.tasks), one row per task with the grant it
was leased under, so a restart can check the task again and carry on from its last chunk (and a task given back
mid-way and leased to us again carries on too). It is written through `ProgressStore`, a connection of its own,
because the thread that computes writes it while the event loop's thread uses the journal's; it is fsync'd like
everything here, and deleted in the transaction that journals the result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from depin import codec
from depin.checkpoint import Checkpoint
from depin.errors import DepinError, UserError
from depin.protocol import LeaseGrant, ResultItem
from worker.tasks import Checked, Partial

log = logging.getLogger("depin.worker")

_TABLES = """
CREATE TABLE IF NOT EXISTS pending (lease_id TEXT PRIMARY KEY, item BLOB NOT NULL, added INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refused (lease_id TEXT PRIMARY KEY, item BLOB NOT NULL, reason TEXT NOT NULL,
    refused INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sent (lease_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, job_id TEXT NOT NULL,
    price INTEGER NOT NULL, computed INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT, acked INTEGER);
CREATE INDEX IF NOT EXISTS sent_task ON sent (task_id);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, checkpoint TEXT NOT NULL, seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS credits (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, task_id TEXT, amount INTEGER NOT NULL,
    entry TEXT NOT NULL, proof TEXT NOT NULL, checkpoint INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alarms (time INTEGER NOT NULL, message TEXT NOT NULL, evidence TEXT);
CREATE TABLE IF NOT EXISTS progress (task_id TEXT PRIMARY KEY, lease_id TEXT NOT NULL, lease BLOB NOT NULL,
    done INTEGER NOT NULL, state BLOB NOT NULL, elapsed_ms INTEGER NOT NULL, saved INTEGER NOT NULL,
    released INTEGER NOT NULL DEFAULT 0);
"""
# Progress of tasks given back is kept in case the coordinator leases them to us again (PROTOCOL.md 12.1), but only
# this many, newest first: a band's state can be 4 MiB.
KEEP_RELEASED = 4


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_TABLES)
        columns = {row[1] for row in db.execute("PRAGMA table_info(alarms)")}
        if "evidence" not in columns:  # a journal from before alarms kept their evidence
            db.execute("ALTER TABLE alarms ADD COLUMN evidence TEXT")
    except sqlite3.DatabaseError as exc:
        raise UserError(f"cannot open the worker journal {path}: {exc}") from None
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # One transaction (one fsync), rolled back on any error so the connection stays usable.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Journal:
    """Unacknowledged results, oldest first."""

    def __init__(self, path: Path) -> None:
        self.db = _connect(path)
        # The progress of the task in hand, for worker.tasks.run in the thread that computes.
        self.progress = ProgressStore(path)

    def _tx(self) -> contextlib.AbstractContextManager[None]:
        return _transaction(self.db)

    def add(self, item: ResultItem, now_ms: int, job_id: str = "", price: int = 0) -> None:
        """Durably record a finished result (and start its story in `sent`), and forget the task's progress."""
        self.add_many([(item, job_id, price)], now_ms)

    def add_many(self, results: list[tuple[ResultItem, str, int]], now_ms: int) -> None:
        """`add` for a batch of (result, job_id, price), in one transaction: one fsync for the whole batch."""
        if not results:
            return
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)",
                                [(i.lease_id, codec.encode(i.to_payload()), now_ms) for i, _, _ in results])
            self.db.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, 'computed', NULL, NULL)",
                                [(i.lease_id, i.task_id, job, price, now_ms) for i, job, price in results])
            self.db.executemany("DELETE FROM progress WHERE task_id = ?", [(i.task_id,) for i, _, _ in results])

    def pending(self, limit: int, max_bytes: int | None = None) -> list[ResultItem]:
        """The oldest unacknowledged results: at most `limit`, and at most `max_bytes` encoded (but at least one)."""
        rows = self.db.execute("SELECT item FROM pending ORDER BY added, lease_id LIMIT ?", (limit,))
        items: list[ResultItem] = []
        size = 0
        for (blob,) in rows:
            size += len(blob)
            if items and max_bytes is not None and size > max_bytes:
                break
            items.append(ResultItem.from_payload(codec.decode(blob), 0))
        return items

    def count(self) -> int:
        """How many results wait for an acknowledgement."""
        return int(self.db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def remove(self, lease_ids: list[str], acks: list[tuple[str, str]] | None = None, now_ms: int = 0) -> None:
        """Forget results the coordinator has acknowledged, noting each (status, reason), in one transaction."""
        with self._tx():
            self.db.executemany("DELETE FROM pending WHERE lease_id = ?", [(x,) for x in lease_ids])
            if acks is not None:
                self.db.executemany("UPDATE sent SET status = ?, reason = ?, acked = ? WHERE lease_id = ?",
                                    [(status, reason or None, now_ms, x) for x, (status, reason)
                                     in zip(lease_ids, acks, strict=True)])

    def set_aside(self, lease_id: str, reason: str, now_ms: int) -> None:
        """Move a result the coordinator refused as malformed out of the send queue, keeping it for inspection."""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO refused SELECT lease_id, item, ?, ? FROM pending"
                            " WHERE lease_id = ?", (reason, now_ms, lease_id))
            self.db.execute("DELETE FROM pending WHERE lease_id = ?", (lease_id,))

    def refused(self) -> list[tuple[str, str]]:
        """(lease_id, reason) of every result set aside."""
        return [(r[0], r[1]) for r in self.db.execute("SELECT lease_id, reason FROM refused ORDER BY refused")]

    # ---- partial progress ----------------------------------------------------------------------------------------

    def unfinished(self) -> list[LeaseGrant]:
        """The grants of tasks with saved progress that we still hold, least recently saved first: what to resume
        after a restart (a result on an expired lease still counts while its task is pending)."""
        grants = []
        for lease_id, blob in self.db.execute(
                "SELECT lease_id, lease FROM progress WHERE released = 0 ORDER BY saved, task_id"):
            try:
                grants.append(LeaseGrant.from_payload(codec.decode(blob), 0))
            except DepinError:
                log.warning("progress of lease %s is unreadable; it will be computed from the start", lease_id)
        return grants

    def released(self, lease_ids: list[str]) -> None:
        """Note leases given back mid-task: their progress waits for the task to be leased to us again, no longer
        listed by `unfinished`, and only the KEEP_RELEASED most recently saved are kept."""
        with self._tx():
            self.db.executemany("UPDATE progress SET released = 1 WHERE lease_id = ?", [(x,) for x in lease_ids])
            self.db.execute("DELETE FROM progress WHERE released = 1 AND task_id NOT IN (SELECT task_id FROM"
                            " progress WHERE released = 1 ORDER BY saved DESC, task_id LIMIT ?)", (KEEP_RELEASED,))

    def drop_progress(self, lease_ids: list[str]) -> None:
        """Forget the progress of tasks we will not compute (refused, or their job is over), by lease."""
        with self._tx():
            self.db.executemany("DELETE FROM progress WHERE lease_id = ?", [(x,) for x in lease_ids])

    # ---- ledger evidence ---------------------------------------------------------------------------------------

    def latest_checkpoint(self) -> Checkpoint | None:
        """The largest checkpoint this worker has verified."""
        row = self.db.execute("SELECT checkpoint FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else Checkpoint.from_json(json.loads(row[0]))

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint this worker has verified, smallest first."""
        return [Checkpoint.from_json(json.loads(r[0]))
                for r in self.db.execute("SELECT checkpoint FROM checkpoints ORDER BY size")]

    def credited(self) -> tuple[int, int]:
        """(entries, credits) of every proved entry paying this worker."""
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM credits").fetchone()
        return int(row[0]), int(row[1])

    def last_credit_seq(self) -> int:
        """The seq of the newest proved credit (-1 if none)."""
        return int(self.db.execute("SELECT COALESCE(MAX(seq), -1) FROM credits").fetchone()[0])

    def add_evidence(self, cp: Checkpoint, credits: list[tuple[dict[str, Any], list[str]]], now_ms: int) -> None:
        """Keep a verified checkpoint and the credits proved against it, in one transaction."""
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?)",
                            (cp.size, json.dumps(cp.to_json()), now_ms))
            self.db.executemany(
                "INSERT OR REPLACE INTO credits VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e["seq"], e["kind"], e["task_id"], e["amount"], json.dumps(e), json.dumps(proof), cp.size)
                 for e, proof in credits])

    def alarm(self, message: str, now_ms: int, evidence: dict[str, Any] | None = None) -> None:
        """Record what the witness caught, with the signed evidence when there is some."""
        self.db.execute("INSERT INTO alarms VALUES (?, ?, ?)",
                        (now_ms, message, None if evidence is None else json.dumps(evidence)))

    def evidence(self) -> list[dict[str, Any]]:
        """The signed evidence kept with alarms (two conflicting checkpoints and the failed proof), oldest first."""
        return [json.loads(r[0]) for r in
                self.db.execute("SELECT evidence FROM alarms WHERE evidence IS NOT NULL ORDER BY time")]

    def alarms(self) -> list[tuple[int, str]]:
        """Everything the witness caught, oldest first."""
        return [(int(r[0]), str(r[1])) for r in self.db.execute("SELECT time, message FROM alarms ORDER BY time")]

    def story(self) -> list[dict[str, Any]]:
        """Every result sent, with its acknowledgement and its proved credit, if any: sent -> validated -> credited."""
        cols = ("lease_id", "task_id", "job_id", "price", "computed", "status", "reason", "acked", "seq", "amount",
                "checkpoint")
        rows = self.db.execute(
            "SELECT s.lease_id, s.task_id, s.job_id, s.price, s.computed, s.status, s.reason, s.acked, c.seq,"
            " c.amount, c.checkpoint FROM sent s LEFT JOIN credits c ON c.kind = 'reward' AND c.task_id = s.task_id"
            " ORDER BY s.computed, s.lease_id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def close(self) -> None:
        """Close the database."""
        self.progress.close()
        self.db.close()


class ProgressStore:
    """worker.tasks.Progress on the journal's `progress` table: one row per task, replaced at each save."""

    def __init__(self, path: Path, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        # Opened here, used from whichever thread computes: sqlite3 must not tie it to this one. The lock keeps
        # two computing threads from interleaving their statements on the one connection.
        self.db = _connect(path, check_same_thread=False)
        self._clock_ms = clock_ms
        self._lock = threading.Lock()

    def load(self, checked: Checked) -> Partial | None:
        """The progress saved for this task under the very same signed task bytes, else None (also if unreadable)."""
        try:
            with self._lock:
                row = self.db.execute("SELECT lease, done, state, elapsed_ms FROM progress WHERE task_id = ?",
                                      (checked.task.task_id,)).fetchone()
        except sqlite3.Error as exc:
            log.warning("cannot read the progress of task %s: %s", checked.task.task_id, exc)
            return None
        if row is None:
            return None
        try:
            grant = LeaseGrant.from_payload(codec.decode(row[0]), 0)
            state = codec.array_from_wire(codec.decode(row[2]))
        except DepinError:
            return None
        if grant.task != checked.grant.task:
            return None
        return Partial(int(row[1]), state, int(row[3]))

    def save(self, checked: Checked, partial: Partial) -> None:
        """Durably keep a task's progress (and the grant to resume it by); a failure is logged, never raised."""
        row = (checked.task.task_id, checked.lease_id, codec.encode(checked.grant.to_payload()), partial.done,
               codec.encode(codec.array_to_wire(partial.state)), partial.elapsed_ms, self._clock_ms())
        try:
            with self._lock, _transaction(self.db):
                self.db.execute("INSERT OR REPLACE INTO progress VALUES (?, ?, ?, ?, ?, ?, ?, 0)", row)
        except sqlite3.Error as exc:
            # Progress only shortens a resume: a full disk must not stop the task (its result is journaled apart).
            log.warning("cannot save the progress of task %s: %s", checked.task.task_id, exc)

    def close(self) -> None:
        """Close this connection."""
        with self._lock:
            self.db.close()
