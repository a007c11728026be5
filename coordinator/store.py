"""SQLite persistence for the coordinator: rows in, rows out, one transaction per change set.

The database is in WAL mode with synchronous=FULL, so a committed change set survives SIGKILL and power loss.
`rows` turns a change set (every row the scheduler touched, the ledger entries it appended with their Merkle nodes,
and any checkpoint signed over them) into plain tuples, and `write` puts them in one transaction: either the whole
change set is durable or none of it is. The running coordinator writes through a second connection, from the group
commit's thread (coordinator.commits), the change sets of several requests at once; `save` is the same on this
connection. Ledger rows are insert-only, and a unique index makes a second reward for the same (task, worker)
impossible even if the code above had a bug. The ledger's own tables and queries live in coordinator.ledger_store,
on the same connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.ledger_store import SCHEMA_3, LedgerStore, Statement, checkpoint_statement
from coordinator.ledger_store import statements as ledger_statements
from coordinator.model import Changes, Job, Lease, Published, Result, Task, Worker
from coordinator.trust import Trust
from depin import codec
from depin.checkpoint import Checkpoint
from depin.errors import UserError

SCHEMA_VERSION = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, kernel TEXT NOT NULL, kernel_version INTEGER NOT NULL, params BLOB NOT NULL,
    n_tasks INTEGER NOT NULL, replicas INTEGER NOT NULL, max_results INTEGER NOT NULL, price INTEGER NOT NULL,
    submitter TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER,
    error TEXT, tasks_validated INTEGER NOT NULL, result BLOB
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, idx INTEGER NOT NULL, params BLOB NOT NULL,
    payload BLOB NOT NULL, sig BLOB NOT NULL, state TEXT NOT NULL, canonical BLOB
);
CREATE INDEX IF NOT EXISTS tasks_job ON tasks (job_id, idx);
CREATE TABLE IF NOT EXISTS leases (
    lease_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, job_id TEXT NOT NULL, worker_id TEXT NOT NULL,
    issued_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_job ON leases (job_id);
CREATE TABLE IF NOT EXISTS results (
    lease_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, job_id TEXT NOT NULL, worker_id TEXT NOT NULL,
    digest BLOB NOT NULL, output BLOB, verdict TEXT NOT NULL, received_ms INTEGER NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS results_job ON results (job_id);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL, validated INTEGER NOT NULL, rejected INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, kind TEXT NOT NULL, from_account TEXT NOT NULL,
    to_account TEXT NOT NULL, amount INTEGER NOT NULL, job_id TEXT, task_id TEXT,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_reward ON ledger (task_id, to_account) WHERE kind = 'reward';
"""

# Schema 2 (trust): new columns on old tables, and the trust table. Applied to a version-1 database in place.
_MIGRATE_2 = """
ALTER TABLE jobs ADD COLUMN quorum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN max_errors INTEGER NOT NULL DEFAULT 3;
UPDATE jobs SET quorum = replicas WHERE quorum = 0;
ALTER TABLE tasks ADD COLUMN quorum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN single TEXT;
UPDATE tasks SET quorum = (SELECT jobs.quorum FROM jobs WHERE jobs.job_id = tasks.job_id) WHERE quorum = 0;
ALTER TABLE results ADD COLUMN verified INTEGER;
ALTER TABLE results ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE results ADD COLUMN too_fast INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN owner TEXT;
ALTER TABLE workers ADD COLUMN address TEXT;
ALTER TABLE workers ADD COLUMN banned TEXT;
ALTER TABLE workers ADD COLUMN too_fast INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS trust (
    worker_id TEXT NOT NULL, kernel TEXT NOT NULL, consecutive_valid INTEGER NOT NULL, valid INTEGER NOT NULL,
    invalid INTEGER NOT NULL, max_speed REAL NOT NULL, samples INTEGER NOT NULL, PRIMARY KEY (worker_id, kernel)
);
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"""

# Schema 3 (escrow, Merkle tree, checkpoints): a worker's asking price, and the ledger tables of ledger_store.
_MIGRATE_3 = "ALTER TABLE workers ADD COLUMN min_price INTEGER NOT NULL DEFAULT 0;" + SCHEMA_3 + """
UPDATE meta SET value = '3' WHERE key = 'schema_version';
"""

# Schema 4 (trust that cannot be bought): lease capacity, expiries, exposure and audit counts per worker; each
# task's audit; disputes, the credits a streak was
# earned on, and its partners per trust record. (Trust's old speed columns stay, unused: speed is now compared
# like with like in memory, coordinator.speed.)
_MIGRATE_4 = """
ALTER TABLE workers ADD COLUMN capacity INTEGER NOT NULL DEFAULT 2;
ALTER TABLE workers ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN exposure INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN audits_passed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN audits_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN audit TEXT;
ALTER TABLE trust ADD COLUMN disputed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trust ADD COLUMN earned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trust ADD COLUMN partners BLOB;
UPDATE meta SET value = '4' WHERE key = 'schema_version';
"""

