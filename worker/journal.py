"""The worker's journal of finished results, so no computed result is lost to a crash or an outage.

A result is written (and fsync'd: SQLite synchronous=FULL) before it is sent, and deleted only when the
coordinator's signed acknowledgement for it has been checked. On start the worker resends whatever is still here.
Resending is safe: the coordinator answers "duplicate" for a result it already has, and never pays twice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from depin import codec
from depin.errors import UserError
from depin.protocol import ResultItem


class Journal:
    """Unacknowledged results, oldest first."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS pending (lease_id TEXT PRIMARY KEY, item BLOB NOT NULL,"
                " added INTEGER NOT NULL)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS refused (lease_id TEXT PRIMARY KEY, item BLOB NOT NULL,"
                " reason TEXT NOT NULL, refused INTEGER NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot open the worker journal {path}: {exc}") from None

    def add(self, item: ResultItem, now_ms: int) -> None:
        """Durably record a finished result."""
        self.db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)",
                        (item.lease_id, codec.encode(item.to_payload()), now_ms))

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

    def remove(self, lease_ids: list[str]) -> None:
        """Forget results the coordinator has acknowledged, in one transaction (one fsync, not one per result)."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("DELETE FROM pending WHERE lease_id = ?", [(x,) for x in lease_ids])
        self.db.execute("COMMIT")

    def set_aside(self, lease_id: str, reason: str, now_ms: int) -> None:
        """Move a result the coordinator refused as malformed out of the send queue, keeping it for inspection."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT OR REPLACE INTO refused SELECT lease_id, item, ?, ? FROM pending WHERE lease_id = ?",
                        (reason, now_ms, lease_id))
        self.db.execute("DELETE FROM pending WHERE lease_id = ?", (lease_id,))
        self.db.execute("COMMIT")

    def refused(self) -> list[tuple[str, str]]:
        """(lease_id, reason) of every result set aside."""
        return [(r[0], r[1]) for r in self.db.execute("SELECT lease_id, reason FROM refused ORDER BY refused")]

    def close(self) -> None:
        """Close the database."""
        self.db.close()
