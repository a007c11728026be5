"""Benchmark: the critical paths of the scale-out design (docs/SCALING.md) on PostgreSQL, against SQLite.

    .venv/bin/pip install -e '.[scale]'                       # psycopg 3, only for this benchmark
    .venv/bin/python benchmarks/bench_scaleout.py             # N = 1,2,4,8; 3 runs of 3 s each (~15 minutes)
    .venv/bin/python benchmarks/bench_scaleout.py --quick     # N = 1,2; 1 run of 1 s (a smoke run)

N "coordinators" are N processes (multiprocessing), each with its own connection to one PostgreSQL database,
`depin_bench`, created at start and dropped at the end (PostgreSQL on 127.0.0.1:5432, trust auth, as user
postgres or root). No depin coordinator runs: each process executes the SQL that docs/SCALING.md puts on the
critical path, back to back, for `--seconds`. Every figure is the median of `--runs` runs; each run starts from
freshly loaded tables.

1. Leasing. Table `slots` is depin's tasks table with one row per replica slot (job_id, idx, slot, state,
   leased_by, lease_expires; 100,000 tasks x 2 slots of one job), with a partial index on the offered slots in
   walk order. `leases` starts with 200,000 rows of ended jobs, indexed by (worker, job, task) for the "never the
   same task twice" check. One lease request of worker W (drawn from 100,000 worker ids, each with a `workers`
   row) for k tasks is one transaction of one statement: take up to k offered slots from a random task on
   (wrapping around: the random entry of PROTOCOL.md 12.1) that W does not hold, `FOR UPDATE SKIP LOCKED`; mark
   them leased; insert the lease rows; add to W's active count; commit. Variants: every request starting at task
   0 (the textbook queue, where all processes contend for the same rows), and a `pg_notify` in each lease
   transaction (what waking a drawn worker's long poll through LISTEN/NOTIFY would cost).
2. Results and ledger appends. One validation = 2 result rows, 1 task row and 2 reward entries. Entries are made
   by depin's own code (`ledger.make_entry`: canonical msgpack and SHA-256, chained to the previous entry;
   `merkle.Frontier.append` for the Merkle nodes they complete) and stored as depin stores them (`ledger` with
   its three indexes, `merkle`). The money rules (`Accounts.apply`, ~1.5 us per entry, RESULTS.md 4) are left
   out everywhere. Three designs:
   - "row lock": each process appends under one global head row (size, head hash, Merkle frontier) locked
     `FOR UPDATE` from before the first hash to the commit, V validations per transaction;
   - "sequencer": each process commits its results with their entries as `postings` (no seq, no hash; ordered
     within a job by the job_seq its owner assigns), taking no shared lock; one more process, the sequencer,
     drains up to SEQ_BATCH postings per transaction in per-job order, chains and hashes them, writes `ledger`
     and `merkle` and deletes the postings. Reported: validations committed by the N producers, entries chained
     by the sequencer, and the lag from a posting's insert to its entry's commit. Also the sequencer alone on a
     backlog, with depin's `make_entry` and with the fixed layout of LEDGER.md 3.1 (checked to give the same
     hashes), and the serial part alone (chain + Merkle in memory);
   - SQLite: the same rows in one process (WAL, synchronous=FULL, a file on the real disk), the chain kept in
     memory, as depin's coordinator does today.
   Each process owns its own jobs (the design's single writer per job).

Also reported per operation: PostgreSQL's CPU (all `postgres` processes, from /proc), the client processes' CPU,
WAL bytes and WAL syncs (`pg_stat_wal`, machine-wide); "other load" is what the rest of the machine used, in
cores. If PostgreSQL cannot be reached, or psycopg is not installed, the script prints one `skip:` line and exits
0.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing as mp
import os
import pathlib
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
from _common import machine, revision  # noqa: E402
from bench_pipeline import _cpu_seconds, _machine_busy_seconds  # noqa: E402  (shared, as bench_ledger does)

from depin import ledger, merkle  # noqa: E402

try:
    import psycopg
except ImportError:  # an optional extra: `pip install -e '.[scale]'`
    psycopg = None  # type: ignore[assignment]

DB = "depin_bench"
HOST, PORT, USERS = "127.0.0.1", 5432, ("postgres", "root")
TASKS = 100_000
WORKERS = 100_000
PRICE = 10
T0_MS = 1_763_700_000_000
SEQ_BATCH = 2048
BACKLOG = 120_000

LEASE_SCHEMA = """
CREATE TABLE slots (
    job_id text NOT NULL, idx integer NOT NULL, slot smallint NOT NULL, state smallint NOT NULL,
    leased_by text, lease_expires bigint, PRIMARY KEY (job_id, idx, slot)
);
CREATE INDEX slots_offered ON slots (job_id, slot, idx) WHERE state = 0;
CREATE TABLE leases (
    lease_id bigserial PRIMARY KEY, job_id text NOT NULL, idx integer NOT NULL, worker_id text NOT NULL,
    issued_ms bigint NOT NULL, expires_ms bigint NOT NULL
);
CREATE INDEX leases_worker ON leases (worker_id, job_id, idx);
CREATE TABLE workers (worker_id text PRIMARY KEY, active integer NOT NULL, capacity integer NOT NULL);
"""

LEDGER_SCHEMA = """
CREATE TABLE results (
    lease_id bigint PRIMARY KEY, job_id text NOT NULL, task_id text NOT NULL, worker_id text NOT NULL,
    digest bytea NOT NULL, verdict smallint NOT NULL, received_ms bigint NOT NULL
);
CREATE TABLE vtasks (task_id text PRIMARY KEY, job_id text NOT NULL, state smallint NOT NULL);
CREATE TABLE ledger (
    seq bigint PRIMARY KEY, time bigint NOT NULL, kind text NOT NULL, from_account text NOT NULL,
    to_account text NOT NULL, amount bigint NOT NULL, job_id text, task_id text, prev_hash text NOT NULL,
    hash text NOT NULL
);
CREATE UNIQUE INDEX ledger_one_reward ON ledger (task_id, to_account) WHERE kind = 'reward';
CREATE INDEX ledger_to ON ledger (to_account, seq);
CREATE INDEX ledger_job ON ledger (job_id, seq);
CREATE TABLE merkle (level integer NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY (level, idx));
CREATE TABLE ledger_head (one integer PRIMARY KEY CHECK (one = 1), size bigint NOT NULL, hash text,
                          frontier bytea[] NOT NULL);
