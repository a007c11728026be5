"""The coordinator's synchronous shell: check a signed request, ask the scheduler, and say what to persist.

Each public method handles one request kind and returns the answer to send. A method that changes state leaves the
change in the scheduler's change set; the server sends the answer only once the group commit that holds it is done
(coordinator.commits, which calls `take_write`, `write` and `written`), so an acknowledged result or ledger entry is
always on disk. If a write fails the process cannot trust its memory any more: `on_fatal` shuts the server down so
a restart reloads the last committed state.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator import store as stored
from coordinator import views
from coordinator.audit import Audit
from coordinator.auditing import AuditPolicy
from coordinator.placement import PlacementPolicy
from coordinator.ratelimit import RateLimiter
from coordinator.replay import ReplayGuard
from coordinator.scheduler import Scheduler
from coordinator.store import Store
from coordinator.trust import TrustPolicy
from depin import accounts, codec, kernels, protocol
from depin.checkpoint import Checkpoint
from depin.config import CoordinatorConfig
from depin.crypto import SigningKey, VerifyKey, load_or_create_key, open_envelope
from depin.errors import Conflict, Forbidden, NotFound, PeerProtocolError, UserError
from depin.protocol import Freshness

ONLINE_MS = 60_000  # a worker seen within this long counts as online on the status page


def _lock_data_dir(data_dir: Path) -> int:
    """Hold an exclusive lock on the data dir for this process's lifetime: one coordinator per database."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / "coordinator.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UserError(f"cannot use data dir {data_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"data dir {data_dir} is in use by another running coordinator") from None
    return fd


@dataclass(frozen=True)
class Write:
    """One group commit: its rows, the checkpoint signed over them if one was due, the jobs whose view changed."""

    rows: stored.Rows
    checkpoint: Checkpoint | None
    jobs: frozenset[str]
    results: dict[str, tuple[str, str, bytes, str]]  # lease id -> (worker, task, digest, verdict) of its results

    def __bool__(self) -> bool:
        return bool(self.rows)


def new_id() -> str:
    """A random 16-hex-digit id for jobs and leases."""
    return secrets.token_hex(8)


