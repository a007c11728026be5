"""The worker's owner's page in a real headless browser (Debian's chromium), driven over the DevTools protocol: it
shows the state and why, the task in hand, the counts, the credits and their chart, the receipts, the energy
estimate and a ledger alarm; it follows the board and the journal as they change; it asks nothing of any host but
the worker's own 127.0.0.1 port (its Content-Security-Policy would block it, and the browser runs with every
host name unresolvable, i.e. offline); a name rebound to 127.0.0.1 gets a 403; it fits a phone's screen.

First over a fake data dir (a Board and a journal written here, as the daemon writes them), then over the journal
of a real worker that earned credits from a real coordinator, and the page that very worker serves itself.

`bash tests/setup_browser.sh` installs chromium (as root); without it these tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from depin import ledger
from depin.checkpoint import sign
from depin.crypto import SigningKey
from depin.protocol import ResultItem
from tests.integration.support import Cluster, Coordinator, Worker, read_db, submit, wait_until
from worker.journal import Journal
from worker.page import OwnerPage
from worker.status import Board, BondState, CurrentTask

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="no /usr/bin/chromium; run `bash tests/setup_browser.sh` as root")
REBOUND = "rebound.test"  # a name the browser resolves to 127.0.0.1, as an attacker's DNS would
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--lang=en-US",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-quic", "--remote-debugging-port=0", "--remote-allow-origins=*",
    # Offline: no host name resolves, except the one the rebinding check needs.
    f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
WAIT_S = 20.0  # a render the page should show within a couple of its one-second polls (generous: 2 shared cores)

# Every value the page shows, read from its DOM.
READ_DOM = """(() => {
  const t = id => document.getElementById(id).textContent.replace(/\\s+/g, " ").trim();
  const line = document.getElementById("chart-line");
  return {
    updated: t("updated"), error: t("error"), worker: t("worker-id"), state: t("state"), reason: t("reason"),
    since: t("since"), computed: t("computed"), accepted: t("accepted"), rejected: t("rejected"),
    task_shown: !document.getElementById("task").hidden, no_task_shown: !document.getElementById("no-task").hidden,
    task: ["task-id", "task-job", "task-kernel", "task-price", "task-chunks"].map(t),
    progress: [document.getElementById("task-progress").value, document.getElementById("task-progress").max],
    credits: t("credits"), ledger: t("ledger-line"), bond: t("bond-line"), energy: t("energy"),
    path: line.getAttribute("d"), points: line.dataset.points, chart: t("chart-desc"),
    receipts: [...document.querySelectorAll("#receipts tbody tr[data-lease]")].map(
      tr => [tr.dataset.lease, ...[...tr.cells].map(c => c.textContent.trim())]),
    alarm_shown: !document.getElementById("alarm").hidden,
    alarms: [...document.querySelectorAll("#alarm-list li")].map(li => li.textContent),
  };
})()"""

# Installed before the page's own script: records every Content-Security-Policy violation.
WATCH_CSP = """window.__csp = [];
document.addEventListener("securitypolicyviolation",
                          e => window.__csp.push(e.violatedDirective + " " + e.blockedURI));"""


# ---- a headless chromium over the DevTools protocol ----------------------------------------------------------


class Tab:
    """One page of the browser: commands in, results and events out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session: str | None = None
        self.requests: list[str] = []  # every URL the page asked for (Network.requestWillBeSent)
        self._ids = iter(range(1, 1 << 30))
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Network.requestWillBeSent" and data.get("sessionId") == self.session:
                self.requests.append(data["params"]["request"]["url"])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one DevTools command on this page (on the browser before `attach`); its result."""
        n = next(self._ids)
        self._waiting[n] = asyncio.get_running_loop().create_future()
        message: dict[str, Any] = {"id": n, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        await self.ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(self._waiting[n], 60)
        assert "error" not in answer, (method, answer["error"])
        return dict(answer["result"])

    async def attach(self) -> None:
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            await self.send(f"{domain}.enable")
        await self.send("Page.addScriptToEvaluateOnNewDocument", source=WATCH_CSP)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        got = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in got, got["exceptionDetails"]
        return got["result"].get("value")

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'", "the load")

    async def wait_for(self, expression: str, what: str, timeout: float = WAIT_S) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(AssertionError):  # mid-navigation there may be no context to evaluate in
                value = await self.evaluate(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                seen: Any = "nothing readable"
                with contextlib.suppress(AssertionError):
                    seen = await self.evaluate(f"[location.href, document.readyState, {READ_DOM}]")
                raise AssertionError(f"the page did not show {what} within {timeout:.0f}s: {seen}")
            await asyncio.sleep(0.1)

    async def dom(self) -> dict[str, Any]:
        return dict(await self.evaluate(READ_DOM))

    async def shows(self, check: str, what: str) -> dict[str, Any]:
        """Wait until the page's values satisfy `check` (a JavaScript expression over `d`, the READ_DOM object)."""
        await self.wait_for(f"(d => {check})({READ_DOM})", what)
        return await self.dom()