CREATE TABLE postings (
    id bigserial PRIMARY KEY, job_id text NOT NULL, job_seq integer NOT NULL, time bigint NOT NULL,
    kind text NOT NULL, from_account text NOT NULL, to_account text NOT NULL, amount bigint NOT NULL,
    task_id text, posted double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
    UNIQUE (job_id, job_seq)
);
CREATE UNIQUE INDEX postings_one_reward ON postings (task_id, to_account) WHERE kind = 'reward';
"""

LEASE_SQL = """
WITH picked AS (
    SELECT s.job_id, s.idx, s.slot FROM slots s
    WHERE s.job_id = %(job)s AND s.state = 0 AND (s.slot, s.idx) {op} (0, %(start)s)
      AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_id = s.job_id AND l.idx = s.idx AND l.worker_id = %(w)s)
    ORDER BY s.slot, s.idx LIMIT %(k)s
    FOR UPDATE OF s SKIP LOCKED
), granted AS (
    UPDATE slots s SET state = 1, leased_by = %(w)s, lease_expires = %(exp)s FROM picked p
    WHERE s.job_id = p.job_id AND s.idx = p.idx AND s.slot = p.slot RETURNING s.job_id, s.idx
), counted AS (
    UPDATE workers SET active = active + (SELECT count(*) FROM granted) WHERE worker_id = %(w)s
)
INSERT INTO leases (job_id, idx, worker_id, issued_ms, expires_ms)
SELECT job_id, idx, %(w)s, %(now)s, %(exp)s FROM granted RETURNING lease_id
"""

# Rows go in by COPY: a quarter of the client CPU of executemany or INSERT ... unnest (5 against 19 us per row).
COPY_RESULTS = "COPY results FROM STDIN"
COPY_VTASKS = "COPY vtasks FROM STDIN"
COPY_LEDGER = "COPY ledger FROM STDIN"
COPY_MERKLE = "COPY merkle FROM STDIN"
COPY_POSTINGS = "COPY postings (job_id, job_seq, time, kind, from_account, to_account, amount, task_id) FROM STDIN"
SQLITE_RESULT = "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)"
SQLITE_VTASK = "INSERT INTO vtasks VALUES (?, ?, ?)"
SQLITE_ENTRY = "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SQLITE_NODE = "INSERT INTO merkle VALUES (?, ?, ?)"


# ---- identities and the shape of the work -----------------------------------------------------------------------


def _party(rng: random.Random) -> str:
    return base64.b32encode(rng.randbytes(20)).decode().lower()


def _workers(seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [_party(rng) for _ in range(WORKERS)]


JOB = "00000000000000a0"


class Owner:
    """The validations one coordinator process makes for the jobs it owns: task ids, lease ids, two workers each."""

    def __init__(self, proc: int, workers: Sequence[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.workers = workers
        self.jobs = [f"{proc:08x}{j:08x}" for j in range(4)]
        self.job_seq = dict.fromkeys(self.jobs, 0)
        self.n = 0
        self.lease_base = (proc + 1) * 10**12

    def validations(self, v: int) -> list[tuple[str, str, list[tuple[int, str]]]]:
        """v validated tasks: (job_id, task_id, [(lease_id, worker_id), (lease_id, worker_id)])."""
        out = []
        for _ in range(v):
            job = self.jobs[self.n % len(self.jobs)]
            pair = self.rng.sample(self.workers, 2)
            out.append((job, f"{job}-{self.n}", [(self.lease_base + 2 * self.n + j, w) for j, w in enumerate(pair)]))
            self.n += 1
        return out

    def rows(self, vals: Sequence[tuple[str, str, list[tuple[int, str]]]]) -> tuple[list[tuple[Any, ...]], ...]:
        """Result rows and task rows of these validations."""
        now = T0_MS + self.n
        results = [(lease, job, task, w, self.rng.randbytes(32), 1, now) for job, task, pair in vals
                   for lease, w in pair]
        tasks = [(task, job, 2) for job, task, _ in vals]
        return results, tasks


_PACK = msgpack.Packer(use_bin_type=True)
_KEYS = [_PACK.pack(k) for k in ("amount", "from", "job_id", "kind", "prev_hash", "seq", "task_id", "time", "to")]


def fixed_entry_hash(seq: int, t: int, kind: str, frm: str, to: str, amount: int, job: str | None, task: str | None,
                     prev_hash: str) -> str:
    """LEDGER.md 3.1 spelled out for the one shape an entry has: the nine pairs in their fixed order."""
    p = _PACK.pack
    body = b"".join((b"\x89", _KEYS[0], p(amount), _KEYS[1], p(frm), _KEYS[2], p(job), _KEYS[3], p(kind), _KEYS[4],
                     p(prev_hash), _KEYS[5], p(seq), _KEYS[6], p(task), _KEYS[7], p(t), _KEYS[8], p(to)))
    return hashlib.sha256(ledger.HASH_DOMAIN + body).hexdigest()


class Chain:
    """The global chain's head and Merkle frontier; `extend` makes entries and their rows.

    fixed=False makes each entry with depin's `ledger.make_entry` (generic canonical encoder, shape checks);
    fixed=True with `fixed_entry_hash`, the same bytes (checked against make_entry by `chain_cost`).
    """

    def __init__(self, size: int = 0, head_hash: str | None = None, frontier: Sequence[bytes] = (), *,
                 fixed: bool = False) -> None:
        self.prev: Any = None if size == 0 else SimpleNamespace(seq=size - 1, hash=head_hash)
        self.frontier = merkle.Frontier(size, list(frontier))
        self.fixed = fixed

    @property
    def size(self) -> int:
        return self.frontier.size

    def extend(self, postings: Sequence[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[int, int, bytes]]]:
        """postings: (time, from, to, amount, job_id, task_id) rewards, in order; returns ledger and merkle rows."""
        entries, nodes = [], []
        seq = self.size
        prev_hash = ledger.GENESIS_PREV if self.prev is None else self.prev.hash
        for t, frm, to, amount, job, task in postings:
            if self.fixed:
                h = fixed_entry_hash(seq, t, "reward", frm, to, amount, job, task, prev_hash)
            else:
                h = ledger.make_entry(self.prev, time=t, kind="reward", from_=frm, to=to, amount=amount,
                                      job_id=job, task_id=task).hash
            nodes += self.frontier.append(ledger.leaf_of(h))
            entries.append((seq, t, "reward", frm, to, amount, job, task, prev_hash, h))
            self.prev = SimpleNamespace(seq=seq, hash=h)
            seq, prev_hash = seq + 1, h
        return entries, nodes

    def head(self) -> tuple[int, str | None, list[bytes]]:
        return self.size, None if self.prev is None else self.prev.hash, list(self.frontier.hashes)


def chain_cost(n: int, workers: Sequence[str]) -> dict[str, float]:
    """CPU us per entry of the sequencer's serial part alone (chain + Merkle, in memory), with each encoder."""
    posts = [(T0_MS + j, f"escrow:{j % 64:016x}", workers[j * 7919 % len(workers)], PRICE, f"{j % 64:016x}",
              f"{j % 64:016x}-{j // 128}") for j in range(n)]
    out, rows = {}, {}
    for fixed in (False, True):
        chain = Chain(fixed=fixed)
        t = time.process_time()
        rows[fixed] = chain.extend(posts)
        out["fixed" if fixed else "make_entry"] = 1e6 * (time.process_time() - t) / n
    assert rows[False] == rows[True], "the fixed-layout encoder must give the same entries and nodes"
    return out


