"""Fetching ledger checkpoints and proofs from a coordinator and checking them: shared by the CLI and the worker.

Every answer is checked here, against the coordinator's key, before anyone relies on it: a checkpoint's signature,
an entry's inclusion in a checkpoint, a newer checkpoint's consistency with an older one. Failures are
VerificationErrors; a failed consistency check says LEDGER FORK (depin.checkpoint).
"""

from __future__ import annotations

from typing import Any

from depin import checkpoint
from depin.client import Client
from depin.crypto import VerifyKey
from depin.errors import PeerProtocolError, VerificationError


class ForkEvidence(VerificationError):
    """Two checkpoints signed by one coordinator that cannot both be true: the proof of a rewritten ledger."""

    def __init__(self, message: str, first: checkpoint.Checkpoint, second: checkpoint.Checkpoint,
                 proof: list[bytes]) -> None:
        super().__init__(message)
        self.first, self.second, self.proof = first, second, proof

    def evidence(self) -> dict[str, Any]:
        """Both signed checkpoints and the failed proof, as JSON anyone can re-check with the coordinator's key."""
        return {"checkpoints": [self.first.to_json(), self.second.to_json()],
                "consistency_proof": [h.hex() for h in self.proof]}


async def coordinator_key(c: Client, pinned_hex: str | None = None) -> VerifyKey:
    """The coordinator's key: the pinned one (which /v1/info must match), else whatever /v1/info says."""
    info = await c.get_json("/v1/info")
    try:
        served = VerifyKey(bytes.fromhex(info["public_key"]))
    except (TypeError, KeyError, ValueError):
        raise PeerProtocolError("/v1/info: public_key must be 64 hex digits") from None
    if pinned_hex is not None and served.raw.hex() != pinned_hex.lower():
        raise VerificationError(f"the coordinator's key is {served.raw.hex()}, not the expected {pinned_hex}")
    return served


def parse_checkpoint(value: Any, key: VerifyKey) -> checkpoint.Checkpoint:
    """A served checkpoint, signature checked."""
    cp = checkpoint.Checkpoint.from_json(value)
    cp.verify(key)
    return cp


async def latest_checkpoint(c: Client, key: VerifyKey) -> checkpoint.Checkpoint:
    """GET /v1/ledger/checkpoint, checked."""
    return parse_checkpoint(await c.get_json("/v1/ledger/checkpoint"), key)


def check_proved(item: Any, cp: checkpoint.Checkpoint) -> dict[str, Any] | None:
    """An {entry, proof} item of a receipts/credits/provenance answer: the entry if its proof holds against `cp`,
    None if it is newer than `cp` (no proof yet); VerificationError if the proof fails."""
    if not isinstance(item, dict) or "entry" not in item or "proof" not in item:
        raise PeerProtocolError("a proved entry must be a map with entry and proof")
    entry = item["entry"]
    if item["proof"] is None:
        if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int) or entry["seq"] < cp.size:
            raise VerificationError("an entry covered by the checkpoint came without its inclusion proof")
        return None
    checkpoint.check_included(entry, cp, checkpoint.hashes_from_json(item["proof"]))
    return dict(entry)


async def prove_entry(c: Client, key: VerifyKey, seq: int, at: checkpoint.Checkpoint | None = None
                      ) -> tuple[dict[str, Any], checkpoint.Checkpoint]:
    """Entry `seq` and the checkpoint it was proved against: `at` if given (its size is asked for, and the served
    checkpoint must be that very one), else the latest."""
    query = f"/v1/ledger/proof/inclusion?seq={seq}" + ("" if at is None else f"&size={at.size}")
    answer = await c.get_json(query)
    if not isinstance(answer, dict):
        raise PeerProtocolError("inclusion proof answer must be a map")
    cp = parse_checkpoint(answer.get("checkpoint"), key)
    if at is not None and (cp.size, cp.root) != (at.size, at.root):
        raise VerificationError(f"LEDGER FORK: two checkpoints of size {at.size} with different roots")
    entry = check_proved(answer, cp)
    if entry is None or entry.get("seq") != seq:
        raise VerificationError(f"the coordinator answered with another entry than {seq}")
    return entry, cp


async def prove_consistent(c: Client, key: VerifyKey, old: checkpoint.Checkpoint) -> checkpoint.Checkpoint:
    """The latest checkpoint, proved to extend `old`. A log only grows: a latest checkpoint smaller than `old`, or
    one of the same size with another root, is a rewritten ledger too."""
    latest = await latest_checkpoint(c, key)
    if latest.size < old.size:
        raise ForkEvidence(
            f"LEDGER FORK: the coordinator's latest checkpoint covers {latest.size} entries, fewer than the"
            f" {old.size} it signed before; the coordinator rewrote or truncated its ledger", old, latest, [])
    answer = await c.get_json(f"/v1/ledger/proof/consistency?from={old.size}&to={latest.size}")
    if not isinstance(answer, dict):
        raise PeerProtocolError("consistency proof answer must be a map")
    if answer.get("from") != old.size:
        raise VerificationError(f"asked for a consistency proof from size {old.size}, got {answer.get('from')!r}")
    served = parse_checkpoint(answer.get("checkpoint"), key)
    if served.size != latest.size or served.root != latest.root:
        raise ForkEvidence(f"LEDGER FORK: two checkpoints of size {latest.size} with different roots", latest, served,
                           [])
    proof = checkpoint.hashes_from_json(answer.get("proof"))
    try:
        checkpoint.check_consistent(old, latest, proof)
    except VerificationError as exc:
        raise ForkEvidence(str(exc), old, latest, proof) from None
    return latest
