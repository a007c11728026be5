"""worker.policy on recorded readings: traces of a laptop's day, a Raspberry Pi heating up, other programs' load
spikes; hysteresis (no flapping around a limit, resume only after idle_seconds of quiet); every reason; time windows
across midnight; None readings never pause. Then the daemon's side: `_sample_policy` with a fake Probes (always on,
paused, readings on the board, status.json), and a paused worker leasing nothing and giving back grants it has not
started when a pause begins."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from depin import codec
from depin.config import PolicySettings, Window, WorkerConfig
from depin.crypto import SigningKey, open_envelope
from depin.protocol import AckItem, ResultsAck, ResultsRequest
from worker import policy, tasks, witness
from worker.daemon import Worker
from worker.policy import Decision, Memory, Readings, decide, in_windows
from worker.probes import LoadProbe, Probes

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def hm(text: str) -> int:
    """'19:30' as a minute of the day."""
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def at(t_s: float, weekday: int = WED, minute: int = hm("12:00"), **values: Any) -> Readings:
    """A reading `t_s` seconds into a recording (the minute of the day advances with it)."""
    return Readings(now_ms=int(t_s * 1000), weekday=weekday, minute=(minute + int(t_s) // 60) % 1440, **values)


def play(settings: PolicySettings, trace: Iterable[Readings],
         memory: Memory | None = None) -> list[tuple[int, bool, str]]:
    """Feed a recording to `decide`, carrying its memory along: (second, run, reason) per reading."""
    m = memory or Memory()
    out = []
    for r in trace:
        d, m = decide(settings, r, m)
        out.append((r.now_ms // 1000, d.run, d.reason))
    return out


def switches(decisions: list[tuple[int, bool, str]]) -> int:
    """How many times the decision flipped between run and pause."""
    runs = [run for _, run, _ in decisions]
    return sum(1 for a, b in zip(runs, runs[1:], strict=False) if a != b)


RUN = "idle: computing"
KEYBOARD = "the machine is in use (someone is at the keyboard)"


# ---- recorded traces ---------------------------------------------------------------------------------------------


def test_a_laptop_day_on_battery_allowed_down_to_40_percent() -> None:
    s = PolicySettings(idle_seconds=60, run_on_battery=True, min_battery_percent=40)
    plugged: dict[str, Any] = {"on_battery": False, "battery_percent": 95.0, "other_load": 0.1}
    trace = [
        at(0, user_idle=False, **plugged),  # typing
        at(30, user_idle=False, **plugged),
        at(60, user_idle=True, **plugged),  # goes for a coffee: quiet from here
        at(90, user_idle=True, **plugged),
        at(119, user_idle=True, **plugged),
        at(120, user_idle=True, **plugged),  # 60 s of quiet
        at(180, user_idle=True, on_battery=True, battery_percent=60.0, other_load=0.1),  # unplugged
        at(240, user_idle=True, on_battery=True, battery_percent=45.0, other_load=0.1),
        at(300, user_idle=True, on_battery=True, battery_percent=39.0, other_load=0.1),
        at(330, user_idle=True, on_battery=True, battery_percent=42.0, other_load=0.1),  # a gauge's hiccup upwards
        at(360, user_idle=True, on_battery=True, battery_percent=35.0, other_load=0.1),
        at(420, user_idle=True, on_battery=False, battery_percent=36.0, other_load=0.1),  # plugged back in
        at(480, user_idle=True, on_battery=False, battery_percent=50.0, other_load=0.1),
    ]
    assert play(s, trace) == [
        (0, False, KEYBOARD),
        (30, False, KEYBOARD),
        (60, False, "waiting for the machine to stay idle (60 s more)"),
        (90, False, "waiting for the machine to stay idle (30 s more)"),
        (119, False, "waiting for the machine to stay idle (1 s more)"),
        (120, True, RUN),
        (180, True, RUN),  # allowed on battery, above 40 %
        (240, True, RUN),
        (300, False, "battery at 39%, below 40%"),
        (330, False, "battery at 42%, below 40%"),  # hysteresis: not before 45 %
        (360, False, "battery at 35%, below 40%"),
        (420, True, RUN),  # on mains the charge level does not matter, and the machine stayed quiet
        (480, True, RUN),
    ]


def test_a_laptop_day_not_allowed_on_battery() -> None:
    s = PolicySettings(idle_seconds=60)
    trace = [at(t, user_idle=True, other_load=0.0, on_battery=False, battery_percent=80.0) for t in (0, 60)]
    trace += [at(t, user_idle=True, other_load=0.0, on_battery=True, battery_percent=p)
              for t, p in ((120, 79.0), (600, 70.0), (3600, 35.0))]
    trace += [at(t, user_idle=True, other_load=0.0, on_battery=False, battery_percent=p)
              for t, p in ((3660, 35.0), (3720, 36.0))]
    assert play(s, trace) == [
        (0, False, "waiting for the machine to stay idle (60 s more)"),  # the idle time applies at start-up too
        (60, True, RUN),
        (120, False, "on battery"),
        (600, False, "on battery"),
        (3600, False, "on battery"),  # not "battery at 35%": on battery at all is the reason
        (3660, True, RUN),
        (3720, True, RUN),
    ]


def test_a_raspberry_pi_heating_up_and_cooling_down() -> None:
    s = PolicySettings(idle_seconds=0)  # a Pi without logind sessions: only heat and load speak
    temps = [55.0, 68.0, 77.0, 79.9, 80.0, 82.0, 81.0, 79.0, 77.0, 75.1, 75.0, 70.0, 79.0, 80.5]
    got = play(s, [at(10 * i, temperature_c=t) for i, t in enumerate(temps)])
    assert [(run, reason) for _, run, reason in got] == [
        (True, RUN), (True, RUN), (True, RUN), (True, RUN),
        (False, "CPU at 80 °C, limit 80 °C"),  # the limit itself pauses
        (False, "CPU at 82 °C, limit 80 °C"),
        (False, "CPU at 81 °C, limit 80 °C"),
        (False, "CPU at 79 °C, limit 80 °C"),  # below the limit but within the 5 °C margin: still cooling
        (False, "CPU at 77 °C, limit 80 °C"),
        (False, "CPU at 75 °C, limit 80 °C"),  # 75.1: not yet
        (True, RUN),  # 75.0: the margin reached
        (True, RUN),
        (True, RUN),  # 79 when not hot: below the limit, runs
        (False, "CPU at 80 °C, limit 80 °C"),  # 80.5
    ]


def test_temperature_oscillating_around_the_limit_pauses_once_and_does_not_flap() -> None:
    s = PolicySettings(idle_seconds=0, max_temperature_c=80)
    temps = [78.0, 79.0, 81.0] + [78.0, 81.0, 79.0, 80.0, 78.5, 80.9, 78.0, 81.0] * 5
    got = play(s, [at(5 * i, temperature_c=t) for i, t in enumerate(temps)])
    assert [run for _, run, _ in got[:3]] == [True, True, False]
    assert all(not run for _, run, _ in got[2:])
    assert switches(got) == 1


def test_load_spikes_from_other_programs() -> None:
    s = PolicySettings(idle_seconds=30, max_other_load=1.0)
    loads = {0: 0.1, 5: 0.2, 10: 0.1, 15: 0.1, 20: 0.1, 25: 0.1, 30: 0.1,  # quiet from 0: runs at 30
             35: 1.3,  # a compiler starts
             40: 2.0, 45: 0.7,  # ends; 0.7 is under the limit but over half of it: still in use
             50: 0.4, 55: 0.45,  # quiet again from 50 (below 0.5)
             60: 0.6,  # a short spike over half the limit: the quiet time starts over
             65: 0.2, 70: 0.3, 80: 0.2, 90: 0.1, 94: 0.1, 95: 0.1,  # 30 s quiet from 65
             100: 0.9}  # while running, up to the limit itself is fine
    got = play(s, [at(t, other_load=v) for t, v in loads.items()])
    assert got == [
        (0, False, "waiting for the machine to stay idle (30 s more)"),
        (5, False, "waiting for the machine to stay idle (25 s more)"),
        (10, False, "waiting for the machine to stay idle (20 s more)"),
        (15, False, "waiting for the machine to stay idle (15 s more)"),
        (20, False, "waiting for the machine to stay idle (10 s more)"),
        (25, False, "waiting for the machine to stay idle (5 s more)"),
        (30, True, RUN),
        (35, False, "the machine is in use: other programs use 1.3 cores (limit 1.0)"),
        (40, False, "the machine is in use: other programs use 2.0 cores (limit 0.5)"),
        (45, False, "the machine is in use: other programs use 0.7 cores (limit 0.5)"),
        (50, False, "waiting for the machine to stay idle (30 s more)"),
        (55, False, "waiting for the machine to stay idle (25 s more)"),
        (60, False, "the machine is in use: other programs use 0.6 cores (limit 0.5)"),
        (65, False, "waiting for the machine to stay idle (30 s more)"),
        (70, False, "waiting for the machine to stay idle (25 s more)"),
        (80, False, "waiting for the machine to stay idle (15 s more)"),
        (90, False, "waiting for the machine to stay idle (5 s more)"),
        (94, False, "waiting for the machine to stay idle (1 s more)"),
        (95, True, RUN),
        (100, True, RUN),
    ]


def test_load_hovering_around_the_limit_pauses_once() -> None:
    s = PolicySettings(idle_seconds=10, max_other_load=0.5)
    loads = [0.1, 0.1, 0.1, 0.45, 0.55] + [0.45, 0.55, 0.49, 0.51, 0.3, 0.6] * 6
    got = play(s, [at(5 * i, other_load=v) for i, v in enumerate(loads)])
    assert [run for _, run, _ in got[:5]] == [False, False, True, True, False]
    assert all(not run for _, run, _ in got[4:])
    assert switches(got) == 2  # waiting -> running -> paused, then no flapping


def test_someone_at_the_keyboard_overrides_a_quiet_load() -> None:
    s = PolicySettings(idle_seconds=20)
    trace = [at(0, user_idle=True, other_load=0.0), at(20, user_idle=True, other_load=0.0),
             at(25, user_idle=False, other_load=0.0), at(30, user_idle=True, other_load=0.0),
             at(45, user_idle=True, other_load=0.0), at(50, user_idle=True, other_load=0.0)]
    assert play(s, trace) == [
        (0, False, "waiting for the machine to stay idle (20 s more)"),
        (20, True, RUN),
        (25, False, KEYBOARD),
        (30, False, "waiting for the machine to stay idle (20 s more)"),
        (45, False, "waiting for the machine to stay idle (5 s more)"),
        (50, True, RUN),
    ]


def test_a_user_who_just_left_still_counts_as_in_use_when_other_programs_are_busy() -> None:
    s = PolicySettings(idle_seconds=0, max_other_load=0.5)
    got = play(s, [at(0, user_idle=True, other_load=1.5)])
    assert got == [(0, False, "the machine is in use: other programs use 1.5 cores (limit 0.5)")]


def test_quiet_time_accumulates_during_another_pause() -> None:
    # Idle for an hour on battery: plugging in resumes at once, without another idle_seconds.
    s = PolicySettings(idle_seconds=60)
    trace = [at(t, user_idle=True, on_battery=True, battery_percent=90.0) for t in range(0, 3600, 600)]
    trace.append(at(3600, user_idle=True, on_battery=False, battery_percent=90.0))
    got = play(s, trace)
    assert {reason for _, _, reason in got[:-1]} == {"on battery"}
    assert got[-1] == (3600, True, RUN)


def test_quiet_time_starts_over_when_the_machine_is_used_during_another_pause() -> None:
    s = PolicySettings(idle_seconds=60)
    trace = [at(0, user_idle=True, temperature_c=90.0), at(100, user_idle=False, temperature_c=90.0),
             at(130, user_idle=True, temperature_c=60.0), at(190, user_idle=True, temperature_c=60.0)]
    assert play(s, trace) == [
        (0, False, "CPU at 90 °C, limit 80 °C"),  # heat outranks the user
        (100, False, "CPU at 90 °C, limit 80 °C"),
        (130, False, "waiting for the machine to stay idle (60 s more)"),
        (190, True, RUN),
    ]


def test_the_battery_margin_is_exactly_five_percent() -> None:
    s = PolicySettings(idle_seconds=0, run_on_battery=True, min_battery_percent=30)
    levels = [31.0, 30.0, 29.9, 34.9, 35.0, 31.0, 29.0]
    got = play(s, [at(i, on_battery=True, battery_percent=p) for i, p in enumerate(levels)])
    assert [run for _, run, _ in got] == [True, True, False, False, True, True, False]


def test_resuming_needs_exactly_idle_seconds_of_quiet() -> None:
    s = PolicySettings(idle_seconds=2.5)
    trace = [Readings(now_ms=ms, weekday=WED, minute=600, other_load=0.0) for ms in (1000, 3499, 3500, 3600)]
    assert [d for _, d, _ in play(s, trace)] == [False, False, True, True]


def test_idle_seconds_zero_runs_at_once() -> None:
    assert play(PolicySettings(idle_seconds=0), [at(0, user_idle=True, other_load=0.0)]) == [(0, True, RUN)]


def test_decide_is_pure() -> None:
    s = PolicySettings(idle_seconds=5)
    r = at(100, user_idle=False, other_load=0.3, temperature_c=60.0)
    m = Memory(running=True, quiet_since_ms=0)
    first = decide(s, r, m)
    assert decide(s, r, m) == first
    assert m == Memory(running=True, quiet_since_ms=0)  # frozen: the caller's memory is untouched


# ---- every reason, and their order -----------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "reading", "reason"), [
    (PolicySettings(windows=(Window.parse("Mon-Fri 19:00-07:00"), Window.parse("Sat,Sun 00:00-24:00"))),
     at(0, weekday=WED, minute=hm("12:00")), "outside the allowed hours (Mon-Fri 19:00-07:00, Sat,Sun 00:00-24:00)"),
    (PolicySettings(), at(0, on_battery=True, battery_percent=99.0), "on battery"),
    (PolicySettings(run_on_battery=True, min_battery_percent=40), at(0, on_battery=True, battery_percent=12.4),
     "battery at 12%, below 40%"),
    (PolicySettings(max_temperature_c=70), at(0, temperature_c=71.6), "CPU at 72 °C, limit 70 °C"),
    (PolicySettings(), at(0, user_idle=False), KEYBOARD),
    (PolicySettings(max_other_load=0.5), at(0, other_load=1.26),
     "the machine is in use: other programs use 1.3 cores (limit 0.5)"),
    (PolicySettings(idle_seconds=60), at(0), "waiting for the machine to stay idle (60 s more)"),
    (PolicySettings(idle_seconds=0), at(0), RUN),
], ids=["window", "battery", "low-battery", "hot", "keyboard", "load", "waiting", "run"])
def test_every_reason(settings: PolicySettings, reading: Readings, reason: str) -> None:
    decision, _ = decide(settings, reading, Memory())
    assert decision == Decision(reason == RUN, reason)


def test_the_default_battery_limit_reads_as_a_whole_percent() -> None:
    decision, _ = decide(PolicySettings(run_on_battery=True), at(0, on_battery=True, battery_percent=20.0), Memory())
    assert decision.reason.startswith("battery at 20%, below 40")  # 40 or 40.0: the default is a float


def test_reasons_come_in_order_window_battery_heat_use() -> None:
    s = PolicySettings(idle_seconds=0, windows=(Window.parse("Sat 10:00-11:00"),))
    everything: dict[str, Any] = {"user_idle": False, "other_load": 3.0, "on_battery": True, "battery_percent": 5.0,
                  "temperature_c": 95.0}
    order = [
        (at(0, weekday=MON, **everything), "outside the allowed hours (Sat 10:00-11:00)"),
        (at(0, weekday=SAT, minute=hm("10:00"), **everything), "on battery"),
        (at(0, weekday=SAT, minute=hm("10:00"), **{**everything, "on_battery": False}), "CPU at 95 °C, limit 80 °C"),
        (at(0, weekday=SAT, minute=hm("10:00"), **{**everything, "on_battery": False, "temperature_c": 40.0}),
         KEYBOARD),
    ]
    for reading, reason in order:
        assert decide(s, reading, Memory())[0] == Decision(False, reason)
    low = PolicySettings(idle_seconds=0, run_on_battery=True, min_battery_percent=40)
    assert decide(low, at(0, **everything), Memory())[0] == Decision(False, "battery at 5%, below 40%")


# ---- None never pauses -----------------------------------------------------------------------------------------------


def test_a_machine_that_cannot_tell_anything_runs() -> None:
    s = PolicySettings(idle_seconds=0)
    assert play(s, [at(0), at(5), at(10)]) == [(0, True, RUN), (5, True, RUN), (10, True, RUN)]


@pytest.mark.parametrize("missing", ["user_idle", "other_load", "on_battery", "battery_percent", "temperature_c"])
def test_each_missing_reading_is_ignored(missing: str) -> None:
    # Everything else says "fine"; the missing one is None: still runs (with the strictest settings).
    s = PolicySettings(idle_seconds=0, run_on_battery=True, min_battery_percent=100, max_temperature_c=20,
                       max_other_load=0.01)
    fine: dict[str, Any] = {"user_idle": True, "other_load": 0.0, "on_battery": False, "battery_percent": 100.0,
            "temperature_c": 19.0}
    assert decide(s, at(0, **{**fine, missing: None}), Memory())[0] == Decision(True, RUN)


def test_a_battery_level_without_knowing_the_power_source_does_not_pause() -> None:
    s = PolicySettings(idle_seconds=0, run_on_battery=True)
    assert decide(s, at(0, on_battery=None, battery_percent=3.0), Memory())[0].run


def test_on_battery_with_an_unknown_level_runs_when_battery_is_allowed() -> None:
    s = PolicySettings(idle_seconds=0, run_on_battery=True)
    assert decide(s, at(0, on_battery=True, battery_percent=None), Memory())[0].run


def test_a_thermal_zone_that_disappears_while_hot_does_not_keep_the_worker_paused() -> None:
    s = PolicySettings(idle_seconds=0)
    got = play(s, [at(0, temperature_c=90.0), at(5, temperature_c=None), at(10, temperature_c=78.0)])
    assert [run for _, run, _ in got] == [False, True, True]


# ---- time windows ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "days", "start", "end"), [
    ("Mon-Fri 19:00-07:00", {MON, TUE, WED, THU, FRI}, hm("19:00"), hm("07:00")),
    ("Sat,Sun 00:00-24:00", {SAT, SUN}, 0, 1440),
    ("22:00-06:00", set(range(7)), hm("22:00"), hm("06:00")),
    ("9:30-17:00", set(range(7)), hm("09:30"), hm("17:00")),
    ("Fri-Mon 10:00-11:00", {FRI, SAT, SUN, MON}, hm("10:00"), hm("11:00")),  # a range may wrap the week
    ("mon,wed,fri 08:00-09:00", {MON, WED, FRI}, hm("08:00"), hm("09:00")),
    ("  SAT-SUN 06:00-23:59  ", {SAT, SUN}, hm("06:00"), hm("23:59")),
    ("Tue,Thu-Sat 00:00-00:01", {TUE, THU, FRI, SAT}, 0, 1),
])
def test_window_parse(text: str, days: set[int], start: int, end: int) -> None:
    w = Window.parse(text)
    assert (w.days, w.start, w.end, w.text) == (frozenset(days), start, end, text.strip())


@pytest.mark.parametrize(("text", "message"), [
    ("Mon-Fri", "expected like 'Mon-Fri 19:00-07:00'"),
    ("", "expected like"),
    ("Mon-Fri 19:00-07:00 please", "expected like"),
    ("Mon - Fri 19:00-07:00", "expected like"),
    ("19:00 - 07:00", "expected like"),
    ("7pm-7am", "expected like"),
    ("Mo-Fr 19:00-07:00", "expected like"),
    ("Mon-Fry 19:00-07:00", "days are Mon Tue Wed Thu Fri Sat Sun"),
    ("Xyz 19:00-07:00", "days are Mon Tue Wed Thu Fri Sat Sun"),
    ("25:00-07:00", "times run from 00:00 to 24:00"),
    ("24:00-07:00", "times run from 00:00 to 24:00"),
    ("19:00-24:01", "times run from 00:00 to 24:00"),
    ("19:60-20:00", "times run from 00:00 to 24:00"),
    ("19:00-20:75", "times run from 00:00 to 24:00"),
    ("19:00-19:00", "start and end differ"),
])
def test_window_parse_refuses(text: str, message: str) -> None:
    from depin.errors import UserError

    with pytest.raises(UserError, match="time window") as caught:
        Window.parse(text)
    assert message in str(caught.value)


NIGHTS = Window.parse("Mon-Fri 19:00-07:00")


@pytest.mark.parametrize(("weekday", "time", "inside"), [
    (FRI, "18:59", False),
    (FRI, "19:00", True),
    (FRI, "23:59", True),
    (SAT, "00:00", True),  # Friday's night goes on past midnight
    (SAT, "03:00", True),
    (SAT, "06:59", True),
    (SAT, "07:00", False),  # the end is not inside
    (SAT, "19:00", False),  # Saturday starts no window
    (SUN, "03:00", False),
    (MON, "03:00", False),  # Sunday night is not a weeknight
    (MON, "12:00", False),
    (MON, "19:00", True),
    (TUE, "06:59", True),  # Monday's night
    (WED, "12:00", False),
])
def test_a_window_across_midnight_belongs_to_the_day_it_starts(weekday: int, time: str, inside: bool) -> None:
    assert in_windows((NIGHTS,), weekday, hm(time)) is inside


@pytest.mark.parametrize(("weekday", "time", "inside"), [
    (SAT, "00:00", True), (SUN, "23:59", True), (MON, "00:00", False), (FRI, "23:59", False),
])
def test_a_whole_day_window(weekday: int, time: str, inside: bool) -> None:
    assert in_windows((Window.parse("Sat,Sun 00:00-24:00"),), weekday, hm(time)) is inside


def test_a_sunday_night_window_ends_on_monday_morning() -> None:
    w = (Window.parse("Sun 22:00-02:00"),)
    assert in_windows(w, MON, hm("01:59"))
    assert not in_windows(w, MON, hm("02:00"))
    assert not in_windows(w, SUN, hm("01:00"))  # Saturday started no window
    assert in_windows(w, SUN, hm("22:00"))


def test_an_every_day_night_window() -> None:
    w = (Window.parse("22:00-06:00"),)
    for day in range(7):
        assert in_windows(w, day, hm("23:00")) and in_windows(w, day, hm("05:59"))
        assert not in_windows(w, day, hm("06:00")) and not in_windows(w, day, hm("21:59"))


def test_several_windows_and_none() -> None:
    both = (NIGHTS, Window.parse("Sat,Sun 00:00-24:00"))
    assert all(in_windows(both, SAT, m) for m in range(0, 1440, 7))
    assert in_windows(both, MON, hm("03:00")) is False  # Sunday's whole day ends at midnight; weeknights start at 19
    assert in_windows(both, MON, hm("20:00"))
    assert all(in_windows((), day, m) for day in range(7) for m in (0, 720, 1439))  # no windows: any time


def test_a_weekend_night_recorded_through_the_policy() -> None:
    # Friday evening to Saturday morning, one reading an hour, with only "Mon-Fri 19:00-07:00" allowed.
    s = PolicySettings(idle_seconds=0, windows=(NIGHTS,))
    trace = [Readings(now_ms=h * 3_600_000, weekday=FRI if h < 24 else SAT, minute=(h % 24) * 60)
             for h in range(17, 33)]
    got = [(r.weekday, r.minute // 60, decide(s, r, Memory())[0].run) for r in trace]
    assert [run for _, _, run in got] == [False, False] + [True] * 12 + [False, False]
    assert got[2] == (FRI, 19, True) and got[13] == (SAT, 6, True) and got[14] == (SAT, 7, False)


# ---- the daemon: _sample_policy with a fake Probes ------------------------------------------------------------------

COORD = SigningKey(bytes([3]) * 32)


@dataclass
class Recorded:
    """A fake machine: plays recorded readings, one per read."""

    readings: Iterator[Readings]
    reads: int = 0

    def probes(self, tmp_path: Path) -> Probes:
        def read() -> Readings:
            self.reads += 1
            return next(self.readings)

        p = Probes(load=LoadProbe(tmp_path / "no-proc"))
        p.read = read  # type: ignore[method-assign]
        return p


def _worker(tmp_path: Path, settings: PolicySettings, probes: Probes, **config: Any) -> Worker:
    return Worker(WorkerConfig(coordinator="http://127.0.0.1:1", data_dir=tmp_path, coordinator_key=None,
                               policy=settings, page_port=None, **config), SigningKey(bytes(32)), probes)


def _status(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "status.json").read_text())  # type: ignore[no-any-return]


async def test_always_on_never_reads_the_probes(tmp_path: Path) -> None:
    import os

    machine = Recorded(iter([]))
    w = _worker(tmp_path, PolicySettings(always=True), machine.probes(tmp_path))
    assert w._allowed.is_set()  # before the first sample, too
    for _ in range(3):
        w._sample_policy()
    assert machine.reads == 0
    assert w._allowed.is_set()
    assert (w.board.state, w.board.reason) == ("running", "always on (--always)")
    assert w.board.readings == {}
    snap = _status(tmp_path)
    assert (snap["state"], snap["reason"], snap["pid"]) == ("running", "always on (--always)", os.getpid())
    w.journal.close()


async def test_sample_policy_pauses_resumes_and_publishes(tmp_path: Path) -> None:
    readings = [at(0, on_battery=True, battery_percent=70.0, temperature_c=50.0, other_load=0.1),
                at(1, on_battery=True, battery_percent=69.0, temperature_c=50.0, other_load=0.1),
                at(2, on_battery=False, battery_percent=69.0, temperature_c=50.0, other_load=0.1),
                at(3, on_battery=False, battery_percent=70.0, temperature_c=85.0, other_load=0.1)]
    machine = Recorded(iter(readings))
    w = _worker(tmp_path, PolicySettings(idle_seconds=0), machine.probes(tmp_path))
    assert not w._allowed.is_set()  # not always on: nothing runs before the first sample

    w._sample_policy()
    assert not w._allowed.is_set()
    assert (w.board.state, w.board.reason) == ("paused", "on battery")
    assert w.board.readings == {"now_ms": 0, "user_idle": None, "other_load": 0.1, "on_battery": True,
                                "battery_percent": 70.0, "temperature_c": 50.0}
    since = w.board.since_ms
    assert _status(tmp_path)["reason"] == "on battery"

    w._sample_policy()  # the same decision: the state's age is kept
    assert (w.board.state, w.board.since_ms) == ("paused", since)
    assert _status(tmp_path)["readings"]["battery_percent"] == 69.0  # but the readings are fresh

    w._sample_policy()
    assert w._allowed.is_set()
    assert (w.board.state, w.board.reason) == ("running", RUN)
    assert _status(tmp_path)["state"] == "running"

    w._sample_policy()
    assert not w._allowed.is_set()
    assert (w.board.state, w.board.reason) == ("paused", "CPU at 85 °C, limit 80 °C")
    assert machine.reads == 4
    w.journal.close()


async def test_sample_policy_keeps_its_memory_between_samples(tmp_path: Path) -> None:
    # Hysteresis lives in the worker's memory: 78 °C after 85 °C stays paused.
    machine = Recorded(iter([at(0, temperature_c=85.0), at(1, temperature_c=78.0), at(2, temperature_c=74.0)]))
    w = _worker(tmp_path, PolicySettings(idle_seconds=0), machine.probes(tmp_path))
    runs = []
    for _ in range(3):
        w._sample_policy()
        runs.append(w._allowed.is_set())
    assert runs == [False, False, True]
    w.journal.close()


async def test_sample_policy_does_not_hide_an_alarm(tmp_path: Path) -> None:
    machine = Recorded(iter([at(0, on_battery=True)]))
    w = _worker(tmp_path, PolicySettings(idle_seconds=0), machine.probes(tmp_path))
    w.board.move("alarm", "LEDGER FORK")
    w._sample_policy()
    assert (w.board.state, w.board.reason) == ("alarm", "LEDGER FORK")
    assert _status(tmp_path)["state"] == "alarm"
    w.journal.close()


def test_probes_read_through_the_real_probe_classes_into_decide(tmp_path: Path) -> None:
    # Probes.of_this_machine on a recorded machine tree, then decide: the whole chain without the daemon.
    supply = tmp_path / "sys/class/power_supply"
    (supply / "AC").mkdir(parents=True)
    (supply / "AC/type").write_text("Mains\n")
    (supply / "AC/online").write_text("0\n")
    (supply / "BAT0").mkdir()
    (supply / "BAT0/type").write_text("Battery\n")
    (supply / "BAT0/status").write_text("Discharging\n")
    (supply / "BAT0/capacity").write_text("64\n")
    probes = Probes.of_this_machine(tmp_path)
    probes.clock = lambda: 1_700_000_000.0
    decision, _ = decide(PolicySettings(idle_seconds=0), probes.read(), Memory())
    assert decision == Decision(False, "on battery")
    (supply / "AC/online").write_text("1\n")
    assert decide(PolicySettings(idle_seconds=0), probes.read(), Memory())[0] == Decision(True, RUN)


# ---- the daemon: paused, it leases nothing; a pause gives back what has not started ----------------------------------


class _Coordinator:
    """The POSTs of a worker cycle: leases (two tasks: the workers ask for them with --batch 2), results (signed
    acks), releases (recorded)."""

    def __init__(self) -> None:
        self.leased = 0
        self.released: list[list[str]] = []

    def _task(self, n: int) -> dict[str, Any]:
        return {"task_id": f"J-{n}", "job_id": "J", "kernel": "mandelbrot", "kernel_version": 1,
                "params": {"width": 8, "height": 2, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2,
                           "max_iter": 20, "row_start": 0, "row_end": 2},
                "coordinator": COORD.id, "price": 3}

    async def post_signed(self, path: str, key: SigningKey, kind: str, payload: dict[str, Any],
                          read_timeout_s: float | None = None) -> Any:
        if path == "/v1/release":
            self.released.append(list(payload["lease_ids"]))
            return {"released": len(payload["lease_ids"])}
        assert (path, kind) == ("/v1/lease", "lease-request")
        self.leased += 1
        grants = []
        for n in range(2):
            body = codec.encode(self._task(n))
            grants.append({"lease_id": f"L{n + 1}", "expires_ms": 1, "task": body, "sig": COORD.sign("task", body)})
        return {"leases": grants}

    async def post(self, path: str, envelope: Any, read_timeout_s: float | None = None) -> Any:
        signer, body = open_envelope("results", envelope)
        items = ResultsRequest.from_payload(body).results
        ack = ResultsAck(worker_id=signer.id, request_nonce=body["nonce"],
                         acks=tuple(AckItem(i.lease_id, "accepted", "") for i in items))
        return COORD.seal("results-ack", ack.to_payload())


async def test_a_paused_worker_leases_nothing_but_wakes_when_allowed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    audits: list[int] = []

    async def audit(*args: object) -> None:
        audits.append(1)

    monkeypatch.setattr(witness, "audit", audit)
    machine = Recorded(iter([at(0, on_battery=True)]))
    w = _worker(tmp_path, PolicySettings(idle_seconds=0), machine.probes(tmp_path), audit_interval_ms=100, batch=2)
    w.coordinator = COORD.verify_key
    w._sample_policy()
    fake = _Coordinator()
    for _ in range(3):  # each paused cycle waits at most an audit interval, audits, and leases nothing
        await asyncio.wait_for(w._cycle(fake), 30)  # type: ignore[arg-type]
    assert fake.leased == 0
    assert audits, "a paused worker still audits the ledger"

    async def allow_soon() -> None:
        await asyncio.sleep(0.05)
        w._allowed.set()

    w.config = WorkerConfig(coordinator=w.config.coordinator, data_dir=tmp_path, coordinator_key=None,
                            policy=w.config.policy, page_port=None, audit_interval_ms=86_400_000)
    allow = asyncio.ensure_future(allow_soon())
    await asyncio.wait_for(w._cycle(fake), 30)  # type: ignore[arg-type]  # returns when allowed, not after a day
    await allow
    assert fake.leased == 0  # that cycle only waited
    await asyncio.wait_for(w._cycle(fake), 30)  # type: ignore[arg-type]
    assert fake.leased == 1
    assert w.journal.story() and {s["lease_id"] for s in w.journal.story()} == {"L1", "L2"}
    w.journal.close()


async def test_a_pause_gives_back_the_grants_not_yet_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(witness, "audit", lambda *args: asyncio.sleep(0, 0))
    machine = Recorded(iter([]))
    w = _worker(tmp_path, PolicySettings(idle_seconds=0, on_pause="finish"), machine.probes(tmp_path), batch=2)
    w.coordinator = COORD.verify_key
    w._allowed.set()
    real_run = tasks.run

    def run_then_pause(*args: Any, **kwargs: Any) -> Any:
        item = real_run(*args, **kwargs)
        w._allowed.clear()  # the policy paused while the first task ran
        return item

    monkeypatch.setattr(tasks, "run", run_then_pause)
    fake = _Coordinator()
    await w._cycle(fake)  # type: ignore[arg-type]
    assert fake.released == [["L2"]]
    assert [(s["lease_id"], s["status"]) for s in w.journal.story()] == [("L1", "accepted")]  # finished, sent
    assert w.stats.computed == 1
    w.journal.close()


def test_policy_module_is_pure() -> None:
    # No I/O in the decision: the module imports nothing that reads the machine or the clock.
    source = Path(policy.__file__).read_text()
    for word in ("import os", "import time", "import asyncio", "subprocess", "open("):
        assert word not in source, word


async def test_the_policy_loop_survives_a_probe_that_fails_once(tmp_path: Path) -> None:
    reads = 0

    def read() -> Readings:
        nonlocal reads
        reads += 1
        if reads == 2:
            raise ValueError("invalid literal for int() with base 10: 'garbage'")
        return at(reads, on_battery=reads < 3)

    probes = Probes(load=LoadProbe(tmp_path / "no-proc"))
    probes.read = read  # type: ignore[method-assign]
    w = _worker(tmp_path, PolicySettings(idle_seconds=0, sample_seconds=0.1), probes)
    loop = asyncio.ensure_future(w._policy_loop())
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while reads < 4 and not loop.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert reads >= 4, "the sampler stopped after the failing read"
        assert (w.board.state, w.board.reason) == ("running", RUN)
    finally:
        w.stop.set()
        await asyncio.wait({loop}, timeout=5)
        if loop.done() and not loop.cancelled():
            loop.exception()  # retrieved, so asyncio does not log it again at exit
        w.journal.close()
