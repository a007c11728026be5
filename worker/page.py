"""The owner's page: what this worker is doing and what it earned, on 127.0.0.1 only.

GET / serves worker/static/owner.html (one self-contained file, no external assets); its script polls
GET /api/status, which joins the daemon's live `Board` with the journal's evidence: every result sent with its
acknowledgement and proved credit, the credits over time, the checkpoints kept, the alarms. The journal is opened
read-only for each request, in a thread: the daemon keeps its own writer connection, WAL lets readers run beside
it, and the event loop the daemon computes on never waits for a query.

Only the owner may read it. The server binds 127.0.0.1 and nothing else; it answers only requests whose Host is
127.0.0.1:PORT or localhost:PORT, so a web page whose name an attacker rebinds to 127.0.0.1 gets a 403, never the
owner's earnings; and a Content-Security-Policy allowing only this page's own script and style (by hash) and
requests back to itself means even a hostile job id shown on the page cannot run code or reach another host.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from depin.errors import DepinError, UserError
from worker.journal import Journal
from worker.status import Board

HOST = "127.0.0.1"  # the only address the page binds
RECEIPTS_SHOWN = 200  # the newest results the API returns
SERIES_MAX_POINTS = 2000  # beyond this many credits the chart's series is thinned (exact values, fewer of them)
READ_TIMEOUT_S = 2.0  # how long a read waits for a lock (WAL readers only meet one during recovery)
JOURNAL_MAX_AGE_S = 5.0  # an unchanged-looking journal is still re-read this often (see OwnerPage._journal)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---- pure: what the API says ---------------------------------------------------------------------------------


def host_allowed(host: str | None, port: int) -> bool:
    """Whether a request's Host header names this server as the owner's browser does (DNS-rebinding guard)."""
    if host is None:
        return False
    names = {f"{HOST}:{port}", f"localhost:{port}"}
    if port == 80:  # a browser leaves the default port out
        names |= {HOST, "localhost"}
    return host.lower() in names


def cumulative(credits: list[tuple[int, int]], max_points: int = SERIES_MAX_POINTS) -> list[list[int]]:
    """[[time_ms, credits so far], ...] from (time_ms, amount) in ledger order; beyond `max_points` credits, that
    many of those points, evenly spread, from the first to the last (the total)."""
    series: list[list[int]] = []
    total = 0
    for when, amount in credits:
        total += amount
        series.append([when, total])
    n = len(series)
    if n <= max_points:
        return series
    return [series[round(i * (n - 1) / (max_points - 1))] for i in range(max_points)]


def energy(watts: float, cpu_seconds: float, credits: int) -> dict[str, Any]:
    """The energy estimate: `watts` per busy CPU, for `cpu_seconds` of kernel time, against `credits` earned."""
    wh = watts * cpu_seconds / 3600.0
    return {"watts": watts, "cpu_seconds": cpu_seconds, "cpu_hours": cpu_seconds / 3600.0, "kwh": wh / 1000.0,
            "wh_per_credit": wh / credits if credits > 0 else None}


def _empty_earnings(error: str | None = None) -> dict[str, Any]:
    return {"credits": 0, "entries": 0, "series": [], "receipts": [], "results": 0,
            "checkpoints": {"count": 0, "latest_size": None, "latest_time": None}, "error": error}


# ---- the journal, read-only ----------------------------------------------------------------------------------


class _Reader(Journal):
    """The journal's queries over a read-only connection: it never creates the journal, changes its tables or writes
    a row, and in WAL mode never holds up the daemon's writes."""

    def __init__(self, path: Path) -> None:  # not Journal.__init__, which creates and migrates
        self.db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=READ_TIMEOUT_S)

    def credit_times(self) -> list[tuple[int, int]]:
        """(entry time, amount) of every proved credit, in ledger order."""
        rows = self.db.execute("SELECT json_extract(entry, '$.time'), amount FROM credits ORDER BY seq")
        return [(int(t), int(a)) for t, a in rows]

    def checkpoint_count(self) -> int:
        """How many checkpoints are kept (without parsing them all)."""
        return int(self.db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0])

    def close(self) -> None:
        """Close the one connection (Journal.close also closes the writer's progress store, which this has not)."""
        self.db.close()


