"""An in-process coordinator for the handler fuzz tests, and a model of PROTOCOL.md that says what it must answer.

`Harness` serves the real aiohttp app (coordinator.server.Server over coordinator.service.Service) on a loopback
TestServer, driven from synchronous hypothesis tests through an event loop of its own. Its clock is fake: it moves
10 ms per POST and otherwise only when a test says so, so nothing expires between two requests and the per-key and
per-address rate limits always refill. Every POST goes through `check_post`, which asks `Spec` for the status the
spec requires, sends the bytes, and checks the answer: the expected 4xx with a JSON {"error": text} body and no
change at all to the coordinator's state (database rows and the scheduler's memory), or a 2xx of the right shape.

`Spec` is written from docs/PROTOCOL.md (sections 2.3, 2.4, 3.1, 5.3, 6, 7, 12.5 and 13.1-13.2) and the money rules
of docs/LEDGER.md (grants by the operator, a job's maximum cost escrowed at submission, 402 when it is not covered),
not from the code: it decodes envelopes with msgpack and nacl directly and checks canonical form with
tests/msgpack_ref.py. It reads the coordinator's state only through the JSON API: which jobs exist, who submitted
them, their state, which workers are banned (bans follow from verdicts, which are the scheduler's business, not this
model's), an account's balance and the credits minted so far. It does not model the parameters of kernels other than
mandelbrot (200, 400 and 402 are all allowed there), nor rate limits: the harness stays far below them.

The harness's coordinator signs a checkpoint every CHECKPOINT_EVERY entries, at the write that reaches it, and never
on a timer (the interval is a day of fake time): so the server's background tick cannot sign one in the middle of a
refused request, and the checkpoints table belongs to the state a refusal must leave alone.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import math
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgpack
import nacl.exceptions
import nacl.signing
from aiohttp.test_utils import TestClient, TestServer

from coordinator.server import Server
from coordinator.service import Service
from depin.config import CoordinatorConfig
from depin.crypto import SigningKey, load_or_create_key
from tests.coordinator.sched_support import NO_AUDITS, OPEN_PLACEMENT, open_policy
from tests.msgpack_ref import ref_encode

MSGPACK = "application/msgpack"
STEP_MS = 10  # fake time per POST
REQUEST_TIMEOUT_S = 10.0  # a request that takes longer is a hang, reported as such
RECYCLE_EXAMPLES = 200  # a fresh database after this many examples (only long runs get there)
WINDOW_MS = 300_000
LIMITS = {"lease": 64 << 10, "release": 64 << 10, "cancel": 64 << 10, "submit": 1 << 20, "results": 64 << 20,
          "result": 64 << 10, "grant": 64 << 10, "bond": 64 << 10, "unbond": 64 << 10, "kernel": 96 << 10}
KINDS = {"lease": "lease-request", "release": "release", "results": "results", "submit": "submit",
         "cancel": "cancel", "result": "result-request", "grant": "grant", "bond": "bond", "unbond": "unbond",
         "kernel": "kernel"}
PATHS = {"lease": "/v1/lease", "release": "/v1/release", "results": "/v1/results", "submit": "/v1/jobs",
         "grant": "/v1/grants", "bond": "/v1/bond", "unbond": "/v1/unbond", "kernel": "/v1/kernels"}
JOB_ENDPOINTS = {"cancel": "/cancel", "result": "/result"}  # signed POSTs to /v1/jobs/{job_id}/...
FIELDS = {  # every field each signed request may carry besides ts and nonce (PROTOCOL.md 7.2-7.6, 7.13, 7.22-7.23)
    "lease": {"max_tasks", "wait_ms", "kernels", "owner", "min_price", "published", "platform"},
    "release": {"lease_ids"},
    "results": {"results"},
    "submit": {"kernel", "params", "tasks", "replicas", "quorum", "max_errors", "max_results", "price"},
    "cancel": {"job_id"},
    "result": {"job_id"},
    "grant": {"account", "amount"},
    "bond": {"amount"},
    "unbond": {"amount"},
    "kernel": {"source"},
}
MAX_PRICE = 2**40 - 1
MAX_GRANT = 2**53 - 1
MAX_MINTED = 2**63 - 1
CHECKPOINT_EVERY = 4
ITEM_FIELDS = {"lease_id", "task_id", "output", "elapsed_ms"}
FAILED_FIELDS = {"lease_id", "task_id", "error", "elapsed_ms"}  # a published kernel that failed (PROTOCOL.md 7.4)
MAX_DEPTH = 32  # nesting of arrays and maps (PROTOCOL.md 3.1)
FINISHED = {"done", "failed", "cancelled"}
TABLES = ("jobs", "tasks", "leases", "results", "workers", "ledger", "merkle", "checkpoints")

SUBMITTERS = [SigningKey(bytes([0x51 + i]) * 32) for i in range(2)]
STRANGERS = [SigningKey(bytes([0x61 + i]) * 32) for i in range(2)]  # never lease, never submit on purpose
TINY_JOB = {"width": 4, "height": 3, "max_iter": 8}  # three 1x4 tasks; nothing is ever computed


def party_id(public_key: bytes) -> str:
    """PROTOCOL.md 4: lowercase base32 of the first 20 bytes of SHA-256(public key)."""
    return base64.b32encode(hashlib.sha256(public_key).digest()[:20]).decode().lower()


def worker_key(n: int) -> SigningKey:
    """The n-th throwaway worker identity (deterministic)."""
    return SigningKey(hashlib.sha256(b"fuzz worker %d" % n).digest())


def job_path(job_id: str, suffix: str = "") -> str:
    """/v1/jobs/{job_id}{suffix} with the id percent-encoded as one path segment."""
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


def zeros_output(task_params: dict[str, Any]) -> dict[str, Any]:
    """A well-formed mandelbrot@1 output for a task (all zeros: right shape, wrong values, nobody checks)."""
    rows, width = task_params["row_end"] - task_params["row_start"], task_params["width"]
    return {"dtype": "uint32", "shape": [rows, width], "data": bytes(4 * rows * width)}


class FakeClock:
    """Unix ms that move only when told to."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    data: bytes

    @property
    def value(self) -> Any:
        """The decoded body: JSON or msgpack by content type."""
        if self.content_type == "application/json":
            return json.loads(self.data)
        return msgpack.unpackb(self.data, raw=False)

    def __str__(self) -> str:
        body = self.data[:300].decode("utf-8", "replace") if "json" in self.content_type else self.data[:80].hex()
        return f"{self.status} {self.content_type} {body}"


