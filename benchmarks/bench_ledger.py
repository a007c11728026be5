"""Benchmark: the ledger at 10^6 entries: durable appends, full verification, inclusion and consistency proofs.

    .venv/bin/python benchmarks/bench_ledger.py            # 10^6 entries (5-6 minutes on 2 shared cores)
    .venv/bin/python benchmarks/bench_ledger.py --quick    # 10^4 entries, a smoke run (a few seconds)

Every number comes from the real code paths, each against a naive way of doing the same thing in the same run:

1. Durable appends. Entries are made by `ledger.Book.append` (a market mix: grants, escrows, rewards to 1-3 workers
   per task of several interleaved jobs, refunds; valid party ids) and written by `Store.save` (the coordinator's
   only write path: one BEGIN IMMEDIATE ... COMMIT, `LedgerStore.write` for the entries and Merkle nodes, WAL,
   synchronous=FULL) into a database in a temporary directory on the real disk, G entries per transaction.
   First the database is built to N - (the rows below) entries at the largest G; then, at that size, each G is
   measured in turn, ending at exactly N entries. Naive baseline: one transaction (one fsync) per entry, G = 1, on
   a shorter run (--naive-entries; at ~2,500/s on this disk, 10^6 of them would take 7 minutes on their own).
2. Full verification of a JSON Lines export of all N entries (written by `depin ledger export --data-dir`):
   `ledger.verify(ledger.iter_jsonl(file))`, i.e. shape, chain, hash, money rules and the Merkle root through a
   `Frontier`. Naive baseline: an independent verifier in the style of docs/LEDGER.md section 10 (json + hashlib
   only, canonical msgpack by hand, shape, seq, link, hash, double-entry balances, but none of the money rules of
   section 5), which keeps every leaf hash and then computes the root with `merkle.naive_root` (the RFC recursion).
3. Proofs at size N: `merkle.inclusion_proof` / `consistency_proof` from the stored nodes in SQLite (`LedgerStore`
   as NodeSource; also `Audit.inclusion`, the handler of GET /v1/ledger/proof/inclusion minus HTTP) and from a
   `merkle.MemoryTree`; naive baseline: `merkle.naive_inclusion_proof` / `naive_consistency_proof`, the RFC
   recursion over the list of all N leaf hashes. Median and p99 over random indices (fewer for the naive ones);
   also `verify_inclusion` / `verify_consistency`. Proofs of the three sources are checked equal.
4. Database bytes per entry, and the coordinator's start-up: `Store(path)`, `Store.load()` (which restores the
   Book), `Audit.check_against_own_checkpoint`; baseline: rebuilding the Book by replaying every stored entry.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import cpu_seconds, machine, machine_busy_seconds, revision  # noqa: E402

from coordinator.audit import Audit  # noqa: E402
from coordinator.model import Changes  # noqa: E402
from coordinator.store import Store  # noqa: E402
from depin import accounts, checkpoint, ledger, merkle  # noqa: E402
from depin.crypto import SigningKey  # noqa: E402

T0_MS = 1_763_700_000_000  # a present-day time: every entry's time takes msgpack's 8-byte form, as in production
B32 = "abcdefghijklmnopqrstuvwxyz234567"


# ---- a market that only makes valid entries ---------------------------------------------------------------------


@dataclass
class _Job:
    job_id: str
    funder: str
    price: int
    n_tasks: int
    left: int  # credits still in escrow
    next_task: int = 0


class Market:
    """Keyword arguments for Book.append: jobs funded, their tasks rewarded 1-3 times, refunded when done."""

    def __init__(self, rng: random.Random, *, submitters: int = 50, workers: int = 2000, concurrent: int = 4) -> None:
        self.rng = rng
        self.submitters = [self._party() for _ in range(submitters)]
        self.workers = [self._party() for _ in range(workers)]
        self.concurrent = concurrent
        self.balance = dict.fromkeys(self.submitters, 0)
        self.open: list[_Job] = []
        self.now = T0_MS
        self.kinds: dict[str, int] = dict.fromkeys(ledger.KINDS, 0)
        self._queue: list[dict[str, Any]] = []

    def _party(self) -> str:
        return "".join(self.rng.choice(B32) for _ in range(32))

    def take(self, n: int) -> list[dict[str, Any]]:
        """The next n entries' arguments."""
        while len(self._queue) < n:
            self._step()
        out, self._queue = self._queue[:n], self._queue[n:]
        for kw in out:
            self.kinds[kw["kind"]] += 1
        return out

    def _emit(self, **kw: Any) -> None:
        self._queue.append({"time": self.now, **kw})

    def _step(self) -> None:
        rng = self.rng
        self.now += rng.randint(0, 3)
        if len(self.open) < self.concurrent:
            submitter = rng.choice(self.submitters)
            price, n_tasks = rng.randint(1, 1000), rng.choice((1, 8, 64, 256, 1024))
            cost = price * n_tasks * 5  # max_results defaults to replicas + 3 = 5
            if self.balance[submitter] < cost:
                amount = cost * rng.randint(1, 20)
                self._emit(kind="grant", from_=ledger.MINT, to=submitter, amount=amount)
                self.balance[submitter] += amount
            job = _Job(f"{rng.getrandbits(64):016x}", submitter, price, n_tasks, cost)
            self._emit(kind="escrow", from_=submitter, to=accounts.escrow_account(job.job_id), amount=cost,
                       job_id=job.job_id)
            self.balance[submitter] -= cost
            self.open.append(job)
            return
        job = rng.choice(self.open)
        task_id = f"{job.job_id}-{job.next_task}"
        paid = 1 if rng.random() < 0.6 else 2 if rng.random() < 0.875 else 3  # 60% single, 35% pairs, 5% triples
        for worker in rng.sample(self.workers, paid):
            self._emit(kind="reward", from_=accounts.escrow_account(job.job_id), to=worker, amount=job.price,
                       job_id=job.job_id, task_id=task_id)
            job.left -= job.price
        job.next_task += 1
        if job.next_task == job.n_tasks:
            self._emit(kind="refund", from_=accounts.escrow_account(job.job_id), to=job.funder, amount=job.left,
                       job_id=job.job_id)
            self.balance[job.funder] += job.left
            self.open.remove(job)


