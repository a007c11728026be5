"""The status page, rendered by a real headless browser (Debian's chromium): the DOM its JavaScript builds shows
every job with its state and every worker with its balance, exactly as /v1/status has them.

`bash tests/setup_browser.sh` installs chromium (as root); without it this test is skipped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from depin.crypto import SigningKey
from tests.integration.support import Cluster, RowParser, submit

CHROMIUM = Path("/usr/bin/chromium")
JOB = {"width": 64, "height": 48, "max_iter": 64}
SMALL = [arg for k, v in JOB.items() for arg in ("-p", f"{k}={v}")]


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
def test_status_page_shows_jobs_and_balances(cluster: Cluster, tmp_path: Path) -> None:
    coordinator = cluster.coordinator()
    # One job cancelled before any worker exists, one done by two workers.
    cancelled = cluster.cli("submit", "--coordinator", coordinator.url, "mandelbrot", *SMALL).stdout.strip()
    assert cluster.cli("cancel", "--coordinator", coordinator.url, cancelled).returncode == 0
    workers = [cluster.worker(coordinator, f"worker-{i}") for i in range(2)]
    done = submit(coordinator.url, SigningKey.generate(), JOB, tasks=2, replicas=2, price=3)
    assert coordinator.api.wait_job(done)["state"] == "done"
    status = coordinator.api.status()  # nothing changes any more: both jobs have ended

    html = dump_dom(coordinator.url + "/", tmp_path / "chromium-profile")
    jobs, workers_rows = RowParser("data-job"), RowParser("data-worker")
    jobs.feed(html)
    workers_rows.feed(html)

    assert set(jobs.rows) == {j["job_id"] for j in status["jobs"]} == {done, cancelled}
    for j in status["jobs"]:  # cells: job, kernel, state, progress bar, validated/total, replicas, price, note
        cells = jobs.rows[j["job_id"]]
        assert cells[0] == j["job_id"]
        assert cells[2] == j["state"], cells
        assert cells[4] == f"{j['tasks_validated']}/{j['tasks_total']}", cells
    assert jobs.rows[done][2] == "done" and jobs.rows[cancelled][2] == "cancelled"

    assert set(workers_rows.rows) == {w["worker_id"] for w in status["workers"]} == {w.worker_id for w in workers}
    for w in status["workers"]:  # cells: worker, validated, rejected, balance, trust, flags, last seen
        cells = workers_rows.rows[w["worker_id"]]
        assert cells[0] == w["worker_id"]
        assert cells[3] == str(w["balance"]), cells
        assert w["balance"] == 2 * 3  # both tasks of the done job, one replica each, at price 3
        # Two cross-checked results: a trust streak of 2 towards the 10 that make a worker trusted; no flags.
        assert cells[4] == "mandelbrot@1 2/10", cells
        assert cells[5] == "", cells
    assert jobs.ids.get("coordinator") == status["coordinator_id"]
