"""depin.crypto: keys, ids, domain-separated signatures, envelopes and the key file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from depin import codec, crypto
from depin.crypto import SigningKey, VerifyKey, load_or_create_key, open_envelope
from depin.errors import DepinError, PeerProtocolError, UserError, VerificationError
from tests.spec_examples import SPEC, unbin

DATA = Path(__file__).resolve().parents[1] / "data"
VECTORS: dict[str, Any] = json.loads((DATA / "signature_vectors.json").read_text())

SEED_A = bytes(range(32))
SEED_B = bytes(range(1, 33))
KINDS = sorted(crypto.KINDS)


def test_the_kinds_are_exactly_the_protocol_message_kinds() -> None:
    assert crypto.KINDS == {"task", "lease-request", "release", "results", "results-ack", "submit", "cancel",
                            "result-request", "grant", "checkpoint", "bond", "unbond", "kernel"}


@pytest.mark.parametrize("kind", ["result-request", "grant", "checkpoint", "bond", "unbond"])
def test_the_kinds_of_issue_4_sign_under_their_own_tag(kind: str) -> None:
    # The tag is the kind as spelled: "depin/1/checkpoint" 00, etc. (LEDGER.md 8, PROTOCOL.md 5).
    key = SigningKey(SEED_A)
    sig = key.sign(kind, b"body")
    raw = nacl.signing.SigningKey(SEED_A)
    assert raw.sign(b"depin/1/" + kind.encode() + b"\x00" + b"body").signature == sig
    key.verify_key.verify(kind, b"body", sig)


# ---- known-answer vectors ------------------------------------------------------------------------------------


def test_vector_key_and_id_match_depin() -> None:
    key = SigningKey(bytes.fromhex(VECTORS["seed_hex"]))
    assert key.public.hex() == VECTORS["public_key_hex"]
    assert key.id == VECTORS["id"]
    assert crypto.party_id(key.public) == VECTORS["id"]


def test_vector_public_key_is_rfc8032_test1() -> None:
    # RFC 8032 section 7.1, TEST 1: this seed has this public key, independently of depin and of PyNaCl.
    assert VECTORS["seed_hex"] == "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
    assert VECTORS["public_key_hex"] == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def test_vector_id_by_an_independent_route() -> None:
    digest = hashlib.sha256(bytes.fromhex(VECTORS["public_key_hex"])).digest()[:20]
    assert base64.b32encode(digest).decode().lower().rstrip("=") == VECTORS["id"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["kind"])
def test_vector_signatures_match_depin(vector: dict[str, Any]) -> None:
    key = SigningKey(bytes.fromhex(VECTORS["seed_hex"]))
    body = bytes.fromhex(vector["payload_hex"])
    assert codec.encode(vector["payload"]) == body
    assert key.sign(vector["kind"], body).hex() == vector["sig_hex"]
    key.verify_key.verify(vector["kind"], body, bytes.fromhex(vector["sig_hex"]))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["kind"])
def test_vector_signatures_by_an_independent_route(vector: dict[str, Any]) -> None:
    raw = nacl.signing.SigningKey(bytes.fromhex(VECTORS["seed_hex"]))
    message = b"depin/1/" + vector["kind"].encode() + b"\0" + bytes.fromhex(vector["payload_hex"])
    assert raw.sign(message).signature.hex() == vector["sig_hex"]
    nacl.signing.VerifyKey(bytes.fromhex(VECTORS["public_key_hex"])).verify(message, bytes.fromhex(vector["sig_hex"]))


def test_vectors_cover_more_than_one_kind() -> None:
    assert len({v["kind"] for v in VECTORS["vectors"]}) >= 2


def test_protocol_md_identity_example() -> None:
    ex = SPEC["identity"]
    key = SigningKey(bytes.fromhex(ex["seed_hex"]))
    assert key.public.hex() == ex["public_key_hex"]
    assert hashlib.sha256(key.public).hexdigest() == ex["sha256_hex"]
    assert key.id == ex["id"]


def test_protocol_md_signature_example() -> None:
    ex, ident = SPEC["signature"], SPEC["identity"]
    key = SigningKey(bytes.fromhex(ident["seed_hex"]))
    payload = unbin(SPEC["encodings"][0]["value"])
    body = codec.encode(payload)
    assert crypto.signing_input(ex["kind"], body).hex() == ex["signing_input_hex"]
    assert key.sign(ex["kind"], body).hex() == ex["sig_hex"]
    raw = nacl.signing.SigningKey(bytes.fromhex(ident["seed_hex"]))
    assert raw.sign(bytes.fromhex(ex["signing_input_hex"])).signature.hex() == ex["sig_hex"]
    envelope = codec.encode(key.seal(ex["kind"], payload))
    assert len(envelope) == ex["envelope_bytes"]
    signer, opened = open_envelope(ex["kind"], codec.decode_canonical(envelope))
    assert signer.id == ident["id"] and opened == payload


# ---- signing and verifying ------------------------------------------------------------------------------------


def test_signing_input_layout() -> None:
    assert crypto.signing_input("task", b"\x80") == b"depin/1/task\x00\x80"
    assert crypto.signing_input("results-ack", b"") == b"depin/1/results-ack\x00"


def test_sign_then_verify() -> None:
    key = SigningKey(SEED_A)
    sig = key.sign("results", b"payload")
    assert len(sig) == 64
    key.verify_key.verify("results", b"payload", sig)  # no exception
    assert VerifyKey(key.public) == key.verify_key


def test_signatures_are_deterministic() -> None:
    assert SigningKey(SEED_A).sign("task", b"x") == SigningKey(SEED_A).sign("task", b"x")


@pytest.mark.parametrize("signed_as", KINDS)
def test_a_signature_of_one_kind_never_verifies_as_another(signed_as: str) -> None:
    key = SigningKey(SEED_A)
    sig = key.sign(signed_as, b"same bytes")
    for other in KINDS:
        if other == signed_as:
            key.verify_key.verify(other, b"same bytes", sig)
            continue
        with pytest.raises(VerificationError, match=f"bad {other} signature"):
            key.verify_key.verify(other, b"same bytes", sig)


def test_kind_and_payload_boundary_cannot_be_shifted() -> None:
    # "task" + "\0" + payload must not equal some other kind's input: the NUL separates them.
    key = SigningKey(SEED_A)
    sig = key.sign("results", b"-ack")
    with pytest.raises(VerificationError):
        key.verify_key.verify("results-ack", b"", sig)


def test_tampered_payload_is_refused() -> None:
    key = SigningKey(SEED_A)
    body = codec.encode({"amount": 10})
    sig = key.sign("task", body)
    for i in range(len(body)):
        tampered = bytearray(body)
        tampered[i] ^= 0x01
        with pytest.raises(VerificationError, match="bad task signature"):
            key.verify_key.verify("task", bytes(tampered), sig)
    with pytest.raises(VerificationError):
        key.verify_key.verify("task", body + b"\x00", sig)


def test_tampered_signature_is_refused() -> None:
    key = SigningKey(SEED_A)
    sig = key.sign("task", b"body")
    for i in (0, 31, 32, 63):
        tampered = bytearray(sig)
        tampered[i] ^= 0x80
        with pytest.raises(VerificationError, match="bad task signature"):
            key.verify_key.verify("task", b"body", bytes(tampered))


def test_another_keys_signature_is_refused() -> None:
    sig = SigningKey(SEED_B).sign("task", b"body")
    with pytest.raises(VerificationError, match="bad task signature"):
        SigningKey(SEED_A).verify_key.verify("task", b"body", sig)


@pytest.mark.parametrize("sig", [b"", bytes(63), bytes(65), "00" * 64, None, bytearray(64)])
def test_signature_of_wrong_length_or_type_is_refused(sig: Any) -> None:
    key = SigningKey(SEED_A)
    with pytest.raises(VerificationError, match="signature must be 64 bytes"):
        key.verify_key.verify("task", b"body", sig)


def test_unknown_kind_is_a_depin_error() -> None:
    key = SigningKey(SEED_A)
    with pytest.raises(DepinError, match="unknown signature kind 'taks'"):
        key.sign("taks", b"body")


def test_unknown_kind_never_signs_or_verifies() -> None:
    key = SigningKey(SEED_A)
    with pytest.raises(Exception, match="unknown signature kind 'taks'"):
        key.sign("taks", b"body")
    with pytest.raises(Exception, match="unknown signature kind 'taks'"):
        key.verify_key.verify("taks", b"body", key.sign("task", b"body"))


# ---- keys and ids ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), "a" * 32, None, bytearray(32)])
def test_public_key_of_wrong_length_or_type(raw: Any) -> None:
    with pytest.raises(PeerProtocolError, match="public key must be 32 bytes"):
        VerifyKey(raw)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "a" * 32, None, bytearray(32)])
def test_seed_of_wrong_length_or_type(seed: Any) -> None:
    with pytest.raises(VerificationError, match="private key seed must be 32 bytes"):
        SigningKey(seed)


def test_party_id_format() -> None:
    for seed in (SEED_A, SEED_B, bytes(32)):
        key = SigningKey(seed)
        assert len(key.id) == 32  # 20 bytes = 160 bits = 32 base32 digits, no padding
        assert set(key.id) <= set("abcdefghijklmnopqrstuvwxyz234567")
        assert key.id == key.verify_key.id == crypto.party_id(key.public)
    assert crypto.party_id(bytes(32)) == base64.b32encode(hashlib.sha256(bytes(32)).digest()[:20]).decode().lower()
    assert SigningKey(SEED_A).id != SigningKey(SEED_B).id


def test_generated_keys_differ_and_round_trip_through_their_seed() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    assert a.public != b.public
    assert SigningKey(a.seed_bytes()).public == a.public


def test_verify_keys_are_values() -> None:
    a1, a2 = VerifyKey(SigningKey(SEED_A).public), VerifyKey(SigningKey(SEED_A).public)
    assert a1 == a2 and hash(a1) == hash(a2)
    assert a1 != VerifyKey(SigningKey(SEED_B).public)
    assert repr(a1) == f"VerifyKey({a1.id})"


# ---- envelopes ------------------------------------------------------------------------------------------------


def test_seal_then_open() -> None:
    key = SigningKey(SEED_A)
    env = key.seal("submit", {"b": 1, "a": [b"x", None]})
    assert set(env) == {"key", "payload", "sig"}
    assert env["payload"] == codec.encode({"a": [b"x", None], "b": 1})
    signer, payload = open_envelope("submit", env)
    assert signer == key.verify_key
    assert payload == {"a": [b"x", None], "b": 1}


def test_open_envelope_survives_the_wire() -> None:
    env = SigningKey(SEED_A).seal("release", {"lease_ids": ["L1"]})
    signer, payload = open_envelope("release", codec.decode_canonical(codec.encode(env)))
    assert signer.id == SigningKey(SEED_A).id and payload == {"lease_ids": ["L1"]}


def test_open_envelope_of_another_kind_is_refused() -> None:
    env = SigningKey(SEED_A).seal("submit", {"x": 1})
    with pytest.raises(VerificationError, match="bad cancel signature"):
        open_envelope("cancel", env)


def test_open_envelope_with_swapped_key_is_refused() -> None:
    env = SigningKey(SEED_A).seal("submit", {"x": 1})
    env["key"] = SigningKey(SEED_B).public
    with pytest.raises(VerificationError, match="bad submit signature"):
        open_envelope("submit", env)


def test_open_envelope_with_tampered_payload_is_refused() -> None:
    env = SigningKey(SEED_A).seal("submit", {"price": 1})
    env["payload"] = codec.encode({"price": 2})
    with pytest.raises(VerificationError, match="bad submit signature"):
        open_envelope("submit", env)


@pytest.mark.parametrize(
    ("envelope", "error", "message"),
    [
        ([], PeerProtocolError, "envelope must be a map with exactly key, payload, sig"),
        ({"key": b"", "payload": b""}, PeerProtocolError, "envelope must be a map with exactly key, payload, sig"),
        ({"key": b"", "payload": b"", "sig": b"", "x": 1}, PeerProtocolError, "exactly key, payload, sig"),
        ({"key": bytes(32), "payload": "text", "sig": bytes(64)}, PeerProtocolError, "envelope.payload: must be bytes"),
        ({"key": bytes(31), "payload": b"\x80", "sig": bytes(64)}, PeerProtocolError, "public key must be 32 bytes"),
        ({"key": "k" * 32, "payload": b"\x80", "sig": bytes(64)}, PeerProtocolError, "public key must be 32 bytes"),
        ({"key": bytes(32), "payload": b"\x80", "sig": bytes(10)}, VerificationError, "signature must be 64 bytes"),
    ],
)
def test_open_envelope_shape_checks(envelope: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        open_envelope("submit", envelope)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (codec.encode([1, 2]), "envelope.payload: must encode a map"),
        (bytes.fromhex("82a16201a16102"), "not canonical msgpack"),  # validly signed, keys unsorted
        (b"\xc1", "malformed msgpack"),
    ],
)
def test_open_envelope_checks_the_signed_payload(body: bytes, message: str) -> None:
    key = SigningKey(SEED_A)
    env = {"key": key.public, "payload": body, "sig": key.sign("submit", body)}
    with pytest.raises(PeerProtocolError, match=message):
        open_envelope("submit", env)


def test_open_envelope_max_payload() -> None:
    env = SigningKey(SEED_A).seal("submit", {"x": "y" * 50})
    size = len(env["payload"])
    open_envelope("submit", env, max_payload=size)
    with pytest.raises(PeerProtocolError, match=f"message of {size} bytes exceeds {size - 1}"):
        open_envelope("submit", env, max_payload=size - 1)


# ---- the key file --------------------------------------------------------------------------------------------


def test_load_or_create_key_creates_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "worker.key"
    key = load_or_create_key(path)
    assert path.read_bytes() == key.seed_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_name("worker.key.tmp").exists()
    assert load_or_create_key(path).public == key.public  # loaded, not regenerated


def test_load_or_create_key_mode_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "k.key"
        load_or_create_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(SEED_A)
    path.chmod(0o600)
    assert load_or_create_key(path).public == SigningKey(SEED_A).public


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o601])
def test_key_file_readable_or_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(SEED_A)
    path.chmod(mode)
    with pytest.raises(UserError, match=f"key file {path} is readable by others; run: chmod 600 {path}"):
        load_or_create_key(path)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_key_file_of_wrong_length_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(b"\x01" * size)
    path.chmod(0o600)
    with pytest.raises(UserError, match=f"key file {path} is not a 32-byte Ed25519 seed"):
        load_or_create_key(path)


def test_key_path_that_is_a_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"cannot read key file {tmp_path}"):
        load_or_create_key(tmp_path)


def test_load_key_never_creates_one(tmp_path: Path) -> None:
    from depin.crypto import load_key, load_or_create_key
    from depin.errors import UserError

    with pytest.raises(UserError, match="no key at .*depin keygen"):
        load_key(tmp_path / "key")
    assert not (tmp_path / "key").exists()
    made = load_or_create_key(tmp_path / "key")
    assert load_key(tmp_path / "key").id == made.id