def _rewards(vals: Sequence[tuple[str, str, list[tuple[int, str]]]], now: int) -> list[tuple[Any, ...]]:
    return [(now, f"escrow:{job}", w, PRICE, job, task) for job, task, pair in vals for _, w in pair]


# ---- PostgreSQL plumbing ----------------------------------------------------------------------------------------


def _connect(dbname: str, **kw: Any) -> Any:
    """A connection as the first user that works (trust auth); raises the last error if none does."""
    error: Exception | None = None
    for user in USERS:
        try:
            return psycopg.connect(host=HOST, port=PORT, user=user, dbname=dbname, connect_timeout=3, **kw)
        except psycopg.OperationalError as e:
            error = e
    assert error is not None
    raise error


def _copy(cur: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    with cur.copy(sql) as cp:
        for r in rows:
            cp.write_row(r)


def _admin(sql: str) -> None:
    with _connect("test", autocommit=True) as c:
        c.execute(sql)


def _admin_db(sql: str) -> None:
    with _connect(DB, autocommit=True) as c:
        c.execute(sql)


def _pg_pids() -> list[int]:
    pids = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "postgres":
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def _pg_cpu() -> dict[int, float]:
    out = {}
    for pid in _pg_pids():
        try:
            out[pid] = _cpu_seconds(pid)
        except (OSError, IndexError):
            pass
    return out


def _wal() -> tuple[int, int]:
    """(WAL bytes, WAL syncs) so far, machine-wide."""
    with _connect(DB, autocommit=True) as c:
        row = c.execute("SELECT wal_bytes::bigint, wal_sync FROM pg_stat_wal").fetchone()
    return int(row[0]), int(row[1])


def _pg_settings() -> str:
    with _connect(DB, autocommit=True) as c:
        names = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_sync_method",
                 "commit_delay", "autovacuum")
        vals = [c.execute(f"SHOW {n}").fetchone()[0] for n in names]
    pairs = zip(names, vals, strict=True)
    return "PostgreSQL " + ", ".join(v if n == "server_version" else f"{n} {v}" for n, v in pairs)


