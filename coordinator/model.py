"""The coordinator's rows: jobs, tasks, leases, results and workers, as plain mutable records.

The scheduler mutates them and lists every one it touched in a `Changes`; the store persists exactly those.
Field names match the database columns and the status API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coordinator.trust import Trust
from depin import ledger


@dataclass
class Job:
    job_id: str
    kernel: str
    kernel_version: int
    params: dict[str, Any]
    n_tasks: int
    replicas: int  # results asked for at first
    quorum: int  # agreeing results that validate a task
    max_errors: int  # error results (malformed, refuted) a task survives
    max_results: int  # results of any kind a task may use
    price: int
    submitter: str
    state: str
    created_ms: int
    finished_ms: int | None = None
    error: str | None = None
    tasks_validated: int = 0
    materialized: int = 0  # how many of its tasks were made so far (coordinator.fresh)
    order_key: bytes = b""  # the secret order in which they are made (coordinator.fresh); b"": index order
    audits_open: int = 0  # in memory: its validated tasks whose audit is due or disputed (they keep it open)

    @property
    def max_cost(self) -> int:
        """What the job may cost at most, escrowed at submission: every task paying `max_results` results."""
        return self.price * self.n_tasks * self.max_results


@dataclass
class Task:
    task_id: str
    job_id: str
    index: int
    params: dict[str, Any]
    payload: bytes  # the signed task message, canonical msgpack
    sig: bytes
    quorum: int  # the job's quorum, or 1 while the task is out single to a trusted worker
    state: str = "pending"
    canonical: bytes | None = None  # the validated output, as wire msgpack
    single: str | None = None  # the lease that took this task single (adaptive replication), if any
    audit: str | None = None  # the audit of a validated task (states.AUDIT), if one was drawn
    # Not persisted as columns; rebuilt from the lease and result rows.
    leases: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)
    owners: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    wanted: int = 0
    backups: int = 0  # further slots held only by probationary leases past their backup time (placement: backups)
    needs_trusted: bool = False
    # Placement (coordinator.placement), in memory only: the worker drawn for the next replica slot, until when it
    # is kept for it, and the workers drawn before who did not come for it.
    reserved: str | None = None
    reserved_until: int = 0
    passed: set[str] = field(default_factory=set)
    # Persisted (schema 5), so that a restart neither restarts these waits nor lets a task fall back twice.
    waiting_since: int | None = None  # since when the task has waited for a trusted worker
    fell_back: bool = False  # it waited too long, and a larger quorum of untrusted workers stands in
    audit_since: int = 0  # when its audit was drawn
    # Persisted (schema 6): for a kernel with homogeneous redundancy, the platform class of its first holder; only
    # workers of that class may hold or audit it (docs/KERNELS.md 5).
    platform: str | None = None
    # In memory only: the part of its job's counts it was last counted in (coordinator.progress).
    tally: tuple[str, str | None, tuple[str, ...]] | None = field(default=None, compare=False, repr=False)


@dataclass
class Lease:
    lease_id: str
    task_id: str
    job_id: str
    worker_id: str
    issued_ms: int
    expires_ms: int
    state: str = "active"
    tally: str | None = field(default=None, compare=False, repr=False)  # in memory: the state it was last counted in


@dataclass
class Result:
    lease_id: str
    task_id: str
    job_id: str
    worker_id: str
    digest: bytes
    output: bytes | None  # wire msgpack of the array while it may still matter; None if malformed or dropped
    verdict: str
    received_ms: int
    error: str | None = None
    verified: bool | None = None  # the kernel's own check, for kernels that have one
    trusted: bool = False  # the worker was trusted for this kernel when it reported, and not too fast
    too_fast: bool = False


@dataclass
class Worker:
    worker_id: str
    public_key: bytes
    first_seen_ms: int
    last_seen_ms: int
    validated: int = 0
    rejected: int = 0
    min_price: int = 0  # the lowest price per result it asked to be leased (its posted ask)
    owner: str | None = None  # declared by the worker: replicas avoid two workers of one owner
    address: str | None = None  # a public network address it was seen from, if any
    banned: str | None = None
    too_fast: int = 0
    capacity: int = 2  # leases it may hold at once: doubles with each validated result, halves on an error or expiry
    expired: int = 0  # its leases that expired
    exposure: int = 0  # credits of its single results since its last clean audit (coordinator.auditing)
    audits_passed: int = 0  # audits that confirmed a result of its
    audits_failed: int = 0  # audits that proved a result of its wrong
    # In memory only: what it last asked for, and when.
    kernels: frozenset[str] = frozenset()
    last_lease_ms: int | None = None
    asked: int = 0  # the most tasks its last lease request asked for
    published: bool = False  # its last lease request said it runs published kernels
    platform: str | None = None  # its platform class, as its last lease request reported it
    active: int = 0  # its active leases


@dataclass(frozen=True)
class Published:
    """A published kernel (docs/KERNELS.md): its canonical source, kept by its id."""

    kernel_id: str
    source: bytes
    name: str
    publisher: str
    published_ms: int


@dataclass
class Changes:
    """Every row touched since the last take_changes(), for the shell to persist in one transaction."""

    jobs: dict[str, Job] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    trust: dict[tuple[str, str], Trust] = field(default_factory=dict)
    entries: list[ledger.Entry] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)  # Merkle nodes the entries completed
    merged: dict[str, bytes] = field(default_factory=dict)  # job id -> merged output (wire msgpack), once done
    kernels: dict[str, Published] = field(default_factory=dict)  # kernels published since

    def __bool__(self) -> bool:
        return any((self.jobs, self.tasks, self.leases, self.results, self.workers, self.trust, self.entries,
                    self.merged, self.kernels))
