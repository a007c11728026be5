"""Keys, identities and domain-separated signatures (Ed25519 via PyNaCl).

Every signature depin makes covers `b"depin/1/" + kind + b"\\0" + canonical_msgpack(payload)`, so a signature made
for one message kind can never verify as another (docs/PROTOCOL.md, "Signatures"). A party's id is derived from its
public key: base32 (lowercase, unpadded) of the first 20 bytes of SHA-256(public key).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from depin import codec
from depin.errors import LocalProtocolError, PeerProtocolError, UserError, VerificationError
from depin.protocol import PROTOCOL_VERSION

KINDS = frozenset(
    {"task", "lease-request", "release", "results", "results-ack", "submit", "cancel", "result-request", "grant",
     "checkpoint", "bond", "unbond", "kernel"}
)
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def signing_input(kind: str, payload_bytes: bytes) -> bytes:
    """The exact bytes a signature of `kind` covers."""
    if kind not in KINDS:
        raise LocalProtocolError(f"unknown signature kind {kind!r}")
    return f"depin/{PROTOCOL_VERSION}/{kind}".encode() + b"\0" + payload_bytes


def party_id(public_key: bytes) -> str:
    """The readable id of the party holding `public_key`."""
    digest = hashlib.sha256(public_key).digest()[:20]
    return base64.b32encode(digest).decode("ascii").lower()


class VerifyKey:
    """A 32-byte Ed25519 public key."""

    __slots__ = ("raw", "id", "_key")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_SIZE:
            raise PeerProtocolError("public key must be 32 bytes")
        try:
            self._key = nacl.signing.VerifyKey(raw)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise VerificationError("not a valid Ed25519 public key") from None
        self.raw = raw
        self.id = party_id(raw)

    def verify(self, kind: str, payload_bytes: bytes, signature: bytes) -> None:
        """Raise VerificationError unless `signature` is ours over (kind, payload_bytes)."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
            raise VerificationError("signature must be 64 bytes")
        try:
            self._key.verify(signing_input(kind, payload_bytes), signature)
        except nacl.exceptions.BadSignatureError:
            raise VerificationError(f"bad {kind} signature") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"VerifyKey({self.id})"


class SigningKey:
    """An Ed25519 private key with its public half and id."""

    __slots__ = ("_key", "verify_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise VerificationError("private key seed must be 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.verify_key = VerifyKey(bytes(self._key.verify_key))

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def id(self) -> str:
        """This party's id."""
        return self.verify_key.id

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key."""
        return self.verify_key.raw

    def sign(self, kind: str, payload_bytes: bytes) -> bytes:
        """The 64-byte signature over (kind, payload_bytes)."""
        return self._key.sign(signing_input(kind, payload_bytes)).signature

    def seal(self, kind: str, payload: dict[str, Any]) -> dict[str, bytes]:
        """A signed envelope {key, payload, sig} with `payload` in canonical msgpack."""
        body = codec.encode(payload)
        return {"key": self.public, "payload": body, "sig": self.sign(kind, body)}

    def seed_bytes(self) -> bytes:
        """The 32-byte private seed (only for writing the key file)."""
        return bytes(self._key)


def open_envelope(kind: str, envelope: Any, *, max_payload: int | None = None) -> tuple[VerifyKey, dict[str, Any]]:
    """Check a {key, payload, sig} envelope of `kind`; return the signer and the decoded payload."""
    if not isinstance(envelope, dict) or set(envelope) != {"key", "payload", "sig"}:
        raise PeerProtocolError("envelope must be a map with exactly key, payload, sig")
    if not isinstance(envelope["payload"], bytes):
        raise PeerProtocolError("envelope.payload: must be bytes")
    signer = VerifyKey(envelope["key"])
    signer.verify(kind, envelope["payload"], envelope["sig"])
    payload = codec.decode_canonical(envelope["payload"], max_size=max_payload)
    if not isinstance(payload, dict):
        raise PeerProtocolError("envelope.payload: must encode a map")
    return signer, payload


def _create_key(path: Path) -> SigningKey:
    key = SigningKey.generate()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key.seed_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot create key file {path}: {exc.strerror}") from None
    return key


def load_key(path: Path) -> SigningKey:
    """The key stored at `path`; UserError if there is none (for commands that must not invent an identity)."""
    if not path.exists():
        raise UserError(f"no key at {path} (create one with depin keygen, or point --home/--data-dir at it)")
    return load_or_create_key(path)


def load_or_create_key(path: Path) -> SigningKey:
    """The key stored at `path` (mode 0600), created on first use."""
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        return _create_key(path)
    except OSError as exc:
        raise UserError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(seed) != 32:
        raise UserError(f"key file {path} is not a 32-byte Ed25519 seed")
    if path.stat().st_mode & 0o077:
        raise UserError(f"key file {path} is readable by others; run: chmod 600 {path}")
    return SigningKey(seed)
