"""worker.page: the owner's JSON API and page over a Board and a journal, through aiohttp's test client (no browser:
tests/integration/test_e2e_owner_page.py renders it in chromium)."""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from depin import ledger
from depin.checkpoint import sign
from depin.crypto import SigningKey
from depin.errors import UserError
from depin.protocol import ResultItem
from worker import page as page_module
from worker.journal import Journal
from worker.page import OwnerPage, cumulative, energy, host_allowed
from worker.status import Board, CurrentTask

WORKER = "w" * 32
COORDINATOR_KEY = SigningKey.generate()


def _board() -> Board:
    return Board(WORKER, "http://127.0.0.1:8642", since_ms=1_000)


def _result(n: int) -> ResultItem:
    return ResultItem(lease_id=f"L{n}", task_id=f"J-{n}", output={"dtype": "uint32", "shape": [1], "data": b"\0" * 4},
                      elapsed_ms=1)


def _credit(seq: int, task: str | None, amount: int, when: int, kind: str = "reward") -> dict[str, Any]:
    e = ledger.make_entry(None, time=when, kind=kind, from_="escrow:J", to=WORKER, amount=amount, job_id="J",
                          task_id=task).to_dict()
    return dict(e, seq=seq)


def _checkpoint(size: int, when: int = 0) -> Any:
    return sign(COORDINATOR_KEY, size=size, root=bytes(32), time=when)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[OwnerPage, TestClient[Any, Any]]]:
    owner = OwnerPage(_board(), tmp_path / "journal.sqlite3", watts=20.0)
    client = TestClient(TestServer(owner.app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield owner, client
    finally:
        await client.close()


async def _status(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.get("/api/status")
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


# ---- pure parts --------------------------------------------------------------------------------------------


def test_only_the_loopback_names_of_this_port_are_allowed_hosts() -> None:
    assert host_allowed("127.0.0.1:8643", 8643) and host_allowed("localhost:8643", 8643)
    assert host_allowed("LocalHost:8643", 8643)
    for bad in ("evil.example:8643", "127.0.0.1:8644", "127.0.0.1", "localhost", "127.0.0.1.evil.example:8643",
                "[::1]:8643", "0.0.0.0:8643", "", None):
        assert not host_allowed(bad, 8643), bad
    assert host_allowed("127.0.0.1", 80) and host_allowed("127.0.0.1:80", 80)


def test_the_series_is_cumulative_and_thinned_exactly() -> None:
    assert cumulative([]) == []
    assert cumulative([(10, 5), (20, 5), (20, 3)]) == [[10, 5], [20, 10], [20, 13]]
    many = [(t, 1) for t in range(10_001)]
    thin = cumulative(many, max_points=100)
    assert len(thin) == 100
    assert thin[0] == [0, 1] and thin[-1] == [10_000, 10_001]  # the first credit and the total
    assert all(v == t + 1 for t, v in thin)  # every kept point is a true point of the full series
    assert [t for t, _ in thin] == sorted({t for t, _ in thin})


def test_energy_per_credit() -> None:
    got = energy(20.0, 7200.0, 8)
    assert got == {"watts": 20.0, "cpu_seconds": 7200.0, "cpu_hours": 2.0, "kwh": pytest.approx(0.04),
                   "wh_per_credit": pytest.approx(5.0)}
    assert energy(20.0, 0.0, 0)["wh_per_credit"] is None


# ---- the API -----------------------------------------------------------------------------------------------


async def test_no_journal_yet_gives_empty_earnings_not_an_error(
        served: tuple[OwnerPage, TestClient[Any, Any]], tmp_path: Path) -> None:
    owner, client = served
    st = await _status(client)
    assert st["state"] == owner.board.snapshot()
    assert st["earnings"] == {"credits": 0, "entries": 0, "series": [], "receipts": [], "results": 0,
                              "checkpoints": {"count": 0, "latest_size": None, "latest_time": None}, "error": None}
    assert st["energy"]["wh_per_credit"] is None and st["alarms"] == []
    assert not (tmp_path / "journal.sqlite3").exists()  # reading never creates the journal


async def test_status_joins_the_board_and_the_journal(served: tuple[OwnerPage, TestClient[Any, Any]]) -> None:
    owner, client = served
    board = owner.board
    board.move("paused", "on battery (34%)", now_ms=5_000)
    board.task = CurrentTask("L9", "J-9", "J", "mandelbrot", 7, started_ms=4_000, chunks_done=2, chunks_total=5)
    board.computed, board.accepted, board.rejected, board.cpu_seconds = 3, 2, 1, 5400.0
    journal = Journal(owner.journal_path)  # the daemon's writer connection, kept open throughout
    for n in range(3):
        journal.add(_result(n), now_ms=100 + n, job_id="J", price=7)
    journal.remove(["L0", "L1", "L2"], [("accepted", ""), ("accepted", ""), ("rejected", "late")], now_ms=200)
    journal.add_evidence(_checkpoint(10, when=250), [(_credit(4, "J-0", 7, when=210), ["aa" * 32])], now_ms=260)
    journal.add_evidence(_checkpoint(12, when=350), [(_credit(11, "J-1", 7, when=310), [])], now_ms=360)

    st = await _status(client)
    assert st["state"]["state"] == "paused" and st["state"]["reason"] == "on battery (34%)"
    assert st["state"]["since_ms"] == 5_000
    assert st["state"]["task"] == {"lease_id": "L9", "task_id": "J-9", "job_id": "J", "kernel": "mandelbrot",
                                   "price": 7, "started_ms": 4_000, "chunks_done": 2, "chunks_total": 5}
    assert (st["state"]["computed"], st["state"]["accepted"], st["state"]["rejected"]) == (3, 2, 1)
    e = st["earnings"]
    assert (e["credits"], e["entries"], e["results"], e["error"]) == (14, 2, 3, None)
    assert e["series"] == [[210, 7], [310, 14]]  # each credit at its ledger entry's time
    assert e["checkpoints"] == {"count": 2, "latest_size": 12, "latest_time": 350}
    assert e["receipts"] == journal.story()
    assert [(r["lease_id"], r["status"], r["seq"], r["checkpoint"]) for r in e["receipts"]] == [
        ("L0", "accepted", 4, 10), ("L1", "accepted", 11, 12), ("L2", "rejected", None, None)]
    # 20 W for 1.5 CPU hours is 30 Wh, for 14 credits.
    assert st["energy"] == {"watts": 20.0, "cpu_seconds": 5400.0, "cpu_hours": 1.5, "kwh": pytest.approx(0.03),
                            "wh_per_credit": pytest.approx(30 / 14)}

    # The next request sees what changed since, on the board and in the journal.
    board.move("running", "idle", now_ms=6_000)
    board.task = None
    journal.alarm("LEDGER FORK: checkpoint 12 does not extend 10", now_ms=400)
    st = await _status(client)
    assert (st["state"]["state"], st["state"]["task"]) == ("running", None)
    assert st["alarms"] == [{"time": 400, "message": "LEDGER FORK: checkpoint 12 does not extend 10"}]
    journal.close()


async def test_reading_never_waits_for_the_daemon_nor_sees_half_a_write(
        served: tuple[OwnerPage, TestClient[Any, Any]]) -> None:
    owner, client = served
    journal = Journal(owner.journal_path)
    journal.add(_result(0), now_ms=1, job_id="J", price=3)
    journal.db.execute("BEGIN IMMEDIATE")  # the daemon in the middle of a write transaction
    journal.db.execute("INSERT INTO sent VALUES ('L1', 'J-1', 'J', 3, 2, 'computed', NULL, NULL)")
    st = await _status(client)  # WAL: the reader gets the last committed state at once
    assert [r["lease_id"] for r in st["earnings"]["receipts"]] == ["L0"]
    journal.db.execute("COMMIT")
    st = await _status(client)
    assert [r["lease_id"] for r in st["earnings"]["receipts"]] == ["L0", "L1"]
    journal.close()


def test_the_journal_is_read_through_a_read_only_connection(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    reader = page_module._Reader(path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.db.execute("INSERT INTO alarms VALUES (1, 'the page must never write', NULL)")
    reader.close()


async def test_receipts_are_the_newest_200(served: tuple[OwnerPage, TestClient[Any, Any]]) -> None:
    owner, client = served
    journal = Journal(owner.journal_path)
    for n in range(205):
        journal.add(_result(n), now_ms=n, job_id="J", price=1)
    journal.close()
    e = (await _status(client))["earnings"]
    assert e["results"] == 205 and len(e["receipts"]) == 200
    assert e["receipts"][0]["lease_id"] == "L5" and e["receipts"][-1]["lease_id"] == "L204"


async def test_an_unreadable_journal_is_reported_not_a_500(served: tuple[OwnerPage, TestClient[Any, Any]]) -> None:
    owner, client = served
    owner.journal_path.write_bytes(b"this is not a database" * 100)
    e = (await _status(client))["earnings"]
    assert e["credits"] == 0 and e["receipts"] == []
    assert e["error"] is not None and e["error"].startswith("cannot read the journal")


async def test_an_unchanged_journal_is_read_once(served: tuple[OwnerPage, TestClient[Any, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    owner, client = served
    journal = Journal(owner.journal_path)
    journal.add(_result(0), now_ms=1, job_id="J", price=3)
    reads: list[Path] = []
    real = page_module.read_journal

    def counting(path: Path) -> Any:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(page_module, "read_journal", counting)
    await _status(client)
    await _status(client)
    assert len(reads) == 1
    journal.add(_result(1), now_ms=2, job_id="J", price=3)  # a commit moves the WAL
    assert len((await _status(client))["earnings"]["receipts"]) == 2 and len(reads) == 2
    monkeypatch.setattr(page_module, "JOURNAL_MAX_AGE_S", 0.0)  # and a quiet journal is still re-read in time
    await _status(client)
    assert len(reads) == 3
    journal.close()


# ---- the page and the guards -------------------------------------------------------------------------------


async def test_the_page_is_one_self_contained_file(served: tuple[OwnerPage, TestClient[Any, Any]]) -> None:
    _, client = served
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html" and resp.charset == "utf-8"
    html = await resp.text()
    assert "<svg" in html and 'id="receipts"' in html and "/api/status" in html
    # Nothing it could load from elsewhere: no absolute URL, no stylesheet or font import, only data: for the icon.
    assert not re.search(r"https?://|//[a-z0-9]|@import|url\(", html, flags=re.I), "an external reference"
    assert re.findall(r"\b(?:src|href)=\"([^\"]*)\"", html) == ["data:,"]


async def test_every_answer_carries_the_security_headers(served: tuple[OwnerPage, TestClient[Any, Any]]) -> None:
    _, client = served
    for path, status in (("/", 200), ("/api/status", 200), ("/nope", 404), ("/static/owner.html", 404)):
        resp = await client.get(path)
        assert resp.status == status, path
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp and "*" not in csp
        assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]{44}'", csp), csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
        if status != 200:
            assert resp.content_type == "application/json" and "error" in await resp.json()


async def test_other_methods_are_refused_in_json(served: tuple[OwnerPage, TestClient[Any, Any]]) -> None:
    _, client = served
    resp = await client.post("/api/status", data=b"{}")
    assert resp.status == 405 and (await resp.json())["error"] == "method not allowed"


@pytest.mark.parametrize("host", ["evil.example:{port}", "attacker.example", "127.0.0.1:1", "localhost",
                                  "127.0.0.1.nip.io:{port}"])
async def test_a_rebound_host_name_is_refused(served: tuple[OwnerPage, TestClient[Any, Any]], host: str) -> None:
    _, client = served
    port = client.server.port
    for path in ("/", "/api/status"):
        resp = await client.get(path, headers={"Host": host.format(port=port)})
        assert resp.status == 403, (host, path)
        body = await resp.json()
        assert "earnings" not in body and "forbidden" in body["error"]
    for good in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert (await client.get("/api/status", headers={"Host": good})).status == 200


# ---- start and stop ----------------------------------------------------------------------------------------


async def test_start_serves_on_loopback_and_stop_ends_it(tmp_path: Path) -> None:
    owner = OwnerPage(_board(), tmp_path / "journal.sqlite3", watts=15.0, port=0)
    url = await owner.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and owner.url == url
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    async with ClientSession() as session:
        async with session.get(url + "api/status") as resp:
            assert resp.status == 200 and (await resp.json())["state"]["worker_id"] == WORKER
    # Bound to 127.0.0.1 only: the same port is free on the machine's other addresses.
    with socket.socket() as other:
        other.bind(("127.0.0.2", port))
    await owner.stop()
    await owner.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


async def test_a_port_in_use_is_one_clear_user_error(tmp_path: Path) -> None:
    first = OwnerPage(_board(), tmp_path / "journal.sqlite3", watts=15.0, port=0)
    url = await first.start()
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    second = OwnerPage(_board(), tmp_path / "journal.sqlite3", watts=15.0, port=port)
    with pytest.raises(UserError) as caught:
        await second.start()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "in use" in message and "--page-port" in message
    assert "\n" not in message
    await second.stop()
    await first.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "localhost", "::1"])
def test_any_other_address_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(UserError, match="127.0.0.1 only"):
        OwnerPage(_board(), tmp_path / "journal.sqlite3", watts=15.0, host=host)

