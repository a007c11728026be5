"""Read-only views of the scheduler's state, as the JSON the status API serves. Pure functions."""

from __future__ import annotations

from typing import Any

from coordinator import states
from coordinator.model import Job, Worker
from coordinator.scheduler import Scheduler
from coordinator.trust import TrustBook
from depin import accounts


def job_view(job: Job, escrow: int | None = None) -> dict[str, Any]:
    """One job's status (the `depin status --json` contract)."""
    return {
        "job_id": job.job_id,
        "kernel": job.kernel,
        "kernel_version": job.kernel_version,
        "state": job.state,
        "tasks_total": job.n_tasks,
        "tasks_validated": job.tasks_validated,
        "replicas": job.replicas,
        "quorum": job.quorum,
        "max_errors": job.max_errors,
        "max_results": job.max_results,
        "price": job.price,
        "max_cost": job.max_cost,
        "escrow": escrow,  # credits still held for the job (None where the view has no ledger at hand)
        "submitter": job.submitter,
        "params": job.params,
        "created_ms": job.created_ms,
        "finished_ms": job.finished_ms,
        "error": job.error,
        "audits_open": job.audits_open,
    }


def task_states(job: Job, made: dict[str, int]) -> dict[str, int]:
    """How many of a job's tasks are in each state, from the counts of the tasks made so far: a task not made yet
    (coordinator.fresh) is `pending` while the job runs and `cancelled` once it ended."""
    left = job.n_tasks - job.materialized
    if left <= 0:
        return made
    state = "cancelled" if job.state in states.FINISHED_JOB else "pending"
    return {**made, state: made.get(state, 0) + left}


def worker_view(w: Worker, now: int, online_ms: int, trust: TrustBook | None = None, balance: int = 0,
                bond: int = 0, probation: bool = False) -> dict[str, Any]:
    """One worker's row (the `depin earnings --json` contract), with its standing and trust per kernel."""
    records = [] if trust is None else trust.records_of(w.worker_id)
    standing = None if trust is None else trust.standing.get(w.worker_id)
    return {
        "worker_id": w.worker_id,
        "balance": balance,
        "min_price": w.min_price,
        "tasks_validated": w.validated,
        "tasks_rejected": w.rejected,
        "first_seen_ms": w.first_seen_ms,
        "last_seen_ms": w.last_seen_ms,
        "online": now - w.last_seen_ms <= online_ms,
        "banned": w.banned,
        "too_fast": w.too_fast,
        "outlier": bool(standing and standing.outlier),
        "probation": probation,
        "capacity": w.capacity,
        "active_leases": w.active,
        "expired": w.expired,
        "disputed": sum(r.disputed for r in records),
        "collusion_score": 0.0 if trust is None else round(trust.collusion_score(w.worker_id), 3),
        "bond": bond,
        "exposure": w.exposure,
        "audits_passed": w.audits_passed,
        "audits_failed": w.audits_failed,
        "trusted": sorted(r.kernel for r in records if trust is not None and trust.trusted(w.worker_id, r.kernel)),
        "trust": {r.kernel: {"consecutive_valid": r.consecutive_valid, "valid": r.valid, "invalid": r.invalid}
                  for r in sorted(records, key=lambda r: r.kernel)},
    }


def jobs_view(s: Scheduler) -> list[dict[str, Any]]:
    """Every job, newest first."""
    counts = s.counted()
    return [{**job_view(j, s.book.accounts.held(j.job_id)), "waiting": counts.waiting(j.job_id)}
            for j in sorted(s.jobs.values(), key=lambda j: (-j.created_ms, j.job_id))]


def workers_view(s: Scheduler, now: int, online_ms: int) -> list[dict[str, Any]]:
    """Every worker, biggest balance first."""
    rows = [worker_view(w, now, online_ms, s.trust, s.book.accounts.balance(w.worker_id),
                        s.book.accounts.bonded(w.worker_id), s.on_probation(w.worker_id)) for w in s.workers.values()]
    return sorted(rows, key=lambda r: (-r["balance"], r["worker_id"]))


def status_view(s: Scheduler, now: int, online_ms: int) -> dict[str, Any]:
    """Everything the status page shows."""
    book = s.book
    workers = workers_view(s, now, online_ms)
    in_accounts, escrowed, bonded = accounts.holdings(book.accounts.balances)
    return {
        "coordinator_id": s.key.id,
        "time_ms": now,
        "jobs": jobs_view(s),
        "workers": workers,
        "ledger": {
            "entries": book.size,
            "head_hash": None if book.head is None else book.head.hash,
            "root_hash": book.root().hex(),
            "minted": book.accounts.minted,
            "in_escrow": escrowed,
            "in_bonds": bonded,
            "in_accounts": in_accounts,  # every party's credits: submitters and workers
            "total_credits": sum(w["balance"] for w in workers),  # the workers' share of in_accounts
        },
        "active_leases": sum(1 for x in s.leases.values() if x.state == "active"),
    }