@contextlib.asynccontextmanager
async def chromium(root: Path) -> AsyncIterator[Tab]:
    """A headless chromium with a fresh profile under `root`, and one tab attached; killed (its whole process
    group) on the way out."""
    profile = root / "chromium-profile"
    with open(root / "chromium.log", "wb") as log:
        proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"  # chromium writes its debugging port and path here
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) == 2):
            assert proc.poll() is None, (root / "chromium.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "chromium did not open its debugging port"
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().split()
        async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{port}{path}",
                                                                     max_msg_size=0) as ws:
            tab = Tab(ws)
            await tab.attach()
            yield tab
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


async def check_stays_home(tab: Tab, url: str) -> None:
    """Everything the page loaded came from its own origin, and nothing broke its Content-Security-Policy; then,
    to show that check can fail, a request elsewhere is blocked and seen."""
    origin = url.rstrip("/")
    loaded = await tab.evaluate(
        "['navigation', 'resource'].flatMap(k => performance.getEntriesByType(k)).map(e => e.name)")
    assert loaded and all(u.startswith(origin + "/") for u in loaded), loaded
    assert tab.requests and all(u.startswith(origin + "/") for u in tab.requests), tab.requests
    assert any(u == origin + "/api/status" for u in tab.requests)
    assert await tab.evaluate("window.__csp") == []
    blocked = await tab.evaluate("fetch('http://example.com/x').then(() => 'fetched', e => 'blocked')")
    assert blocked == "blocked"
    await tab.evaluate("document.body.append(Object.assign(document.createElement('img'), "
                       "{src: 'https://example.com/pixel.png'}))")
    violations = await tab.wait_for("window.__csp.length >= 2 && window.__csp", "the CSP violations")
    assert sorted(v.split()[0] for v in violations) == ["connect-src", "img-src"], violations
    assert all("example.com" in v for v in violations), violations


async def check_refuses_a_rebound_name(tab: Tab, port: int) -> None:
    """A page on another name that resolves to 127.0.0.1 (DNS rebinding) reads a 403, not the owner's data."""
    await tab.send("Page.navigate", url=f"http://{REBOUND}:{port}/api/status")
    body = await tab.wait_for("location.hostname === 'rebound.test' && document.body && document.body.innerText",
                              "the answer to the rebound name")
    assert "forbidden" in body and "credits" not in body, body


async def check_fits_a_phone(tab: Tab, url: str) -> None:
    """At a phone's width nothing makes the page scroll sideways (the receipts table scrolls in its own box)."""
    phone = 360
    await tab.send("Emulation.setDeviceMetricsOverride", width=phone, height=740, deviceScaleFactor=2, mobile=True)
    await tab.open(url)
    await tab.shows("d.updated !== 'never' && d.receipts.length > 0", "its first update")
    # (Against the phone's width, not innerWidth: a mobile browser widens its layout viewport to what overflows.)
    widths = await tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth, "
                                "document.querySelector('#receipts').scrollWidth]")
    assert widths[0] <= phone and widths[1] == phone, widths
    assert widths[2] > phone, widths  # the table is wider, and scrolls in its own box
    await tab.send("Emulation.clearDeviceMetricsOverride")


