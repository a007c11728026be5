"""Helpers of the integration suite: spawned processes, the coordinator's JSON API, bounded waits, grants and
signed submitter requests, ledger checks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import html.parser
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

DEPIN = Path(sys.executable).with_name("depin")  # the real console script of this venv
TERMINAL = ("done", "failed", "cancelled")
START_TIMEOUT_S = 60.0  # a daemon's start, on a loaded 2-core machine
JOB_TIMEOUT_S = 150.0  # a whole job
EXIT_TIMEOUT_S = 30.0  # a process asked to stop

# A job whose tasks take long enough (about a second each) to kill something in the middle of it. Mostly points inside
# the set, so the work is even across bands. The merged image does not depend on the task count, so one C
# reference serves every test that uses these parameters.
SLOW_JOB: dict[str, Any] = {"width": 64, "height": 48, "x_min": -1.3, "x_max": 0.3, "y_min": -0.6, "y_max": 0.6,
                            "max_iter": 1_000_000}

# Tasks per lease request of the honest `depin worker`s in the attack scenarios (hostile.py, trust_attacks.py), as
# they were built and measured with: adaptive batches of tiny bands would let the honest workers take a whole job in
# their first requests, before an attacker got a task of it.
HONEST_BATCH = 4

T = TypeVar("T")
MAX_RESULTS_EXTRA = 3  # a job's default max_results is replicas + 3 (PROTOCOL.md), so max cost uses it too


# ---- small helpers -----------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], T | None], what: str, timeout: float = JOB_TIMEOUT_S,
               interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy and return that; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, sqlite3.Error, ValueError) as exc:  # a daemon restarting, a file being written
            last_error = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside an async test (then in a helper thread)."""
    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def one_error_line(got: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one, and no traceback)."""
    assert got.returncode != 0, (got.stdout, got.stderr)
    assert "Traceback" not in got.stderr + got.stdout, got.stderr
    lines = got.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{got.stderr}"
    assert lines[0].startswith("depin: error: "), lines[0]
    assert got.stderr.endswith("\n")
    return str(lines[0])


def compile_numba_cache(path: Path) -> Path:
    """Fill `path` as the numba cache of every kernel, so workers that share it start without compiling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
    env["NUMBA_CACHE_DIR"] = str(path)
    subprocess.run([sys.executable, "-c", "from depin import kernels\nfor k in kernels.all_kernels(): k.warmup()"],
                   env=env, check=True, timeout=300, capture_output=True)
    return path


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET `url`; (status, body) even for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Api:
    """The coordinator's read-only JSON API, synchronously."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str) -> Any:
        status, body = http_get(self.url + path)
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}: {body[:300]!r}")
        return json.loads(body)

    def info(self) -> dict[str, Any]:
        return self.get("/v1/info")  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self.get("/v1/status")  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/v1/jobs/{job_id}")  # type: ignore[no-any-return]

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["worker_id"]: w for w in self.get("/v1/workers")["workers"]}

    def ledger(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/v1/ledger?start={len(entries)}&limit=1000")
            entries += page["entries"]
            if not page["entries"] or len(entries) >= page["total"]:
                return entries

    def balance(self, account: str) -> int:
        """GET /v1/accounts/{account}: its balance."""
        return int(self.get(f"/v1/accounts/{account}")["balance"])

    def rewards(self) -> list[dict[str, Any]]:
        """Every reward entry of the ledger (grants and escrows move credits, but pay nobody for work)."""
        return [e for e in self.ledger() if e["kind"] == "reward"]

    def wait_checkpointed(self, timeout: float = JOB_TIMEOUT_S) -> dict[str, Any]:
        """Wait until the latest signed checkpoint covers every entry (the coordinator signs one within its
        --checkpoint-interval of the last write); the status's ledger section then."""

        def covered() -> dict[str, Any] | None:
            book = self.status()["ledger"]
            cp = book["checkpoint"]
            return book if cp is not None and cp["size"] == book["entries"] else None

        return wait_until(covered, "a checkpoint covering the whole ledger", timeout, interval=0.1)

    def wait_job(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, Any]:
        """Poll until the job ends; return its final status."""

        def ended() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in TERMINAL else None

        return wait_until(ended, f"job {job_id} to end", timeout, interval=0.1)

    def up(self) -> bool:
        try:
            return http_get(self.url + "/v1/info", timeout=2.0)[0] == 200
        except OSError:
            return False


def max_cost(*, tasks: int, replicas: int, price: int, max_results: int | None = None) -> int:
    """What a job may cost at most (escrowed at submission): price x tasks x max_results."""
    from depin.protocol import MAX_RESULTS

    limit = max_results if max_results is not None else min(replicas + MAX_RESULTS_EXTRA, MAX_RESULTS)
    return price * tasks * limit