# Schema 5: the waits of placement and audits survive a restart: whether a task fell back to a larger untrusted
# quorum (so it never falls back twice), since when it waits for a trusted worker, and since when its audit is open.
# And a job's tasks are made as workers reach them: how many were made, in what secret order (coordinator.fresh);
# a job from before had all its tasks made at submission, in index order.
_MIGRATE_5 = """
ALTER TABLE jobs ADD COLUMN materialized INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN order_key BLOB NOT NULL DEFAULT x'';
UPDATE jobs SET materialized = n_tasks;
ALTER TABLE tasks ADD COLUMN fell_back INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN waiting_since INTEGER;
ALTER TABLE tasks ADD COLUMN audit_since INTEGER NOT NULL DEFAULT 0;
UPDATE meta SET value = '5' WHERE key = 'schema_version';
"""

# Schema 6: published kernels (docs/KERNELS.md), and the platform class a task of a homogeneous kernel is held to.
_MIGRATE_6 = """
ALTER TABLE tasks ADD COLUMN platform TEXT;
CREATE TABLE IF NOT EXISTS kernels (
    kernel_id TEXT PRIMARY KEY, source BLOB NOT NULL, name TEXT NOT NULL, publisher TEXT NOT NULL,
    published_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kernels_publisher ON kernels (publisher);
UPDATE meta SET value = '6' WHERE key = 'schema_version';
"""

_JOB_COLS = ("job_id", "kernel", "kernel_version", "params", "n_tasks", "replicas", "quorum", "max_errors",
             "max_results", "price", "submitter", "state", "created_ms", "finished_ms", "error", "tasks_validated",
             "materialized", "order_key")
_TASK_COLS = ("task_id", "job_id", "idx", "params", "payload", "sig", "quorum", "state", "canonical", "single",
              "audit", "fell_back", "waiting_since", "audit_since", "platform")
_LEASE_COLS = ("lease_id", "task_id", "job_id", "worker_id", "issued_ms", "expires_ms", "state")
_RESULT_COLS = ("lease_id", "task_id", "job_id", "worker_id", "digest", "output", "verdict", "received_ms", "error",
                "verified", "trusted", "too_fast")
_WORKER_COLS = ("worker_id", "public_key", "first_seen_ms", "last_seen_ms", "validated", "rejected", "owner",
                "address", "banned", "too_fast", "min_price", "capacity", "expired", "exposure",
                "audits_passed", "audits_failed")
_TRUST_COLS = ("worker_id", "kernel", "consecutive_valid", "valid", "invalid", "disputed", "earned", "partners",
               "max_speed", "samples")
_KERNEL_COLS = ("kernel_id", "source", "name", "publisher", "published_ms")
_FINISHED = ("done", "failed", "cancelled")


def _upsert(table: str, cols: tuple[str, ...], update: tuple[str, ...] | None = None) -> str:
    marks = ",".join("?" * len(cols))
    keep = update if update is not None else cols
    key = cols[:2] if table == "trust" else cols[:1]
    sets = ", ".join(f"{c} = excluded.{c}" for c in keep if c not in key)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}")


def _opt_bool(v: bool | None) -> int | None:
    return None if v is None else int(v)


@dataclass(frozen=True)
class Rows:
    """A change set as plain row tuples, made while the scheduler stands still, so that writing them (in another
    thread, coordinator.commits) reads nothing the next request may change."""

    statements: tuple[Statement, ...]

    def __bool__(self) -> bool:
        return any(rows for _, rows in self.statements)