def path_points(d: str) -> int:
    """How many points an SVG path's `d` (M x y L x y ...) draws through."""
    return len(re.findall(r"[ML]\s*-?[\d.]+\s+-?[\d.]+", d or ""))


# ---- over a fake data dir ------------------------------------------------------------------------------------

WORKER = "w" * 32
COORDINATOR_KEY = SigningKey.generate()


def _result(lease: str) -> ResultItem:
    return ResultItem(lease_id=lease, task_id=f"T-{lease}", output={"dtype": "uint32", "shape": [1],
                                                                     "data": b"\0" * 4}, elapsed_ms=1)


def _credit(journal: Journal, lease: str, seq: int, amount: int, when: int, cp_size: int) -> None:
    entry = ledger.make_entry(None, time=when, kind="reward", from_="escrow:J1", to=WORKER, amount=amount,
                              job_id="J1", task_id=f"T-{lease}").to_dict()
    cp = sign(COORDINATOR_KEY, size=cp_size, root=bytes(32), time=when + 500)
    journal.add_evidence(cp, [(dict(entry, seq=seq), [])], now_ms=when + 600)


@pytest.mark.timeout(180)
async def test_the_owner_page_shows_and_follows_the_board_and_the_journal(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    board = Board(WORKER, "http://coordinator.example:8642", state="running", reason="idle for 5 min",
                  since_ms=now - 90_000)
    board.task = CurrentTask("L2", "T-L2", "J1", "mandelbrot", 7, started_ms=now - 5_000, chunks_done=1,
                             chunks_total=4)
    board.computed, board.accepted, board.cpu_seconds = 2, 1, 3600.0
    board.bond = BondState(auto_bond=True, max_bond=1000, target=400, bonded=250, balance=40,
                           note="waiting for 100 spendable credits to bond")
    journal = Journal(tmp_path / "journal.sqlite3")  # the daemon's writer, open all along
    journal.add(_result("L0"), now_ms=now - 60_000, job_id="J1", price=7)
    journal.remove(["L0"], [("accepted", "")], now_ms=now - 59_000)
    journal.add(_result("L1"), now_ms=now - 30_000, job_id="J1", price=7)
    _credit(journal, "L0", seq=3, amount=7, when=now - 50_000, cp_size=10)

    owner = OwnerPage(board, tmp_path / "journal.sqlite3", watts=20.0, port=0)
    url = await owner.start()
    try:
        async with chromium(tmp_path) as tab:
            await tab.open(url)
            d = await tab.shows("d.updated !== 'never' && d.credits === '7'", "the first status")
            assert d["error"] == "" and d["worker"] == WORKER
            assert (d["state"], d["reason"]) == ("running", "idle for 5 min")
            assert d["since"].endswith("(1 min)"), d["since"]
            assert (d["computed"], d["accepted"], d["rejected"]) == ("2", "1", "0")
            assert d["task_shown"] and not d["no_task_shown"]
            assert d["task"] == ["T-L2", "J1", "mandelbrot", "7", "1/4"] and d["progress"] == [1, 4]
            assert d["ledger"].startswith("1 ledger entry paying this worker") and "; 1 checkpoint kept" in d["ledger"]
            assert "the latest covering 10 entries" in d["ledger"]
            assert d["bond"] == ("250 credits bonded, 40 spendable; auto-bond (target 400, max 1000): waiting for 100 "
                                 "spendable credits to bond")
            assert (d["points"], path_points(d["path"])) == ("1", 1)
            # cells: sent, task, job, price, acknowledged, credited, entry, checkpoint; newest first
            assert [r[0] for r in d["receipts"]] == ["L1", "L0"]
            assert d["receipts"][0][2:] == ["T-L1", "J1", "7", "waiting for the coordinator", "–", "–", "–"]
            assert d["receipts"][1][2:5] == ["T-L0", "J1", "7"] and d["receipts"][1][5].startswith("accepted at ")
            assert d["receipts"][1][6:] == ["7", "3", "10"]
            # 20 W for one CPU hour: 20 Wh, for 7 credits.
            assert d["energy"] == "CPU time 1.00 h · 0.020 kWh at 20.0 W · 2.86 Wh per credit"
            assert not d["alarm_shown"]

            # The daemon moves on: paused on battery, the task done and rejected, another credit, a ledger alarm.
            board.move("paused", "on battery (34%, below 50%)")
            board.task = None
            board.computed, board.accepted, board.rejected, board.cpu_seconds = 3, 2, 1, 7200.0
            board.bond.bonded, board.bond.balance, board.bond.note = 350, 0, "bonded 100 credits"
            journal.add(_result("L2"), now_ms=now + 1, job_id="J1", price=7)
            journal.remove(["L1", "L2"], [("accepted", ""), ("rejected", "disagreed with the quorum")], now_ms=now + 2)
            _credit(journal, "L1", seq=8, amount=7, when=now - 20_000, cp_size=12)
            journal.alarm("LEDGER FORK: checkpoint 12 does not extend checkpoint 10", now_ms=now + 3)

            d = await tab.shows("d.state === 'paused' && d.credits === '14' && d.alarm_shown", "the new state")
            assert d["reason"] == "on battery (34%, below 50%)" and re.search(r"\(\d+ s\)$", d["since"]), d["since"]
            assert (d["computed"], d["accepted"], d["rejected"]) == ("3", "2", "1")
            assert d["bond"] == "350 credits bonded, 0 spendable; auto-bond (target 400, max 1000): bonded 100 credits"
            assert not d["task_shown"] and d["no_task_shown"]
            assert (d["points"], path_points(d["path"])) == ("2", 2)
            assert d["chart"].startswith("14 credits from ")
            assert [r[0] for r in d["receipts"]] == ["L2", "L1", "L0"]
            assert d["receipts"][0][5].startswith("rejected (disagreed with the quorum) at ")
            assert d["receipts"][0][6:] == ["–", "–", "–"]
            assert d["receipts"][1][6:] == ["7", "8", "12"]
            assert d["energy"] == "CPU time 2.00 h · 0.040 kWh at 20.0 W · 2.86 Wh per credit"
            assert len(d["alarms"]) == 1 and d["alarms"][0].endswith(
                ": LEDGER FORK: checkpoint 12 does not extend checkpoint 10")
            banner = await tab.evaluate("document.getElementById('alarm').getAttribute('role') + ' ' + "
                                        "getComputedStyle(document.getElementById('alarm')).backgroundColor + ' ' + "
                                        "document.getElementById('alarm').innerText")
            assert banner.startswith("alert rgb(185, 28, 28) LEDGER ALARM"), banner

            await check_stays_home(tab, url)
            await check_fits_a_phone(tab, url)
            await check_refuses_a_rebound_name(tab, int(url.rsplit(":", 1)[1].rstrip("/")))
    finally:
        await owner.stop()
        journal.close()


# ---- over a real worker --------------------------------------------------------------------------------------


JOB = {"width": 64, "height": 48, "max_iter": 64}
PAGE_LINE = re.compile(r"owner page on (http://127\.0\.0\.1:\d+/)")


def _proved(worker: Worker) -> list[tuple[int, int, str]]:
    """(seq, amount, task) of every credit the worker proved, from its journal."""
    return [(r[0], r[1], r[2]) for r in
            read_db(worker.data_dir / "journal.sqlite3", "SELECT seq, amount, task_id FROM credits ORDER BY seq")]


@pytest.fixture(scope="module")
def earned(module_cluster: Cluster) -> tuple[Coordinator, Worker, list[dict[str, Any]]]:
    """A worker (serving its page on a free port) that computed a job with another, was paid and proved it all:
    its rewards in the coordinator's ledger."""
    cluster = module_cluster
    coordinator = cluster.coordinator()
    audit = ("--audit-interval", "0.5", "--always")  # always: the two workers load the machine each other watches
    mine = cluster.worker(coordinator, "worker-a", extra=("--page-port", "0", *audit))
    cluster.worker(coordinator, "worker-b", extra=audit)
    try:
        job = submit(coordinator, SigningKey.generate(), JOB, tasks=4, replicas=2, price=3)
        assert coordinator.api.wait_job(job)["state"] == "done"
        coordinator.api.wait_checkpointed()
        rewards = [e for e in coordinator.api.rewards() if e["to"] == mine.worker_id]
        assert len(rewards) == 4  # each task went to both workers
        wait_until(lambda: len(_proved(mine)) == len(rewards), "the worker to prove every credit it was paid")
    except BaseException:
        print(f"\nprocess logs:\n{cluster.logs()}")  # a module fixture's failure prints no logs by itself
        raise
    return coordinator, mine, rewards


def _check_earnings(d: dict[str, Any], worker: Worker, rewards: list[dict[str, Any]]) -> None:
    assert d["worker"] == worker.worker_id
    assert d["credits"] == str(sum(e["amount"] for e in rewards)) == "12"
    assert (d["points"], path_points(d["path"])) == ("4", 4)
    story = read_db(worker.data_dir / "journal.sqlite3", "SELECT s.lease_id, c.seq FROM sent s LEFT JOIN credits c "
                    "ON c.kind = 'reward' AND c.task_id = s.task_id ORDER BY s.computed DESC, s.lease_id DESC")
    assert [r[0] for r in d["receipts"]] == [lease for lease, _ in story]
    assert sorted(r[7] for r in d["receipts"]) == sorted(str(e["seq"]) for e in rewards)
    assert all(r[5].startswith("accepted at ") for r in d["receipts"]), d["receipts"]
    assert not d["alarm_shown"]


@pytest.mark.timeout(600)  # the first integration test of a session also compiles the shared numba cache
async def test_over_the_journal_of_a_real_worker(earned: tuple[Coordinator, Worker, list[dict[str, Any]]],
                                                 tmp_path: Path) -> None:
    coordinator, worker, rewards = earned
    board = Board(worker.worker_id, coordinator.url, state="running", reason="idle")
    owner = OwnerPage(board, worker.data_dir / "journal.sqlite3", watts=15.0, port=0)
    url = await owner.start()
    try:
        async with chromium(tmp_path) as tab:
            await tab.open(url)
            d = await tab.shows("d.credits === '12' && d.receipts.length === 4", "the worker's credits")
            _check_earnings(d, worker, rewards)
            await check_stays_home(tab, url)
    finally:
        await owner.stop()


@pytest.mark.timeout(600)  # the first integration test of a session also compiles the shared numba cache
async def test_the_page_a_real_worker_serves(earned: tuple[Coordinator, Worker, list[dict[str, Any]]],
                                            tmp_path: Path) -> None:
    coordinator, worker, rewards = earned

    def logged() -> str | None:
        found = PAGE_LINE.search(worker.proc.log())
        return found.group(1) if found else None

    url = wait_until(logged, "the worker to log its page's URL", timeout=30)
    async with chromium(tmp_path) as tab:
        await tab.open(url)
        d = await tab.shows("d.credits === '12' && d.receipts.length === 4 && d.state === 'running'",
                            "the worker's own state and credits")
        _check_earnings(d, worker, rewards)
        assert (d["computed"], d["rejected"]) == ("4", "0")
        assert d["energy"].startswith("CPU time ") and "Wh per credit" in d["energy"]
        await check_stays_home(tab, url)

