"""An independent depin worker, written from docs/PROTOCOL.md alone.

It shares no code with depin: canonical msgpack (PROTOCOL.md section 3), ids (4), signatures (5),
freshness (6), the lease / results / release endpoints (7.2-7.4), task checks (8.3), arrays and
digests (9), the worker loop, journal and key pinning (10) and the mandelbrot@1 kernel (13) are all
implemented here from the text. Dependencies: the standard library, PyNaCl and numpy.

    python -m tests.independent.spec_worker --coordinator URL --data-dir DIR \
        [--max-tasks N] [--exit-when-idle] [--wait-ms MS] [--task-limit N] [--coordinator-key HEX] \
        [--min-price CREDITS]

`--max-tasks` is the lease request's `max_tasks` (how many tasks to ask for at once); `--task-limit`
stops the worker after it has computed that many tasks in total. `--min-price` is the lease request's
optional `min_price` (the least a job must pay per validated result); a task whose signed `price` is
below it is refused and released like any other task that fails the checks of section 8.3.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import random
import signal
import struct
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

PROTOCOL_VERSION = 1
KERNEL = "mandelbrot@1"
# Section 2.4: the endpoint takes up to 64 MiB; like the reference worker (2.4, 10.3) we add items to a request
# only while their encoded item maps total at most 16 MiB, and always put at least one item in a request.
RESULTS_BATCH_BYTES = 16 * 1024 * 1024
RESULTS_BATCH_ITEMS = 256  # section 7.4: 1..256 items
MAX_PRICE = 2**40 - 1  # section 7.5: a price is int[1..2^40-1] credits per validated result


# --------------------------------------------------------------------------------------------------
# Canonical msgpack (section 3)
# --------------------------------------------------------------------------------------------------


class MsgpackError(ValueError):
    pass


def packb(value: Any) -> bytes:
    """Encode a value of the section 3.1 model with the section 3.2 rules."""
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _len_header(n: int, fix_base: int | None, fix_max: int, codes: tuple[int | None, int, int], out: bytearray) -> None:
    c8, c16, c32 = codes
    if fix_base is not None and n <= fix_max:
        out.append(fix_base | n)
    elif c8 is not None and n <= 0xFF:
        out += bytes((c8, n))
    elif n <= 0xFFFF:
        out.append(c16)
        out += struct.pack(">H", n)
    elif n <= 0xFFFFFFFF:
        out.append(c32)
        out += struct.pack(">I", n)
    else:
        raise MsgpackError("length too large")


def _pack(v: Any, out: bytearray) -> None:
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        if v >= 0:
            if v <= 0x7F:
                out.append(v)
            elif v <= 0xFF:
                out += b"\xcc" + struct.pack(">B", v)
            elif v <= 0xFFFF:
                out += b"\xcd" + struct.pack(">H", v)
            elif v <= 0xFFFFFFFF:
                out += b"\xce" + struct.pack(">I", v)
            elif v <= 0xFFFFFFFFFFFFFFFF:
                out += b"\xcf" + struct.pack(">Q", v)
            else:
                raise MsgpackError("integer out of range")
        else:
            if v >= -32:
                out += struct.pack(">b", v)
            elif v >= -0x80:
                out += b"\xd0" + struct.pack(">b", v)
            elif v >= -0x8000:
                out += b"\xd1" + struct.pack(">h", v)
            elif v >= -0x80000000:
                out += b"\xd2" + struct.pack(">i", v)
            elif v >= -0x8000000000000000:
                out += b"\xd3" + struct.pack(">q", v)
            else:
                raise MsgpackError("integer out of range")
    elif isinstance(v, float):
        out += b"\xcb" + struct.pack(">d", v)
    elif isinstance(v, str):
        b = v.encode("utf-8")  # strict: lone surrogates raise
        _len_header(len(b), 0xA0, 31, (0xD9, 0xDA, 0xDB), out)
        out += b
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        _len_header(len(b), None, -1, (0xC4, 0xC5, 0xC6), out)
        out += b
    elif isinstance(v, (list, tuple)):
        _len_header(len(v), 0x90, 15, (None, 0xDC, 0xDD), out)
        for item in v:
            _pack(item, out)
    elif isinstance(v, dict):
        items = []
        for k, item in v.items():
            if not isinstance(k, str):
                raise MsgpackError("map keys must be strings")
            items.append((k.encode("utf-8"), k, item))
        items.sort(key=lambda t: t[0])
        _len_header(len(items), 0x80, 15, (None, 0xDE, 0xDF), out)
        for kb, _k, item in items:
            _len_header(len(kb), 0xA0, 31, (0xD9, 0xDA, 0xDB), out)
            out += kb
            _pack(item, out)
    else:
        raise MsgpackError(f"cannot encode {type(v).__name__}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MsgpackError("truncated msgpack")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        return int(struct.unpack(fmt, self.take(size))[0])


_MAX_DEPTH = 64


def _unpack(r: _Reader, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise MsgpackError("nesting too deep")
    b = r.take(1)[0]
    if b <= 0x7F:
        return b
    if b >= 0xE0:
        return b - 0x100
    if 0xA0 <= b <= 0xBF:
        return _str(r.take(b & 0x1F))
    if 0x90 <= b <= 0x9F:
        return [_unpack(r, depth + 1) for _ in range(b & 0x0F)]
    if 0x80 <= b <= 0x8F:
        return _map(r, b & 0x0F, depth)
    if b == 0xC0:
        return None
    if b == 0xC2:
        return False
    if b == 0xC3:
        return True
    if b == 0xC4:
        return r.take(r.u(">B"))
    if b == 0xC5:
        return r.take(r.u(">H"))
    if b == 0xC6:
        return r.take(r.u(">I"))
    if b == 0xCA:  # float32: decodable, but never canonical (re-encodes as float64)
        return float(struct.unpack(">f", r.take(4))[0])
    if b == 0xCB:
        return float(struct.unpack(">d", r.take(8))[0])
    if b == 0xCC:
        return r.u(">B")
    if b == 0xCD:
        return r.u(">H")
    if b == 0xCE:
        return r.u(">I")
    if b == 0xCF:
        return r.u(">Q")
    if b == 0xD0:
        return r.u(">b")
    if b == 0xD1:
        return r.u(">h")
    if b == 0xD2:
        return r.u(">i")
    if b == 0xD3:
        return r.u(">q")
    if b == 0xD9:
        return _str(r.take(r.u(">B")))
    if b == 0xDA:
        return _str(r.take(r.u(">H")))
    if b == 0xDB:
        return _str(r.take(r.u(">I")))
    if b == 0xDC:
        return [_unpack(r, depth + 1) for _ in range(r.u(">H"))]
    if b == 0xDD:
        return [_unpack(r, depth + 1) for _ in range(r.u(">I"))]
    if b == 0xDE:
        return _map(r, r.u(">H"), depth)
    if b == 0xDF:
        return _map(r, r.u(">I"), depth)
    # c1 (never used), ext types c7-c9, d4-d8: outside the value model
    raise MsgpackError(f"unsupported msgpack type byte 0x{b:02x}")


def _str(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MsgpackError("invalid UTF-8 in string") from e


def _map(r: _Reader, n: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(n):
        k = _unpack(r, depth + 1)
        if not isinstance(k, str):
            raise MsgpackError("map key is not a string")
        v = _unpack(r, depth + 1)
        if k in out:
            raise MsgpackError(f"duplicate map key {k!r}")
        out[k] = v
    return out


def unpackb(data: bytes) -> Any:
    """Decode exactly one msgpack value (leniently: need not be canonical)."""
    r = _Reader(bytes(data))
    v = _unpack(r)
    if r.pos != len(r.data):
        raise MsgpackError("trailing bytes after msgpack value")
    return v


def unpackb_canonical(data: bytes) -> Any:
    """Decode and apply the check of section 3.3: re-encoding must give the same bytes."""
    v = unpackb(data)
    if packb(v) != bytes(data):
        raise MsgpackError("not canonical msgpack")
    return v


# --------------------------------------------------------------------------------------------------
# Identities and signatures (sections 4, 5)
# --------------------------------------------------------------------------------------------------


def party_id(public_key: bytes) -> str:
    return base64.b32encode(hashlib.sha256(public_key).digest()[:20]).decode("ascii").lower()


def signing_input(kind: str, payload: bytes) -> bytes:
    return b"depin/1/" + kind.encode("ascii") + b"\x00" + payload


def sign(key: SigningKey, kind: str, payload: bytes) -> bytes:
    return bytes(key.sign(signing_input(kind, payload)).signature)


def verify(public_key: bytes, kind: str, payload: bytes, sig: bytes) -> bool:
    if len(public_key) != 32 or len(sig) != 64:
        return False
    try:
        VerifyKey(public_key).verify(signing_input(kind, payload), sig)
        return True
    except (BadSignatureError, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - PyNaCl raises CryptoError for unusable keys
        return False


def envelope(key: SigningKey, kind: str, payload: dict[str, Any]) -> tuple[bytes, bytes]:
    """Returns (body, payload_bytes) of a signed envelope (section 5.2)."""
    pb = packb(payload)
    body = packb({"key": bytes(key.verify_key), "payload": pb, "sig": sign(key, kind, pb)})
    return body, pb


def open_envelope(body: bytes, kind: str, expected_key: bytes) -> dict[str, Any]:
    """Section 5.3 checks for an envelope we receive, with the key pinned in advance."""
    env = unpackb(body)
    if not isinstance(env, dict) or set(env) != {"key", "payload", "sig"}:
        raise ProtocolViolation("envelope must be a map with exactly key, payload, sig")
    key, payload, sig = env["key"], env["payload"], env["sig"]
    if not isinstance(payload, bytes):
        raise ProtocolViolation("envelope.payload: must be bytes")
    if not isinstance(key, bytes) or len(key) != 32:
        raise ProtocolViolation("public key must be 32 bytes")
    if key != expected_key:
        raise ProtocolViolation("envelope signed by a key other than the pinned coordinator key")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise ProtocolViolation("signature must be 64 bytes")
    if not verify(key, kind, payload, sig):
        raise ProtocolViolation(f"bad {kind} signature")
    try:
        value = unpackb_canonical(payload)
    except MsgpackError as e:
        raise ProtocolViolation(f"payload: {e}") from e
    if not isinstance(value, dict):
        raise ProtocolViolation("envelope.payload: must encode a map")
    return value


class ProtocolViolation(Exception):
    pass


def fresh() -> dict[str, Any]:
    """The ts and nonce of section 6."""
    return {"ts": time.time_ns() // 1_000_000, "nonce": os.urandom(16)}


# --------------------------------------------------------------------------------------------------
# Task checks (section 8.3) and mandelbrot@1 (section 13)
# --------------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str(v: Any, lo: int = 1, hi: int = 128) -> bool:
    return isinstance(v, str) and lo <= len(v) <= hi


TASK_FIELDS = {"task_id", "job_id", "kernel", "kernel_version", "params", "coordinator", "price"}

MANDEL_INTS = {"width": (1, 4096), "height": (1, 4096), "max_iter": (1, 1_000_000),
               "row_start": (0, 4095), "row_end": (1, 4096)}
MANDEL_FLOATS = ("x_min", "x_max", "y_min", "y_max")


def check_task(task: Any, coordinator_id: str, min_price: int = 0) -> None:
    """Steps 3-6 of section 8.3 (steps 1-2 are done on the bytes by the caller), and this worker's minimum price."""
    if not isinstance(task, dict):
        raise ProtocolViolation("task does not decode to a map")
    if set(task) != TASK_FIELDS:
        raise ProtocolViolation(f"task fields {sorted(task)} != {sorted(TASK_FIELDS)}")
    for name in ("task_id", "job_id", "kernel", "coordinator"):
        if not _is_str(task[name]):
            raise ProtocolViolation(f"task.{name}: not a str(1..128)")
    if not _is_int(task["kernel_version"]) or not 0 <= task["kernel_version"] <= 2**31:
        raise ProtocolViolation("task.kernel_version: not an int[0..2^31]")
    if not isinstance(task["params"], dict):
        raise ProtocolViolation("task.params: not a map")
    if not _is_int(task["price"]) or not 1 <= task["price"] <= MAX_PRICE:
        raise ProtocolViolation("task.price: not an int[1..2^40-1]")
    if task["coordinator"] != coordinator_id:
        raise ProtocolViolation("task.coordinator is not the pinned coordinator's id")
    if f"{task['kernel']}@{task['kernel_version']}" != KERNEL:
        raise ProtocolViolation(f"kernel {task['kernel']}@{task['kernel_version']} is not run by this worker")
    check_mandelbrot_params(task["params"])
    if task["price"] < min_price:
        raise ProtocolViolation(f"task pays {task['price']} credits, below our minimum of {min_price}")