# ---- one run: N processes against the database ------------------------------------------------------------------


def _child(body: Callable[..., dict[str, Any]], i: int, args: tuple[Any, ...], seconds: float,
           start: Any, done: Any, out: Any) -> None:
    setup = body(i, *args)            # connect and prepare, before the clock starts
    start.wait()
    t_end = time.monotonic() + seconds
    cpu0 = time.process_time()
    report = setup(t_end)
    report["cpu"] = time.process_time() - cpu0
    out.put((i, report))
    done.wait(timeout=600)            # the parent reads the backends' CPU before they exit with this process


def run_procs(bodies: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], seconds: float) -> dict[str, Any]:
    """Run one process per body for `seconds`; their reports, plus PostgreSQL and machine CPU and WAL over the run."""
    ctx = mp.get_context("fork")
    start, done, out = ctx.Barrier(len(bodies) + 1), ctx.Barrier(len(bodies) + 1), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(b, i, a, seconds, start, done, out), daemon=True)
             for i, (b, a) in enumerate(bodies)]
    for p in procs:
        p.start()
    wal0 = _wal()
    start.wait()
    t0, busy0, pg0 = time.monotonic(), _machine_busy_seconds(), _pg_cpu()
    reports = dict(out.get(timeout=seconds + 120) for _ in procs)
    wall, busy1, pg1 = time.monotonic() - t0, _machine_busy_seconds(), _pg_cpu()
    done.wait()
    for p in procs:
        p.join()
    time.sleep(0.3)  # backends flush their WAL statistics as they exit
    wal1 = _wal()
    pg_cpu = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    client_cpu = sum(r["cpu"] for r in reports.values())
    for r in reports.values():  # each process's own backend, so that a sequencer's share can be told apart
        r["pg_cpu"] = pg1.get(r["backend"], 0.0) - pg0.get(r["backend"], 0.0)
    return {"reports": [reports[i] for i in range(len(procs))], "wall": wall, "pg_cpu": pg_cpu,
            "client_cpu": client_cpu, "other": (busy1 - busy0 - pg_cpu - client_cpu) / wall,
            "wal_bytes": wal1[0] - wal0[0], "wal_syncs": wal1[1] - wal0[1]}


# ---- 1. leasing -------------------------------------------------------------------------------------------------


def load_workers() -> None:
    """One row per worker, once: a lease request updates its worker's row."""
    with _connect(DB) as c, c.cursor().copy("COPY workers FROM STDIN") as cp:
        for w in _workers():
            cp.write_row((w, 0, 1024))


def load_slots() -> int:
    """Fresh offered slots and lease history for one run; the bytes the slots take."""
    with _connect(DB) as c:
        c.execute("TRUNCATE slots, leases RESTART IDENTITY")
        c.execute("INSERT INTO slots SELECT %s, i, r, 0 FROM generate_series(0, %s) i, generate_series(0, 1) r",
                  (JOB, TASKS - 1))
        # Leases of jobs that ended: a real leases table is never empty, and a plan made for an empty one (a
        # sequential scan in the anti-join) would be kept by the prepared statement while the table grows.
        c.execute("INSERT INTO leases (job_id, idx, worker_id, issued_ms, expires_ms) SELECT"
                  " 'f' || lpad(to_hex(i / 1000), 15, '0'), i %% 1000, substr(md5(i::text), 1, 32), 0, 0"
                  " FROM generate_series(0, %s) i", (2 * TASKS - 1,))
        c.commit()
        c.autocommit = True
        c.execute("VACUUM ANALYZE slots, leases, workers")
        return int(c.execute("SELECT pg_total_relation_size('slots')").fetchone()[0])


def lease_pg(i: int, k: int, head: bool, notify: bool) -> Callable[[float], dict[str, Any]]:
    conn, rng, workers = _connect(DB), random.Random(100 + i), _workers()
    first, wrap = LEASE_SQL.format(op=">="), LEASE_SQL.format(op="<")

    def loop(t_end: float) -> dict[str, Any]:
        lat, leases, txs = [], 0, 0
        while time.monotonic() < t_end:
            w, now = rng.choice(workers), T0_MS + txs
            start = 0 if head else rng.randrange(TASKS)
            t = time.perf_counter()
            p = {"job": JOB, "start": start, "w": w, "k": k, "now": now, "exp": now + 60_000}
            got = len(conn.execute(first, p).fetchall())
            if got < k and start > 0:
                got += len(conn.execute(wrap, p | {"k": k - got}).fetchall())
            if notify:  # what a grant would send to wake a drawn worker's long poll, inside the transaction
                conn.execute("SELECT pg_notify('wake', %s)", (w,))
            conn.commit()
            lat.append(time.perf_counter() - t)
            leases, txs = leases + got, txs + 1
            if got == 0:
                return {"ops": leases, "txs": txs, "lat": lat, "exhausted": 1,  # TASKS was too small for the run
                        "backend": conn.info.backend_pid}
        return {"ops": leases, "txs": txs, "lat": lat, "backend": conn.info.backend_pid}

    return loop


# ---- 2. results and ledger appends ------------------------------------------------------------------------------


