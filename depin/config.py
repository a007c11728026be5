"""Configuration, built once per process at its entry point and passed down (flags, then environment, then defaults).

No other module reads the environment. Each process gets one frozen config object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from depin.errors import UserError

DEFAULT_COORDINATOR = "http://127.0.0.1:8642"
DEFAULT_PORT = 8642


def coordinator_url(flag: str | None, env: Mapping[str, str]) -> str:
    """The coordinator URL from --coordinator, else DEPIN_COORDINATOR, else the default; checked."""
    url = flag or env.get("DEPIN_COORDINATOR") or DEFAULT_COORDINATOR
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"coordinator URL {url!r} must look like http://HOST:PORT")
    return url.rstrip("/")


def home_dir(flag: str | None, env: Mapping[str, str]) -> Path:
    """Where the CLI keeps the submitter's key: --home, else DEPIN_HOME, else ~/.depin."""
    return Path(flag or env.get("DEPIN_HOME") or Path.home() / ".depin")


@dataclass(frozen=True)
class ClientConfig:
    """What every CLI command that talks to a coordinator needs."""

    coordinator: str
    home: Path
    json: bool


@dataclass(frozen=True)
class CoordinatorConfig:
    """`depin coordinator` settings."""

    data_dir: Path
    host: str
    port: int
    lease_timeout_ms: int
    clock_window_ms: int = 300_000
    rate_per_key: float = 500.0  # signed requests per second per key (bursts of twice that); 0 = unlimited
    rate_per_address: float = 2000.0  # requests per second per network address; 0 = unlimited
    checkpoint_every: int = 1000  # sign a checkpoint after this many new ledger entries...
    checkpoint_interval_ms: int = 5_000  # ...or after this long, if the ledger grew at all

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise UserError(f"--port {self.port} is not a TCP port")
        if not 1_000 <= self.lease_timeout_ms <= 86_400_000:
            raise UserError("--lease-timeout must be between 1 and 86400 seconds")
        if not 1 <= self.checkpoint_every <= 1_000_000 or not 100 <= self.checkpoint_interval_ms <= 86_400_000:
            raise UserError("--checkpoint-every must be 1..1000000 entries and --checkpoint-interval 0.1..86400 s")
        if self.rate_per_key < 0 or self.rate_per_address < 0:
            raise UserError("--rate-per-key and --rate-per-address must be 0 (no limit) or positive")


@dataclass(frozen=True)
class WorkerConfig:
    """`depin worker` settings."""

    coordinator: str
    data_dir: Path
    coordinator_key: str | None  # hex public key to pin, from --coordinator-key
    batch: int = 4
    poll_ms: int = 20_000
    once: bool = False
    max_backoff_s: float = 30.0
    owner: str | None = None  # the owner's party id, sent with lease requests
    min_price: int = 0  # lease only tasks of jobs paying at least this per validated result
    audit_interval_ms: int = 30_000  # how often to fetch a checkpoint and check credits and consistency

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 256:
            raise UserError("--batch must be between 1 and 256")
        if not 0 <= self.min_price < 2**40:
            raise UserError("--min-price must be a whole number of credits from 0 to 2^40 - 1")
        if not 100 <= self.audit_interval_ms <= 86_400_000:
            raise UserError("--audit-interval must be between 0.1 and 86400 seconds")
        if self.owner is not None and not re.fullmatch(r"[a-z2-7]{32}", self.owner):
            raise UserError("--owner must be a depin id (32 characters a-z, 2-7; see depin keygen)")
        if self.coordinator_key is not None:
            try:
                raw = bytes.fromhex(self.coordinator_key)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise UserError("--coordinator-key must be 64 hex digits (the coordinator's public key)")


def environment() -> Mapping[str, str]:
    """The process environment, read here and only here."""
    return os.environ