def check_mandelbrot_params(p: dict[str, Any]) -> None:
    """Section 13.3 (and the rules of 13.1)."""
    expected = set(MANDEL_INTS) | set(MANDEL_FLOATS)
    if set(p) != expected:
        raise ProtocolViolation(f"mandelbrot params {sorted(p)} != {sorted(expected)}")
    for name, (lo, hi) in MANDEL_INTS.items():
        if not _is_int(p[name]) or not lo <= p[name] <= hi:
            raise ProtocolViolation(f"param {name}: {p[name]!r} not an int in [{lo}, {hi}]")
    for name in MANDEL_FLOATS:
        v = p[name]
        if not isinstance(v, float) or not math.isfinite(v) or not -1e6 <= v <= 1e6:
            raise ProtocolViolation(f"param {name}: {v!r} not a finite float in [-1e6, 1e6]")
    if not p["x_min"] < p["x_max"] or not p["y_min"] < p["y_max"]:
        raise ProtocolViolation("empty rectangle")
    w, h = p["width"], p["height"]
    if w * h > 16_777_216:
        raise ProtocolViolation("too many pixels")
    if w * h * p["max_iter"] > 10**11:
        raise ProtocolViolation("over the work limit")
    if not 0 <= p["row_start"] < p["row_end"] <= h:
        raise ProtocolViolation("bad band")