def rows(ch: Changes, checkpoints: Iterable[Checkpoint] = ()) -> Rows:
    """Every row of a change set (and checkpoints signed over it), ready for `write`."""
    # A job row never changes its definition; only its progress columns are updated.
    out: list[Statement] = [
        (_upsert("jobs", _JOB_COLS, ("state", "finished_ms", "error", "tasks_validated", "materialized")),
         [(j.job_id, j.kernel, j.kernel_version, codec.encode(j.params), j.n_tasks, j.replicas, j.quorum,
           j.max_errors, j.max_results, j.price, j.submitter, j.state, j.created_ms, j.finished_ms, j.error,
           j.tasks_validated, j.materialized, j.order_key) for j in ch.jobs.values()]),
        ("UPDATE jobs SET result = ? WHERE job_id = ?", [(data, job_id) for job_id, data in ch.merged.items()]),
        (_upsert("tasks", _TASK_COLS),
         [(t.task_id, t.job_id, t.index, codec.encode(t.params), t.payload, t.sig, t.quorum, t.state,
           t.canonical, t.single, t.audit, int(t.fell_back), t.waiting_since, t.audit_since, t.platform)
          for t in ch.tasks.values()]),
        (_upsert("leases", _LEASE_COLS),
         [(x.lease_id, x.task_id, x.job_id, x.worker_id, x.issued_ms, x.expires_ms, x.state)
          for x in ch.leases.values()]),
        (_upsert("results", _RESULT_COLS),
         [(r.lease_id, r.task_id, r.job_id, r.worker_id, r.digest, r.output, r.verdict, r.received_ms,
           r.error, _opt_bool(r.verified), int(r.trusted), int(r.too_fast)) for r in ch.results.values()]),
        (_upsert("workers", _WORKER_COLS),
         [(w.worker_id, w.public_key, w.first_seen_ms, w.last_seen_ms, w.validated, w.rejected, w.owner,
           w.address, w.banned, w.too_fast, w.min_price, w.capacity, w.expired, w.exposure,
           w.audits_passed, w.audits_failed) for w in ch.workers.values()]),
        (_upsert("trust", _TRUST_COLS),
         [(t.worker_id, t.kernel, t.consecutive_valid, t.valid, t.invalid, t.disputed, t.earned,
           codec.encode(t.partners), 0.0, 0) for t in ch.trust.values()]),
        ("INSERT OR IGNORE INTO kernels VALUES (?, ?, ?, ?, ?)",
         [(k.kernel_id, k.source, k.name, k.publisher, k.published_ms) for k in ch.kernels.values()]),
        *ledger_statements(ch.entries, ch.nodes),
        *(checkpoint_statement(cp) for cp in checkpoints),
    ]
    return Rows(tuple((sql, batch) for sql, batch in out if batch))


