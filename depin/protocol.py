"""Wire messages of protocol version 1, as frozen dataclasses that validate themselves.

Each signed request is a payload map inside a {key, payload, sig} envelope (depin.crypto). `from_payload` turns
a decoded map into a message or raises PeerProtocolError naming the field at fault; `to_payload` is its inverse.
docs/PROTOCOL.md is the normative description; this module is its executable form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Self

from depin.errors import PeerProtocolError

PROTOCOL_VERSION = 1
MAX_BATCH = 256  # leases per request and results per request
MAX_KERNEL_SOURCE = 64 << 10  # bytes of a published kernel file (docs/KERNELS.md 1)
MAX_ERROR = 200  # characters of a result's error (a published kernel that failed)
MAX_REPLICAS = 16  # agreeing results a job may ask for per task
MAX_RESULTS = 64  # results per task before it fails
MAX_PRICE = 2**40 - 1  # credits per validated result
MAX_GRANT = 2**53 - 1  # credits per grant (exact in every JSON reader)
MAX_TASKS = 1_000_000  # tasks per job
MAX_WAIT_MS = 30_000  # longest long-poll a worker may ask for
NONCE_MIN, NONCE_MAX = 8, 32
_ID_MAX = 128
_PARTY_ID = re.compile(r"[a-z2-7]{32}")
_KERNEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,47}@[0-9]{1,9}")  # name@version, as in GET /v1/info
_PLATFORM = re.compile(r"[ -~]{1,128}")  # a worker's platform class, e.g. "x86_64 numba-0.68.1 llvm-20.1 glibc-2.36"


def _field(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    label = f"{where}{name}"
    if name not in payload:
        raise PeerProtocolError(f"missing field {label}")
    value = payload[name]
    if isinstance(value, bool) and kind is not bool:
        raise PeerProtocolError(f"field {label}: wrong type bool")
    if not isinstance(value, kind):
        raise PeerProtocolError(f"field {label}: wrong type {type(value).__name__}")
    return value


def _exact_fields(payload: dict[str, Any], names: set[str], where: str = "") -> None:
    extra = sorted(set(payload) - names)
    if extra:
        raise PeerProtocolError(f"unknown field {where}{extra[0]}")


def _int_in(payload: dict[str, Any], name: str, lo: int, hi: int, where: str = "") -> int:
    value: int = _field(payload, name, int, where)
    if not lo <= value <= hi:
        raise PeerProtocolError(f"field {where}{name}: {value} outside [{lo}, {hi}]")
    return value


def _id(payload: dict[str, Any], name: str, where: str = "") -> str:
    value: str = _field(payload, name, str, where)
    if not 0 < len(value) <= _ID_MAX:
        raise PeerProtocolError(f"field {where}{name}: length must be 1..{_ID_MAX}")
    return value


@dataclass(frozen=True)
class Freshness:
    """The `ts` (unix ms) and `nonce` every signed request carries against replay."""

    ts: int
    nonce: bytes

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Freshness:
        """Read ts and nonce from a request payload."""
        ts = _int_in(p, "ts", 0, 2**63 - 1)
        nonce = _field(p, "nonce", bytes)
        if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
            raise PeerProtocolError(f"field nonce: length must be {NONCE_MIN}..{NONCE_MAX} bytes")
        return cls(ts, nonce)


_FRESH = {"ts", "nonce"}


@dataclass(frozen=True)
class LeaseRequest:
    """POST /v1/lease: up to `max_tasks` tasks of the listed kernels, waiting up to `wait_ms`."""

    max_tasks: int
    wait_ms: int
    kernels: tuple[str, ...]
    owner: str | None = None  # optional: the id of the person running this worker (replicas avoid one owner)
    min_price: int | None = None  # optional: lease only tasks of jobs paying at least this per result
    published: bool = False  # optional: it also runs published kernels (docs/KERNELS.md 7)
    platform: str | None = None  # optional: its platform class (docs/KERNELS.md 5), for homogeneous redundancy

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> LeaseRequest:
        """Validate a lease-request payload."""
        _exact_fields(p, {"max_tasks", "wait_ms", "kernels", "owner", "min_price", "published", "platform"} | _FRESH)
        kernels = _field(p, "kernels", list)
        if not 0 < len(kernels) <= 64 or not all(isinstance(k, str) and _KERNEL_KEY.fullmatch(k) for k in kernels):
            raise PeerProtocolError("field kernels: must list 1..64 'name@version' strings")
        owner = None
        if "owner" in p:
            owner = _field(p, "owner", str)
            if not _PARTY_ID.fullmatch(owner):
                raise PeerProtocolError("field owner: must be a party id (32 characters a-z, 2-7)")
        min_price = _int_in(p, "min_price", 0, MAX_PRICE) if "min_price" in p else None
        published = _field(p, "published", bool) if "published" in p else False
        platform = None
        if "platform" in p:
            platform = _field(p, "platform", str)
            if not _PLATFORM.fullmatch(platform):
                raise PeerProtocolError("field platform: must be 1..128 printable ASCII characters")
        return cls(_int_in(p, "max_tasks", 1, MAX_BATCH), _int_in(p, "wait_ms", 0, MAX_WAIT_MS), tuple(kernels),
                   owner, min_price, published, platform)

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        out: dict[str, Any] = {"max_tasks": self.max_tasks, "wait_ms": self.wait_ms, "kernels": list(self.kernels)}
        if self.owner is not None:
            out["owner"] = self.owner
        if self.min_price is not None:
            out["min_price"] = self.min_price
        if self.published:
            out["published"] = True
        if self.platform is not None:
            out["platform"] = self.platform
        return out


@dataclass(frozen=True)
class ReleaseRequest:
    """POST /v1/release: leases the worker will not compute."""

    lease_ids: tuple[str, ...]

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> ReleaseRequest:
        """Validate a release payload."""
        _exact_fields(p, {"lease_ids"} | _FRESH)
        ids = _field(p, "lease_ids", list)
        if len(ids) > MAX_BATCH or not all(isinstance(i, str) and 0 < len(i) <= _ID_MAX for i in ids):
            raise PeerProtocolError(f"field lease_ids: must list at most {MAX_BATCH} lease ids")
        return cls(tuple(ids))

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        return {"lease_ids": list(self.lease_ids)}


@dataclass(frozen=True)
class ResultItem:
    """One computed task: which lease, which task, and the output array as a wire map - or, for a published kernel
    that failed on this worker (a crash, a time-out, an error it raised: docs/KERNELS.md 4), why, instead."""

    lease_id: str
    task_id: str
    output: Any
    elapsed_ms: int
    error: str | None = None

    @classmethod
    def from_payload(cls, p: Any, index: int) -> ResultItem:
        """Validate results[index]."""
        where = f"results[{index}]."
        if not isinstance(p, dict):
            raise PeerProtocolError(f"field results[{index}]: must be a map")
        failed = "error" in p
        _exact_fields(p, {"lease_id", "task_id", "error" if failed else "output", "elapsed_ms"}, where)
        output, error = None, None
        if failed:
            error = _field(p, "error", str, where)
            if not 0 < len(error) <= MAX_ERROR:
                raise PeerProtocolError(f"field {where}error: length must be 1..{MAX_ERROR}")
        else:
            output = _field(p, "output", dict, where)
        return cls(_id(p, "lease_id", where), _id(p, "task_id", where), output,
                   _int_in(p, "elapsed_ms", 0, 2**31 - 1, where), error)

    def to_payload(self) -> dict[str, Any]:
        """The item map."""
        if self.error is not None:
            return {"lease_id": self.lease_id, "task_id": self.task_id, "error": self.error,
                    "elapsed_ms": self.elapsed_ms}
        return {"lease_id": self.lease_id, "task_id": self.task_id, "output": self.output,
                "elapsed_ms": self.elapsed_ms}


@dataclass(frozen=True)
class ResultsRequest:
    """POST /v1/results: a batch of results."""

    results: tuple[ResultItem, ...]

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> ResultsRequest:
        """Validate a results payload."""
        _exact_fields(p, {"results"} | _FRESH)
        items = _field(p, "results", list)
        if not 0 < len(items) <= MAX_BATCH:
            raise PeerProtocolError(f"field results: must hold 1..{MAX_BATCH} items")
        parsed = tuple(ResultItem.from_payload(item, i) for i, item in enumerate(items))
        if len({r.lease_id for r in parsed}) != len(parsed):
            raise PeerProtocolError("field results: a lease_id appears twice")
        return cls(parsed)

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        return {"results": [r.to_payload() for r in self.results]}


@dataclass(frozen=True)
class SubmitRequest:
    """POST /v1/jobs: a new job."""

    kernel: str
    params: dict[str, Any]
    tasks: int
    replicas: int
    max_results: int | None
    price: int
    quorum: int | None = None  # optional: agreeing results needed (default min(2, replicas))
    max_errors: int | None = None  # optional: error results a task survives (default 3)

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> SubmitRequest:
        """Validate a submit payload (kernel parameters are checked later, by the kernel)."""
        _exact_fields(p, {"kernel", "params", "tasks", "replicas", "max_results", "price", "quorum", "max_errors"}
                      | _FRESH)
        params = _field(p, "params", dict)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in params.values())
        if len(params) > 64 or not numbers:
            raise PeerProtocolError("field params: at most 64 values, each an int or a float")
        max_results = p.get("max_results")
        if max_results is not None:
            max_results = _int_in(p, "max_results", 1, MAX_RESULTS)
        quorum = None if p.get("quorum") is None else _int_in(p, "quorum", 1, MAX_REPLICAS)
        max_errors = None if p.get("max_errors") is None else _int_in(p, "max_errors", 0, MAX_RESULTS)
        return cls(_id(p, "kernel"), params, _int_in(p, "tasks", 1, MAX_TASKS),
                   _int_in(p, "replicas", 1, MAX_REPLICAS), max_results, _int_in(p, "price", 1, MAX_PRICE),
                   quorum, max_errors)

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce); quorum and max_errors only when set."""
        out: dict[str, Any] = {"kernel": self.kernel, "params": self.params, "tasks": self.tasks,
                               "replicas": self.replicas, "max_results": self.max_results, "price": self.price}
        if self.quorum is not None:
            out["quorum"] = self.quorum
        if self.max_errors is not None:
            out["max_errors"] = self.max_errors
        return out


