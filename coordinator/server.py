"""The coordinator's HTTP face (aiohttp): decode, call the Service, encode. No decisions are made here.

Protocol endpoints (worker and submitter) take and return msgpack; read-only endpoints return JSON; every error is
JSON {"error": reason} with a 4xx status from the error tree. Lease requests long-poll: a worker with nothing to do
waits, up to the wait it asked for, until a change made work it may take: as many waiting requests are woken as
the change made slots for (coordinator.waiters). A read of one job may wait for the job to change (`wait_ms`,
`since`: PROTOCOL.md 7.7); a commit wakes the waiting reads of the jobs it changed, and no others.

Every handler decides first, synchronously, then awaits the group commit (coordinator.commits) that holds what it
decided before it answers: a request's changes are durable before its answer leaves, and what an answer shows (even
a read's) is on disk by then.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from coordinator.commits import GroupCommit
from coordinator.service import Service, Write
from coordinator.waiters import PUBLISHED, JobWaiters, Waiters, Wake
from depin import accounts, codec
from depin.config import CoordinatorConfig
from depin.errors import DepinError, PeerProtocolError, TooLarge, UserError

log = logging.getLogger("depin.coordinator")

MSGPACK = "application/msgpack"
# Largest body each endpoint accepts; anything bigger is refused with 413 before it is parsed.
LIMITS = {"lease": 64 << 10, "release": 64 << 10, "cancel": 64 << 10, "submit": 1 << 20, "results": 64 << 20,
          "result": 64 << 10, "grant": 64 << 10, "bond": 64 << 10, "unbond": 64 << 10, "kernel": 96 << 10}
EXPIRY_TICK_S = 0.5
MAX_JOB_WAIT_MS = 30_000  # the longest a read of a job waits for it to change (PROTOCOL.md 7.7)
MAX_JOB_WAITERS = 4096  # reads of jobs waiting at once; past it, a read is answered at once
_INTEGER = re.compile(r"-?[0-9]{1,19}")  # plain ASCII digits: int() alone would take "+5", " 5", "1_000", "٥"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def now_ms() -> int:
    """Wall-clock unix milliseconds: the one clock the coordinator uses."""
    return int(time.time() * 1000)


def _msgpack(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=codec.encode(obj), status=status, content_type=MSGPACK)


async def _read_body(request: web.Request, endpoint: str) -> Any:
    limit = LIMITS[endpoint]
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"body of {request.content_length} bytes exceeds {limit} for this endpoint")
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise TooLarge(f"body exceeds {limit} bytes for this endpoint")
    return codec.decode(bytes(data))


def _query_int(request: web.Request, name: str, default: Any, lo: int = 0, hi: int = 2**63 - 1) -> Any:
    """An integer query parameter in [lo, hi], or `default` when absent; 400 otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise PeerProtocolError(f"query parameter {name} must be an integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise PeerProtocolError(f"query parameter {name} must be between {lo} and {hi}")
    return value


def _party(value: str) -> None:
    if not accounts.is_party(value):
        raise PeerProtocolError(f"{value!r} is not a party id (32 characters a-z, 2-7)")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DepinError as exc:
        status = exc.http_status if 400 <= exc.http_status < 500 else 500
        if status == 500:
            log.exception("internal error on %s", request.path)
        return web.json_response({"error": str(exc)}, status=status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason.lower()}, status=exc.status)
    except Exception:
        log.exception("internal error on %s", request.path)
        return web.json_response({"error": "internal error"}, status=500)