# ---- measuring --------------------------------------------------------------------------------------------------


class Load:
    """CPU other processes used during a phase, in cores (this process and its children are left out)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    def _mine(self) -> float:
        t = os.times()
        return cpu_seconds(os.getpid()) + t.children_user + t.children_system

    def start(self) -> None:
        self._t, self._busy, self._mine0 = time.perf_counter(), machine_busy_seconds(), self._mine()

    def stop(self, name: str) -> None:
        wall = time.perf_counter() - self._t
        self.phases[name] = (machine_busy_seconds() - self._busy - (self._mine() - self._mine0)) / max(wall, 1e-9)


@dataclass
class AppendRun:
    """Appends of G entries per transaction."""

    group: int
    entries: int
    size_before: int
    append_s: float = 0.0  # inside Book.append
    save_s: float = 0.0  # inside Store.save (SQL and the commit's fsync)
    commits: int = 0
    chunks: list[tuple[int, float]] = field(default_factory=list)  # (size after, entries/s) per tenth of the run

    @property
    def seconds(self) -> float:
        return self.append_s + self.save_s

    @property
    def rate(self) -> float:
        return self.entries / self.seconds


def append_run(store: Store, book: ledger.Book, market: Market, group: int, count: int) -> AppendRun:
    """Append `count` entries, `group` per transaction; time Book.append and Store.save, not the market."""
    run = AppendRun(group, count, book.size)
    tenth, since, since_s = max(1, count // 10), 0, 0.0
    done = 0
    while done < count:
        batch = market.take(min(group, count - done))
        changes = Changes()
        t0 = time.perf_counter()
        for kw in batch:
            entry, nodes = book.append(**kw)
            changes.entries.append(entry)
            changes.nodes.extend(nodes)
        t1 = time.perf_counter()
        store.save(changes)
        t2 = time.perf_counter()
        run.append_s += t1 - t0
        run.save_s += t2 - t1
        run.commits += 1
        done += len(batch)
        since, since_s = since + len(batch), since_s + t2 - t0
        if since >= tenth or done == count:
            run.chunks.append((book.size, since / since_s))
            since, since_s = 0, 0.0
    return run


def timed(fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]]) -> list[float]:
    """Seconds of each call."""
    out = []
    for args in calls:
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


def med_p99(xs: Sequence[float]) -> tuple[float, float, str]:
    """Median, p99 (the max when fewer than 100 samples) and which of the two it is."""
    s = sorted(xs)
    if len(s) < 100:
        return statistics.median(s), s[-1], "max"
    return statistics.median(s), s[math.ceil(0.99 * len(s)) - 1], "p99"


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def filesystem(path: pathlib.Path) -> str:
    """'ext4 on /dev/vda' for the mount holding `path`, from /proc/mounts."""
    best = ("", "?", "?")
    for line in pathlib.Path("/proc/mounts").read_text().splitlines():
        dev, mnt, fstype = line.split()[:3]
        if str(path).startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[0]):
            best = (mnt, fstype, dev)
    return f"{best[1]} on {best[2]} (mounted at {best[0]})"


# ---- the naive verifier: docs/LEDGER.md section 10, with the four kinds -----------------------------------------


def _pack_uint(v: int) -> bytes:
    if v < 128:
        return bytes([v])
    for head, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if v < 1 << 8 * size:
            return bytes([head]) + v.to_bytes(size, "big")
    raise ValueError("integer too large")


def _pack_str(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    for head, size in ((0xD9, 1), (0xDA, 2), (0xDB, 4)):
        if len(b) < 1 << 8 * size:
            return bytes([head]) + len(b).to_bytes(size, "big") + b
    raise ValueError("string too long")


def _naive_hash(e: dict[str, Any]) -> str:
    body = b"\x89"
    for k in sorted(ledger.FIELDS[:-1]):
        v = e[k]
        body += _pack_str(k) + (b"\xc0" if v is None else _pack_uint(v) if type(v) is int else _pack_str(v))
    return hashlib.sha256(b"depin/1/ledger-entry\x00" + body).hexdigest()


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def _naive_shape_ok(e: Any) -> bool:
    def nat(v: Any) -> bool:
        return type(v) is int and 0 <= v < 2**63

    def hex64(v: Any) -> bool:
        return type(v) is str and len(v) == 64 and set(v) <= set("0123456789abcdef")

    return (type(e) is dict and set(e) == set(ledger.FIELDS) and nat(e["seq"]) and nat(e["time"])
            and e["kind"] in ledger.KINDS and all(type(e[k]) is str and e[k] for k in ("from", "to"))
            and type(e["amount"]) is int and 0 < e["amount"] < 2**63 and hex64(e["prev_hash"])
            and hex64(e["hash"]) and all(e[k] is None or type(e[k]) is str for k in ("job_id", "task_id")))


def naive_verify(lines: Iterable[str]) -> tuple[int, str, dict[str, int], list[bytes]]:
    """(entries, head, balances, leaf hashes) of a good export; raise ValueError at the first bad entry."""
    prev = "0" * 64
    balances: dict[str, int] = {}
    leaves: list[bytes] = []
    for position, line in enumerate(x for x in lines if x.strip()):
        e = json.loads(line, object_pairs_hook=_no_repeated_keys)
        if not (_naive_shape_ok(e) and e["seq"] == position and e["prev_hash"] == prev
                and _naive_hash(e) == e["hash"]):
            raise ValueError(f"entry {position} is bad")
        balances[e["from"]] = balances.get(e["from"], 0) - e["amount"]
        balances[e["to"]] = balances.get(e["to"], 0) + e["amount"]
        leaves.append(hashlib.sha256(b"\x00" + bytes.fromhex(e["hash"])).digest())
        prev = e["hash"]
    return len(leaves), prev, balances, leaves


def verify_stages(path: pathlib.Path, limit: int) -> dict[str, float]:
    """CPU seconds per entry of each step ledger.verify takes, each run alone over the first `limit` entries.
    CPU time, not wall time: on a shared machine it does not count the time other processes hold the core."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = list(itertools.islice(f, limit))
    n = len(lines)
    out: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t = time.process_time()
        value = fn()
        out[name] = (time.process_time() - t) / n
        return value

    dicts = step("parse: ledger.iter_jsonl (json.loads, duplicate-key hook)", lambda: list(ledger.iter_jsonl(lines)))
    entries = step("shape: Entry.from_dict", lambda: [ledger.Entry.from_dict(d) for d in dicts])
    as_dicts = step("Entry.to_dict", lambda: [e.to_dict() for e in entries])
    step("hash: ledger.entry_hash (codec.encode + SHA-256)", lambda: [ledger.entry_hash(d) for d in as_dicts])
    acc = accounts.Accounts()
    step("money rules: Accounts.apply", lambda: [acc.apply(e) for e in entries])
    frontier = merkle.Frontier()
    step("Merkle: leaf_of + Frontier.append", lambda: [frontier.append(ledger.leaf_of(e.hash)) for e in entries])
    step("all of ledger.verify on parsed dicts", lambda: ledger.verify(dicts))
    step("naive: hand-rolled msgpack + SHA-256 (section 10)", lambda: [_naive_hash(d) for d in dicts])
    return out


