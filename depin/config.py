"""Configuration, built once per process at its entry point and passed down (flags, then environment, then defaults).

No other module reads the environment. Each process gets one frozen config object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from depin.errors import UserError

DEFAULT_COORDINATOR = "http://127.0.0.1:8642"
DEFAULT_PORT = 8642
DEFAULT_PAGE_PORT = 8643  # the worker's owner's page, on 127.0.0.1


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


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"(?:(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*) +)?"
                     r"(?P<start>\d{1,2}):(?P<sm>\d\d)-(?P<end>\d{1,2}):(?P<em>\d\d)")


@dataclass(frozen=True)
class Window:
    """An allowed time window: on `days` (0 = Monday), from minute `start` to minute `end` of the local day
    (end <= start: across midnight, belonging to the day it starts)."""

    days: frozenset[int]
    start: int
    end: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Window:
        """'Mon-Fri 19:00-07:00', 'Sat,Sun 00:00-24:00' or '22:00-06:00' (every day)."""
        m = _WINDOW.fullmatch(text.strip().lower())
        if m is None:
            raise UserError(f"time window {text!r}: expected like 'Mon-Fri 19:00-07:00' or '22:00-06:00'")
        days: set[int] = set()
        for part in (m["days"] or "mon-sun").split(","):
            first, _, last = part.partition("-")
            if first not in _DAYS or (last and last not in _DAYS):
                raise UserError(f"time window {text!r}: days are Mon Tue Wed Thu Fri Sat Sun")
            a, b = _DAYS.index(first), _DAYS.index(last or first)
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        start, end = int(m["start"]) * 60 + int(m["sm"]), int(m["end"]) * 60 + int(m["em"])
        if int(m["sm"]) > 59 or int(m["em"]) > 59 or start >= 24 * 60 or end > 24 * 60 or start == end:
            raise UserError(f"time window {text!r}: times run from 00:00 to 24:00, start and end differ")
        return cls(frozenset(days), start, end, text.strip())


@dataclass(frozen=True)
class PolicySettings:
    """When a worker may compute (worker/policy.py), from [policy] in the config file, flags and environment."""

    always: bool = False  # a dedicated machine: ignore everything below
    idle_seconds: float = 60.0  # after the machine was in use, this long quiet before computing again
    max_other_load: float = 0.5  # cores other programs may use before the machine counts as in use
    run_on_battery: bool = False
    min_battery_percent: float = 40.0  # when allowed on battery: pause below this charge
    max_temperature_c: float = 80.0
    windows: tuple[Window, ...] = ()  # allowed hours; none: any time
    threads: int | None = None  # CPU threads for kernels (None: all)
    duty_cycle: float = 1.0  # fraction of time computing while running (e.g. 0.5: compute, rest as long)
    on_pause: str = "finish"  # finish the task in hand, or "return" it (give the lease back) at once
    sample_seconds: float = 5.0  # how often the probes are read
    watts: float = 10.0  # the extra draw of one busy core, for the energy estimate (CPU seconds x watts)

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.idle_seconds <= 86_400, "idle_seconds must be 0..86400"),
            (self.max_other_load > 0, "max_other_load must be more than 0 cores"),
            (0 <= self.min_battery_percent <= 100, "min_battery_percent must be 0..100"),
            (20 <= self.max_temperature_c <= 120, "max_temperature_c must be 20..120"),
            (self.threads is None or 1 <= self.threads <= 1024, "threads must be 1..1024"),
            (0.05 <= self.duty_cycle <= 1.0, "duty_cycle must be 0.05..1"),
            (self.on_pause in ("finish", "return"), "on_pause must be finish or return"),
            (0.1 <= self.sample_seconds <= 600, "sample_seconds must be 0.1..600"),
            (0 < self.watts <= 10_000, "watts must be more than 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"worker policy: {message}")


_POLICY_TYPES: dict[str, type | tuple[type, ...]] = {
    "always": bool, "idle_seconds": (int, float), "max_other_load": (int, float), "run_on_battery": bool,
    "min_battery_percent": (int, float), "max_temperature_c": (int, float), "windows": list, "threads": int,
    "duty_cycle": (int, float), "on_pause": str, "sample_seconds": (int, float), "watts": (int, float),
}


@dataclass(frozen=True)
class BondSettings:
    """Auto-bonding (worker/bonding.py), from [bond] in the config file, flags and environment."""

    auto_bond: bool = True  # lock earned credits in the bond, so that single issue may pick this worker
    max_bond: int = 1000  # the most credits auto-bonding keeps in the bond (its target follows prices up to this)

    def __post_init__(self) -> None:
        if not 0 <= self.max_bond <= 2**53 - 1:
            raise UserError("worker bond: max_bond must be a whole number of credits from 0 to 2^53 - 1")


_BOND_TYPES: dict[str, type | tuple[type, ...]] = {"auto_bond": bool, "max_bond": int}

# The worker config file's tables. A setting's name is the same in its table, in DEPIN_WORKER_<NAME> and (with
# dashes) in its flag, so names are unique across tables.
_TABLES = {"policy": _POLICY_TYPES, "bond": _BOND_TYPES}


def _table(file: Mapping[str, Any], name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of table `name` from a parsed config file, then those of `overrides` that belong to it; checked
    for unknown names (in the file) and types."""
    kinds = _TABLES[name]
    table = file.get(name, {})
    if not isinstance(table, dict):
        raise UserError(f"worker config: {name} must be a table ([{name}])")
    unknown = sorted(set(file) - set(_TABLES)) + sorted(set(table) - set(kinds))
    if unknown:
        raise UserError(f"worker config: unknown setting {unknown[0]!r}")
    values: dict[str, Any] = {}
    mine = {k: v for k, v in overrides.items() if k in kinds and v is not None}
    for key, value in {**table, **mine}.items():
        kind = kinds[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise UserError(f"worker config: {key} has the wrong type ({type(value).__name__})")
        values[key] = value
    return values


def policy_settings(file: Mapping[str, Any], overrides: Mapping[str, Any]) -> PolicySettings:
    """Settings from a parsed config file's [policy] table, then `overrides` (flags and environment) on top."""
    values = _table(file, "policy", overrides)
    if "windows" in values:
        values["windows"] = tuple(Window.parse(str(w)) for w in values["windows"])
    return PolicySettings(**values)


def bond_settings(file: Mapping[str, Any], overrides: Mapping[str, Any]) -> BondSettings:
    """Settings from a parsed config file's [bond] table, then `overrides` (flags and environment) on top."""
    return BondSettings(**_table(file, "bond", overrides))


def read_toml(path: Path, required: bool) -> dict[str, Any]:
    """A TOML config file as a dict ({} if it is absent and not `required`)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise UserError(f"no config file {path}") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path}: {exc}") from None


def page_port(flag: int | None, disabled: bool, env: Mapping[str, str]) -> int | None:
    """The owner's page port: --no-page, else --page-port, else DEPIN_WORKER_PAGE_PORT (a port or "off"), else 8643."""
    if disabled:
        return None
    if flag is not None:
        if not 0 <= flag <= 65535:
            raise UserError("--page-port must be a port number (0 picks a free one)")
        return flag
    raw = env.get("DEPIN_WORKER_PAGE_PORT")
    if raw is None:
        return DEFAULT_PAGE_PORT
    if raw.lower() == "off":
        return None
    if not raw.isdigit() or int(raw) > 65535:
        raise UserError("DEPIN_WORKER_PAGE_PORT must be a port number or off")
    return int(raw)


def probe_root(env: Mapping[str, str]) -> Path:
    """Where the worker reads /proc and /sys: DEPIN_WORKER_PROBE_ROOT (a container with the host's mounted
    elsewhere, or a test's recorded machine), else /."""
    return Path(env.get("DEPIN_WORKER_PROBE_ROOT") or "/")


def settings_from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """DEPIN_WORKER_<SETTING> variables as overrides of the config file's settings (numbers, true/false,
    windows separated by ';')."""
    out: dict[str, Any] = {}
    for key, kind in ((k, v) for kinds in _TABLES.values() for k, v in kinds.items()):
        raw = env.get(f"DEPIN_WORKER_{key.upper()}")
        if raw is None:
            continue
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise UserError(f"DEPIN_WORKER_{key.upper()} must be true or false")
            out[key] = raw.lower() in ("1", "true", "yes")
        elif kind is list:
            out[key] = [w for w in raw.split(";") if w.strip()]
        elif kind is str:
            out[key] = raw
        else:
            try:
                out[key] = int(raw) if kind is int else float(raw)
            except ValueError:
                raise UserError(f"DEPIN_WORKER_{key.upper()} must be a number") from None
    return out


@dataclass(frozen=True)
class WorkerConfig:
    """`depin worker` settings."""

    coordinator: str
    data_dir: Path
    coordinator_key: str | None  # hex public key to pin, from --coordinator-key
    batch: int | None = None  # tasks per lease request; None: adaptive, ~100 ms of work (worker.batching)
    poll_ms: int = 20_000
    once: bool = False
    max_backoff_s: float = 30.0
    owner: str | None = None  # the owner's party id, sent with lease requests
    min_price: int = 0  # lease only tasks of jobs paying at least this per validated result
    published_kernels: bool = True  # also run published kernels, in the sandbox (--kernels all; docs/KERNELS.md 7)
    audit_interval_ms: int = 30_000  # how often to fetch a checkpoint and check credits and consistency
    policy: PolicySettings = PolicySettings()
    bond: BondSettings = BondSettings()
    page_port: int | None = 8643  # the owner's page on 127.0.0.1 (None: no page; 0: any free port)
    probe_root: Path = Path("/")  # where /proc and /sys are read from

    def __post_init__(self) -> None:
        if self.batch is not None and not 1 <= self.batch <= 256:
            raise UserError("--batch must be 'auto' or between 1 and 256")
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
