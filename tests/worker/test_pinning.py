"""worker.pinning.pin: trust the coordinator's key on first use, refuse any other afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from depin.crypto import SigningKey
from depin.errors import KeyMismatch, PeerProtocolError
from worker.pinning import pin

FIRST = SigningKey(bytes([1]) * 32).public.hex()
SECOND = SigningKey(bytes([2]) * 32).public.hex()


def test_first_use_writes_the_key(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.pub"
    key = pin(path, FIRST, None)
    assert key.raw.hex() == FIRST
    assert path.read_text() == FIRST + "\n"
    assert not path.with_name("coordinator.pub.tmp").exists()


def test_same_key_again_is_trusted(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.pub"
    pin(path, FIRST, None)
    assert pin(path, FIRST, None).raw.hex() == FIRST
    assert pin(path, FIRST.upper(), None).raw.hex() == FIRST
    assert path.read_text() == FIRST + "\n"


def test_changed_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.pub"
    pin(path, FIRST, None)
    with pytest.raises(KeyMismatch, match=f"coordinator key changed \\(pinned {FIRST[:16]}…, now {SECOND[:16]}…\\); "
                                          f"refusing to work. If the change is legitimate, delete {path}"):
        pin(path, SECOND, None)
    assert path.read_text() == FIRST + "\n"  # the pin is not overwritten


def test_coordinator_key_flag_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.pub"
    with pytest.raises(KeyMismatch, match=f"coordinator key {SECOND} is not the --coordinator-key given"):
        pin(path, SECOND, FIRST)
    assert not path.exists()  # nothing pinned from an impostor


def test_coordinator_key_flag_match_pins(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.pub"
    assert pin(path, FIRST, FIRST.upper()).raw.hex() == FIRST
    assert path.read_text() == FIRST + "\n"


def test_coordinator_key_flag_checked_even_when_pinned(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.pub"
    pin(path, FIRST, None)
    with pytest.raises(KeyMismatch, match="is not the --coordinator-key given"):
        pin(path, FIRST, SECOND)


@pytest.mark.parametrize(
    ("presented", "message"),
    [
        (None, "coordinator info has no public_key"),
        (123, "coordinator info has no public_key"),
        ("zz" * 32, "coordinator public_key is not hex"),
        (FIRST[:-2], "public key must be 32 bytes"),
        (FIRST + "00", "public key must be 32 bytes"),
    ],
)
def test_malformed_presented_key(tmp_path: Path, presented: object, message: str) -> None:
    path = tmp_path / "coordinator.pub"
    with pytest.raises(PeerProtocolError, match=message):
        pin(path, presented, None)
    assert not path.exists()
