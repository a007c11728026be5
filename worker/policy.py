"""When the worker may compute: a pure decision from readings of the machine, with hysteresis.

`decide(settings, readings, memory)` answers run or pause, with the reason a person would want to read ("the
machine is in use: other programs use 1.3 cores"), and the memory the next call needs. Every input comes from a
probe (worker/probes.py) as a `Readings`; a reading the machine cannot give is None and never pauses anything.
Hysteresis keeps the worker from flapping: it pauses at a threshold and resumes only a margin below it, and after
the machine was in use it waits `idle_seconds` of quiet before starting again. The order of the checks is the
order of the reasons shown: time window, battery, temperature, the machine in use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from depin.config import PolicySettings, Window

TEMP_MARGIN_C = 5.0  # resume only this far below the temperature limit
BATTERY_MARGIN = 5.0  # resume only this many percent above the battery limit
LOAD_RESUME_FACTOR = 0.5  # after a pause for load, other programs must use less than half the limit


@dataclass(frozen=True)
class Readings:
    """One sample of the machine; None where a probe has nothing to say."""

    now_ms: int
    weekday: int  # 0 = Monday, local time
    minute: int  # minute of the local day, 0..1439
    user_idle: bool | None = None  # logind: every session idle (None: no logind, or no session)
    other_load: float | None = None  # cores used by other processes, not counting this worker
    on_battery: bool | None = None
    battery_percent: float | None = None
    temperature_c: float | None = None  # the hottest thermal zone


@dataclass(frozen=True)
class Decision:
    """Run or pause, and why."""

    run: bool
    reason: str


@dataclass(frozen=True)
class Memory:
    """What `decide` remembers between calls."""

    running: bool = False
    busy: bool = False  # paused because the machine is in use
    hot: bool = False
    low_battery: bool = False
    quiet_since_ms: int | None = None  # when the machine was last seen becoming idle


def in_windows(windows: tuple[Window, ...], weekday: int, minute: int) -> bool:
    """Whether local time (weekday, minute of day) falls in any allowed window (no windows: always)."""
    if not windows:
        return True
    for w in windows:
        if w.start <= w.end:
            if weekday in w.days and w.start <= minute < w.end:
                return True
        elif (weekday in w.days and minute >= w.start) or ((weekday - 1) % 7 in w.days and minute < w.end):
            return True  # a window across midnight belongs to the day it starts on
    return False


def decide(s: PolicySettings, r: Readings, m: Memory) -> tuple[Decision, Memory]:
    """The decision for these readings, and the memory for the next call."""
    hot = r.temperature_c is not None and (
        r.temperature_c >= s.max_temperature_c or (m.hot and r.temperature_c > s.max_temperature_c - TEMP_MARGIN_C))
    low = bool(r.on_battery) and r.battery_percent is not None and (
        r.battery_percent < s.min_battery_percent
        or (m.low_battery and r.battery_percent < s.min_battery_percent + BATTERY_MARGIN))
    limit = s.max_other_load * (LOAD_RESUME_FACTOR if m.busy else 1.0)
    in_use = r.user_idle is False or (r.other_load is not None and r.other_load > limit)
    quiet_since = None if in_use else (m.quiet_since_ms if m.quiet_since_ms is not None else r.now_ms)
    waited = quiet_since is not None and r.now_ms - quiet_since >= s.idle_seconds * 1000
    memory = replace(m, hot=hot, low_battery=low, quiet_since_ms=quiet_since)

    def pause(reason: str, busy: bool = False) -> tuple[Decision, Memory]:
        return Decision(False, reason), replace(memory, running=False, busy=busy)

    if not in_windows(s.windows, r.weekday, r.minute):
        return pause("outside the allowed hours (" + ", ".join(w.text for w in s.windows) + ")")
    if r.on_battery and not s.run_on_battery:
        return pause("on battery")
    if low:
        return pause(f"battery at {r.battery_percent:.0f}%, below {s.min_battery_percent:g}%")
    if hot:
        return pause(f"CPU at {r.temperature_c:.0f} °C, limit {s.max_temperature_c:.0f} °C")
    if in_use:
        if r.user_idle is False:
            return pause("the machine is in use (someone is at the keyboard)", busy=True)
        return pause(f"the machine is in use: other programs use {r.other_load:.1f} cores (limit {limit:.1f})",
                     busy=True)
    if (m.busy or not m.running) and not waited:
        assert quiet_since is not None
        left = math.ceil(s.idle_seconds - (r.now_ms - quiet_since) / 1000)
        return pause(f"waiting for the machine to stay idle ({left} s more)", busy=m.busy)
    return Decision(True, "idle: computing"), replace(memory, running=True, busy=False)