@dataclass(frozen=True)
class CancelRequest:
    """POST /v1/jobs/{job_id}/cancel."""

    job_id: str

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> CancelRequest:
        """Validate a cancel payload."""
        _exact_fields(p, {"job_id"} | _FRESH)
        return cls(_id(p, "job_id"))

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        return {"job_id": self.job_id}


@dataclass(frozen=True)
class JobRequest:
    """POST /v1/jobs/{job_id}/result (kind result-request): the submitter asks for its job's output."""

    job_id: str

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> JobRequest:
        """Validate a result-request payload."""
        _exact_fields(p, {"job_id"} | _FRESH)
        return cls(_id(p, "job_id"))

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        return {"job_id": self.job_id}


@dataclass(frozen=True)
class PublishRequest:
    """POST /v1/kernels (kind kernel): a kernel file to publish (docs/KERNELS.md)."""

    source: bytes  # the file as written; the coordinator canonicalises it

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> PublishRequest:
        """Validate a kernel payload (the file itself is checked later, by depin.userkernel)."""
        _exact_fields(p, {"source"} | _FRESH)
        source = _field(p, "source", bytes)
        if not 0 < len(source) <= MAX_KERNEL_SOURCE:
            raise PeerProtocolError(f"field source: 1..{MAX_KERNEL_SOURCE} bytes")
        return cls(source)

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        return {"source": self.source}


