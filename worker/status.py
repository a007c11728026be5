"""What the worker is doing right now, as plain data: the daemon writes it, the owner's page and `depin worker status`
read it.

`Board` is the single place the daemon records its state (running, paused with a reason, stopping, alarm), the task
in hand, its counters and its bond. `snapshot()` turns it into the JSON the owner's page serves at /api/status; the
daemon also writes that snapshot to DATA_DIR/status.json (atomically, through a `Publisher`) so `depin worker status`
works without the page. It writes it at once when something an owner acts on changes (running or paused, an alarm,
stopped, a policy sample, a bond), and otherwise at most every `WRITE_EVERY_S` (`Throttle`): on tiny tasks the board
changes thousands of times a second, and rewriting the file each time was a fifth of the worker's time. The page
reads the board itself, never stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("depin.worker")

STATES = ("starting", "running", "paused", "stopping", "stopped", "alarm")
WRITE_EVERY_S = 0.5  # how stale status.json may be about counters and the task in hand


@dataclass
class CurrentTask:
    """The task in hand."""

    lease_id: str
    task_id: str
    job_id: str
    kernel: str
    price: int
    started_ms: int
    chunks_done: int = 0
    chunks_total: int = 1


@dataclass
class BondState:
    """Auto-bonding as the owner sees it (worker.bonding): the bond and balance last read, the target, and why."""

    auto_bond: bool
    max_bond: int
    target: int | None = None
    bonded: int | None = None  # credits in bond:<worker id>
    balance: int | None = None  # spendable credits
    note: str = "not checked yet"

    def summary(self) -> str:
        """One line for the owner (depin worker status, the owner's page)."""
        held = "bond not read yet" if self.bonded is None else f"{self.bonded} credits bonded, {self.balance} spendable"
        if not self.auto_bond:
            return f"{held}; auto-bond off"
        goal = "no target yet" if self.target is None else f"target {self.target}"
        return f"{held}; auto-bond ({goal}, max {self.max_bond}): {self.note}"


@dataclass
class Board:
    """The worker's live state."""

    worker_id: str
    coordinator: str
    state: str = "starting"
    reason: str = "starting up"
    since_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    task: CurrentTask | None = None
    computed: int = 0
    accepted: int = 0
    rejected: int = 0
    # CPU time of the worker process while it computed (the kernels, and what its event loop did meanwhile: sending
    # the last batch, leasing the next), since its data dir was created (persisted)
    cpu_seconds: float = 0.0
    readings: dict[str, Any] = field(default_factory=dict)  # the policy's last inputs (load, battery, temperature...)
    bond: BondState | None = None

    def move(self, state: str, reason: str, now_ms: int | None = None) -> bool:
        """Enter `state` for `reason`; whether anything changed."""
        if state not in STATES:
            raise ValueError(f"unknown worker state {state!r}")
        if (state, reason) == (self.state, self.reason):
            return False
        self.state, self.reason = state, reason
        self.since_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return True

    def snapshot(self) -> dict[str, Any]:
        """The JSON-ready view (the `state` part of /api/status and of status.json)."""
        task = self.task  # the computing thread replaces it between tasks: read it once
        out = asdict(self)
        out["task"] = None if task is None else asdict(task)
        if self.bond is not None:
            out["bond"]["summary"] = self.bond.summary()
        return out


@dataclass
class Throttle:
    """When to write status.json next: at once when urgent or when `every_s` has passed since the last write, else
    after the rest of that interval (the daemon then writes the board as it is by then)."""

    every_s: float = WRITE_EVERY_S
    last: float | None = None  # monotonic time of the last write

    def delay(self, now: float, urgent: bool = False) -> float:
        """Seconds to wait before writing; 0 means now."""
        if urgent or self.last is None:
            return 0.0
        return max(0.0, self.last + self.every_s - now)

    def wrote(self, now: float) -> None:
        """Note a write at `now`."""
        self.last = now


class Publisher:
    """Writes the board to status.json through a Throttle: at once when urgent, else when the interval is up, by a
    timer on the running event loop, showing the board as it is then (at once when there is no loop)."""

    def __init__(self, path: Path, board: Board, throttle: Throttle | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.board, self.clock = path, board, clock
        self.throttle = throttle or Throttle()
        self._timer: asyncio.TimerHandle | None = None

    def publish(self, urgent: bool = False) -> None:
        """Write now when `urgent` or due, else once the interval is up (one write for every call meanwhile)."""
        delay = self.throttle.delay(self.clock(), urgent)
        if delay > 0:
            if self._timer is not None:
                return
            try:
                self._timer = asyncio.get_running_loop().call_later(delay, self._write)
                return
            except RuntimeError:  # no event loop: write now
                pass
        self._write()

    def _write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.throttle.wrote(self.clock())
        try:
            write(self.path, {**self.board.snapshot(), "pid": os.getpid()})
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc.strerror)


def write(path: Path, snapshot: dict[str, Any]) -> None:
    """Replace `path` with the snapshot atomically (a reader never sees half a file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(snapshot, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read(path: Path) -> dict[str, Any] | None:
    """The last snapshot written, if any."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