def reset_ledger() -> None:
    with _connect(DB) as c:
        c.execute("TRUNCATE results, vtasks, ledger, merkle, ledger_head, postings RESTART IDENTITY")
        c.execute("INSERT INTO ledger_head VALUES (1, 0, NULL, '{}')")


def preload_postings(n: int, workers: Sequence[str]) -> None:
    """A backlog of n reward postings over 64 jobs, interleaved, each job's in order: the sequencer's input."""
    with _connect(DB) as c, c.cursor().copy(COPY_POSTINGS) as cp:
        for j in range(n):
            job = f"{0xffff:08x}{j % 64:08x}"
            cp.write_row((job, j // 64, T0_MS + j, "reward", f"escrow:{job}", workers[j * 7919 % len(workers)],
                          PRICE, f"{job}-{j // 128}"))


def _owner_loop(i: int, v: int, append: Callable[[Any, Owner, list[Any]], None]) -> Callable[[float], dict[str, Any]]:
    """A coordinator judging its own jobs: V validations per transaction (results, task rows, then `append`)."""
    conn, owner = _connect(DB), Owner(i, _workers(), 200 + i)

    def loop(t_end: float) -> dict[str, Any]:
        lat, done, txs = [], 0, 0
        while time.monotonic() < t_end:
            t = time.perf_counter()
            vals = owner.validations(v)
            results, tasks = owner.rows(vals)
            cur = conn.cursor()
            _copy(cur, COPY_RESULTS, results)
            _copy(cur, COPY_VTASKS, tasks)
            append(cur, owner, vals)
            conn.commit()
            lat.append(time.perf_counter() - t)
            done, txs = done + v, txs + 1
        return {"ops": done, "txs": txs, "lat": lat, "backend": conn.info.backend_pid}

    return loop


def _append_under_row_lock(cur: Any, owner: Owner, vals: list[Any]) -> None:
    """Lock the one head row, chain the entries after it, write them and the new head (committed by the caller)."""
    size, head_hash, frontier = cur.execute(
        "SELECT size, hash, frontier FROM ledger_head WHERE one = 1 FOR UPDATE").fetchone()
    chain = Chain(size, head_hash, frontier)
    entries, nodes = chain.extend(_rewards(vals, T0_MS + owner.n))
    _copy(cur, COPY_LEDGER, entries)
    _copy(cur, COPY_MERKLE, nodes)
    cur.execute("UPDATE ledger_head SET size = %s, hash = %s, frontier = %s WHERE one = 1", chain.head())


def _post(cur: Any, owner: Owner, vals: list[Any]) -> None:
    """Write the entries as postings, numbered per job in this owner's order; nothing shared is locked."""
    posts = []
    for now, frm, to, amount, job, task in _rewards(vals, T0_MS + owner.n):
        posts.append((job, owner.job_seq[job], now, "reward", frm, to, amount, task))
        owner.job_seq[job] += 1
    _copy(cur, COPY_POSTINGS, posts)


def rowlock_pg(i: int, v: int) -> Callable[[float], dict[str, Any]]:
    return _owner_loop(i, v, _append_under_row_lock)


def producer_pg(i: int, v: int) -> Callable[[float], dict[str, Any]]:
    return _owner_loop(i, v, _post)


def sequencer_pg(i: int, fixed: bool = False) -> Callable[[float], dict[str, Any]]:
    """The one sequencer: postings in, chained entries out, in per-job order, up to SEQ_BATCH per transaction."""
    conn, chain, expect = _connect(DB), Chain(fixed=fixed), {}

    def loop(t_end: float) -> dict[str, Any]:
        lags, entries, txs, lat = [], 0, 0, []
        while time.monotonic() < t_end:
            t = time.perf_counter()
            rows = conn.execute(
                "SELECT id, job_id, job_seq, time, from_account, to_account, amount, task_id, posted"
                " FROM postings ORDER BY id LIMIT %s", (SEQ_BATCH,)).fetchall()
            take = []
            for r in sorted(rows, key=lambda r: (r[1], r[2])):  # a job's postings in its owner's order, no gaps
                if r[2] == expect.get(r[1], 0):
                    expect[r[1]] = r[2] + 1
                    take.append(r)
            if not take:
                conn.rollback()
                time.sleep(0.001)
                continue
            ledger_rows, nodes = chain.extend([(r[3], r[4], r[5], r[6], r[1], r[7]) for r in take])
            cur = conn.cursor()
            _copy(cur, COPY_LEDGER, ledger_rows)
            _copy(cur, COPY_MERKLE, nodes)
            cur.execute("DELETE FROM postings WHERE id = ANY(%s)", ([r[0] for r in take],))
            cur.execute("UPDATE ledger_head SET size = %s, hash = %s, frontier = %s WHERE one = 1", chain.head())
            conn.commit()
            now = time.time()
            lags += [now - r[8] for r in take]
            lat.append(time.perf_counter() - t)
            entries, txs = entries + len(take), txs + 1
        backlog = conn.execute("SELECT count(*) FROM postings").fetchone()[0]
        return {"ops": 0, "txs": txs, "lat": lat, "entries": entries, "lags": lags, "backlog": backlog,
                "backend": conn.info.backend_pid}

    return loop


# ---- SQLite, one process ---------------------------------------------------------------------------------------