def write(db: sqlite3.Connection, batch: Rows) -> None:
    """Write rows in one transaction (fsync'd on COMMIT): all of them are durable, or none."""
    if not batch:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, values in batch.statements:
            db.executemany(sql, values)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class Store:
    """The coordinator's database."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        try:
            if readonly:
                if not path.exists():
                    raise UserError(f"no coordinator database at {path}")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                # Every database starts as schema 1 and is migrated forward, new or old, by the same steps.
                self.db.executescript(_SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
                if self._version() in ("1", "2"):
                    self._refuse_old_money()  # before any migration step, so a refused database stays as it was
                if self._version() == "1":
                    self.db.executescript("BEGIN IMMEDIATE;" + _MIGRATE_2 + "COMMIT;")
                if self._version() == "2":
                    self.db.executescript("BEGIN IMMEDIATE;" + _MIGRATE_3 + "COMMIT;")
                if self._version() == "3":
                    self.db.executescript("BEGIN IMMEDIATE;" + _MIGRATE_4 + "COMMIT;")
                if self._version() == "4":
                    self.db.executescript("BEGIN IMMEDIATE;" + _MIGRATE_5 + "COMMIT;")
                if self._version() == "5":
                    self.db.executescript("BEGIN IMMEDIATE;" + _MIGRATE_6 + "COMMIT;")
            version = self._version()
            if version is None or int(version) != SCHEMA_VERSION:
                raise UserError(f"{path} has schema version {version}, this depin needs {SCHEMA_VERSION}")
        except (sqlite3.DatabaseError, UserError) as exc:
            if hasattr(self, "db"):
                self.db.close()
            if isinstance(exc, UserError):
                raise
            raise UserError(f"cannot open coordinator database {path}: {exc}") from None
        self.ledger = LedgerStore(self.db)
        if not readonly:
            self.ledger.repair()

    def _version(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _refuse_old_money(self) -> None:
        # Schema 2 paid rewards out of thin air and had no escrow: such a ledger breaks the money rules of schema 3,
        # and an unfinished job of it has no escrow to pay from. Carrying either forward would forge history.
        entries = self.db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
        running = self.db.execute(f"SELECT COUNT(*) FROM jobs WHERE state NOT IN {_FINISHED}").fetchone()[0]
        if entries or running:
            raise UserError(
                f"{self.path} holds a ledger from before escrow ({entries} entries, {running} unfinished jobs),"
                " which this depin cannot carry forward; keep it with `depin ledger export` from the old version"
                " and start this one on a new data dir")

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # ---- writing -----------------------------------------------------------------------------------------

    def save(self, ch: Changes) -> None:
        """Persist a change set atomically, on this connection."""
        write(self.db, rows(ch))

    def writer(self) -> sqlite3.Connection:
        """A second connection for `write` from one other thread (the group commit's, coordinator.commits); the
        reads of this Store go on meanwhile and see each commit whole, once it is done (WAL)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=FULL")  # per connection: every commit of the writer is fsync'd too
        return db

    # ---- reading -----------------------------------------------------------------------------------------

    def _rows(self, table: str, cols: tuple[str, ...], where: str = "", args: tuple[Any, ...] = ()
              ) -> Iterator[dict[str, Any]]:
        for row in self.db.execute(f"SELECT {', '.join(cols)} FROM {table} {where}", args):
            yield dict(zip(cols, row, strict=True))

    def load(self) -> dict[str, Any]:
        """Every row Scheduler.restore needs: all jobs and workers, and the tasks/leases/results of unfinished jobs."""
        jobs = [Job(**{**r, "params": codec.decode(r["params"])})
                for r in self._rows("jobs", _JOB_COLS, "ORDER BY created_ms, job_id")]
        open_ids = tuple(j.job_id for j in jobs if j.state not in _FINISHED)
        where = f"WHERE job_id IN ({','.join('?' * len(open_ids))})"
        tasks = [Task(**{k: v for k, v in r.items() if k not in ("idx", "params", "fell_back")}, index=r["idx"],
                      params=codec.decode(r["params"]), fell_back=bool(r["fell_back"]))
                 for r in self._rows("tasks", _TASK_COLS, where, open_ids)]
        leases = [Lease(**r) for r in self._rows("leases", _LEASE_COLS, where, open_ids)]
        results = [Result(**{**r, "verified": None if r["verified"] is None else bool(r["verified"]),
                             "trusted": bool(r["trusted"]), "too_fast": bool(r["too_fast"])})
                   for r in self._rows("results", _RESULT_COLS, where, open_ids)]
        workers = [Worker(**r) for r in self._rows("workers", _WORKER_COLS)]
        trust = [Trust(**{k: v for k, v in r.items() if k not in ("max_speed", "samples", "partners")},
                       partners=codec.decode(r["partners"]) if r["partners"] else {})
                 for r in self._rows("trust", _TRUST_COLS)]
        published = [Published(**r) for r in self._rows("kernels", _KERNEL_COLS, "ORDER BY published_ms, kernel_id")]
        return {"jobs": jobs, "tasks": tasks, "leases": leases, "results": results, "workers": workers,
                "trust": trust, "book": self.ledger.book(open_ids), "published": published}

    def result_verdict(self, lease_id: str) -> tuple[str, str, bytes, str] | None:
        """(worker_id, task_id, digest, verdict) of a stored result, if any."""
        row = self.db.execute("SELECT worker_id, task_id, digest, verdict FROM results WHERE lease_id = ?",
                              (lease_id,))
        found = row.fetchone()
        return None if found is None else (found[0], found[1], found[2], found[3])

    def state_counts(self, table: str, job_id: str) -> dict[str, int]:
        """How many of a job's tasks or leases are in each state."""
        assert table in ("tasks", "leases")
        rows = self.db.execute(f"SELECT state, COUNT(*) FROM {table} WHERE job_id = ? GROUP BY state", (job_id,))
        return {state: int(n) for state, n in rows}

    def audit_counts(self, job_id: str) -> dict[str, int]:
        """How many of a job's tasks were audited, by audit state (coordinator.auditing)."""
        rows = self.db.execute("SELECT audit, COUNT(*) FROM tasks WHERE job_id = ? AND audit IS NOT NULL"
                               " GROUP BY audit", (job_id,))
        return {state: int(n) for state, n in rows}

    def job_result(self, job_id: str) -> bytes | None:
        """The merged output of a done job, as wire msgpack."""
        row = self.db.execute("SELECT result FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def worker_results(self, worker_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """A worker's results, oldest first, with the price and policy of their jobs (for receipts)."""
        cols = ("lease_id", "task_id", "job_id", "verdict", "received_ms", "error", "kernel", "kernel_version",
                "price", "quorum")
        rows = self.db.execute(
            "SELECT r.lease_id, r.task_id, r.job_id, r.verdict, r.received_ms, r.error, j.kernel, j.kernel_version,"
            " j.price, j.quorum FROM results r JOIN jobs j ON j.job_id = r.job_id WHERE r.worker_id = ?"
            " ORDER BY r.received_ms, r.lease_id LIMIT ? OFFSET ?", (worker_id, limit, offset))
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def job_results(self, job_id: str) -> list[dict[str, Any]]:
        """Every result of a job, in arrival order (for provenance)."""
        cols = ("lease_id", "task_id", "worker_id", "digest", "verdict", "received_ms", "error")
        return list(self._rows("results", cols, "WHERE job_id = ? ORDER BY received_ms, lease_id", (job_id,)))

    def job_tasks(self, job_id: str) -> list[dict[str, Any]]:
        """Every task of a job in index order, with its validated output (for provenance)."""
        return list(self._rows("tasks", ("task_id", "idx", "state", "canonical", "audit"),
                               "WHERE job_id = ? ORDER BY idx", (job_id,)))
