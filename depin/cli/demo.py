"""`depin demo`: a coordinator and local workers in a temporary dir, one real mandelbrot job, then a clean stop.

Every part runs as its own process, exactly as a user would start it (`depin coordinator`, `depin worker`), so
the demo exercises the real protocol on loopback rather than a shortcut.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from depin.cli import output
from depin.cli.commands import fetch_result, wait_for
from depin.client import Client
from depin.crypto import load_or_create_key
from depin.errors import DepinError, UserError

DEMO_JOB = {"width": 960, "height": 720, "x_min": -2.2, "x_max": 0.8, "y_min": -1.125, "y_max": 1.125,
            "max_iter": 500}
DEMO_TASKS = 24
DEMO_REPLICAS = 2
DEMO_PRICE = 10
DEMO_GRANT = 100_000
START_TIMEOUT_S = 30.0


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "depin.cli.main", *args]


def start_coordinator(data_dir: Path, log_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `depin coordinator` on a free loopback port; return the process and its URL."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(_cmd("coordinator", "--data-dir", str(data_dir), "--port", "0", *extra),
                            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(b"coordinator listening on ") or not line:
            break
    if not line.startswith(b"coordinator listening on "):
        proc.kill()
        raise DepinError(f"the coordinator did not start; see {log_path}")
    return proc, line.decode().split()[-1]


def start_worker(url: str, data_dir: Path, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start `depin worker` against `url`."""
    log = open(log_path, "ab")
    return subprocess.Popen(_cmd("worker", "--coordinator", url, "--data-dir", str(data_dir), *extra),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    """SIGTERM each process, then SIGKILL whatever is still running after the timeout."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="depin-demo-") as tmp:
        yield Path(tmp)


def _owner_page(log_path: Path) -> str | None:
    """The owner's page URL a worker logged ("owner page on http://127.0.0.1:PORT/"), if it did."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = [line.rsplit(" ", 1)[-1] for line in text.splitlines() if "owner page on http://" in line]
    return found[-1] if found else None


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 if the job finished and the ledger verified."""
    if not 1 <= args.workers <= 32:
        raise UserError("--workers must be between 1 and 32")
    if args.workers < DEMO_REPLICAS:
        raise UserError(f"--workers must be at least {DEMO_REPLICAS}: each task is computed by {DEMO_REPLICAS} workers")
    picture = Path(args.output)
    with _workspace() as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            coordinator, url = start_coordinator(tmp / "coordinator", tmp / "coordinator.log",
                                                 "--checkpoint-interval", "0.5")
            procs.append(coordinator)
            print(f"coordinator  {url}   (data in {tmp})")
            for i in range(args.workers):
                # --always: the demo's workers share this machine and would take one another for its user
                page = ("--page-port", "0") if i == 0 else ("--no-page",)  # one owner's page is enough
                procs.append(start_worker(url, tmp / f"worker-{i}", tmp / f"worker-{i}.log", "--always", *page))
            print(f"workers      {args.workers} local processes")
            code = asyncio.run(_job(url, tmp, picture))
            owner = _owner_page(tmp / "worker-0.log")
            if owner:
                print(f"owner page   {owner}  (worker 0's own page: what it earned, and why it would pause)")
            if args.keep:
                print(f"\nstatus page  {url}/   (Ctrl-C to stop)")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
            return code
        finally:
            stop(procs[1:])
            stop(procs[:1])


async def _job(url: str, tmp: Path, picture: Path) -> int:
    from depin import ledger, ledger_client

    key = load_or_create_key(tmp / "submitter.key")
    operator = load_or_create_key(tmp / "coordinator" / "coordinator.key")
    async with Client(url) as c:
        await c.post_signed("/v1/grants", operator, "grant", {"account": key.id, "amount": DEMO_GRANT})
        print(f"grant        {DEMO_GRANT} credits to the submitter {key.id}")
        payload = {"kernel": "mandelbrot", "params": DEMO_JOB, "tasks": DEMO_TASKS, "replicas": DEMO_REPLICAS,
                   "max_results": None, "price": DEMO_PRICE}
        started = time.monotonic()
        submitted = await c.post_signed("/v1/jobs", key, "submit", payload)
        job_id = submitted["job_id"]
        print(f"job          {job_id}: mandelbrot {DEMO_JOB['width']}x{DEMO_JOB['height']}, "
              f"{DEMO_TASKS} tasks x {DEMO_REPLICAS} replicas at {DEMO_PRICE} credits per validated result;"
              f" {submitted['escrow']} credits escrowed")
        job = await wait_for(c, job_id, show=True)
        elapsed = time.monotonic() - started
        if job["state"] != "done":
            print(f"job {job_id} ended {job['state']}: {job.get('error')}", file=sys.stderr)
            return 1
        print(f"done         in {elapsed:.1f}s; {await fetch_result(c, key, job_id, picture)}")
        workers = (await c.get_json("/v1/workers"))["workers"]
        left = (await c.get_json(f"/v1/accounts/{key.id}"))["balance"]
        paid = sum(w["balance"] + w["bond"] for w in workers)  # a worker may have bonded some of it already
        print(f"paid         {paid} credits for validated results; {left} of {DEMO_GRANT} back with the submitter")
        print("\nearnings\n" + output.earnings_table(workers))
        coordinator = await ledger_client.coordinator_key(c)
        total = (await c.get_json("/v1/ledger?limit=1"))["total"]  # the job is settled: its refund is written
        cp = await ledger_client.latest_checkpoint(c, coordinator)
        while cp.size < total:  # checkpoints follow within --checkpoint-interval
            await asyncio.sleep(0.2)
            cp = await ledger_client.latest_checkpoint(c, coordinator)
        entries: list[dict[str, object]] = []
        while len(entries) < cp.size:
            page = await c.get_json(f"/v1/ledger?start={len(entries)}&limit={min(1000, cp.size - len(entries))}")
            entries += page["entries"]
        entry, _ = await ledger_client.prove_entry(c, coordinator, cp.size - 1)
    summary = ledger.verify(entries)
    if summary.root_hash != cp.root.hex():
        print("ledger root does not match the signed checkpoint", file=sys.stderr)
        return 1
    print(f"\nledger       ok: {summary.entries} entries, root {summary.root_hash} signed by the coordinator;"
          f" conservation holds ({summary.minted} minted)")
    print(f"proof        entry {entry['seq']} ({entry['kind']} of {entry['amount']}) checked against the checkpoint")
    print(f"status page  {url}/  (up while the demo runs; `depin demo --keep` keeps it up)")
    return 0