def _sqlite(path: str, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for stmt in schema.split(";"):
        s = stmt.strip()
        if s:
            s = (s.replace("bigserial", "integer").replace("bytea[]", "blob").replace("bytea", "blob")
                 .replace("double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp())", "real"))
            db.execute(s)
    return db


def sqlite_leasing(k: int, seconds: float, head: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        db = _sqlite(os.path.join(d, "lease.db"), LEASE_SCHEMA)
        workers = _workers()
        db.execute("BEGIN")
        db.executemany("INSERT INTO slots (job_id, idx, slot, state) VALUES (?, ?, ?, 0)",
                       ((JOB, i, r) for i in range(TASKS) for r in (0, 1)))
        db.executemany("INSERT INTO workers VALUES (?, 0, 1024)", ((w, ) for w in workers))
        db.executemany("INSERT INTO leases (job_id, idx, worker_id, issued_ms, expires_ms) VALUES (?, ?, ?, 0, 0)",
                       ((f"f{i // 1000:015x}", i % 1000, hashlib.md5(str(i).encode()).hexdigest())
                        for i in range(2 * TASKS)))
        db.execute("COMMIT")
        db.execute("ANALYZE")
        rng = random.Random(100)
        pick = ("SELECT s.rowid, s.idx FROM slots s WHERE s.job_id = ? AND s.state = 0 AND (s.slot, s.idx) {op} (0, ?)"
                " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_id = s.job_id AND l.idx = s.idx"
                " AND l.worker_id = ?) ORDER BY s.slot, s.idx LIMIT ?")
        lat, leases, txs = [], 0, 0
        cpu0, t_end = time.process_time(), time.monotonic() + seconds
        while time.monotonic() < t_end:
            w, now = rng.choice(workers), T0_MS + txs
            start = 0 if head else rng.randrange(TASKS)
            t = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(pick.format(op=">="), (JOB, start, w, k)).fetchall()
            if len(rows) < k and start > 0:
                rows += db.execute(pick.format(op="<"), (JOB, start, w, k - len(rows))).fetchall()
            db.executemany("UPDATE slots SET state = 1, leased_by = ?, lease_expires = ? WHERE rowid = ?",
                           [(w, now + 60_000, r[0]) for r in rows])
            db.executemany("INSERT INTO leases (job_id, idx, worker_id, issued_ms, expires_ms) VALUES (?,?,?,?,?)",
                           [(JOB, r[1], w, now, now + 60_000) for r in rows])
            db.execute("UPDATE workers SET active = active + ? WHERE worker_id = ?", (len(rows), w))
            db.execute("COMMIT")
            lat.append(time.perf_counter() - t)
            leases, txs = leases + len(rows), txs + 1
        cpu = time.process_time() - cpu0
        db.close()
    return {"ops": leases, "txs": txs, "lat": lat, "cpu": cpu, "wall": seconds}


def sqlite_ledger(v: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        db = _sqlite(os.path.join(d, "ledger.db"), LEDGER_SCHEMA)
        owner, chain = Owner(0, _workers(), 200), Chain()
        lat, done, txs = [], 0, 0
        cpu0, t_end = time.process_time(), time.monotonic() + seconds
        while time.monotonic() < t_end:
            t = time.perf_counter()
            vals = owner.validations(v)
            results, tasks = owner.rows(vals)
            entries, nodes = chain.extend(_rewards(vals, T0_MS + owner.n))
            db.execute("BEGIN IMMEDIATE")
            db.executemany(SQLITE_RESULT, results)
            db.executemany(SQLITE_VTASK, tasks)
            db.executemany(SQLITE_ENTRY, entries)
            db.executemany(SQLITE_NODE, nodes)
            db.execute("COMMIT")
            lat.append(time.perf_counter() - t)
            done, txs = done + v, txs + 1
        cpu = time.process_time() - cpu0
        db.close()
    return {"ops": done, "txs": txs, "lat": lat, "cpu": cpu, "wall": seconds, "entries": 2 * done}


# ---- figures ----------------------------------------------------------------------------------------------------


def _pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def summarize(run: dict[str, Any], seconds: float) -> dict[str, float]:
    """One run's figures. ops: leases or validations committed by the N 'coordinators' in the window."""
    reps = run["reports"]
    work = [r for r in reps if "lags" not in r]
    seq = [r for r in reps if "lags" in r]
    ops = sum(r["ops"] for r in work)
    txs = sum(r["txs"] for r in work)
    lat = [x for r in work for x in r["lat"]]
    entries = seq[0]["entries"] if seq else 2 * ops  # under the row lock, a commit chains its 2 entries per validation
    out = {"ops_s": ops / seconds, "txs_s": txs / seconds, "p50_ms": 1e3 * _pct(lat, 0.5),
           "p99_ms": 1e3 * _pct(lat, 0.99), "entries_s": entries / seconds,
           "pg_us": 1e6 * (run["pg_cpu"] - sum(r["pg_cpu"] for r in seq)) / max(ops, 1),
           "client_us": 1e6 * sum(r["cpu"] for r in work) / max(ops, 1),
           "wal_b": run["wal_bytes"] / max(ops, 1),
           "syncs_tx": run["wal_syncs"] / max(txs + sum(r["txs"] for r in seq), 1), "other": run["other"],
           "exhausted": float(any(r.get("exhausted") for r in reps))}
    if seq:
        lags = seq[0]["lags"]
        n = max(seq[0]["entries"], 1)
        out |= {"lag50_ms": 1e3 * _pct(lags, 0.5), "lag99_ms": 1e3 * _pct(lags, 0.99),
                "backlog": float(seq[0]["backlog"]), "seq_client_us": 1e6 * seq[0]["cpu"] / n,
                "seq_pg_us": 1e6 * seq[0]["pg_cpu"] / n}
    return out


def median_of(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _n(x: float, digits: int = 0) -> str:
    return "–" if x != x else f"{x:,.{digits}f}"


# ---- main -------------------------------------------------------------------------------------------------------


def reachable() -> str | None:
    """None if the benchmark can run, else why not."""
    if psycopg is None:
        return "psycopg is not installed (pip install -e '.[scale]')"
    try:
        _admin("SELECT 1")
    except Exception as e:  # noqa: BLE001  (any failure to reach the server means: skip)
        return f"PostgreSQL is not reachable on {HOST}:{PORT} as {' or '.join(USERS)} ({str(e).strip()})"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", default="1,2,4,8", help="numbers of coordinator processes")
    ap.add_argument("--batches", default="1,16,64", help="tasks per lease transaction")
    ap.add_argument("--validations", default="1,16", help="validations per results transaction")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="N = 1,2; 1 run of 1 s")
    ap.add_argument("--json", help="also write every figure here")
    a = ap.parse_args()
    if a.quick:
        a.procs, a.runs, a.seconds = "1,2", 1, 1.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` drops the database
    why = reachable()
    if why:
        print(f"skip: {why}")
        return
    procs = [int(x) for x in a.procs.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    vals = [int(x) for x in a.validations.split(",")]
    started = time.monotonic()
    print(f"```\n.venv/bin/python benchmarks/bench_scaleout.py {' '.join(sys.argv[1:])}\n```\n")
    _admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    _admin(f"CREATE DATABASE {DB}")
    figures: dict[str, Any] = {"leasing": {}, "ledger": {}}
    try:
        with _connect(DB) as c:
            c.execute(LEASE_SCHEMA + LEDGER_SCHEMA)
        load_workers()
        print(f"{revision()}; {machine()}; {_pg_settings()}\n")
        leasing(figures, procs, batches, a)
        ledgering(figures, procs, vals, a)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    print(f"\nWhole run: {time.monotonic() - started:.0f} s; database {DB} dropped.")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(figures, indent=1))


def _sqlite_figures(r: dict[str, Any], seconds: float) -> dict[str, float]:
    return {"ops_s": r["ops"] / seconds, "txs_s": r["txs"] / seconds, "entries_s": r.get("entries", 0) / seconds,
            "p50_ms": 1e3 * _pct(r["lat"], 0.5), "p99_ms": 1e3 * _pct(r["lat"], 0.99),
            "client_us": 1e6 * r["cpu"] / max(r["ops"], 1)}


def _rounds(a: argparse.Namespace, sqlite_run: Callable[[], dict[str, Any]],
            pg_runs: Sequence[tuple[Any, Callable[[], list[Any]], Callable[[], object]]]) -> tuple[Any, ...]:
    """--runs rounds, each the SQLite run then every PostgreSQL configuration once, so that a group's runs share
    the same stretches of machine load; the medians of SQLite's figures and of each configuration's."""
    base, runs = [], {key: [] for key, _, _ in pg_runs}
    for _ in range(a.runs):
        base.append(_sqlite_figures(sqlite_run(), a.seconds))
        for key, bodies, prepare in pg_runs:
            prepare()
            runs[key].append(summarize(run_procs(bodies(), a.seconds), a.seconds))
    return median_of(base), {key: median_of(rs) | {"exhausted": max(r["exhausted"] for r in rs)}
                             for key, rs in runs.items()}


def leasing(figures: dict[str, Any], procs: Sequence[int], batches: Sequence[int], a: argparse.Namespace) -> None:
    print("### Leasing: SELECT ... FOR UPDATE SKIP LOCKED\n")
    print("| tasks per lease | walk starts | N | leases/s | lease requests/s | p50 | p99 | vs SQLite, 1 process |"
          " PG CPU per lease | client CPU per lease | WAL per lease | WAL syncs per request | other load |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    groups = [(k, False, [False, True] if k == 1 else [False]) for k in batches]
    groups += [(16, True, [False])] * (16 in batches)
    for k, head, notifies in groups:
        walk = "task 0" if head else "random task"
        configs = [(notify, n) for notify in notifies for n in procs]
        base, pg = _rounds(
            a, lambda k=k, head=head: sqlite_leasing(k, a.seconds, head),
            [((notify, n), lambda k=k, head=head, notify=notify, n=n: [(lease_pg, (k, head, notify))] * n, load_slots)
             for notify, n in configs])
        figures["leasing"][f"sqlite k={k} {walk}"] = base
        print(f"| {k} | {walk} | SQLite, 1 | {_n(base['ops_s'])} | {_n(base['txs_s'])} |"
              f" {base['p50_ms']:.2f} ms | {base['p99_ms']:.2f} ms | 1x | – | {base['client_us']:.0f} µs | – |"
              " – | – |")
        for notify, n in configs:
            m = pg[notify, n]
            label = walk + (", NOTIFY in each" if notify else "")
            figures["leasing"][f"pg k={k} {label} N={n}"] = m
            if m["exhausted"]:
                print(f"(the next row ran out of offered slots before {a.seconds} s: its rates are too low)")
            print(f"| {k} | {label} | {n} | {_n(m['ops_s'])} | {_n(m['txs_s'])} | {m['p50_ms']:.2f} ms |"
                  f" {m['p99_ms']:.2f} ms | {m['ops_s'] / base['ops_s']:.2f}x | {m['pg_us']:.0f} µs |"
                  f" {m['client_us']:.0f} µs | {_n(m['wal_b'])} B | {m['syncs_tx']:.2f} | {m['other']:.2f} |",
                  flush=True)
    with _connect(DB) as c:
        lease_b, worker_b = c.execute(
            "SELECT pg_total_relation_size('leases')::float8 / greatest(count(*), 1),"
            " pg_total_relation_size('workers')::float8 / %s FROM leases", (WORKERS,)).fetchone()
    slot_b = load_slots() / (2 * TASKS)
    figures["sizes"] = {"slot": slot_b, "lease": lease_b, "worker": worker_b}
    print(f"\nOn disk, with their indexes: {slot_b:.0f} bytes per offered slot, {lease_b:.0f} per lease row (after"
          f" the last run), {worker_b:.0f} per worker row.")


def ledgering(figures: dict[str, Any], procs: Sequence[int], vals: Sequence[int], a: argparse.Namespace) -> None:
    print("\n### Results and ledger appends: one global chain\n")
    print("| design | validations per transaction | N | validations/s | entries chained/s | p50 | p99 |"
          " vs SQLite, 1 process | PG CPU per validation (not the sequencer's) | client CPU per validation |"
          " WAL per validation (all) | WAL syncs per transaction | sequencer lag p50 / p99 | backlog at end |"
          " other load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def bodies(design: str, v: int, n: int) -> list[Any]:
        if design == "row lock":
            return [(rowlock_pg, (v,))] * n
        return [(producer_pg, (v,))] * n + [(sequencer_pg, ())]

    for v in vals:
        configs = [(design, n) for design in ("row lock", "sequencer") for n in procs]
        base, pg = _rounds(a, lambda v=v: sqlite_ledger(v, a.seconds),
                           [((d, n), lambda d=d, v=v, n=n: bodies(d, v, n), reset_ledger) for d, n in configs])
        figures["ledger"][f"sqlite v={v}"] = base
        print(f"| SQLite (today) | {v} | 1 | {_n(base['ops_s'])} | {_n(base['entries_s'])} | {base['p50_ms']:.2f} ms |"
              f" {base['p99_ms']:.2f} ms | 1x | – | {base['client_us']:.0f} µs | – | – | – | – | – |")
        for design, n in configs:
            m = pg[design, n]
            figures["ledger"][f"pg {design} v={v} N={n}"] = m
            lag = f"{m['lag50_ms']:.0f} / {m['lag99_ms']:.0f} ms" if "lag50_ms" in m else "–"
            backlog = _n(m["backlog"]) if "backlog" in m else "–"
            print(f"| {design} | {v} | {n} | {_n(m['ops_s'])} | {_n(m['entries_s'])} | {m['p50_ms']:.2f} ms |"
                  f" {m['p99_ms']:.2f} ms | {m['ops_s'] / base['ops_s']:.2f}x | {m['pg_us']:.0f} µs |"
                  f" {m['client_us']:.0f} µs | {_n(m['wal_b'])} B | {m['syncs_tx']:.2f} | {lag} | {backlog} |"
                  f" {m['other']:.2f} |", flush=True)
    print(f"\n### The sequencer alone: {BACKLOG:,} postings waiting, no producers\n")
    print("| entry hash by | chain + Merkle alone, in memory | sequencer with PostgreSQL: entries chained/s |"
          " transactions/s | p50 per transaction | sequencer CPU per entry | PG CPU per entry | WAL per entry |"
          " other load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    workers = _workers()
    costs = median_of([chain_cost(50_000, workers) for _ in range(a.runs)])
    for fixed in (False, True):
        runs = []
        for _ in range(a.runs):
            reset_ledger()
            preload_postings(BACKLOG, workers)
            _admin_db("ANALYZE postings")
            r = run_procs([(sequencer_pg, (fixed,))], a.seconds)
            rep = r["reports"][0]
            n = max(rep["entries"], 1)
            runs.append({"entries_s": rep["entries"] / a.seconds, "txs_s": rep["txs"] / a.seconds,
                         "p50_ms": 1e3 * _pct(rep["lat"], 0.5), "client_us": 1e6 * r["client_cpu"] / n,
                         "pg_us": 1e6 * r["pg_cpu"] / n, "wal_b": r["wal_bytes"] / n, "other": r["other"]})
        m = median_of(runs)
        name = "fixed" if fixed else "make_entry"
        m["chain_us"] = costs[name]
        figures["ledger"][f"sequencer alone {name}"] = m
        label = "the fixed layout of LEDGER.md 3.1" if fixed else "`ledger.make_entry` (depin today)"
        print(f"| {label} | {m['chain_us']:.1f} µs per entry ({_n(1e6 / m['chain_us'])}/s) | {_n(m['entries_s'])} |"
              f" {_n(m['txs_s'], 1)} | {m['p50_ms']:.0f} ms | {m['client_us']:.1f} µs | {m['pg_us']:.1f} µs |"
              f" {_n(m['wal_b'])} B | {m['other']:.2f} |", flush=True)

if __name__ == "__main__":
    main()