# ---- the phases -------------------------------------------------------------------------------------------------


def measure_appends(db_path: pathlib.Path, n_total: int, groups: list[int], naive_n: int, market: Market,
                    load: Load) -> tuple[ledger.Book, dict[str, Any]]:
    """Build the database to N minus the at-size rows at the largest G, then each G at that size, ending at N."""
    at_size = {g: min(naive_n if g == 1 else max(16384, 32 * g), n_total // 10) for g in groups}
    store, book = Store(db_path), ledger.Book()
    try:
        load.start()
        build = append_run(store, book, market, groups[-1], n_total - sum(at_size.values()))
        load.stop("build")
        print(f"built {build.entries:,} entries at G={build.group}: {build.rate:,.0f} entries/s", flush=True)
        runs = []
        load.start()
        for g in groups:
            runs.append(append_run(store, book, market, g, at_size[g]))
            print(f"  G={g}: {runs[-1].entries:,} entries at size {runs[-1].size_before:,}: {runs[-1].rate:,.0f}/s",
                  flush=True)
        load.stop("appends at size")
        assert book.size == n_total
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        by_object = dict(store.db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"))
    finally:
        store.close()
    return book, {"build": build, "runs": runs, "db_bytes": db_path.stat().st_size, "db_bytes_by_object": by_object}


def measure_startup(db_path: pathlib.Path, book: ledger.Book, open_jobs: list[str], key: SigningKey,
                    load: Load) -> dict[str, Any]:
    """What Service.__init__ does with the ledger (3 times), and the baseline: replaying the whole log."""
    load.start()
    steps: dict[str, list[float]] = {"Store(path)": [], "Store.load()": [], "Audit check": [],
                                     "LedgerStore.book(open jobs)": []}
    for _ in range(3):
        t0 = time.perf_counter()
        store = Store(db_path)
        t1 = time.perf_counter()
        rows = store.load()
        t2 = time.perf_counter()
        Audit(store, key, every=1000, interval_ms=5000).check_against_own_checkpoint(rows["book"])
        t3 = time.perf_counter()
        restored = store.ledger.book(open_jobs)
        t4 = time.perf_counter()
        for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            steps[name].append(seconds)
        store.close()
    assert restored.head == book.head and restored.root() == book.root()
    assert {k: v for k, v in restored.accounts.balances.items() if v} == \
           {k: v for k, v in book.accounts.balances.items() if v}
    store = Store(db_path)
    try:
        t0 = time.perf_counter()
        replayed = ledger.verify(store.ledger.entries())
        replay_s = time.perf_counter() - t0
    finally:
        store.close()
    assert replayed.root_hash == book.root().hex()
    load.stop("start-up")
    print("start-up measured", flush=True)
    return {"steps_s": steps, "replay_s": replay_s}


def measure_verification(data: pathlib.Path, export: pathlib.Path, book: ledger.Book, stage_entries: int,
                         load: Load) -> tuple[list[bytes], dict[str, Any]]:
    """Export with the real CLI, then ledger.verify against the naive verifier; also the leaf hashes, for proofs."""
    load.start()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "depin.cli.main", "ledger", "export", "--data-dir", str(data),
                             "-o", str(export)], stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    export_s = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"depin ledger export failed with exit code {os.waitstatus_to_exitcode(status)}")
    load.stop("export")
    load.start()
    t0, c0 = time.perf_counter(), time.process_time()
    with open(export, encoding="utf-8", errors="surrogateescape") as f:  # as `depin ledger verify --file` reads
        summary = ledger.verify(ledger.iter_jsonl(f))
    verify_s, verify_cpu = time.perf_counter() - t0, time.process_time() - c0
    load.stop("verify")
    assert summary.entries == book.size and summary.root_hash == book.root().hex()
    load.start()
    t0, c0 = time.perf_counter(), time.process_time()
    with open(export, encoding="utf-8", errors="surrogateescape") as f:
        count, head, balances, leaves = naive_verify(f)
    t1 = time.perf_counter()
    root = merkle.naive_root(leaves)
    t2, naive_cpu = time.perf_counter(), time.process_time() - c0
    load.stop("naive verify")
    assert count == book.size and head == summary.head_hash and root.hex() == summary.root_hash
    assert balances == summary.balances
    load.start()
    stages = verify_stages(export, stage_entries)
    load.stop("verify stages")
    print("verification measured", flush=True)
    return leaves, {"verify_s": verify_s, "verify_cpu_s": verify_cpu, "naive_chain_s": t1 - t0,
                    "naive_root_s": t2 - t1, "naive_cpu_s": naive_cpu, "export_s": export_s,
                    "export_rss_mb": usage.ru_maxrss / 1024, "jsonl_bytes": export.stat().st_size,
                    "stage_entries": stage_entries, "stages_s_per_entry": stages}


def measure_proofs(db_path: pathlib.Path, key: SigningKey, leaves: list[bytes], root: bytes, rng: random.Random,
                   samples: int, naive_samples: int, load: Load) -> dict[str, Any]:
    """Inclusion and consistency proofs at size N from SQLite, from memory and naively; and checking them."""
    n = len(leaves)
    load.start()
    t0 = time.perf_counter()
    memory = merkle.MemoryTree(leaves)
    memory_build_s = time.perf_counter() - t0
    store = Store(db_path)
    try:
        audit = Audit(store, key, every=1000, interval_ms=5000)
        idx = [rng.randrange(n) for _ in range(samples)]
        olds = [rng.randrange(1, n) for _ in range(samples)]
        for i in idx[:naive_samples]:
            assert (merkle.inclusion_proof(store.ledger, i, n) == merkle.inclusion_proof(memory, i, n)
                    == merkle.naive_inclusion_proof(leaves, i))
        for m in olds[:naive_samples]:
            assert (merkle.consistency_proof(store.ledger, m, n) == merkle.consistency_proof(memory, m, n)
                    == merkle.naive_consistency_proof(leaves, m))
        inclusion = {
            "SQLite nodes: inclusion_proof(LedgerStore)": timed(
                lambda i: merkle.inclusion_proof(store.ledger, i, n), ((i,) for i in idx)),
            "SQLite nodes: Audit.inclusion (entry, checkpoint, hex)": timed(
                lambda i: audit.inclusion(i, None), ((i,) for i in idx)),
            "memory: inclusion_proof(MemoryTree)": timed(
                lambda i: merkle.inclusion_proof(memory, i, n), ((i,) for i in idx)),
            NAIVE_INCLUSION: timed(
                lambda i: merkle.naive_inclusion_proof(leaves, i), ((i,) for i in idx[:naive_samples])),
            "verify_inclusion": timed(merkle.verify_inclusion,
                                      [(leaves[i], i, n, merkle.inclusion_proof(memory, i, n), root) for i in idx]),
        }
        consistency = {
            "SQLite nodes: consistency_proof(LedgerStore)": timed(
                lambda m: merkle.consistency_proof(store.ledger, m, n), ((m,) for m in olds)),
            "memory: consistency_proof(MemoryTree)": timed(
                lambda m: merkle.consistency_proof(memory, m, n), ((m,) for m in olds)),
            NAIVE_CONSISTENCY: timed(
                lambda m: merkle.naive_consistency_proof(leaves, m), ((m,) for m in olds[:naive_samples])),
            "verify_consistency": timed(merkle.verify_consistency, [
                (m, n, memory.root(m), root, merkle.consistency_proof(memory, m, n)) for m in olds]),
        }
    finally:
        store.close()
    load.stop("proofs")
    return {"memory_tree_build_s": memory_build_s, "inclusion_s": inclusion, "consistency_s": consistency}


NAIVE_INCLUSION = "naive: naive_inclusion_proof(all leaf hashes)"
NAIVE_CONSISTENCY = "naive: naive_consistency_proof(all leaf hashes)"


# ---- the report -------------------------------------------------------------------------------------------------


def print_report(r: dict[str, Any], market: Market) -> None:
    """Markdown tables of every number in `r`."""
    n = r["entries"]
    a, v, st, pr = r["appends"], r["verify"], r["startup"], r["proofs"]
    print(f"\nEntries: {n:,} ({', '.join(f'{k} {c:,}' for k, c in market.kinds.items())}); "
          f"{len(market.submitters)} submitters, {len(market.workers)} workers, jobs of 1-1024 tasks, "
          f"{market.concurrent} in progress at a time.\n")
    print("### Durable appends (Book.append + Store.save, WAL, synchronous=FULL)\n")
    print("| entries per transaction | entries appended | ledger size before | commits | appends/s "
          "| Book.append per entry | Store.save per entry | per commit | vs 1 per transaction |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    build: AppendRun = a["build"]
    naive = next(run for run in a["runs"] if run.group == 1)
    for run in [*a["runs"], build]:
        label = f"{run.group}" + (" (naive baseline)" if run.group == 1 else "")
        if run is build:
            label = f"{run.group}, building the database from empty"
        print(f"| {label} | {run.entries:,} | {run.size_before:,} | {run.commits:,} | {run.rate:,.0f} "
              f"| {fmt_s(run.append_s / run.entries)} | {fmt_s(run.save_s / run.entries)} "
              f"| {fmt_s(run.save_s / run.commits)} | {run.rate / naive.rate:,.1f}x |")
    print("\nBuild rate per tenth (entries/s, at size): "
          + ", ".join(f"{rate:,.0f} ({size:,})" for size, rate in build.chunks) + ".")

    print("\n### Full verification of a JSON Lines export\n")
    print("| verifier | time | entries/s | vs naive | CPU time | vs naive, by CPU time |")
    print("|---|---:|---:|---:|---:|---:|")
    naive_s = v["naive_chain_s"] + v["naive_root_s"]
    print(f"| ledger.verify(iter_jsonl(file)): shape, chain, money rules, Frontier root | {v['verify_s']:.1f} s "
          f"| {n / v['verify_s']:,.0f} | {naive_s / v['verify_s']:.2f}x | {v['verify_cpu_s']:.1f} s "
          f"| {v['naive_cpu_s'] / v['verify_cpu_s']:.2f}x |")
    print(f"| naive: LEDGER.md section 10 style (no money rules) + merkle.naive_root | {naive_s:.1f} s "
          f"({v['naive_chain_s']:.1f} + {v['naive_root_s']:.1f}) | {n / naive_s:,.0f} | 1x | {v['naive_cpu_s']:.1f} s "
          "| 1x |")
    print(f"\nExport: `depin ledger export --data-dir` took {v['export_s']:.1f} s and peaked at "
          f"{v['export_rss_mb']:,.0f} MB RSS; {v['jsonl_bytes'] / n:.0f} bytes per entry.")
    stages = v["stages_s_per_entry"]
    print(f"\nWhere ledger.verify's time goes (each step alone, first {v['stage_entries']:,} entries):\n")
    print("| step | CPU µs per entry |")
    print("|---|---:|")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds * 1e6:.2f} |")
    # Book.append = make_entry (entry_hash, Entry.from_dict) + the money rules and the Merkle frontier.
    parts = [k for k in stages if k.startswith(("shape", "hash", "money", "Merkle"))]
    modelled = sum(stages[k] for k in parts)
    print(f"\nBook.append runs the same steps minus the parse and to_dict, hashing once (make_entry): "
          f"{modelled * 1e6:.1f} µs by the table, "
          f"{build.append_s / build.entries * 1e6:.1f} µs measured in the build above.")

    print(f"\n### Proofs at size {n:,} (MemoryTree built in {pr['memory_tree_build_s']:.2f} s)\n")
    print("| operation | samples | median | p99 (or max) | median vs naive |")
    print("|---|---:|---:|---:|---:|")
    for table, naive_name in ((pr["inclusion_s"], NAIVE_INCLUSION), (pr["consistency_s"], NAIVE_CONSISTENCY)):
        naive_med = statistics.median(table[naive_name])
        for name, xs in table.items():
            med, p99, which = med_p99(xs)
            ratio = ("–" if name.startswith("verify") else "1x" if name == naive_name
                     else f"{naive_med / med:,.0f}x faster")
            print(f"| {name} | {len(xs):,} | {fmt_s(med)} | {fmt_s(p99)} ({which}) | {ratio} |")

    print("\n### Size on disk and start-up\n")
    print(f"Database after `PRAGMA wal_checkpoint(TRUNCATE)`: {a['db_bytes'] / 2**20:,.0f} MiB, "
          f"{a['db_bytes'] / n:.0f} bytes per entry: "
          + ", ".join(f"{k} {b / n:.0f}" for k, b in a["db_bytes_by_object"].items() if b >= n)
          + " (tables and indexes; the rest under 1 byte).")
    print("\n| start-up step (median of 3) | time |")
    print("|---|---:|")
    medians = {name: statistics.median(xs) for name, xs in st["steps_s"].items()}
    for name, seconds in medians.items():
        print(f"| {name} | {fmt_s(seconds)} |")
    total = medians["Store(path)"] + medians["Store.load()"] + medians["Audit check"]
    print(f"| coordinator start (the first three) | {fmt_s(total)} |")
    print(f"| baseline: replay every stored entry through a Book (ledger.verify(LedgerStore.entries())) "
          f"| {fmt_s(st['replay_s'])} ({st['replay_s'] / total:.1f}x) |")
    print("\nOther load (cores) per phase: " + ", ".join(f"{k} {c:.2f}" for k, c in r["other_load_cores"].items())
          + f". Whole run: {r['wall_s']:.0f} s.")


# ---- the run ----------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--entries", type=int, default=10**6, help="ledger size N (default 10^6)")
    ap.add_argument("--quick", action="store_true", help="N = 10^4 and fewer samples: a smoke run")
    ap.add_argument("--groups", default="1,16,256,4096", help="entries per transaction to measure (1 = naive)")
    ap.add_argument("--naive-entries", type=int, default=5000, help="entries appended one per transaction")
    ap.add_argument("--proofs", type=int, default=2000, help="random indices for the stored/in-memory proofs")
    ap.add_argument("--naive-proofs", type=int, default=10, help="random indices for the naive proofs")
    ap.add_argument("--dir", help="where to put the database (default: the system temp dir)")
    ap.add_argument("--json", metavar="FILE", help="also write every number as JSON to FILE")
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args()
    n_total = 10**4 if args.quick else args.entries
    groups = sorted(int(g) for g in args.groups.split(","))
    if groups[0] != 1:
        ap.error("--groups must include 1, the naive baseline")
    rng = random.Random(args.seed)
    market, load, key = Market(rng), Load(), SigningKey.generate()
    wall = time.perf_counter()
    r: dict[str, Any] = {"entries": n_total, "machine": machine(), "revision": revision()}
    with tempfile.TemporaryDirectory(prefix="depin-bench-ledger-", dir=args.dir) as tmp:
        data = pathlib.Path(tmp) / "coordinator"  # a coordinator data dir, so `depin ledger export` can read it
        db_path = data / "coordinator.sqlite3"
        r["filesystem"] = filesystem(db_path)
        print(f"machine: {r['machine']}; {r['revision']}")
        print(f"database: {db_path}, {r['filesystem']}; N = {n_total:,} entries", flush=True)
        book, r["appends"] = measure_appends(db_path, n_total, groups, min(args.naive_entries, 200) if args.quick
                                             else args.naive_entries, market, load)
        store = Store(db_path)
        store.ledger.add_checkpoint(checkpoint.sign(key, size=book.size, root=book.root(), time=market.now))
        store.close()
        # Start-up first, so the page cache holds what the appends left rather than what the proofs read.
        r["startup"] = measure_startup(db_path, book, [j.job_id for j in market.open], key, load)
        leaves, r["verify"] = measure_verification(data, pathlib.Path(tmp) / "ledger.jsonl", book,
                                                   min(n_total, 10**5), load)
        r["proofs"] = measure_proofs(db_path, key, leaves, book.root(), rng,
                                     min(args.proofs, 300) if args.quick else args.proofs, args.naive_proofs, load)
    r["other_load_cores"], r["wall_s"] = load.phases, time.perf_counter() - wall
    print_report(r, market)
    if args.json:
        r["kinds"] = market.kinds
        r["appends"] = {**r["appends"], "build": asdict(r["appends"]["build"]),
                        "runs": [asdict(run) for run in r["appends"]["runs"]]}
        pathlib.Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