@dataclass(frozen=True)
class GrantRequest:
    """POST /v1/grants (kind grant): the operator, with the coordinator's own key, mints credits into an account."""

    account: str
    amount: int

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> GrantRequest:
        """Validate a grant payload."""
        _exact_fields(p, {"account", "amount"} | _FRESH)
        account = _field(p, "account", str)
        if not _PARTY_ID.fullmatch(account):
            raise PeerProtocolError("field account: must be a party id (32 characters a-z, 2-7)")
        return cls(account, _int_in(p, "amount", 1, MAX_GRANT))

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        return {"account": self.account, "amount": self.amount}


@dataclass(frozen=True)
class BondRequest:
    """POST /v1/bond (kind bond): the signer locks `amount` of its own credits in its bond (`bond:<signer>`)."""

    amount: int

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Self:
        """Validate a bond (or unbond) payload."""
        _exact_fields(p, {"amount"} | _FRESH)
        return cls(_int_in(p, "amount", 1, MAX_GRANT))

    def to_payload(self) -> dict[str, Any]:
        """The payload map (without ts/nonce)."""
        return {"amount": self.amount}


@dataclass(frozen=True)
class UnbondRequest(BondRequest):
    """POST /v1/unbond (kind unbond): the signer takes `amount` back from its bond; the same fields as a bond."""