class Server:
    """Routes and background tasks around one Service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.work = Waiters()
        self.job_waits = JobWaiters(MAX_JOB_WAITERS)
        self.commits: GroupCommit[Write] = GroupCommit(service.take_write, service.write, self._written,
                                                       service.on_fatal)
        self.closing = False
        self.app = web.Application(middlewares=[_errors], client_max_size=max(LIMITS.values()))
        self.app.add_routes([
            web.get("/", self.page),
            web.get("/v1/info", self.info),
            web.get("/v1/status", self.status),
            web.get("/v1/jobs", self.jobs),
            web.post("/v1/jobs", self.submit),
            web.get("/v1/jobs/{job_id}", self.job),
            web.post("/v1/jobs/{job_id}/result", self.result),
            web.post("/v1/jobs/{job_id}/cancel", self.cancel),
            web.get("/v1/jobs/{job_id}/provenance", self.provenance),
            web.get("/v1/kernels", self.kernels),
            web.post("/v1/kernels", self.publish),
            web.get("/v1/kernels/{kernel_id}", self.kernel_source),
            web.get("/v1/workers", self.workers),
            web.get("/v1/workers/{worker_id}/receipts", self.receipts),
            web.get("/v1/accounts/{account}", self.account),
            web.get("/v1/accounts/{account}/credits", self.credits),
            web.post("/v1/grants", self.grant),
            web.post("/v1/bond", self.bond),
            web.post("/v1/unbond", self.unbond),
            web.get("/v1/ledger", self.ledger),
            web.get("/v1/ledger/checkpoint", self.checkpoint),
            web.get("/v1/ledger/proof/inclusion", self.inclusion),
            web.get("/v1/ledger/proof/consistency", self.consistency),
            web.post("/v1/lease", self.lease),
            web.post("/v1/release", self.release),
            web.post("/v1/results", self.results),
        ])
        self.app.cleanup_ctx.append(self._expiry_loop)
        self.app.on_shutdown.append(self._wake_pollers)
        self.app.on_cleanup.append(self._close_commits)

    async def _wake_pollers(self, app: web.Application) -> None:
        # Long-polls answer at once ("no leases", the job as it is), so shutdown does not wait out their timeouts.
        self.closing = True
        self.work.wake_all()
        self.job_waits.wake_all()

    async def _close_commits(self, app: web.Application) -> None:
        await self.commits.close()

    def _written(self, w: Write) -> None:
        self.service.written(w)
        self.job_waits.changed(w.jobs)  # now durable: wake the reads waiting for these jobs

    async def _expiry_loop(self, app: web.Application) -> Any:
        async def loop() -> None:
            while True:
                await asyncio.sleep(EXPIRY_TICK_S)
                self.service.expire()
                self._wake()
                try:
                    await self.commits.durable()  # the expiries, and a checkpoint due by time
                except DepinError:
                    return  # the database refused a write: the server is stopping

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    # ---- pages and reads ---------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        html = resources.files("coordinator").joinpath("static/index.html").read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html")

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.info())

    async def _durable(self, answer: Any) -> Any:
        await self.commits.durable()
        return answer

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(await self._durable(self.service.status()))

    async def jobs(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": (await self._durable(self.service.status()))["jobs"]})

    async def workers(self, request: web.Request) -> web.Response:
        return web.json_response({"workers": (await self._durable(self.service.status()))["workers"]})

    async def job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        wait_ms = min(_query_int(request, "wait_ms", 0), MAX_JOB_WAIT_MS)
        since = _query_int(request, "since", None)
        answer = self.service.job(job_id)
        if wait_ms > 0 and since == answer["version"] and not self.closing:
            # A waiting read holds a connection for up to MAX_JOB_WAIT_MS: it pays the per-address rate limit like
            # a protocol request, and past MAX_JOB_WAITERS waiting reads it is answered at once (PROTOCOL.md 7.7).
            self.service.admit(request.remote)
            deadline = asyncio.get_running_loop().time() + wait_ms / 1000
            while since == answer["version"] and not self.closing and not self.job_waits.full():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await self.job_waits.wait(job_id, remaining)
                answer = self.service.job(job_id)
        return web.json_response(await self._durable(answer))

    async def ledger(self, request: web.Request) -> web.Response:
        start = _query_int(request, "start", 0)
        limit = _query_int(request, "limit", 1000, 1, 10_000)
        return web.json_response(self.service.ledger_page(start, limit))

    async def checkpoint(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.audit.checkpoint(_query_int(request, "size", None)))

    async def inclusion(self, request: web.Request) -> web.Response:
        seq = _query_int(request, "seq", -1)
        if seq < 0:
            raise PeerProtocolError("query parameter seq is required")
        return web.json_response(self.service.audit.inclusion(seq, _query_int(request, "size", None)))

    async def consistency(self, request: web.Request) -> web.Response:
        old = _query_int(request, "from", -1)
        if old < 0:
            raise PeerProtocolError("query parameter from is required")
        return web.json_response(self.service.audit.consistency(old, _query_int(request, "to", None)))

    async def account(self, request: web.Request) -> web.Response:
        return web.json_response(await self._durable(self.service.account(request.match_info["account"])))

    async def credits(self, request: web.Request) -> web.Response:
        _party(request.match_info["account"])
        after = _query_int(request, "after", -1, -1)
        limit = _query_int(request, "limit", 1000, 1, 1000)
        size = _query_int(request, "size", None)
        return web.json_response(self.service.audit.credits(request.match_info["account"], after, limit, size))

    async def receipts(self, request: web.Request) -> web.Response:
        _party(request.match_info["worker_id"])
        offset = _query_int(request, "offset", 0)
        limit = _query_int(request, "limit", 1000, 1, 1000)
        return web.json_response(self.service.audit.receipts(request.match_info["worker_id"], offset, limit))

    async def provenance(self, request: web.Request) -> web.Response:
        await self.commits.durable()  # it reads the job's rows from the database
        return web.json_response(self.service.provenance(request.match_info["job_id"]))

    # ---- protocol ----------------------------------------------------------------------------------------

    async def _body(self, request: web.Request, endpoint: str) -> Any:
        # The per-address rate limit comes first: a flood is refused before any byte is parsed or verified.
        self.service.admit(request.remote)
        return await _read_body(request, endpoint)

    async def submit(self, request: web.Request) -> web.Response:
        answer = self.service.submit(await self._body(request, "submit"))
        self._wake()
        return _msgpack(await self._durable(answer))

    async def kernels(self, request: web.Request) -> web.Response:
        return web.json_response(await self._durable(self.service.kernels()))

    async def kernel_source(self, request: web.Request) -> web.Response:
        return web.json_response(await self._durable(self.service.kernel_source(request.match_info["kernel_id"])))

    async def publish(self, request: web.Request) -> web.Response:
        return _msgpack(await self._durable(self.service.publish(await self._body(request, "kernel"))))

    async def result(self, request: web.Request) -> web.Response:
        body = await self._body(request, "result")
        await self.commits.durable()  # the merged output of a job that just ended is in the database now
        return _msgpack(self.service.result(request.match_info["job_id"], body))

    async def grant(self, request: web.Request) -> web.Response:
        return _msgpack(await self._durable(self.service.grant(await self._body(request, "grant"))))

    async def bond(self, request: web.Request) -> web.Response:
        return _msgpack(await self._durable(self.service.bond(await self._body(request, "bond"))))

    async def unbond(self, request: web.Request) -> web.Response:
        return _msgpack(await self._durable(self.service.unbond(await self._body(request, "unbond"))))

    async def cancel(self, request: web.Request) -> web.Response:
        body = await self._body(request, "cancel")
        return _msgpack(await self._durable(self.service.cancel(request.match_info["job_id"], body)))

    async def lease(self, request: web.Request) -> web.Response:
        worker_id, req = self.service.open_lease_request(await self._body(request, "lease"), request.remote)
        deadline = asyncio.get_running_loop().time() + req.wait_ms / 1000
        kernels = frozenset(req.kernels) | ({PUBLISHED} if req.published else set())
        min_price = req.min_price or 0
        woken = Wake()  # what woke this request last (coordinator.waiters)
        while True:
            leases = self.service.try_lease(worker_id, req)
            self._wake()
            if not leases and woken.hops > 1:  # the work it was woken for is not for it: pass the wake on
                self.work.wake(1, woken.kernel, woken.price, woken.hops - 1)
            remaining = deadline - asyncio.get_running_loop().time()
            if leases or remaining <= 0 or self.closing:
                return _msgpack(await self._durable({"leases": leases}))
            woken = await self.work.wait(worker_id, kernels, min_price, remaining)

    def _wake(self) -> None:
        # Wake as many waiting lease requests as the last change made work for, and those of drawn workers.
        freed, drawn = self.service.take_wakes()
        for kernel, price, n in freed:
            self.work.wake(n, kernel, price)
        for worker_id in drawn:
            self.work.wake_worker(worker_id)

    async def release(self, request: web.Request) -> web.Response:
        answer = self.service.release(await self._body(request, "release"))
        self._wake()
        return _msgpack(await self._durable(answer))

    async def results(self, request: web.Request) -> web.Response:
        answer = self.service.results(await self._body(request, "results"))
        self._wake()  # a disagreement may have made a task want one more replica
        return _msgpack(await self._durable(answer))


# Python's cyclic collector, tuned for a server whose live heap is large and whose garbage is almost all freed by
# reference counting. At 10,000 idle long polls the coordinator holds about 1.5 million tracked objects; every
# request that outlives two young collections (each long poll does) is promoted, so a full collection (all 1.5
# million, 0.8 to 2.3 s with the event loop blocked) came every few seconds, and the lease p99 was 0.2 to 1.9 s.
# Forced collections every 5 s there found no cyclic garbage but closed sockets (benchmarks/RESULTS.md, section 9).
# So: young collections every 10,000 net allocations instead of 700, middle ones every 10 of those (both scan only
# what is young: tens of ms at most), and a full one after 1,000 middle ones instead of 10, about every 10^8 net
# allocations (cycles among old objects wait that long to be freed; measured, there were none to speak of). The
# state restored at start is frozen: never scanned again, freed by reference counting as ever. Measured at 10,000
# idle long polls: collections 6.4 s of the coordinator's time in one run, 0.5 s after.
GC_THRESHOLDS = (10_000, 10, 1_000)


def quiet_collector() -> None:
    """Tune the cyclic garbage collector for a long-lived server process (see GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(config: CoordinatorConfig, ready: Callable[[str], None] | None = None) -> int:
    """Run the coordinator until SIGTERM or SIGINT (exit code 0), or until its database refuses a write (1)."""
    stop = asyncio.Event()
    failed = []

    def fatal(exc: BaseException) -> None:
        log.critical("database write failed (%s); stopping so a restart reloads the last committed state", exc)
        failed.append(exc)
        stop.set()

    service = Service(config, now_ms, on_fatal=fatal)
    server = Server(service)
    quiet_collector()
    # handler_cancellation: a worker that hangs up ends its long-poll; handlers only await before deciding.
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False, handler_cancellation=True,
                           shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        service.close()
        reason = (exc.strerror or str(exc)).lower()
        raise UserError(f"cannot listen on {config.host}:{config.port}: {reason}") from None
    sockets = getattr(site._server, "sockets", None) or []  # the real port when --port 0
    port = sockets[0].getsockname()[1] if sockets else config.port
    url = f"http://{config.host}:{port}"
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(url)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        service.close()
    return 1 if failed else 0
