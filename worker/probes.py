"""Small readers of the machine's state, one per input of the run policy; tests replace them with recorded values.

Each probe returns None when the machine cannot tell (no logind, no battery, no thermal zone), and the policy
then ignores that input. The load probe measures what *other* processes use: the CPU time of the whole machine
(/proc/stat) minus this process's own (/proc/self/stat, all its threads), between two samples, in cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.policy import Readings


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def battery(root: Path = Path("/sys/class/power_supply")) -> tuple[bool | None, float | None]:
    """(on battery, charge percent): on battery when a battery discharges and no mains supply is online."""
    if not root.is_dir():
        return None, None
    mains_online, discharging, levels = False, False, []
    for supply in sorted(root.iterdir()):
        kind = _read(supply / "type")
        if kind == "Mains" and _read(supply / "online") == "1":
            mains_online = True
        elif kind == "Battery" and _read(supply / "scope") != "Device":  # not a wireless mouse's battery
            if _read(supply / "status") == "Discharging":
                discharging = True
            level = _read(supply / "capacity")
            if level is not None and level.isdigit():
                levels.append(float(level))
    if not levels and not discharging:
        return None, None
    return (discharging and not mains_online), (min(levels) if levels else None)


def temperature(root: Path = Path("/sys/class/thermal")) -> float | None:
    """The hottest thermal zone, in °C (a Raspberry Pi has one: thermal_zone0)."""
    hottest = None
    for zone in sorted(root.glob("thermal_zone*")) if root.is_dir() else []:
        raw = _read(zone / "temp")
        try:
            celsius = int(raw or "") / 1000
        except ValueError:
            continue  # an unreadable zone says nothing
        hottest = celsius if hottest is None else max(hottest, celsius)
    return hottest


def user_idle(run: Callable[[list[str]], str | None] | None = None) -> bool | None:
    """logind's view: True when every session is idle, False when one is not, None without logind or sessions."""
    if run is None:
        if shutil.which("loginctl") is None:
            return None
        run = _run
    listing = run(["loginctl", "list-sessions", "--no-legend"])
    if not listing:
        return None
    hints = [run(["loginctl", "show-session", line.split()[0], "-p", "IdleHint", "--value"])
             for line in listing.splitlines() if line.strip()]
    known = [h for h in hints if h in ("yes", "no")]
    return None if not known else all(h == "yes" for h in known)


def _run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@dataclass
class LoadProbe:
    """Cores used by other processes since the previous sample (None on the first)."""

    proc: Path = Path("/proc")
    _last: tuple[int, int, int] | None = None  # (machine busy ticks, machine total ticks, own ticks)

    def sample(self) -> float | None:
        """Read /proc now and compare with the previous sample."""
        stat, own = _read(self.proc / "stat"), _read(self.proc / "self" / "stat")
        if stat is None or own is None:
            return None
        try:
            cpus = stat.splitlines()
            fields = [int(x) for x in cpus[0].split()[1:]]
            total = sum(fields[:8])
            busy = total - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait
            after_name = own.rsplit(")", 1)[1].split()
            mine = int(after_name[11]) + int(after_name[12])  # utime + stime of every thread of this process
        except (ValueError, IndexError):
            return None  # not the format this probe knows: no reading, rather than no worker
        ncpu = sum(1 for line in cpus[1:] if line.startswith("cpu")) or 1
        last, self._last = self._last, (busy, total, mine)
        if last is None or total <= last[1]:
            return None
        others = max(0, (busy - last[0]) - (mine - last[2]))
        return ncpu * others / (total - last[1])


@dataclass
class Probes:
    """Every probe, read together into one Readings."""

    load: LoadProbe
    power: Callable[[], tuple[bool | None, float | None]] = battery
    heat: Callable[[], float | None] = temperature
    idle: Callable[[], bool | None] = user_idle
    clock: Callable[[], float] = time.time

    @classmethod
    def of_this_machine(cls, root: Path = Path("/")) -> Probes:
        """The real probes, reading /proc and /sys under `root`."""
        power_root, thermal_root = root / "sys/class/power_supply", root / "sys/class/thermal"
        return cls(load=LoadProbe(root / "proc"), power=lambda: battery(power_root),
                   heat=lambda: temperature(thermal_root), idle=user_idle if root == Path("/") else lambda: None)

    def read(self) -> Readings:
        """One sample."""
        now = self.clock()
        local = time.localtime(now)
        on_battery, percent = self.power()
        return Readings(now_ms=int(now * 1000), weekday=local.tm_wday, minute=local.tm_hour * 60 + local.tm_min,
                        user_idle=self.idle(), other_load=self.load.sample(), on_battery=on_battery,
                        battery_percent=percent, temperature_c=self.heat())


def cpu_count() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0))
