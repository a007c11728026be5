"""Signed checkpoints of the ledger's Merkle tree, and the checks a client makes with them. Pure: no I/O.

A checkpoint says "the ledger of coordinator C had `size` entries with Merkle tree head `root` at `time`", signed by
C's key (kind `checkpoint`, docs/LEDGER.md section 8). It travels as JSON with hex strings. Whoever keeps a
checkpoint can later demand a consistency proof from it to any newer one: a coordinator that rewrote or dropped
anything the old checkpoint covered cannot produce one, so keeping checkpoints turns every worker into a witness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from depin import codec, ledger, merkle
from depin.accounts import is_party
from depin.crypto import SigningKey, VerifyKey
from depin.errors import VerificationError

FIELDS = ("coordinator", "size", "root", "time", "sig")


_HEX = frozenset("0123456789abcdef")


def _hex(value: Any, size: int, name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not set(value) <= _HEX:
        raise VerificationError(f"checkpoint {name} must be {2 * size} lowercase hex digits")
    return bytes.fromhex(value)


def _uint(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise VerificationError(f"checkpoint {name} must be an integer in [0, 2^63)")
    return value


@dataclass(frozen=True)
class Checkpoint:
    """One signed tree head."""

    coordinator: str
    size: int
    root: bytes
    time: int
    sig: bytes

    def signed_bytes(self) -> bytes:
        """The canonical msgpack of the signed payload (everything but `sig`, root as hex)."""
        return codec.encode({"coordinator": self.coordinator, "size": self.size, "root": self.root.hex(),
                             "time": self.time})

    def to_json(self) -> dict[str, Any]:
        """The JSON object the coordinator serves and workers keep."""
        return {"coordinator": self.coordinator, "size": self.size, "root": self.root.hex(), "time": self.time,
                "sig": self.sig.hex()}

    @classmethod
    def from_json(cls, d: Any) -> Checkpoint:
        """Parse the JSON form; VerificationError if it is malformed (the signature is checked by `verify`)."""
        if not isinstance(d, Mapping) or set(d) != set(FIELDS):
            raise VerificationError("a checkpoint must have exactly the fields " + ", ".join(FIELDS))
        if not isinstance(d["coordinator"], str) or not is_party(d["coordinator"]):
            raise VerificationError("checkpoint coordinator must be a party id")
        return cls(d["coordinator"], _uint(d["size"], "size"), _hex(d["root"], 32, "root"),
                   _uint(d["time"], "time"), _hex(d["sig"], 64, "sig"))

    def verify(self, key: VerifyKey) -> None:
        """Raise VerificationError unless `key` (the coordinator's) signed this checkpoint."""
        if self.coordinator != key.id:
            raise VerificationError(f"checkpoint names coordinator {self.coordinator}, expected {key.id}")
        key.verify("checkpoint", self.signed_bytes(), self.sig)
        if self.size == 0 and self.root != merkle.EMPTY_ROOT:
            raise VerificationError("a checkpoint of size 0 must have the empty tree's root, SHA-256 of nothing")


def sign(key: SigningKey, *, size: int, root: bytes, time: int) -> Checkpoint:
    """A checkpoint of `size` entries with tree head `root`, signed now by the coordinator's key."""
    unsigned = Checkpoint(key.id, size, root, time, b"")
    return Checkpoint(key.id, size, root, time, key.sign("checkpoint", unsigned.signed_bytes()))


def due(last: Checkpoint | None, *, size: int, now: int, every: int, interval_ms: int) -> bool:
    """Whether to sign a new checkpoint: the log grew by `every` entries, or grew at all and `interval_ms` passed."""
    if last is None:
        return True
    grown = size - last.size
    return grown >= every or (grown > 0 and now - last.time >= interval_ms)


def check_consistent(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise VerificationError (saying LEDGER FORK) unless `new` extends `old`."""
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except VerificationError as exc:
        raise VerificationError(
            f"LEDGER FORK: the checkpoint of size {new.size} does not extend the checkpoint of size {old.size}"
            f" ({exc}); the coordinator rewrote or forked its ledger"
        ) from None


def check_included(entry: Mapping[str, Any], checkpoint: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise VerificationError unless `entry` (its fields re-hashed here) is in the tree `checkpoint` signs."""
    e = ledger.Entry.from_dict(entry)
    if ledger.entry_hash(e.to_dict()) != e.hash:
        raise VerificationError(f"entry {e.seq}: hash does not match its contents")
    if e.seq >= checkpoint.size:
        raise VerificationError(f"entry {e.seq} is not covered by a checkpoint of size {checkpoint.size}")
    try:
        merkle.verify_inclusion(ledger.leaf_of(e.hash), e.seq, checkpoint.size, proof, checkpoint.root)
    except VerificationError as exc:
        raise VerificationError(f"entry {e.seq} is not in the signed ledger of size {checkpoint.size}: {exc}") from None


def hashes_from_json(value: Any) -> list[bytes]:
    """A proof as served (a list of 64-hex-digit strings) as bytes."""
    if not isinstance(value, list) or len(value) > 128:
        raise VerificationError("a proof must be a list of at most 128 hashes")
    return [_hex(h, 32, "proof hash") for h in value]