def submit(coordinator: Coordinator, key: Any, params: dict[str, Any], *, tasks: int, replicas: int,
           price: int = 10, kernel: str = "mandelbrot", max_results: int | None = None, fund: bool = True) -> str:
    """Submit a job over the real protocol (signed by `key`); return its id. With `fund`, the operator first grants
    the submitter whatever its balance lacks to cover the job's max cost, so the escrow is exactly affordable."""
    from depin.client import Client

    if fund:
        need = max_cost(tasks=tasks, replicas=replicas, price=price, max_results=max_results)
        short = need - coordinator.api.balance(key.id)
        if short > 0:
            coordinator.grant(key.id, short)

    async def go() -> str:
        async with Client(coordinator.url) as c:
            answer = await c.post_signed("/v1/jobs", key, "submit", {
                "kernel": kernel, "params": params, "tasks": tasks, "replicas": replicas,
                "max_results": max_results, "price": price})
        return str(answer["job_id"])

    return run_async(go)


def fetch_result(url: str, key: Any, job_id: str) -> dict[str, Any]:
    """POST /v1/jobs/{id}/result signed by `key` (the submitter's): the decoded answer."""
    from depin.client import Client

    async def go() -> dict[str, Any]:
        async with Client(url) as c:
            return dict(await c.post_signed(f"/v1/jobs/{job_id}/result", key, "result-request", {"job_id": job_id}))

    return run_async(go)


def rewards_of(entries: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == "reward" and e["job_id"] == job_id]


def check_rewards(api: Api, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Every validated task of a done job paid exactly `replicas` rewards of `price` from the job's escrow, to
    distinct workers, once, plus one to the auditor of each task whose audit passed (PROTOCOL.md 12.6); the
    submitter funded the escrow with the job's max cost and got the rest back."""
    entries = api.ledger()
    job_id = job["job_id"]
    rewards = rewards_of(entries, job_id)
    pairs = [(e["task_id"], e["to"]) for e in rewards]
    assert len(set(pairs)) == len(pairs), f"a (task, worker) pair was paid twice: {sorted(pairs)}"
    audited = job.get("audits", {}).get("passed", 0)
    assert len(rewards) == job["tasks_total"] * job["replicas"] + audited, (
        f"{len(rewards)} rewards for {job['tasks_total']} tasks x {job['replicas']} replicas and {audited} audits")
    per_task: dict[str, int] = {}
    for e in rewards:
        per_task[e["task_id"]] = per_task.get(e["task_id"], 0) + 1
    assert len(per_task) == job["tasks_total"]
    assert set(per_task.values()) <= {job["replicas"], job["replicas"] + 1}
    assert {e["amount"] for e in rewards} == {job["price"]}
    assert {e["from"] for e in rewards} == {f"escrow:{job_id}"}
    check_escrow(entries, job)
    # The balances the API shows are exactly what the ledger paid the workers.
    paid: dict[str, int] = {}
    for e in entries:
        if e["kind"] == "reward":
            paid[e["to"]] = paid.get(e["to"], 0) + e["amount"]
    shown = {wid: w["balance"] for wid, w in api.workers().items() if w["balance"]}
    assert shown == paid
    return rewards


def check_escrow(entries: list[dict[str, Any]], job: dict[str, Any]) -> None:
    """An ended job: one escrow of its max cost from its submitter, and one refund of exactly what its rewards did
    not use (none if they used it all), back to the submitter; nothing left held."""
    job_id = job["job_id"]
    mine = [e for e in entries if e["job_id"] == job_id]
    escrows = [e for e in mine if e["kind"] == "escrow"]
    refunds = [e for e in mine if e["kind"] == "refund"]
    paid = sum(e["amount"] for e in mine if e["kind"] == "reward")
    assert [(e["from"], e["to"], e["amount"]) for e in escrows] == [
        (job["submitter"], f"escrow:{job_id}", job["max_cost"])], escrows
    assert job["max_cost"] == job["price"] * job["tasks_total"] * job["max_results"]
    left = job["max_cost"] - paid
    assert left >= 0
    assert [(e["from"], e["to"], e["amount"]) for e in refunds] == (
        [(f"escrow:{job_id}", job["submitter"], left)] if left else []), refunds
    if refunds:
        assert refunds[0]["seq"] == max(e["seq"] for e in mine), "an entry of the job came after its refund"
    assert job.get("escrow", 0) == 0, job


def balances(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Every account's balance after `entries` (the mint's is minus what was minted)."""
    out: dict[str, int] = {}
    for e in entries:
        out[e["from"]] = out.get(e["from"], 0) - e["amount"]
        out[e["to"]] = out.get(e["to"], 0) + e["amount"]
    return out


def check_conservation(entries: list[dict[str, Any]]) -> dict[str, int]:
    """No account but the mint below zero, and every other account together holds exactly what was minted."""
    held = balances(entries)
    minted = sum(e["amount"] for e in entries if e["kind"] == "grant")
    assert held.get("mint", 0) == -minted
    assert all(v >= 0 for k, v in held.items() if k != "mint"), {k: v for k, v in held.items() if v < 0}
    assert sum(v for k, v in held.items() if k != "mint") == minted
    return held


def read_db(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from a SQLite file another process is writing (read-only; [] if it does not exist yet)."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


# ---- processes ---------------------------------------------------------------------------------------------


class Proc:
    """One spawned process, in its own session, logging to a file."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict[str, str], cwd: Path,
                 stdout_path: Path | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.stdout_path = stdout_path or log_path
        with open(log_path, "ab") as log, open(self.stdout_path, "ab") as out:
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=log, env=env,
                                          cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the process itself."""
        if self.alive():
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the process and everything in its session; reap it."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass

    def wait(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        """The exit code, waiting at most `timeout`."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout:.0f}s; log:\n{self.tail()}") from None

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        if self.stdout_path != self.log_path and self.stdout_path.exists():
            text = self.stdout_path.read_text(errors="replace") + text
        return text

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class Coordinator:
    proc: Proc
    data_dir: Path
    port: int
    url: str
    lease_timeout: float | None
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.url)

    @property
    def db(self) -> Path:
        return self.data_dir / "coordinator.sqlite3"

    @property
    def key(self) -> Any:
        """The coordinator's own signing key (the operator's), read from its data dir."""
        from depin.crypto import load_or_create_key

        path = self.data_dir / "coordinator.key"
        assert path.exists(), f"no coordinator key at {path}"
        return load_or_create_key(path)

    def grant(self, account: str, amount: int) -> dict[str, Any]:
        """The operator's grant (POST /v1/grants signed with the coordinator's key): the decoded answer."""
        from depin.client import Client

        key = self.key

        async def go() -> dict[str, Any]:
            async with Client(self.url) as c:
                return dict(await c.post_signed("/v1/grants", key, "grant", {"account": account, "amount": amount}))

        return run_async(go)

    def leases(self) -> list[dict[str, Any]]:
        """Every lease row (white-box: which worker holds what, in which state)."""
        rows = read_db(self.db, "SELECT lease_id, task_id, worker_id, state FROM leases")
        return [dict(zip(("lease_id", "task_id", "worker_id", "state"), r, strict=True)) for r in rows]

    def active_leases(self, worker_id: str) -> list[dict[str, Any]]:
        return [x for x in self.leases() if x["worker_id"] == worker_id and x["state"] == "active"]