@dataclass(frozen=True)
class TaskMessage:
    """The task a coordinator signs (kind "task"); a worker checks it before running anything."""

    task_id: str
    job_id: str
    kernel: str
    kernel_version: int
    params: dict[str, Any]
    coordinator: str
    price: int  # credits the job pays per validated result

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> TaskMessage:
        """Validate a decoded task payload."""
        _exact_fields(p, {"task_id", "job_id", "kernel", "kernel_version", "params", "coordinator", "price"}, "task.")
        return cls(_id(p, "task_id", "task."), _id(p, "job_id", "task."), _id(p, "kernel", "task."),
                   _int_in(p, "kernel_version", 0, 2**31, "task."), _field(p, "params", dict, "task."),
                   _id(p, "coordinator", "task."), _int_in(p, "price", 1, MAX_PRICE, "task."))


@dataclass(frozen=True)
class LeaseGrant:
    """One element of a lease answer: the lease id, its deadline, the signed task bytes and signature."""

    lease_id: str
    expires_ms: int
    task: bytes
    sig: bytes

    @classmethod
    def from_payload(cls, p: Any, index: int) -> LeaseGrant:
        """Validate leases[index] of a lease answer."""
        where = f"leases[{index}]."
        if not isinstance(p, dict):
            raise PeerProtocolError(f"field leases[{index}]: must be a map")
        _exact_fields(p, {"lease_id", "expires_ms", "task", "sig"}, where)
        return cls(_id(p, "lease_id", where), _int_in(p, "expires_ms", 0, 2**63 - 1, where),
                   _field(p, "task", bytes, where), _field(p, "sig", bytes, where))

    def to_payload(self) -> dict[str, Any]:
        """The map sent to the worker."""
        return {"lease_id": self.lease_id, "expires_ms": self.expires_ms, "task": self.task, "sig": self.sig}


@dataclass(frozen=True)
class AckItem:
    """The coordinator's verdict on one reported result."""

    lease_id: str
    status: str  # accepted | duplicate | rejected
    reason: str

    STATUSES = ("accepted", "duplicate", "rejected")

    def __post_init__(self) -> None:
        if self.status not in self.STATUSES:
            raise PeerProtocolError(f"ack status must be one of {self.STATUSES}")

    @classmethod
    def from_payload(cls, p: Any, index: int) -> AckItem:
        """Validate acks[index]."""
        where = f"acks[{index}]."
        if not isinstance(p, dict):
            raise PeerProtocolError(f"field acks[{index}]: must be a map")
        _exact_fields(p, {"lease_id", "status", "reason"}, where)
        return cls(_id(p, "lease_id", where), _field(p, "status", str, where), _field(p, "reason", str, where))

    def to_payload(self) -> dict[str, Any]:
        """The map sent to the worker."""
        return {"lease_id": self.lease_id, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class ResultsAck:
    """The signed answer to POST /v1/results (kind "results-ack")."""

    worker_id: str
    request_nonce: bytes
    acks: tuple[AckItem, ...]

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> ResultsAck:
        """Validate a results-ack payload."""
        _exact_fields(p, {"worker_id", "request_nonce", "acks"})
        acks = _field(p, "acks", list)
        return cls(_id(p, "worker_id"), _field(p, "request_nonce", bytes),
                   tuple(AckItem.from_payload(a, i) for i, a in enumerate(acks)))

    def to_payload(self) -> dict[str, Any]:
        """The payload map the coordinator signs."""
        return {"worker_id": self.worker_id, "request_nonce": self.request_nonce,
                "acks": [a.to_payload() for a in self.acks]}