def mandelbrot(p: dict[str, Any]) -> np.ndarray:
    """Section 13.4, vectorised over the pixels still iterating. Each numpy ufunc rounds separately,
    in the order of the formula; numpy never fuses two ufunc calls into an FMA."""
    width, height, max_iter = p["width"], p["height"], p["max_iter"]
    x_min, x_max, y_min, y_max = (float(p[k]) for k in ("x_min", "x_max", "y_min", "y_max"))
    r0, r1 = p["row_start"], p["row_end"]
    rows = r1 - r0

    c = np.arange(width, dtype=np.float64)
    x = x_min + ((c + 0.5) * (x_max - x_min)) / float(width)
    r = np.arange(r0, r1, dtype=np.float64)
    y = y_max - ((r + 0.5) * (y_max - y_min)) / float(height)

    cx = np.tile(x, rows)
    cy = np.repeat(y, width)
    n_out = np.zeros(rows * width, dtype=np.uint32)
    idx = np.arange(rows * width)
    zr = np.zeros_like(cx)
    zi = np.zeros_like(cx)
    n = 0
    with np.errstate(over="ignore", invalid="ignore"):
        while n < max_iter and idx.size:
            keep = ((zr * zr) + (zi * zi)) <= 4.0
            if not keep.all():
                n_out[idx[~keep]] = n
                idx, zr, zi, cx, cy = idx[keep], zr[keep], zi[keep], cx[keep], cy[keep]
                if not idx.size:
                    break
            t = ((zr * zr) - (zi * zi)) + cx
            zi = ((2.0 * zr) * zi) + cy
            zr = t
            n += 1
    n_out[idx] = n
    return n_out.reshape(rows, width)