@dataclass
class Worker:
    proc: Proc
    data_dir: Path
    worker_id: str

    def journal(self) -> list[dict[str, Any]]:
        """The results this worker has journaled and not yet had acknowledged."""
        from depin import codec

        rows = read_db(self.data_dir / "journal.sqlite3", "SELECT lease_id, item FROM pending")
        return [dict(codec.decode(item), lease_id=lease_id) for lease_id, item in rows]

    def journal_empty(self) -> bool:
        return not self.journal()


class Cluster:
    """Spawns coordinators, workers and CLI runs for one test (or module) and kills them all at the end."""

    def __init__(self, root: Path, numba_cache: Path) -> None:
        self.root = root
        self.numba_cache = numba_cache
        self.home = root / "home"  # the submitter's DEPIN_HOME
        self.procs: list[Proc] = []
        self._names: dict[str, int] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
        env.update(NUMBA_CACHE_DIR=str(self.numba_cache), DEPIN_HOME=str(self.home), PYTHONUNBUFFERED="1")
        # Test workers share two cores with each other: the idle policy would see one another as "in use". The
        # policy has its own tests (tests/worker/test_policy.py, tests/integration/test_e2e_worker_policy.py).
        env.update(DEPIN_WORKER_ALWAYS="1", DEPIN_WORKER_PAGE_PORT="off")
        # Nor do they bond on their own: each scenario states its workers' bonds (a bond changes trust, single issue
        # and balances). Auto-bonding has its own tests (tests/worker/test_bonding.py, test_e2e_autobond.py).
        env.update(DEPIN_WORKER_AUTO_BOND="0")
        env.update(extra)
        return env

    def _unique(self, name: str) -> str:
        n = self._names.get(name, 0)
        self._names[name] = n + 1
        return name if n == 0 else f"{name}.{n}"

    def spawn(self, name: str, args: list[str], *, cwd: Path | None = None, stdout_path: Path | None = None,
              env: dict[str, str] | None = None) -> Proc:
        name = self._unique(name)
        proc = Proc(name, args, self.root / f"{name}.log", env or self.env(), cwd or self.root, stdout_path)
        self.procs.append(proc)
        return proc

    def coordinator(self, name: str = "coordinator", *, port: int = 0, lease_timeout: float | None = None,
                    data_dir: Path | None = None, extra: tuple[str, ...] = ()) -> Coordinator:
        """Start `depin coordinator` (with `extra` flags) and wait for its "listening" line."""
        data_dir = data_dir or self.root / name
        args = [sys.executable, "-m", "depin.cli.main", "coordinator", "--data-dir", str(data_dir),
                "--port", str(port), *extra]
        if lease_timeout is not None:
            args += ["--lease-timeout", str(lease_timeout)]
        unique = self._unique(name + "-stdout")
        proc = self.spawn(name, args, stdout_path=self.root / f"{unique}.out")
        prefix = "coordinator listening on "

        def listening() -> str | None:
            for line in proc.stdout_path.read_text().splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            return None

        url = wait_until(listening, f"{proc.name} to listen", START_TIMEOUT_S)
        assert url.startswith("http://127.0.0.1:"), url
        return Coordinator(proc, data_dir, int(url.rsplit(":", 1)[1]), url, lease_timeout)

    def restart(self, c: Coordinator) -> Coordinator:
        """A new coordinator process on the same data dir and port (the old one must be gone)."""
        assert not c.proc.alive()
        return self.coordinator(c.data_dir.name, port=c.port, lease_timeout=c.lease_timeout, data_dir=c.data_dir)

    def worker(self, coordinator: Coordinator | str, name: str = "worker", *, batch: int | None = None,
               coordinator_key: str | None = None, data_dir: Path | None = None, extra: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> Worker:
        """Start `depin worker` (in `env`, default `self.env()`); its key is made first so the test knows its id."""
        from depin.crypto import load_or_create_key

        url = coordinator if isinstance(coordinator, str) else coordinator.url
        data_dir = data_dir or self.root / name
        worker_id = load_or_create_key(data_dir / "worker.key").id
        args = [sys.executable, "-m", "depin.cli.main", "worker", "--coordinator", url, "--data-dir", str(data_dir)]
        if batch is not None:
            args += ["--batch", str(batch)]
        if coordinator_key is not None:
            args += ["--coordinator-key", coordinator_key]
        return Worker(self.spawn(name, args + list(extra), env=env), data_dir, worker_id)

    def home_id(self, home: Path | None = None) -> str:
        """The id of the submitter key in `home` (default: the cluster's DEPIN_HOME), made if missing."""
        from depin.crypto import load_or_create_key

        return load_or_create_key((home or self.home) / "key").id

    def fund(self, coordinator: Coordinator, amount: int = 10**9, home: Path | None = None) -> str:
        """Grant `amount` credits to the submitter key of `home` (default DEPIN_HOME); its id."""
        account = self.home_id(home)
        coordinator.grant(account, amount)
        return account

    def cli(self, *args: str, timeout: float = 120.0, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real `depin` console script to completion."""
        return subprocess.run([str(DEPIN), *args], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.root, env=env or self.env(), stdin=subprocess.DEVNULL)

    def close(self) -> None:
        for p in self.procs:
            p.kill()

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} (pid {p.pid}, rc {p.popen.poll()}): {p.log_path}\n{p.tail()}"
                         for p in self.procs)


# ---- the status page's DOM ---------------------------------------------------------------------------------


class RowParser(html.parser.HTMLParser):
    """Collects the text of every <tr> carrying `attr`, keyed by the attribute's value, cell by cell; and the whole
    text (children included) of every element with an id, in `ids`."""

    VOID = frozenset({"br", "img", "input", "meta", "link", "hr", "wbr", "col", "source", "area", "base"})

    def __init__(self, attr: str) -> None:
        super().__init__()
        self.attr = attr
        self.rows: dict[str, list[str]] = {}
        self.ids: dict[str, str] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._open: list[str | None] = []  # the id (or None) of each open element, innermost last

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        row, element_id = a.get(self.attr), a.get("id")
        if tag == "tr" and row is not None:
            self._row = row
            self.rows[row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        if tag not in self.VOID:
            self._open.append(element_id or None)
        if element_id:
            self.ids.setdefault(element_id, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        if tag not in self.VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for element_id in self._open:
            if element_id is not None:
                self.ids[element_id] += data
