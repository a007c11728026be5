"""The status page, rendered by a real headless browser (Debian's chromium): the DOM its JavaScript builds shows
every job with its state, price, escrow held and max cost, every worker with its balance and minimum price, the
market (open jobs by price, the asks of online workers) and the ledger's money, exactly as /v1/status has them.

`bash tests/setup_browser.sh` installs chromium (as root); without it this test is skipped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from depin.crypto import SigningKey
from tests.integration.support import Cluster, RowParser, submit, wait_until

CHROMIUM = Path("/usr/bin/chromium")
JOB = {"width": 64, "height": 48, "max_iter": 64}
SMALL = [arg for k, v in JOB.items() for arg in ("-p", f"{k}={v}")]
ASK = 2  # both workers' --min-price: the price-3 job is theirs, the price-1 job nobody's


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran, as chromium serialises it."""
    got = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert got.returncode == 0, got.stderr[-2000:]
    return got.stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium; run `bash tests/setup_browser.sh` as root")
@pytest.mark.timeout(180)
def test_status_page_shows_jobs_prices_and_balances(cluster: Cluster, tmp_path: Path) -> None:
    coordinator = cluster.coordinator()
    # One job cancelled before any worker exists, one done by two workers, one nobody will take (it pays less than
    # the workers ask), so it stays open with its whole escrow held.
    cluster.fund(coordinator, 10_000)
    cancelled = cluster.cli("submit", "--coordinator", coordinator.url, "mandelbrot", *SMALL).stdout.strip()
    assert cluster.cli("cancel", "--coordinator", coordinator.url, cancelled).returncode == 0
    workers = [cluster.worker(coordinator, f"worker-{i}", extra=("--min-price", str(ASK))) for i in range(2)]
    done = submit(coordinator, SigningKey.generate(), JOB, tasks=2, replicas=2, price=3)
    assert coordinator.api.wait_job(done)["state"] == "done"
    cheap = submit(coordinator, SigningKey.generate(), JOB, tasks=2, replicas=2, price=1)
    wait_until(lambda: all(w["min_price"] == ASK for w in coordinator.api.workers().values())
               and len(coordinator.api.workers()) == 2, "both workers to have told their minimum price")
    coordinator.api.wait_checkpointed()  # nothing changes any more: two jobs ended, one nobody takes
    status = coordinator.api.status()
    assert status["ledger"]["checkpoint"]["size"] == status["ledger"]["entries"]

    html = dump_dom(coordinator.url + "/", tmp_path / "chromium-profile")
    jobs, workers_rows = RowParser("data-job"), RowParser("data-worker")
    jobs.feed(html)
    workers_rows.feed(html)

    assert set(jobs.rows) == {j["job_id"] for j in status["jobs"]} == {done, cancelled, cheap}
    for j in status["jobs"]:
        # cells: job, kernel, state, progress bar, validated/total, replicas, price, escrow held, max cost, note
        cells = jobs.rows[j["job_id"]]
        assert cells[0] == j["job_id"]
        assert cells[2] == j["state"], cells
        assert cells[4] == f"{j['tasks_validated']}/{j['tasks_total']}", cells
        assert cells[6] == str(j["price"]), cells
        assert cells[7] == str(j["escrow"]), cells
        assert cells[8] == str(j["max_cost"]), cells
    assert [jobs.rows[x][2] for x in (done, cancelled, cheap)] == ["done", "cancelled", "queued"]
    assert [jobs.rows[x][6] for x in (done, cancelled, cheap)] == ["3", "10", "1"]
    # Ended jobs hold nothing; the open one holds its max cost, 2 tasks x 5 results x 1 credit.
    assert [jobs.rows[x][7] for x in (done, cancelled, cheap)] == ["0", "0", "10"]

    assert set(workers_rows.rows) == {w["worker_id"] for w in status["workers"]} == {w.worker_id for w in workers}
    for w in status["workers"]:
        # cells: worker, validated, rejected, balance, min price, trust, flags, last seen
        cells = workers_rows.rows[w["worker_id"]]
        assert cells[0] == w["worker_id"]
        assert cells[3] == str(w["balance"]), cells
        assert w["balance"] == 2 * 3  # both tasks of the done job, one replica each, at price 3
        assert cells[4] == str(ASK), cells
        # Two cross-checked results: a trust streak of 2 towards the 10 that make a worker trusted; still on
        # probation (3 validated results end it), and no other flag.
        assert cells[5] == "mandelbrot@1 2/10", cells
        assert cells[6] == "on probation", cells
    assert jobs.ids.get("coordinator") == status["coordinator_id"]

    # The market line: the open job and its price; what the online workers ask.
    market = " ".join(jobs.ids["market"].split())
    assert f"{cheap} 1" in market and done not in market and cancelled not in market, market
    assert f"ask at least: {ASK}, {ASK} credits" in market, market
    # The ledger line: minted, in escrow, in bonds, paid to workers, the Merkle root and the last signed checkpoint.
    book = " ".join(jobs.ids["ledger"].split())
    ledger = status["ledger"]
    assert f"{ledger['entries']} entries; {ledger['minted']} credits minted, {ledger['in_escrow']} held in escrow," \
           f" {ledger['in_bonds']} in bonds, {ledger['total_credits']} in workers' accounts" in book, book
    assert ledger["in_escrow"] == 10 and ledger["total_credits"] == 2 * 2 * 3
    assert ledger["root_hash"] in book and f"last signed checkpoint: {ledger['checkpoint']['size']} entries" in book