def array_map(a: np.ndarray) -> dict[str, Any]:
    """Section 9.1."""
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": str(a.dtype.name), "shape": [int(d) for d in a.shape],
            "data": np.ascontiguousarray(le).tobytes()}


def digest(amap: dict[str, Any]) -> str:
    """Section 9.2."""
    return hashlib.sha256(packb(amap)).hexdigest()


# --------------------------------------------------------------------------------------------------
# HTTP (section 2)
# --------------------------------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Transport:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def _do(self, req: urllib.request.Request, timeout: float) -> tuple[bytes, str]:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                msg = json.loads(body)["error"]
            except Exception:  # noqa: BLE001 - 404/405 from the HTTP layer are plain text
                msg = body.decode("utf-8", "replace")[:200]
            raise HttpError(e.code, msg) from None

    def get_json(self, path: str, timeout: float = 10.0) -> Any:
        body, _ = self._do(urllib.request.Request(self.base + path, method="GET"), timeout)
        return json.loads(body)

    def post(self, path: str, body: bytes, timeout: float = 30.0) -> bytes:
        req = urllib.request.Request(self.base + path, data=body, method="POST",
                                     headers={"Content-Type": "application/msgpack"})
        data, _ = self._do(req, timeout)
        return data


# --------------------------------------------------------------------------------------------------
# The worker (section 10)
# --------------------------------------------------------------------------------------------------