@dataclasses.dataclass(frozen=True)
class Request:
    """A signed POST before it is encoded: who signs what, for which endpoint."""

    endpoint: str
    key: SigningKey
    payload: dict[str, Any]
    job_id: str | None = None  # the {job_id} in the URL of a cancel or result request

    @property
    def path(self) -> str:
        if self.endpoint in JOB_ENDPOINTS:
            return job_path(self.job_id or "", JOB_ENDPOINTS[self.endpoint])
        return PATHS[self.endpoint]

    def envelope(self, payload_bytes: bytes | None = None, kind: str | None = None) -> dict[str, bytes]:
        data = ref_encode(self.payload) if payload_bytes is None else payload_bytes
        sig = self.key.sign(kind or KINDS[self.endpoint], data)
        return {"key": self.key.public, "payload": data, "sig": sig}

    def body(self) -> bytes:
        return ref_encode(self.envelope())


# ---- the spec ------------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return _is_int(v) and lo <= v <= hi


def _id_ok(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= 128


_KERNEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,47}@[0-9]{1,9}")
_PLATFORM = re.compile(r"[ -~]{1,128}")
_PARTY_ID = re.compile(r"[a-z2-7]{32}")
_MANDELBROT_INT = {"width": (1, 4096, None), "height": (1, 4096, None), "max_iter": (1, 1_000_000, 256)}
_MANDELBROT_FLOAT = {"x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2}


def nesting(value: Any) -> int:
    """How deep arrays and maps nest in `value` (a scalar is 0); iterative, for hostile depths."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, level = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, level + 1)
            stack.extend((x, level + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def canonical_value(data: bytes) -> tuple[bool, Any]:
    """(True, value) if `data` is the canonical msgpack of a value of the protocol's model (PROTOCOL.md 3.3)."""
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
        return ref_encode(value) == data, value
    except Exception:  # malformed msgpack, or a value outside the model (ext type, non-string key, ...)
        return False, None


def mandelbrot_job_ok(params: dict[str, Any], tasks: int) -> bool:
    """PROTOCOL.md 13.1 and 13.2: are these job parameters valid, and can they be split into `tasks`?"""
    if set(params) - set(_MANDELBROT_INT) - set(_MANDELBROT_FLOAT):
        return False
    p: dict[str, Any] = {}
    for name, (lo, hi, default) in _MANDELBROT_INT.items():
        n: Any = params.get(name, default)
        if not _int_in(n, lo, hi):
            return False
        p[name] = n
    for name, fallback in _MANDELBROT_FLOAT.items():
        x: Any = params.get(name, fallback)
        if not (_is_int(x) or isinstance(x, float)) or not math.isfinite(float(x)) or not -1e6 <= float(x) <= 1e6:
            return False
        p[name] = float(x)
    if not (p["x_min"] < p["x_max"] and p["y_min"] < p["y_max"]):
        return False
    if p["width"] * p["height"] * p["max_iter"] > 10**11:
        return False
    if not 1 <= tasks <= p["height"]:
        return False
    return bool(-(-p["height"] // tasks) * p["width"] <= 1 << 20)


class Spec:
    """What PROTOCOL.md says the coordinator must answer to a signed POST; remembers the nonces it has let through."""

    def __init__(self, *, not_before: int, kernels: list[str], job: Callable[[str], dict[str, Any] | None],
                 banned: Callable[[str], bool], balance: Callable[[str], int], minted: Callable[[], int],
                 operator: Callable[[], str]) -> None:
        self.not_before = not_before
        self.kernels = kernels  # kernel names the coordinator runs (GET /v1/info)
        self.job = job
        self.banned = banned
        self.balance = balance  # an account's credits (GET /v1/accounts/{id})
        self.minted = minted  # credits granted so far (GET /v1/status)
        self.operator = operator  # the coordinator's own id: the only signer of grants
        self.used: set[tuple[str, bytes]] = set()

    def expect(self, endpoint: str, body: bytes, *, now: int, url_job_id: str | None = None) -> set[int]:
        """The statuses allowed for this body (usually one). Notes the nonce as used when the spec says so."""
        if endpoint in JOB_ENDPOINTS and url_job_id is not None and ("{" in url_job_id or "}" in url_job_id):
            return {404}  # not a job id the route accepts: no such path
        if len(body) > LIMITS[endpoint]:
            return {413}
        # 5.3: the envelope
        try:
            env = msgpack.unpackb(body, raw=False, strict_map_key=False)
            if nesting(env) > MAX_DEPTH or not isinstance(env, dict) or set(env) != {"key", "payload", "sig"}:
                return {400}
        except Exception:
            return {400}
        key, payload_bytes, sig = env["key"], env["payload"], env["sig"]
        if type(payload_bytes) is not bytes:
            return {400}
        if type(key) is not bytes or len(key) != 32:
            return {400}
        if type(sig) is not bytes or len(sig) != 64:
            return {401}
        signing_input = b"depin/1/" + KINDS[endpoint].encode() + b"\0" + payload_bytes
        try:
            nacl.signing.VerifyKey(key).verify(signing_input, sig)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return {401}
        ok, payload = canonical_value(payload_bytes)
        if not ok or nesting(payload) > MAX_DEPTH or not isinstance(payload, dict):
            return {400}
        signer = party_id(key)
        # 6: freshness
        ts: Any = payload.get("ts")
        nonce: Any = payload.get("nonce")
        if not _int_in(ts, 0, 2**63 - 1) or type(nonce) is not bytes or not 8 <= len(nonce) <= 32:
            return {400}
        if ts < now - WINDOW_MS or ts < self.not_before or ts > now + WINDOW_MS or (signer, nonce) in self.used:
            return {409}
        self.used.add((signer, nonce))
        if endpoint == "grant" and signer != self.operator():
            return {403}  # only the operator may mint, whatever the grant says
        # 7: the request's own fields
        if set(payload) - FIELDS[endpoint] - {"ts", "nonce"} or not getattr(self, f"_{endpoint}_ok")(payload):
            return {400}
        if endpoint == "submit":
            return self._submit_semantics(payload, signer)
        if endpoint in JOB_ENDPOINTS:
            return self._job_semantics(endpoint, payload, signer, url_job_id)
        if endpoint == "grant":
            return {409} if self.minted() + payload["amount"] > MAX_MINTED else {200}
        if endpoint == "kernel":  # 7.24: the file's check is depin.userkernel's (its own tests); funds are ours
            return {400, 402} if self.balance(signer) <= 0 else {200, 400}
        if self.banned(signer):  # 12.5: after the field checks, before anything else
            return {403}
        if endpoint == "bond":  # 7.22: only what the signer's own account holds
            return {402} if payload["amount"] > self.balance(signer) else {200}
        if endpoint == "unbond":
            # 7.23: never more than the bond holds; within it, the part covering single results not yet audited
            # and a result under audit also refuse with 409, and that is the scheduler's business, not this model's.
            return {409} if payload["amount"] > self.balance("bond:" + signer) else {200, 409}
        return {200}

    @staticmethod
    def _lease_ok(p: dict[str, Any]) -> bool:
        kernels = p.get("kernels")
        owner = p.get("owner", "a" * 32)  # optional; nil is not absent
        platform = p.get("platform", "x")  # likewise
        return (isinstance(kernels, list) and 1 <= len(kernels) <= 64
                and all(isinstance(k, str) and _KERNEL_KEY.fullmatch(k) for k in kernels)
                and isinstance(owner, str) and _PARTY_ID.fullmatch(owner) is not None
                and _int_in(p.get("max_tasks"), 1, 256) and _int_in(p.get("wait_ms"), 0, 30_000)
                and _int_in(p.get("min_price", 0), 0, MAX_PRICE) and type(p.get("published", False)) is bool
                and isinstance(platform, str) and _PLATFORM.fullmatch(platform) is not None)

    @staticmethod
    def _release_ok(p: dict[str, Any]) -> bool:
        ids = p.get("lease_ids")
        return isinstance(ids, list) and len(ids) <= 256 and all(_id_ok(i) for i in ids)

    @staticmethod
    def _results_ok(p: dict[str, Any]) -> bool:
        items = p.get("results")
        if not isinstance(items, list) or not 1 <= len(items) <= 256:
            return False
        for item in items:
            if not isinstance(item, dict) or set(item) not in (ITEM_FIELDS, FAILED_FIELDS):
                return False
            told = (isinstance(item["output"], dict) if "output" in item
                    else isinstance(item["error"], str) and 1 <= len(item["error"]) <= 200)
            if not (_id_ok(item["lease_id"]) and _id_ok(item["task_id"]) and told
                    and _int_in(item["elapsed_ms"], 0, 2**31 - 1)):
                return False
        return len({item["lease_id"] for item in items}) == len(items)

    @staticmethod
    def _submit_ok(p: dict[str, Any]) -> bool:
        params = p.get("params")
        return (isinstance(params, dict) and len(params) <= 64
                and all(_is_int(v) or isinstance(v, float) for v in params.values())
                and (p.get("max_results") is None or _int_in(p["max_results"], 1, 64))
                and (p.get("quorum") is None or _int_in(p["quorum"], 1, 16))
                and (p.get("max_errors") is None or _int_in(p["max_errors"], 0, 64))
                and _id_ok(p.get("kernel")) and _int_in(p.get("tasks"), 1, 1_000_000)
                and _int_in(p.get("replicas"), 1, 16) and _int_in(p.get("price"), 1, 2**40 - 1))

    @staticmethod
    def _cancel_ok(p: dict[str, Any]) -> bool:
        return _id_ok(p.get("job_id"))

    _result_ok = _cancel_ok

    @staticmethod
    def _bond_ok(p: dict[str, Any]) -> bool:
        return _int_in(p.get("amount"), 1, MAX_GRANT)

    _unbond_ok = _bond_ok

    @staticmethod
    def _kernel_ok(p: dict[str, Any]) -> bool:
        source = p.get("source")
        return type(source) is bytes and 1 <= len(source) <= 64 << 10

    @staticmethod
    def _grant_ok(p: dict[str, Any]) -> bool:
        account = p.get("account")
        return (isinstance(account, str) and _PARTY_ID.fullmatch(account) is not None
                and _int_in(p.get("amount"), 1, MAX_GRANT))

    def _submit_semantics(self, p: dict[str, Any], signer: str) -> set[int]:
        if p["kernel"] not in self.kernels:
            return {400}
        replicas = p["replicas"]  # 12.5: the policy, defaults first
        quorum = min(2, replicas) if p.get("quorum") is None else p["quorum"]
        limit = min(replicas + 3, 64) if p.get("max_results") is None else p["max_results"]
        if replicas < quorum or limit < replicas:
            return {400}
        if p["kernel"] != "mandelbrot":
            return {200, 400, 402}  # another kernel's parameters, and so its number of tasks: not modelled here
        if not mandelbrot_job_ok(p["params"], p["tasks"]):
            return {400}
        # LEDGER.md: the job's maximum cost (every task paying every result it may use) must be covered now.
        return {402} if p["price"] * p["tasks"] * limit > self.balance(signer) else {200}

    def _job_semantics(self, endpoint: str, p: dict[str, Any], signer: str, url_job_id: str | None) -> set[int]:
        if p["job_id"] != url_job_id:
            return {400}
        job = self.job(p["job_id"])
        if job is None:
            return {404}
        if job["submitter"] != signer:
            return {403}
        if endpoint == "cancel":
            return {409} if job["state"] in FINISHED else {200}
        return {200} if job["state"] == "done" else {409}


# ---- the harness ---------------------------------------------------------------------------------------------


_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})
_FIELDS: dict[type, tuple[str, ...] | None] = {}  # a class's dataclass field names; None: not a dataclass


def _field_names(cls: type) -> tuple[str, ...] | None:
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
    return _FIELDS[cls]


def _norm(v: Any) -> Any:
    """A comparable, order-independent form of scheduler records (dataclasses, sets, dicts)."""
    # Every fuzzed POST fingerprints every record at least once, so the common cases go first and each class's
    # fields are looked up once; the form is the same as a plain recursion over dataclasses.fields(v).
    cls = type(v)
    if cls in _SCALARS:
        return repr(v)
    names = _field_names(cls)
    if names is not None:
        return (cls.__name__, tuple((name, _norm(getattr(v, name))) for name in names))
    if isinstance(v, dict):
        return tuple(sorted((repr(k), _norm(x)) for k, x in v.items()))
    if isinstance(v, (set, frozenset)):
        return tuple(sorted(repr(x) for x in v))
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    return repr(v)


def _digest(v: Any) -> str:
    return hashlib.sha256(repr(v).encode()).hexdigest()[:16]


class Harness:
    """One coordinator in this process, served on 127.0.0.1 through the real aiohttp app."""

    def __init__(self, data_dir: Path, *, lease_timeout_ms: int = 86_400_000,
                 seed: Callable[[Harness], None] = lambda h: None) -> None:
        self.data_dir = data_dir
        self.clock = FakeClock(1_800_000_000_000)
        self.loop = asyncio.new_event_loop()
        self.lease_timeout_ms = lease_timeout_ms
        self._seed = seed
        self._examples = 0
        self._nonces = 0
        self._workers = 0
        self.done_job = ""  # a done job of SUBMITTERS[0], if the seed made one (for valid result requests)
        self._start()
        self.spec = Spec(not_before=self.clock.now, kernels=self.kernels, job=self._job, banned=self._banned,
                         balance=self._balance, minted=self._minted, operator=lambda: self.operator.id)
        seed(self)

    def _start(self) -> None:
        config = CoordinatorConfig(data_dir=self.data_dir, host="127.0.0.1", port=0,
                                   lease_timeout_ms=self.lease_timeout_ms, checkpoint_every=CHECKPOINT_EVERY,
                                   checkpoint_interval_ms=86_400_000)
        # The open rules (no drawn slots, no probation) and no random offsets: the history the tests seed is laid
        # down deterministically.
        self.service = Service(config, self.clock, trust_policy=open_policy(), placement=OPEN_PLACEMENT,
                               audits=NO_AUDITS, pick=lambda n: 0)
        self.operator = load_or_create_key(self.data_dir / "coordinator.key")  # what `depin grant` signs with
        self.server = Server(self.service)

        async def start() -> TestClient[Any, Any]:
            client: TestClient[Any, Any] = TestClient(TestServer(self.server.app, host="127.0.0.1", port=0))
            await client.start_server()
            return client

        self.client = self.loop.run_until_complete(start())
        self.db = sqlite3.connect(f"file:{self.data_dir / 'coordinator.sqlite3'}?mode=ro", uri=True,
                                  isolation_level=None)
        info = self.get("/v1/info").value  # a fresh data dir means a fresh coordinator key
        self.coordinator_key = nacl.signing.VerifyKey(bytes.fromhex(info["public_key"]))
        self.kernels = [k.split("@")[0] for k in info["kernels"]]

    def _stop(self) -> None:
        self.db.close()
        self.loop.run_until_complete(self.client.close())
        self.service.close()

    def restart(self) -> None:
        """Stop the coordinator and start a new one on the same data dir (nonces in memory are forgotten)."""
        self._stop()
        self._start()
        self.spec.not_before = self.clock.now
        self.spec.used.clear()

    def close(self) -> None:
        self._stop()
        self.loop.close()

    def begin_example(self) -> None:
        """Called first by every example. Each check reads the whole state, so a long run on one ever-growing
        database would slow down quadratically: every RECYCLE_EXAMPLES examples start over on a fresh one."""
        self._examples += 1
        if self._examples % RECYCLE_EXAMPLES == 0:
            self._stop()
            shutil.rmtree(self.data_dir)
            self._start()
            self.spec.not_before = self.clock.now
            self.spec.used.clear()
            self._seed(self)

    def pass_time(self, ms: int) -> None:
        """Let `ms` go by and expire what is due, as the server's 0.5 s expiry tick would.

        That tick only runs while a request is in flight here, so the test settles expiries itself, between
        requests: otherwise one could land in the middle of a refused request and look like its doing.
        """
        self.clock.advance(ms)
        self.service.expire()

    # ---- HTTP ----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None, *, chunked: bool = False) -> Answer:
        """One HTTP request; a request that does not finish in REQUEST_TIMEOUT_S fails the test as a hang.

        `chunked` sends the body in 64 KiB chunks without a Content-Length."""

        async def chunks() -> AsyncIterator[bytes]:
            assert body is not None
            for i in range(0, len(body), 1 << 16):
                yield body[i:i + (1 << 16)]

        async def go() -> Answer:
            headers = {"Content-Type": MSGPACK} if body is not None else {}
            data: Any = chunks() if chunked else body
            async with self.client.request(method, path, data=data, headers=headers) as resp:
                return Answer(resp.status, resp.content_type, await resp.read())

        try:
            return self.loop.run_until_complete(asyncio.wait_for(go(), REQUEST_TIMEOUT_S))
        except asyncio.TimeoutError:
            raise AssertionError(f"HANG: {method} {path} got no answer in {REQUEST_TIMEOUT_S} s") from None

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: bytes) -> Answer:
        self.clock.advance(STEP_MS)
        return self.request("POST", path, body)

    # ---- signing -------------------------------------------------------------------------------------------

    def nonce(self) -> bytes:
        """A nonce never used before in this harness."""
        self._nonces += 1
        return self._nonces.to_bytes(16, "big")

    def fresh(self) -> dict[str, Any]:
        """ts and nonce for a request sent now."""
        return {"ts": self.clock.now, "nonce": self.nonce()}

    def new_worker(self) -> SigningKey:
        """A worker identity nobody has used yet (so no earlier verdict can have banned it)."""
        self._workers += 1
        return worker_key(self._workers)

    # ---- state ---------------------------------------------------------------------------------------------

    def _job(self, job_id: str) -> dict[str, Any] | None:
        answer = self.get(job_path(job_id))
        assert answer.status in (200, 404), answer
        return answer.value if answer.status == 200 else None

    def _banned(self, worker_id: str) -> bool:
        workers = self.get("/v1/workers").value["workers"]
        return any(w["worker_id"] == worker_id and w.get("banned") for w in workers)

    def _balance(self, account: str) -> int:
        answer = self.get(f"/v1/accounts/{quote(account, safe='')}")
        assert answer.status == 200 and answer.value["account"] == account, answer
        balance: int = answer.value["balance"]
        return balance

    def _minted(self) -> int:
        minted: int = self.get("/v1/status").value["ledger"]["minted"]
        return minted

    def fingerprint(self) -> dict[str, Any]:
        """Every row of the database, and the scheduler's records in memory, as short digests."""
        out: dict[str, Any] = {}
        for table in TABLES:
            rows = self.db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            out[f"db.{table}"] = (len(rows), _digest(rows))
        head = self.db.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        out["db.ledger_head"] = head and head[0]
        s = self.service.scheduler
        for name in ("jobs", "tasks", "leases", "results", "workers"):
            records = getattr(s, name)
            out[f"memory.{name}"] = (len(records), _digest(_norm(records)))
        out["memory.trust"] = _digest(_norm(getattr(s, "trust", None)))  # reputation, where the scheduler keeps one
        book = s.book
        out["memory.ledger"] = (book.size, book.root().hex(), _digest(sorted(book.accounts.balances.items())))
        latest = self.service.audit.latest
        out["memory.checkpoint"] = latest and latest.to_json()
        return out

    # ---- the check -----------------------------------------------------------------------------------------

    def check_post(self, path: str, body: bytes, *, endpoint: str, url_job_id: str | None = None) -> Answer:
        """POST `body`; the answer must be what Spec allows, and a refusal must change nothing."""
        before = self.fingerprint()
        self.clock.advance(STEP_MS)
        allowed = self.spec.expect(endpoint, body, now=self.clock.now, url_job_id=url_job_id)
        answer = self.request("POST", path, body)
        what = f"POST {path} with body {body[:400].hex()} ({len(body)} bytes) -> {answer}"
        assert answer.status < 500, f"SERVER ERROR: {what}"
        if answer.status >= 400:
            after = self.fingerprint()
            changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            assert not changed, f"PARTIAL STATE: a refused request changed {changed}: {what}"
            assert answer.content_type == "application/json", what
            error = answer.value
            assert isinstance(error, dict) and set(error) == {"error"}, what
            assert isinstance(error["error"], str) and error["error"].strip(), what
        assert answer.status in allowed or (200 in allowed and 200 <= answer.status < 300), \
            f"expected {sorted(allowed)}: {what}"
        if answer.status < 300:
            self._check_success(endpoint, body, answer, url_job_id)
        status = self.get("/v1/status")
        assert status.status == 200 and status.content_type == "application/json", f"after {what}: {status}"
        return answer

    def _check_success(self, endpoint: str, body: bytes, answer: Answer, url_job_id: str | None) -> None:
        assert answer.content_type == MSGPACK, answer
        value = answer.value
        env = msgpack.unpackb(body, raw=False, strict_map_key=False)
        payload = msgpack.unpackb(env["payload"], raw=False)
        if endpoint == "lease":
            assert isinstance(value, dict) and isinstance(value["leases"], list), value
            assert len(value["leases"]) <= payload["max_tasks"]
            for grant in value["leases"]:
                assert set(grant) == {"lease_id", "expires_ms", "task", "sig"}, grant
                self.coordinator_key.verify(b"depin/1/task\0" + grant["task"], grant["sig"])
        elif endpoint == "release":
            assert isinstance(value, dict) and _int_in(value.get("released"), 0, len(payload["lease_ids"])), value
        elif endpoint == "results":
            assert set(value) == {"key", "payload", "sig"}, value
            assert value["key"] == bytes(self.coordinator_key)
            self.coordinator_key.verify(b"depin/1/results-ack\0" + value["payload"], value["sig"])
            ack = msgpack.unpackb(value["payload"], raw=False)
            assert ack["worker_id"] == party_id(env["key"]) and ack["request_nonce"] == payload["nonce"], ack
            assert [a["lease_id"] for a in ack["acks"]] == [r["lease_id"] for r in payload["results"]], ack
            assert all(a["status"] in ("accepted", "duplicate", "rejected") for a in ack["acks"]), ack
        elif endpoint == "submit":
            assert set(value) == {"job_id", "tasks", "price", "escrow", "balance"}, value
            assert isinstance(value["job_id"], str) and _int_in(value["tasks"], 1, payload["tasks"]), value
            limit = payload.get("max_results") or min(payload["replicas"] + 3, 64)
            assert value["price"] == payload["price"] and value["escrow"] == value["price"] * value["tasks"] * limit
            assert value["balance"] == self._balance(party_id(env["key"])) >= 0, value
        elif endpoint == "grant":
            assert set(value) == {"account", "amount", "seq", "balance"}, value
            assert (value["account"], value["amount"]) == (payload["account"], payload["amount"]), value
            assert value["balance"] == self._balance(payload["account"]) >= payload["amount"], value
            entry = self.get(f"/v1/ledger?start={value['seq']}&limit=1").value["entries"][0]
            assert (entry["kind"], entry["from"], entry["to"], entry["amount"]) == (
                "grant", "mint", payload["account"], payload["amount"]), entry
        elif endpoint in ("bond", "unbond"):
            signer = party_id(env["key"])
            assert set(value) == {"worker_id", "amount", "seq", "bonded", "balance"}, value
            assert (value["worker_id"], value["amount"]) == (signer, payload["amount"]), value
            assert value["balance"] == self._balance(signer) >= 0, value
            assert value["bonded"] == self._balance("bond:" + signer) >= 0, value
            entry = self.get(f"/v1/ledger?start={value['seq']}&limit=1").value["entries"][0]
            pair = (signer, "bond:" + signer) if endpoint == "bond" else ("bond:" + signer, signer)
            assert (entry["kind"], entry["from"], entry["to"], entry["amount"]) == (endpoint, *pair,
                                                                                   payload["amount"]), entry
        elif endpoint == "kernel":
            assert set(value) == {"kernel_id", "name", "new"}, value
            listed = self.get(f"/v1/kernels/{value['kernel_id']}").value
            assert hashlib.sha256(listed["source"].encode()).hexdigest() == value["kernel_id"], listed
        elif endpoint == "result":
            assert set(value) == {"job_id", "kernel", "kernel_version", "params", "output"}, value
            assert value["job_id"] == url_job_id and isinstance(value["output"], dict), value
            assert set(value["output"]) == {"dtype", "shape", "data"}, value
        else:
            assert value.get("job_id") == url_job_id and value.get("state") == "cancelled", value

    # ---- honest traffic ------------------------------------------------------------------------------------

    def send(self, req: Request) -> Any:
        """Send a request the test means to be valid; returns the decoded answer."""
        answer = self.check_post(req.path, req.body(), endpoint=req.endpoint, url_job_id=req.job_id)
        assert 200 <= answer.status < 300, answer
        return answer.value

    def submit(self, key: SigningKey, params: dict[str, Any] | None = None, *, tasks: int = 3,
               replicas: int = 2, price: int = 5) -> str:
        job = {"kernel": "mandelbrot", "params": params or TINY_JOB, "tasks": tasks, "replicas": replicas,
               "max_results": None, "price": price}
        answer = self.send(Request("submit", key, {**job, **self.fresh()}))
        return str(answer["job_id"])

    def grant(self, account: str, amount: int) -> int:
        """What `depin grant` does: mint credits into an account, signed with the coordinator's key; the new balance."""
        answer = self.send(Request("grant", self.operator, {"account": account, "amount": amount, **self.fresh()}))
        balance: int = answer["balance"]
        return balance

    def lease(self, key: SigningKey, max_tasks: int = 1, kernels: tuple[str, ...] = ("mandelbrot@1",)
              ) -> list[dict[str, Any]]:
        payload = {"max_tasks": max_tasks, "wait_ms": 0, "kernels": list(kernels), **self.fresh()}
        leases: list[dict[str, Any]] = self.send(Request("lease", key, payload))["leases"]
        return leases

    def grant_for(self, key: SigningKey) -> dict[str, Any]:
        """One active lease for `key`, submitting a job first if nothing is leasable."""
        leases = self.lease(key)
        if not leases:
            self.submit(SUBMITTERS[0])
            leases = self.lease(key)
        assert len(leases) == 1, leases
        return leases[0]

    def result_item(self, grant: dict[str, Any], output: dict[str, Any] | None = None) -> dict[str, Any]:
        task = msgpack.unpackb(grant["task"], raw=False)
        return {"lease_id": grant["lease_id"], "task_id": task["task_id"],
                "output": zeros_output(task["params"]) if output is None else output, "elapsed_ms": 1}