def read_journal(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(earnings, alarms) from the journal at `path`; empty earnings, with a reason if it is unreadable, when there
    is none yet. Blocking: call it in a thread."""
    if not path.exists():
        return _empty_earnings(), []
    try:
        journal = _Reader(path)
    except sqlite3.Error as exc:
        return _empty_earnings(f"cannot read the journal: {exc}"), []
    try:
        # One read transaction: every number below comes from the same moment of the journal.
        journal.db.execute("BEGIN")
        story = journal.story()
        entries, credits = journal.credited()
        latest = journal.latest_checkpoint()
        earnings = {
            "credits": credits, "entries": entries, "series": cumulative(journal.credit_times()),
            "receipts": story[-RECEIPTS_SHOWN:], "results": len(story),
            "checkpoints": {"count": journal.checkpoint_count(), "latest_size": None if latest is None else latest.size,
                            "latest_time": None if latest is None else latest.time},
            "error": None}
        alarms = [{"time": t, "message": m} for t, m in journal.alarms()]
    except (sqlite3.Error, DepinError) as exc:  # a journal not yet fully created, a damaged file or checkpoint
        return _empty_earnings(f"cannot read the journal: {exc}"), []
    finally:
        journal.close()
    return earnings, alarms


def _stamp(path: Path) -> tuple[int | None, ...]:
    """(mtime_ns, size) of the journal and of its WAL, None for a missing file."""
    out: list[int | None] = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            st = name.stat()
        except OSError:
            out += [None, None]
        else:
            out += [st.st_mtime_ns, st.st_size]
    return tuple(out)


# ---- the server ----------------------------------------------------------------------------------------------


def _csp(html: str) -> str:
    """The page's Content-Security-Policy: its own inline script and style (by SHA-256), requests to itself, nothing
    else; no frames, forms or base URL."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
                        for b in blocks) or "'none'"

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class OwnerPage:
    """The owner's page and its JSON API, for one worker."""

    def __init__(self, board: Board, journal_path: Path, *, watts: float, host: str = HOST, port: int = 8643) -> None:
        if host != HOST:
            raise UserError(f"the owner's page serves on {HOST} only, not {host}")
        if not 0 <= port <= 65535:
            raise UserError(f"the owner's page port must be between 0 and 65535, not {port}")
        self.board, self.journal_path, self.watts, self.port = board, journal_path, watts, port
        self.html = resources.files("worker").joinpath("static/owner.html").read_text(encoding="utf-8")
        self.headers = {
            "Content-Security-Policy": _csp(self.html), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
            "Cross-Origin-Resource-Policy": "same-origin"}
        self.app = web.Application(middlewares=[self._guard])
        self.app.add_routes([web.get("/", self.page), web.get("/api/status", self.status)])
        self._runner: web.AppRunner | None = None
        self._cache: tuple[tuple[int | None, ...], float, tuple[dict[str, Any], list[dict[str, Any]]]] | None = None
        self.url: str | None = None

    async def start(self) -> str:
        """Listen on 127.0.0.1:port; the page's URL. A port already taken is a UserError."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = (exc.strerror or str(exc)).lower()
            raise UserError(f"cannot serve the owner's page on {HOST}:{self.port}: {reason}"
                            " (choose another --page-port, or --no-page)") from None
        self._runner = runner
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))  # the real one when port is 0
        self.url = f"http://{HOST}:{port}/"
        return self.url

    async def stop(self) -> None:
        """Stop serving (safe to call twice)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def status(self, request: web.Request) -> web.Response:
        """GET /api/status."""
        state = self.board.snapshot()  # on the loop, where the daemon changes the board
        earnings, alarms = await asyncio.to_thread(self._journal)
        return web.json_response({"time_ms": int(time.time() * 1000), "state": state, "earnings": earnings,
                                  "energy": energy(self.watts, self.board.cpu_seconds, earnings["credits"]),
                                  "alarms": alarms})

    def _journal(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # Reading a long story costs a noticeable fraction of a second on a Raspberry Pi, and an open page asks every
        # second, so the last read is kept while the journal's files look unchanged: every commit rewrites the WAL
        # (or, after a checkpoint, the database), which moves its mtime or size. Two commits within one tick of the
        # file system's clock could look alike, hence the re-read at least every JOURNAL_MAX_AGE_S anyway.
        stamp = _stamp(self.journal_path)
        now = time.monotonic()
        cached = self._cache
        if cached is not None and cached[0] == stamp and now - cached[1] < JOURNAL_MAX_AGE_S:
            return cached[2]
        value = read_journal(self.journal_path)
        self._cache = (stamp, now, value)
        return value

    async def page(self, request: web.Request) -> web.Response:
        """GET /: the page."""
        return web.Response(text=self.html, content_type="text/html", charset="utf-8")

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Host check first (before any handler runs), JSON for every error, the security headers on everything.
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        port = sockname[1] if sockname else -1
        response: web.StreamResponse
        if not host_allowed(request.headers.get("Host"), port):
            response = web.json_response({"error": f"forbidden: open this page as http://{HOST}:{port}/"},
                                         status=403)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = web.json_response({"error": exc.reason.lower()}, status=exc.status)
        response.headers.update(self.headers)
        return response