class KeyMismatch(Exception):
    pass


class Stop(BaseException):
    pass


def load_or_create_key(data_dir: Path) -> SigningKey:
    """Our own key file: the 32-byte seed in hex, data_dir/worker.seed, mode 0600."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "worker.seed"
    if path.exists():
        return SigningKey(bytes.fromhex(path.read_text().strip()))
    seed = os.urandom(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(seed.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return SigningKey(seed)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Results not yet acknowledged: one canonical-msgpack file per result item (section 10.3)."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)

    def _path(self, lease_id: str) -> Path:
        return self.dir / (hashlib.sha256(lease_id.encode("utf-8")).hexdigest() + ".result")

    def put(self, item: dict[str, Any]) -> None:
        path = self._path(item["lease_id"])
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(packb(item))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)

    def items(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.dir.glob("*.result"), key=lambda q: q.stat().st_mtime_ns):
            out.append(unpackb_canonical(p.read_bytes()))
        return out

    def forget(self, lease_ids: list[str]) -> None:
        for lid in lease_ids:
            try:
                self._path(lid).unlink()
            except FileNotFoundError:
                pass
        _fsync_dir(self.dir)

    def __len__(self) -> int:
        return len(list(self.dir.glob("*.result")))


@dataclass
class Stats:
    computed: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    refused_tasks: int = 0


class SpecWorker:
    def __init__(self, coordinator: str, data_dir: Path, *, max_tasks: int = 4, wait_ms: int = 20_000,
                 exit_when_idle: bool = False, task_limit: int | None = None,
                 coordinator_key: str | None = None, min_price: int = 0, log: Any = None) -> None:
        self.http = Transport(coordinator)
        self.data_dir = Path(data_dir)
        self.key = load_or_create_key(self.data_dir)
        self.public_key = bytes(self.key.verify_key)
        self.worker_id = party_id(self.public_key)
        self.journal = Journal(self.data_dir / "journal")
        self.max_tasks = max_tasks
        self.wait_ms = wait_ms
        self.exit_when_idle = exit_when_idle
        self.task_limit = task_limit
        self.min_price = min_price
        self.operator_key = coordinator_key.lower() if coordinator_key else None
        self.coord_key = b""
        self.coord_id = ""
        self.stats = Stats()
        self.stopping = False
        self.in_poll = False
        self.failures = 0
        self._log = log or (lambda msg: print(f"spec-worker: {msg}", file=sys.stderr, flush=True))

    # --- section 10.1 -------------------------------------------------------------------------
    def pin(self) -> None:
        info = self.http.get_json("/v1/info")
        if not isinstance(info, dict) or info.get("protocol") != PROTOCOL_VERSION:
            raise KeyMismatch(f"coordinator speaks protocol {info.get('protocol')!r}, not {PROTOCOL_VERSION}")
        presented = info.get("public_key")
        if not isinstance(presented, str) or len(presented) != 64 or presented != presented.lower():
            raise KeyMismatch("coordinator public_key is not 64 lowercase hex digits")
        key = bytes.fromhex(presented)
        if self.operator_key is not None and presented != self.operator_key:
            raise KeyMismatch("coordinator key differs from --coordinator-key")
        pin_file = self.data_dir / "coordinator.pub"
        if pin_file.exists():
            if pin_file.read_text().strip().lower() != presented:
                raise KeyMismatch(f"coordinator key changed; delete {pin_file} if this is legitimate")
        else:
            tmp = pin_file.with_suffix(".tmp")
            tmp.write_text(presented + "\n")
            os.replace(tmp, pin_file)
        self.coord_key = key
        self.coord_id = party_id(key)
        if info.get("coordinator_id") != self.coord_id:
            raise KeyMismatch("coordinator_id does not derive from public_key")
        if KERNEL not in (info.get("kernels") or []):
            self._log(f"warning: coordinator does not list {KERNEL}")
        skew = int(info.get("time_ms", 0)) - time.time_ns() // 1_000_000
        self._log(f"worker {self.worker_id} pinned coordinator {self.coord_id} (clock skew {skew} ms)")

    # --- section 7.2 --------------------------------------------------------------------------
    def lease(self, max_tasks: int) -> list[Any]:
        payload = {"max_tasks": max_tasks, "wait_ms": self.wait_ms, "kernels": [KERNEL], **fresh()}
        if self.min_price:
            payload["min_price"] = self.min_price
        body, _ = envelope(self.key, "lease-request", payload)
        self.in_poll = True
        try:
            if self.stopping:
                raise Stop()
            raw = self.http.post("/v1/lease", body, timeout=self.wait_ms / 1000 + 15)
        finally:
            self.in_poll = False
        answer = unpackb(raw)
        if not isinstance(answer, dict) or not isinstance(answer.get("leases"), list):
            raise ProtocolViolation("lease answer is not a map with a leases array")
        return list(answer["leases"])

    # --- section 8.3 --------------------------------------------------------------------------
    def check_grant(self, grant: Any) -> dict[str, Any]:
        if not isinstance(grant, dict) or set(grant) != {"lease_id", "expires_ms", "task", "sig"}:
            raise ProtocolViolation("lease grant is not a map with exactly lease_id, expires_ms, task, sig")
        if not _is_str(grant["lease_id"]) or not _is_int(grant["expires_ms"]):
            raise ProtocolViolation("lease grant lease_id / expires_ms mistyped")
        task_bytes, sig = grant["task"], grant["sig"]
        if not isinstance(task_bytes, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
            raise ProtocolViolation("lease grant task / sig mistyped")
        if not verify(self.coord_key, "task", task_bytes, sig):  # 1
            raise ProtocolViolation("bad task signature")
        try:
            task = unpackb_canonical(task_bytes)  # 2
        except MsgpackError as e:
            raise ProtocolViolation(f"task: {e}") from e
        check_task(task, self.coord_id, self.min_price)  # 3-6
        return cast(dict[str, Any], task)

    def release(self, lease_ids: list[str]) -> None:
        if not lease_ids:
            return
        try:
            body, _ = envelope(self.key, "release", {"lease_ids": lease_ids, **fresh()})
            answer = unpackb(self.http.post("/v1/release", body))
            self._log(f"released {answer.get('released') if isinstance(answer, dict) else answer} lease(s)")
        except Exception as e:  # noqa: BLE001 - releasing is a courtesy: the leases expire anyway
            self._log(f"release failed: {e}")

    # --- section 7.4 --------------------------------------------------------------------------
    def send_results(self) -> bool:
        """Send everything journaled, in batches. True if the journal is empty afterwards."""
        items = self.journal.items()
        batches: list[list[dict[str, Any]]] = []
        cur: list[dict[str, Any]] = []
        size = 0
        for it in items:
            n = len(packb(it))
            if cur and (len(cur) >= RESULTS_BATCH_ITEMS or size + n > RESULTS_BATCH_BYTES):
                batches.append(cur)
                cur, size = [], 0
            cur.append(it)
            size += n
        if cur:
            batches.append(cur)
        ok = True
        for batch in batches:
            ok = self._send_batch(batch) and ok
        return ok

    def _send_batch(self, batch: list[dict[str, Any]]) -> bool:
        fr = fresh()
        body, _ = envelope(self.key, "results", {"results": batch, **fr})
        sent = [it["lease_id"] for it in batch]
        try:
            raw = self.http.post("/v1/results", body, timeout=120)
            acks = self.check_ack(raw, fr["nonce"], sent)
        except (HttpError, ProtocolViolation, MsgpackError, OSError) as e:
            self._log(f"results not acknowledged, kept in the journal: {e}")
            return False
        for a in acks:
            self.stats.acks[a["status"]] = self.stats.acks.get(a["status"], 0) + 1
            if a["status"] != "accepted":
                self._log(f"lease {a['lease_id']}: {a['status']} {a['reason']}")
        self.journal.forget(sent)
        self.failures = 0
        return True

    def check_ack(self, raw: bytes, nonce: bytes, sent: list[str]) -> list[dict[str, Any]]:
        payload = open_envelope(raw, "results-ack", self.coord_key)  # checks 1 and 2
        if set(payload) != {"worker_id", "request_nonce", "acks"}:  # check 3
            raise ProtocolViolation(f"results-ack fields {sorted(payload)}")
        if payload["worker_id"] != self.worker_id:
            raise ProtocolViolation("results-ack is for another worker")
        if payload["request_nonce"] != nonce:
            raise ProtocolViolation("results-ack answers another request")
        acks = payload["acks"]
        if not isinstance(acks, list):
            raise ProtocolViolation("results-ack acks is not an array")
        for a in acks:
            if (not isinstance(a, dict) or set(a) != {"lease_id", "status", "reason"}
                    or not all(isinstance(a[k], str) for k in a)):
                raise ProtocolViolation("malformed ack item")
            if a["status"] not in ("accepted", "duplicate", "rejected"):  # check 4
                raise ProtocolViolation(f"unknown ack status {a['status']!r}")
        ids = [a["lease_id"] for a in acks]
        if len(ids) != len(sent) or set(ids) != set(sent):
            raise ProtocolViolation("results-ack does not acknowledge exactly the leases sent")
        return acks

    # --- the loop (section 10.2) ----------------------------------------------------------------
    def backoff(self) -> None:
        self.failures += 1
        c = min(30.0, 0.25 * 2 ** min(self.failures, 20))
        until = time.monotonic() + random.uniform(c / 2, c)  # section 10.4
        while not self.stopping and time.monotonic() < until:
            time.sleep(min(0.1, until - time.monotonic()))

    def run(self) -> int:
        while True:
            try:
                self.pin()
                break
            except KeyMismatch as e:
                self._log(f"refusing to work: {e}")
                return 4
            except (HttpError, OSError, ValueError) as e:  # unreachable, or not a JSON answer: try again
                self._log(f"GET /v1/info failed: {e}")
                if self.stopping:
                    return 1
                self.backoff()
        self.failures = 0
        pending: list[Any] = []
        try:
            while not self.stopping:
                if len(self.journal) and not self.send_results():
                    self.backoff()
                want = self.max_tasks
                if self.task_limit is not None:
                    want = min(want, self.task_limit - self.stats.computed)
                    if want <= 0:
                        break
                try:
                    pending = self.lease(want)
                except (HttpError, ProtocolViolation, MsgpackError, OSError) as e:
                    self._log(f"lease failed: {e}")
                    self.backoff()
                    continue
                self.failures = 0
                if not pending:
                    if self.exit_when_idle:
                        break
                    continue
                self.work(pending)
                pending = []
                if not self.send_results():
                    self.backoff()
        except Stop:
            pass
        # section 10.5: give back unstarted leases, send the journal once, exit
        self.release([g["lease_id"] for g in pending if isinstance(g, dict) and _is_str(g.get("lease_id"))])
        delivered = self.send_results() if len(self.journal) else True
        self._log(f"exiting: computed {self.stats.computed}, acks {self.stats.acks}, "
                  f"refused {self.stats.refused_tasks}, journal {len(self.journal)}")
        return 0 if delivered else 1

    def work(self, grants: list[Any]) -> None:
        refused: list[str] = []
        while grants:
            if self.stopping:
                break
            grant = grants.pop(0)
            try:
                task = self.check_grant(grant)
            except ProtocolViolation as e:
                self.stats.refused_tasks += 1
                self._log(f"refusing a task: {e}")
                if isinstance(grant, dict) and _is_str(grant.get("lease_id")):
                    refused.append(grant["lease_id"])
                continue
            t0 = time.monotonic()
            out = mandelbrot(task["params"])
            elapsed = int((time.monotonic() - t0) * 1000)
            self.journal.put({"lease_id": grant["lease_id"], "task_id": task["task_id"],
                              "output": array_map(out), "elapsed_ms": min(elapsed, 2**31 - 1)})
            self.stats.computed += 1
        # whatever remains unstarted (on stop) goes back with the refused ones
        refused += [g["lease_id"] for g in grants if isinstance(g, dict) and _is_str(g.get("lease_id"))]
        grants.clear()
        self.release(refused)

    def on_signal(self, *_: Any) -> None:
        self.stopping = True
        if self.in_poll:
            raise Stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spec_worker", description=__doc__.splitlines()[0])
    ap.add_argument("--coordinator", required=True)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--max-tasks", type=int, default=4, help="max_tasks of each lease request (1..256)")
    ap.add_argument("--wait-ms", type=int, default=20_000, help="wait_ms of each lease request (0..30000)")
    ap.add_argument("--task-limit", type=int, default=None, help="stop after computing this many tasks")
    ap.add_argument("--exit-when-idle", action="store_true", help="exit when a lease poll returns nothing")
    ap.add_argument("--coordinator-key", default=None, help="expected coordinator public key, hex")
    ap.add_argument("--min-price", type=int, default=0, help="min_price of each lease request (0: any price)")
    args = ap.parse_args(argv)
    if not 1 <= args.max_tasks <= 256 or not 0 <= args.wait_ms <= 30_000:
        ap.error("--max-tasks must be 1..256 and --wait-ms 0..30000")
    if not 0 <= args.min_price <= MAX_PRICE:
        ap.error("--min-price must be 0..2^40-1")
    w = SpecWorker(args.coordinator, args.data_dir, max_tasks=args.max_tasks, wait_ms=args.wait_ms,
                   exit_when_idle=args.exit_when_idle, task_limit=args.task_limit,
                   coordinator_key=args.coordinator_key, min_price=args.min_price)
    print(f"spec worker {w.worker_id}", flush=True)
    signal.signal(signal.SIGTERM, w.on_signal)
    signal.signal(signal.SIGINT, w.on_signal)
    return w.run()


if __name__ == "__main__":
    sys.exit(main())
