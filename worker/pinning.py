"""Trust on first use for the coordinator's key.

The first time a worker talks to a coordinator it stores the coordinator's public key in its data dir (or takes it
from --coordinator-key). From then on a coordinator presenting any other key is refused: the worker stops with a
KeyMismatch instead of computing for, or sending results to, an impostor.
"""

from __future__ import annotations

import os
from pathlib import Path

from depin.crypto import VerifyKey
from depin.errors import KeyMismatch, PeerProtocolError


def pin(path: Path, presented_hex: object, expected_hex: str | None) -> VerifyKey:
    """The coordinator key to trust, given what it presented, what was pinned, and what the user insisted on."""
    if not isinstance(presented_hex, str):
        raise PeerProtocolError("coordinator info has no public_key")
    try:
        presented = VerifyKey(bytes.fromhex(presented_hex))
    except ValueError:
        raise PeerProtocolError("coordinator public_key is not hex") from None
    if expected_hex is not None and presented.raw.hex() != expected_hex.lower():
        raise KeyMismatch(f"coordinator key {presented.raw.hex()} is not the --coordinator-key given; refusing to work")
    try:
        pinned = path.read_text().strip()
    except FileNotFoundError:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(presented.raw.hex() + "\n")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return presented
    if pinned != presented.raw.hex():
        raise KeyMismatch(
            f"coordinator key changed (pinned {pinned[:16]}…, now {presented.raw.hex()[:16]}…); refusing to work. "
            f"If the change is legitimate, delete {path}"
        )
    return presented
