"""The ledger's public face on the coordinator: signed checkpoints, proofs, receipts and provenance.

Checkpoints are signed when `due` says so (every N entries, or every T milliseconds while the log grows) and kept in
the database. Every proof is computed from the stored Merkle nodes (coordinator.ledger_store), never by rehashing
the log. Answers are JSON-ready maps; the formats are docs/LEDGER.md sections 7, 8 and 12 and PROTOCOL.md sections
7.13-7.20.
"""

from __future__ import annotations

from typing import Any

from coordinator import states, views
from coordinator.model import Job
from coordinator.store import Store
from depin import ledger, merkle
from depin.checkpoint import Checkpoint, due, sign
from depin.crypto import SigningKey
from depin.errors import NotFound, UserError
from depin.kernels import wire_digest

MAX_PAGE = 1000


class _Memo:
    """A NodeSource that remembers what it read, for the many proofs of one answer."""

    def __init__(self, source: merkle.NodeSource) -> None:
        self._source = source
        self._memo: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        found = self._memo.get((level, index))
        if found is None:
            found = self._memo[(level, index)] = self._source.node(level, index)
        return found


class Audit:
    """Checkpoints and proofs over one coordinator's stored ledger."""

    def __init__(self, store: Store, key: SigningKey, *, every: int, interval_ms: int) -> None:
        self.store = store
        self.key = key
        self.every = every
        self.interval_ms = interval_ms
        self.latest = store.ledger.latest_checkpoint(key.id)

    def check_against_own_checkpoint(self, book: ledger.Book) -> None:
        """Refuse to run on a ledger that no longer matches the last checkpoint this key signed."""
        cp = self.latest
        if cp is None:
            return
        cp.verify(self.key.verify_key)
        if cp.size > book.size or merkle.subtree_root(self.store.ledger, 0, cp.size) != cp.root:
            raise UserError(
                f"the ledger in {self.store.path} does not extend the checkpoint this coordinator signed at size"
                f" {cp.size}: the database was altered; refusing to serve a rewritten ledger")

    def maybe_checkpoint(self, book: ledger.Book, now: int) -> bool:
        """Sign and keep a new checkpoint if one is due; whether one was made."""
        cp = self.due_checkpoint(book, now)
        if cp is None:
            return False
        self.store.ledger.add_checkpoint(cp)
        self.kept(cp)
        return True

    def due_checkpoint(self, book: ledger.Book, now: int) -> Checkpoint | None:
        """A new checkpoint signed over `book`, if one is due; it is served only once `kept` (after the commit that
        writes it with the entries it covers: a checkpoint is never ahead of the stored ledger its proofs read)."""
        if not due(self.latest, size=book.size, now=now, every=self.every, interval_ms=self.interval_ms):
            return None
        return sign(self.key, size=book.size, root=book.root(), time=now)

    def kept(self, cp: Checkpoint) -> None:
        """`cp` is on disk: serve it as the latest."""
        self.latest = cp

    def _checkpoint(self, size: int | None) -> Checkpoint:
        if size is None:
            assert self.latest is not None
            return self.latest
        cp = self.store.ledger.checkpoint_at(self.key.id, size)
        if cp is None:
            raise NotFound(f"no checkpoint of size {size}")
        return cp

    def checkpoint(self, size: int | None = None) -> dict[str, Any]:
        """GET /v1/ledger/checkpoint[?size=N]."""
        return self._checkpoint(size).to_json()

    def inclusion(self, seq: int, size: int | None) -> dict[str, Any]:
        """GET /v1/ledger/proof/inclusion?seq=S[&size=N]: the entry and its audit path to checkpoint N."""
        cp = self._checkpoint(size)
        entry = self.store.ledger.entry(seq)
        if entry is None or seq >= cp.size:
            raise NotFound(f"no entry {seq} in the checkpoint of size {cp.size}")
        proof = merkle.inclusion_proof(self.store.ledger, seq, cp.size)
        return {"entry": entry.to_dict(), "checkpoint": cp.to_json(), "proof": [h.hex() for h in proof]}

    def consistency(self, old: int, new: int | None) -> dict[str, Any]:
        """GET /v1/ledger/proof/consistency?from=M[&to=N]: proof that checkpoint N extends the tree of size M."""
        cp = self._checkpoint(new)
        if not 0 <= old <= cp.size:
            raise NotFound(f"cannot prove consistency from size {old} to size {cp.size}")
        proof = merkle.consistency_proof(self.store.ledger, old, cp.size)
        return {"from": old, "checkpoint": cp.to_json(), "proof": [h.hex() for h in proof]}

    def _proved(self, entry: ledger.Entry | None, cp: Checkpoint, source: _Memo) -> dict[str, Any] | None:
        if entry is None:
            return None
        proof = None if entry.seq >= cp.size else [h.hex() for h in merkle.inclusion_proof(source, entry.seq, cp.size)]
        return {"entry": entry.to_dict(), "proof": proof}

    def credits(self, account: str, after: int, limit: int, size: int | None = None) -> dict[str, Any]:
        """GET /v1/accounts/{id}/credits?after=S[&size=N]: entries paying `account` after seq S, with inclusion
        proofs against checkpoint N (default the latest)."""
        cp = self._checkpoint(size)
        source = _Memo(self.store.ledger)
        rows = self.store.ledger.credits_to(account, after, min(limit, MAX_PAGE))
        return {"account": account, "checkpoint": cp.to_json(),
                "credits": [self._proved(e, cp, source) for e in rows]}

    def receipts(self, worker_id: str, offset: int, limit: int) -> dict[str, Any]:
        """GET /v1/workers/{id}/receipts: every result the worker sent, its verdict, and its reward with a proof."""
        cp = self._checkpoint(None)
        source = _Memo(self.store.ledger)
        out = []
        for r in self.store.worker_results(worker_id, offset, min(limit, MAX_PAGE)):
            reward = self.store.ledger.reward_for(r["task_id"], worker_id) if r["verdict"] == "valid" else None
            out.append({**r, "reward": self._proved(reward, cp, source),
                        "formula": f"{r['price']} credits: the price job {r['job_id']} posted per validated result"})
        return {"worker_id": worker_id, "checkpoint": cp.to_json(), "offset": offset, "receipts": out}

    def provenance(self, job: Job, escrow: int) -> dict[str, Any]:
        """GET /v1/jobs/{id}/provenance: how the job's output was made, and what it cost, with proofs."""
        cp = self._checkpoint(None)
        source = _Memo(self.store.ledger)
        results: dict[str, list[dict[str, Any]]] = {}
        for r in self.store.job_results(job.job_id):
            results.setdefault(r["task_id"], []).append(
                {"worker_id": r["worker_id"], "lease_id": r["lease_id"], "digest": r["digest"].hex(),
                 "verdict": r["verdict"], "received_ms": r["received_ms"], "error": r["error"]})
        made = {t["idx"]: t for t in self.store.job_tasks(job.job_id)}
        tasks = []
        for index in range(job.n_tasks):
            t = made.get(index)
            if t is None:  # not made yet (coordinator.fresh): nobody has worked on it
                state = "cancelled" if job.state in states.FINISHED_JOB else "pending"
                tasks.append({"task_id": f"{job.job_id}-{index}", "index": index, "state": state, "digest": None,
                              "agreed": [], "results": [], "audit": None})
                continue
            mine = results.get(t["task_id"], [])
            tasks.append({
                "task_id": t["task_id"], "index": t["idx"], "state": t["state"],
                "digest": None if t["canonical"] is None else wire_digest(t["canonical"]).hex(),
                "agreed": [r["worker_id"] for r in mine if r["verdict"] == "valid"], "results": mine,
                "audit": t["audit"],
            })
        merged = self.store.job_result(job.job_id)
        return {
            "job": views.job_view(job, escrow),
            "output_digest": None if merged is None else wire_digest(merged).hex(),
            "tasks": tasks,
            "entries": [self._proved(e, cp, source) for e in self.store.ledger.of_job(job.job_id)],
            "checkpoint": cp.to_json(),
        }