class Service:
    """One coordinator: its key, its database, its scheduler."""

    def __init__(self, config: CoordinatorConfig, clock: Callable[[], int],
                 on_fatal: Callable[[BaseException], None] = lambda exc: None, *,
                 trust_policy: TrustPolicy | None = None, placement: PlacementPolicy | None = None,
                 audits: AuditPolicy | None = None, pick: Callable[[int], int] = secrets.randbelow) -> None:
        self.config = config
        self.clock = clock
        self.on_fatal = on_fatal
        self._lock = _lock_data_dir(config.data_dir)
        self.key: SigningKey = load_or_create_key(config.data_dir / "coordinator.key")
        self.store = Store(config.data_dir / "coordinator.sqlite3")
        rows = self.store.load()
        self._writing: list[Write] = []  # commits taken and not yet known to be written, oldest first
        self.scheduler = Scheduler.restore(
            key=self.key, lease_timeout_ms=config.lease_timeout_ms, new_id=new_id,
            archive=self._archived, now=clock(), policy=trust_policy, placement_policy=placement,
            audit_policy=audits, pick=pick,
            **rows
        )
        self.audit = Audit(self.store, self.key, every=config.checkpoint_every,
                           interval_ms=config.checkpoint_interval_ms)
        self.audit.check_against_own_checkpoint(self.scheduler.book)
        self.audit.maybe_checkpoint(self.scheduler.book, clock())
        self.per_address = RateLimiter(config.rate_per_address, 2 * config.rate_per_address, "address")
        self.per_key = RateLimiter(config.rate_per_key, 2 * config.rate_per_key, "key")
        # Nonces live in memory only, so requests signed before this process started are refused outright.
        self.replay = ReplayGuard(config.clock_window_ms, not_before_ms=clock())
        self._writer = self.store.writer()  # the group commit's connection, used from its thread only

    def close(self) -> None:
        """Close the database and let another coordinator have the data dir."""
        self._writer.close()
        self.store.close()
        os.close(self._lock)

    # ---- the group commit's three steps (coordinator.commits) --------------------------------------------

    def take_write(self) -> Write:
        """Everything decided since the last commit, as rows, with a checkpoint over it if one is due (on the loop)."""
        changes = self.scheduler.take_changes()
        cp = self.audit.due_checkpoint(self.scheduler.book, self.clock())
        w = Write(stored.rows(changes, () if cp is None else (cp,)), cp,
                  frozenset(self.scheduler.progress.take_changed()),
                  {r.lease_id: (r.worker_id, r.task_id, r.digest, r.verdict) for r in changes.results.values()})
        self._writing.append(w)
        return w

    def write(self, w: Write) -> None:
        """One fsync'd transaction (in the commit thread: it touches nothing but the rows and its connection)."""
        stored.write(self._writer, w.rows)

    def written(self, w: Write) -> None:
        """`w` is durable: its checkpoint may be served now."""
        self._writing.remove(w)
        if w.checkpoint is not None:
            self.audit.kept(w.checkpoint)

    def _archived(self, lease_id: str) -> tuple[str, str, bytes, str] | None:
        # A result whose job has left memory: in a commit under way (a resend may arrive during its fsync), or on
        # disk. Without the first, a resend in that window was answered "unknown lease" for an accepted result.
        for w in reversed(self._writing):
            if lease_id in w.results:
                return w.results[lease_id]
        return self.store.result_verdict(lease_id)

    def admit(self, address: str | None) -> None:
        """The per-address rate limit, checked before a body is even read (429 if over)."""
        self.per_address.check(address or "?", self.clock())

    def _open(self, kind: str, envelope: Any) -> tuple[VerifyKey, dict[str, Any]]:
        signer, payload = open_envelope(kind, envelope)
        now = self.clock()
        self.per_key.check(signer.id, now)
        fresh = Freshness.from_payload(payload)
        self.replay.check(now=now, signer=signer.id, ts=fresh.ts, nonce=fresh.nonce)
        return signer, payload

    def _refuse_banned(self, worker_id: str) -> None:
        reason = self.scheduler.banned(worker_id)
        if reason is not None:
            raise Forbidden(f"worker banned: {reason}")

    # ---- reads -------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """GET /v1/info."""
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "coordinator_id": self.key.id,
            "public_key": self.key.public.hex(),
            "kernels": [k.key for k in kernels.all_kernels()],
            "lease_timeout_ms": self.config.lease_timeout_ms,
            "time_ms": self.clock(),
            # The bond rules (PROTOCOL.md 12.6), for a worker that bonds on its own (worker/bonding.py).
            "min_bond": self.scheduler.trust.policy.min_bond,
            "bond_per_price": self.scheduler.audits.bond_per_price if self.scheduler.audits.bond_required else 0,
        }

    def status(self) -> dict[str, Any]:
        """GET /v1/status."""
        view = views.status_view(self.scheduler, self.clock(), ONLINE_MS)
        view["ledger"]["checkpoint"] = None if self.audit.latest is None else self.audit.latest.to_json()
        return view

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{job_id}."""
        job = self.scheduler.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        counts = self.scheduler.counted()
        if not counts.known(job_id):  # it ended before this process started: count it once, from the database
            counts.load(job_id, tasks=self.store.state_counts("tasks", job_id), audits=self.store.audit_counts(job_id),
                        leases=self.store.state_counts("leases", job_id))
        view = counts.view(job_id)
        return {**views.job_view(job, self.scheduler.book.accounts.held(job_id)), **view,
                "task_states": views.task_states(job, view["task_states"])}

    def ledger_page(self, start: int, limit: int) -> dict[str, Any]:
        """GET /v1/ledger: entries from `start`, at most `limit`."""
        entries = [e.to_dict() for e in self.store.ledger.entries(start, limit)]
        return {"entries": entries, "total": self.store.ledger.size()}  # what is on disk, as the entries are

    def account(self, account: str) -> dict[str, Any]:
        """GET /v1/accounts/{id}: an account's balance."""
        if not accounts.is_account(account):
            raise PeerProtocolError(
                f"{account!r} is not an account: mint, a party id, escrow:<job id> or bond:<party id>")
        return {"account": account, "balance": self.scheduler.book.accounts.balance(account)}

    def provenance(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{job_id}/provenance."""
        job = self.scheduler.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return self.audit.provenance(job, self.scheduler.book.accounts.held(job_id))

    # ---- writes ------------------------------------------------------------------------------------------

    def submit(self, envelope: Any) -> dict[str, Any]:
        """POST /v1/jobs."""
        signer, payload = self._open("submit", envelope)
        req = protocol.SubmitRequest.from_payload(payload)
        job = self.scheduler.submit(
            now=self.clock(), submitter=signer.id, kernel_name=req.kernel, params=req.params,
            n_tasks=req.tasks, replicas=req.replicas, max_results=req.max_results, price=req.price,
            quorum=req.quorum, max_errors=req.max_errors,
        )
        return {"job_id": job.job_id, "tasks": job.n_tasks, "price": job.price, "escrow": job.max_cost,
                "balance": self.scheduler.book.accounts.balance(signer.id)}

    def publish(self, envelope: Any) -> dict[str, Any]:
        """POST /v1/kernels: check and keep a kernel file (docs/KERNELS.md)."""
        signer, payload = self._open("kernel", envelope)
        req = protocol.PublishRequest.from_payload(payload)
        row, new = self.scheduler.publish(now=self.clock(), publisher=signer.id, raw=req.source)
        return {"kernel_id": row.kernel_id, "name": row.name, "new": new}

    def kernels(self) -> dict[str, Any]:
        """GET /v1/kernels: the built-in kernels and the published ones, with their parameters."""
        published = []
        for row in sorted(self.scheduler.published.values(), key=lambda r: (r.published_ms, r.kernel_id)):
            published.append({**kernels.get(row.kernel_id, 0).describe(), "kernel_id": row.kernel_id,
                              "name": row.name, "publisher": row.publisher, "published_ms": row.published_ms})
        return {"builtin": [k.describe() for k in kernels.all_kernels()], "published": published}

    def kernel_source(self, kernel_id: str) -> dict[str, Any]:
        """GET /v1/kernels/{kernel_id}: a published kernel's canonical source, for workers to check and compile."""
        row = self.scheduler.published.get(kernel_id)
        if row is None:
            raise NotFound(f"no published kernel {kernel_id}")
        return {"kernel_id": row.kernel_id, "name": row.name, "source": row.source.decode()}

    def result(self, job_id: str, envelope: Any) -> dict[str, Any]:
        """POST /v1/jobs/{job_id}/result: the merged output of a done job, for its submitter only."""
        signer, payload = self._open("result-request", envelope)
        req = protocol.JobRequest.from_payload(payload)
        if req.job_id != job_id:
            raise PeerProtocolError("field job_id: does not match the job in the URL")
        job = self.scheduler.owner_of(job_id, signer.id, "fetch its result")
        if job.state != "done":
            raise Conflict(f"job {job_id} has no result: it is {job.state}")
        wire = self.store.job_result(job_id)
        assert wire is not None
        return {"job_id": job_id, "kernel": job.kernel, "kernel_version": job.kernel_version,
                "params": job.params, "output": codec.decode(wire)}

    def grant(self, envelope: Any) -> dict[str, Any]:
        """POST /v1/grants: mint credits into an account; only this coordinator's own key may ask."""
        signer, payload = self._open("grant", envelope)
        if signer != self.key.verify_key:
            raise Forbidden("grants must be signed with this coordinator's key")
        req = protocol.GrantRequest.from_payload(payload)
        entry = self.scheduler.grant(now=self.clock(), account=req.account, amount=req.amount)
        return {"account": req.account, "amount": req.amount, "seq": entry.seq,
                "balance": self.scheduler.book.accounts.balance(req.account)}

    def bond(self, envelope: Any) -> dict[str, Any]:
        """POST /v1/bond: the signer locks some of its credits in its own bond (section 12.6 of PROTOCOL.md)."""
        signer, payload = self._open("bond", envelope)
        req = protocol.BondRequest.from_payload(payload)
        self._refuse_banned(signer.id)
        entry = self.scheduler.bond(now=self.clock(), worker_id=signer.id, amount=req.amount)
        return self._bond_answer(signer.id, req.amount, entry.seq)

    def unbond(self, envelope: Any) -> dict[str, Any]:
        """POST /v1/unbond: the signer takes credits back from its own bond, where the scheduler allows it."""
        signer, payload = self._open("unbond", envelope)
        req = protocol.UnbondRequest.from_payload(payload)
        self._refuse_banned(signer.id)
        entry = self.scheduler.unbond(now=self.clock(), worker_id=signer.id, amount=req.amount)
        return self._bond_answer(signer.id, req.amount, entry.seq)

    def _bond_answer(self, worker_id: str, amount: int, seq: int) -> dict[str, Any]:
        book = self.scheduler.book.accounts
        return {"worker_id": worker_id, "amount": amount, "seq": seq, "bonded": book.bonded(worker_id),
                "balance": book.balance(worker_id)}

    def cancel(self, job_id: str, envelope: Any) -> dict[str, Any]:
        """POST /v1/jobs/{job_id}/cancel."""
        signer, payload = self._open("cancel", envelope)
        req = protocol.CancelRequest.from_payload(payload)
        if req.job_id != job_id:
            raise PeerProtocolError("field job_id: does not match the job in the URL")
        job = self.scheduler.cancel(now=self.clock(), job_id=job_id, requester=signer.id)
        return {"job_id": job.job_id, "state": job.state}

    def open_lease_request(self, envelope: Any, address: str | None = None) -> tuple[str, protocol.LeaseRequest]:
        """Check a lease request once (signature, freshness, ban); the long-poll then calls try_lease."""
        signer, payload = self._open("lease-request", envelope)
        req = protocol.LeaseRequest.from_payload(payload)
        self._refuse_banned(signer.id)
        self.scheduler.touch_worker(now=self.clock(), worker_id=signer.id, public_key=signer.raw, address=address,
                                    owner=req.owner, min_price=req.min_price or 0)
        return signer.id, req

    def try_lease(self, worker_id: str, req: protocol.LeaseRequest) -> list[dict[str, Any]]:
        """Lease what there is now (possibly nothing). Overdue leases expire on the way, and slots may be drawn for
        other workers: take_wakes says whom that made work for."""
        now = self.clock()
        self.scheduler.expire(now)
        grants = self.scheduler.lease(now=now, worker_id=worker_id, max_tasks=req.max_tasks, kernels_ok=req.kernels,
                                      min_price=req.min_price or 0, published=req.published, platform=req.platform)
        return [g.to_payload() for g in grants]

    def take_wakes(self) -> tuple[list[tuple[str, int, int]], set[str]]:
        """How many waiting lease requests the work made since the last call can serve, and which workers a slot
        was drawn for (Scheduler.take_wakes)."""
        return self.scheduler.take_wakes()

    def release(self, envelope: Any) -> dict[str, Any]:
        """POST /v1/release."""
        signer, payload = self._open("release", envelope)
        req = protocol.ReleaseRequest.from_payload(payload)
        self._refuse_banned(signer.id)
        count = self.scheduler.release(now=self.clock(), worker_id=signer.id, lease_ids=req.lease_ids)
        return {"released": count}

    def results(self, envelope: Any) -> dict[str, Any]:
        """POST /v1/results: judge the batch and answer with a signed ack."""
        signer, payload = self._open("results", envelope)
        req = protocol.ResultsRequest.from_payload(payload)
        self._refuse_banned(signer.id)
        now = self.clock()
        self.scheduler.touch_worker(now=now, worker_id=signer.id, public_key=signer.raw)
        acks = self.scheduler.report(now=now, worker_id=signer.id, reports=req.results)
        ack = protocol.ResultsAck(worker_id=signer.id, request_nonce=payload["nonce"], acks=tuple(acks))
        return self.key.seal("results-ack", ack.to_payload())

    def expire(self) -> int:
        """Expire overdue leases; return how many expired. (A checkpoint due by time is signed by the next commit.)"""
        return self.scheduler.expire(self.clock())
