"""The worker's journal: finished results until acknowledged, what became of each, and the ledger evidence.

A result is written (and fsync'd: SQLite synchronous=FULL) before it is sent, and deleted from `pending` only when
the coordinator's signed acknowledgement for it has been checked. On start the worker resends whatever is still
there. Resending is safe: the coordinator answers "duplicate" for a result it already has, and never pays twice.
`sent` keeps every result's story (computed, acknowledged how); `checkpoints` every ledger checkpoint the worker
verified; `credits` every ledger entry paying this worker, with the inclusion proof that was checked; `alarms`
what the witness caught (worker.witness).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from depin import codec
from depin.checkpoint import Checkpoint
from depin.errors import UserError
from depin.protocol import ResultItem

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
"""


class Journal:
    """Unacknowledged results, oldest first."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_TABLES)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(alarms)")}
            if "evidence" not in columns:  # a journal from before alarms kept their evidence
                self.db.execute("ALTER TABLE alarms ADD COLUMN evidence TEXT")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot open the worker journal {path}: {exc}") from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        # One transaction (one fsync), rolled back on any error so the connection stays usable.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def add(self, item: ResultItem, now_ms: int, job_id: str = "", price: int = 0) -> None:
        """Durably record a finished result (and start its story in `sent`)."""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)",
                            (item.lease_id, codec.encode(item.to_payload()), now_ms))
            self.db.execute("INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, 'computed', NULL, NULL)",
                            (item.lease_id, item.task_id, job_id, price, now_ms))

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
        self.db.close()
