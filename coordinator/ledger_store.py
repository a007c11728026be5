"""The ledger's share of the coordinator database: entries, Merkle nodes, signed checkpoints, and their queries.

It works on the Store's connection and inside the Store's transactions: a change set's entries and the Merkle nodes
they complete are written by `write` in the same transaction as the rest of the change set. The `merkle` table keeps
every perfect subtree hash (about two rows per entry), so an inclusion or consistency proof at any size reads
O(log^2 n) rows and never rehashes the log; it is also a `merkle.NodeSource`. On open, `repair` rebuilds the tree if
it does not match the stored entries (a database from before the tree existed, or edited by hand).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from depin import accounts, checkpoint, ledger, merkle
from depin.errors import LedgerError

SCHEMA_3 = """
CREATE TABLE IF NOT EXISTS merkle (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, time INTEGER NOT NULL, sig BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_to ON ledger (to_account, seq);
CREATE INDEX IF NOT EXISTS ledger_job ON ledger (job_id, seq);
CREATE INDEX IF NOT EXISTS results_worker ON results (worker_id, received_ms);
"""

_COLS = "seq, time, kind, from_account, to_account, amount, job_id, task_id, prev_hash, hash"


def _entry(r: tuple[Any, ...]) -> ledger.Entry:
    return ledger.Entry(seq=r[0], time=r[1], kind=r[2], from_=r[3], to=r[4], amount=r[5], job_id=r[6],
                        task_id=r[7], prev_hash=r[8], hash=r[9])


Statement = tuple[str, list[tuple[Any, ...]]]


def statements(entries: Iterable[ledger.Entry], nodes: Iterable[tuple[int, int, bytes]]) -> list[Statement]:
    """The inserts of entries and the Merkle nodes they complete, as (sql, rows) for executemany."""
    return [(f"INSERT INTO ledger ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
             [(e.seq, e.time, e.kind, e.from_, e.to, e.amount, e.job_id, e.task_id, e.prev_hash, e.hash)
              for e in entries]),
            ("INSERT INTO merkle VALUES (?,?,?)", list(nodes))]


def checkpoint_statement(cp: checkpoint.Checkpoint) -> Statement:
    """The insert that keeps a signed checkpoint (a later signature of the same size replaces the older)."""
    return "INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?)", [(cp.size, cp.root, cp.time, cp.sig)]


class LedgerStore:
    """Ledger rows of one database connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    # ---- writing (inside the caller's transaction) ---------------------------------------------------------

    def write(self, entries: Iterable[ledger.Entry], nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Insert entries and the Merkle nodes they complete."""
        for sql, rows in statements(entries, nodes):
            self.db.executemany(sql, rows)

    def add_checkpoint(self, cp: checkpoint.Checkpoint) -> None:
        """Keep a signed checkpoint (its own small transaction)."""
        sql, rows = checkpoint_statement(cp)
        self.db.executemany(sql, rows)

    def repair(self) -> int:
        """Rebuild the Merkle table from the entries unless it fits them; return the number of entries.

        The check reads O(log n) rows besides one count, so start-up stays fast at millions of entries: the row
        count, the newest entry's leaf (any edit of an entry that keeps the chain linked changes the newest hash),
        and every frontier node present. A rebuild reads every entry once. A node corrupted in place is not found
        here, but no proof through it verifies against a root computed from the entries."""
        size = self.size()
        if not self._fits(size):
            with self._tx():
                self.db.execute("DELETE FROM merkle")
                frontier = merkle.Frontier()
                for (hash_hex,) in self.db.execute("SELECT hash FROM ledger ORDER BY seq").fetchall():
                    self.db.executemany("INSERT INTO merkle VALUES (?,?,?)", frontier.append(ledger.leaf_of(hash_hex)))
        return size

    def _fits(self, size: int) -> bool:
        expected_rows = sum(size >> level for level in range(size.bit_length()))
        if self.db.execute("SELECT COUNT(*) FROM merkle").fetchone()[0] != expected_rows:
            return False
        head = self.head()
        if head is not None:
            row = self.db.execute("SELECT hash FROM merkle WHERE level = 0 AND idx = ?", (head.seq,)).fetchone()
            if row is None or bytes(row[0]) != ledger.leaf_of(head.hash):
                return False
        try:
            merkle.Frontier.from_source(self, size)
        except LedgerError:  # a frontier node is missing
            return False
        return True

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- the Merkle tree -----------------------------------------------------------------------------------

    def node(self, level: int, index: int) -> bytes:
        """A stored perfect-subtree hash (merkle.NodeSource)."""
        row = self.db.execute("SELECT hash FROM merkle WHERE level = ? AND idx = ?", (level, index)).fetchone()
        if row is None:
            raise LedgerError(f"Merkle node ({level}, {index}) is missing from the database")
        return bytes(row[0])

    def size(self) -> int:
        """Entries in the ledger."""
        head = self.head()
        return 0 if head is None else head.seq + 1

    def book(self, open_jobs: Iterable[str]) -> ledger.Book:
        """The running ledger state: head, balances, escrows, and the tree's frontier."""
        acc = accounts.Accounts()
        rows = self.db.execute(
            "SELECT account, SUM(delta) FROM (SELECT to_account AS account, amount AS delta FROM ledger"
            " UNION ALL SELECT from_account, -amount FROM ledger) GROUP BY account")
        acc.balances = {a: int(v) for a, v in rows if v}
        closed = {r[0] for r in self.db.execute("SELECT job_id FROM ledger WHERE kind = 'refund'")}
        open_set = set(open_jobs)
        for job_id, funder in self.db.execute("SELECT job_id, from_account FROM ledger WHERE kind = 'escrow'"):
            rewarded: set[tuple[str, str]] = set()
            if job_id in open_set:
                rewarded = {(t, w) for t, w in self.db.execute(
                    "SELECT task_id, to_account FROM ledger WHERE job_id = ? AND kind = 'reward'", (job_id,))}
            acc.restore_escrow(job_id, funder, job_id in closed, rewarded)
        # A slash may follow its job's end, so every (task, bonded party) pair ever slashed is kept, open job or not.
        acc.restore_slashes((t, src.removeprefix(accounts.BOND_PREFIX)) for t, src in self.db.execute(
            "SELECT task_id, from_account FROM ledger WHERE kind = 'slash'"))
        head = self.head()
        size = 0 if head is None else head.seq + 1
        return ledger.Book(head, acc, merkle.Frontier.from_source(self, size))

    # ---- reading -------------------------------------------------------------------------------------------

    def head(self) -> ledger.Entry | None:
        """The newest entry."""
        row = self.db.execute(f"SELECT {_COLS} FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else _entry(row)

    def entry(self, seq: int) -> ledger.Entry | None:
        """Entry `seq`, if there is one."""
        row = self.db.execute(f"SELECT {_COLS} FROM ledger WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else _entry(row)

    def entries(self, start: int = 0, limit: int | None = None) -> Iterator[ledger.Entry]:
        """Entries in seq order from `start`."""
        for r in self.db.execute(f"SELECT {_COLS} FROM ledger WHERE seq >= ? ORDER BY seq LIMIT ?",
                                 (start, -1 if limit is None else limit)):
            yield _entry(r)

    def credits_to(self, account: str, after: int, limit: int) -> list[ledger.Entry]:
        """Entries paying `account` with seq > after, oldest first."""
        rows = self.db.execute(f"SELECT {_COLS} FROM ledger WHERE to_account = ? AND seq > ? ORDER BY seq LIMIT ?",
                               (account, after, limit))
        return [_entry(r) for r in rows]

    def of_job(self, job_id: str) -> list[ledger.Entry]:
        """Every entry about one job (escrow, rewards, refund), in order."""
        return [_entry(r) for r in self.db.execute(f"SELECT {_COLS} FROM ledger WHERE job_id = ? ORDER BY seq",
                                                   (job_id,))]

    def reward_for(self, task_id: str, worker_id: str) -> ledger.Entry | None:
        """The reward a worker got for a task, if any."""
        row = self.db.execute(f"SELECT {_COLS} FROM ledger WHERE kind = 'reward' AND task_id = ? AND to_account = ?",
                              (task_id, worker_id)).fetchone()
        return None if row is None else _entry(row)

    def latest_checkpoint(self, coordinator: str) -> checkpoint.Checkpoint | None:
        """The newest signed checkpoint."""
        row = self.db.execute("SELECT size, root, time, sig FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else checkpoint.Checkpoint(coordinator, row[0], bytes(row[1]), row[2],
                                                              bytes(row[3]))

    def checkpoint_at(self, coordinator: str, size: int) -> checkpoint.Checkpoint | None:
        """The signed checkpoint of exactly `size` entries, if one was made."""
        row = self.db.execute("SELECT size, root, time, sig FROM checkpoints WHERE size = ?", (size,)).fetchone()
        return None if row is None else checkpoint.Checkpoint(coordinator, row[0], bytes(row[1]), row[2],
                                                              bytes(row[3]))
