"""worker.probes against recorded machines: fake sysfs power-supply and thermal trees, a fake loginctl, fake
/proc/stat and /proc/self/stat files written twice, and Probes.read assembling one Readings with a fake clock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from worker.policy import Readings
from worker.probes import LoadProbe, Probes, battery, cpu_count, temperature, user_idle

# ---- battery -------------------------------------------------------------------------------------------------------


def supply(root: Path, name: str, **files: str) -> Path:
    """One /sys/class/power_supply/NAME directory with the given attribute files."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for key, value in files.items():
        (d / key).write_text(value + "\n")
    return d


@pytest.fixture
def ps(tmp_path: Path) -> Path:
    root = tmp_path / "power_supply"
    root.mkdir()
    return root


def test_no_power_supply_class_at_all(tmp_path: Path) -> None:
    assert battery(tmp_path / "missing") == (None, None)


def test_a_desktop_with_mains_only(ps: Path) -> None:
    supply(ps, "AC", type="Mains", online="1")
    assert battery(ps) == (None, None)


def test_an_empty_power_supply_class(ps: Path) -> None:
    assert battery(ps) == (None, None)


def test_a_laptop_plugged_in_and_charging(ps: Path) -> None:
    supply(ps, "AC", type="Mains", online="1")
    supply(ps, "BAT0", type="Battery", status="Charging", capacity="61")
    assert battery(ps) == (False, 61.0)


def test_a_laptop_on_battery(ps: Path) -> None:
    supply(ps, "AC", type="Mains", online="0")
    supply(ps, "BAT0", type="Battery", status="Discharging", capacity="60")
    assert battery(ps) == (True, 60.0)


def test_a_laptop_on_battery_without_a_mains_entry(ps: Path) -> None:
    supply(ps, "BAT1", type="Battery", status="Discharging", capacity="35")
    assert battery(ps) == (True, 35.0)


@pytest.mark.parametrize("status", ["Full", "Not charging", "Unknown", "Charging"])
def test_a_battery_that_does_not_discharge_means_mains(ps: Path, status: str) -> None:
    supply(ps, "BAT0", type="Battery", status=status, capacity="100")
    assert battery(ps) == (False, 100.0)


def test_mains_online_wins_over_a_battery_that_says_discharging(ps: Path) -> None:
    # A weak charger under load: the battery drains a little, but the machine is plugged in.
    supply(ps, "ADP1", type="Mains", online="1")
    supply(ps, "BAT0", type="Battery", status="Discharging", capacity="80")
    assert battery(ps) == (False, 80.0)


def test_several_batteries_one_discharging_reports_the_lowest(ps: Path) -> None:
    supply(ps, "AC", type="Mains", online="0")
    supply(ps, "BAT0", type="Battery", status="Unknown", capacity="90")
    supply(ps, "BAT1", type="Battery", status="Discharging", capacity="45")
    assert battery(ps) == (True, 45.0)


def test_several_batteries_none_discharging(ps: Path) -> None:
    supply(ps, "BAT0", type="Battery", status="Full", capacity="100")
    supply(ps, "BAT1", type="Battery", status="Charging", capacity="30")
    assert battery(ps) == (False, 30.0)


def test_missing_files_are_ignored(ps: Path) -> None:
    supply(ps, "AC", type="Mains")  # no online file: not known to be online
    supply(ps, "BAT0", type="Battery", status="Discharging")  # no capacity file
    supply(ps, "weird")  # no type at all
    assert battery(ps) == (True, None)


def test_a_battery_without_status_or_capacity_says_nothing(ps: Path) -> None:
    supply(ps, "BAT0", type="Battery")
    assert battery(ps) == (None, None)


@pytest.mark.parametrize("capacity", ["", "abc", "-5", "57.5", "1e2", "\x00\xff"])
def test_garbage_capacity_is_ignored(ps: Path, capacity: str) -> None:
    supply(ps, "BAT0", type="Battery", status="Discharging", capacity=capacity)
    supply(ps, "BAT1", type="Battery", status="Unknown", capacity="70")
    assert battery(ps) == (True, 70.0)


@pytest.mark.parametrize("online", ["", "yes", "2", "true", "garbage"])
def test_garbage_online_is_not_online(ps: Path, online: str) -> None:
    supply(ps, "AC", type="Mains", online=online)
    supply(ps, "BAT0", type="Battery", status="Discharging", capacity="50")
    assert battery(ps) == (True, 50.0)


def test_a_supply_that_is_a_file_not_a_directory(ps: Path) -> None:
    (ps / "stray").write_text("x")
    supply(ps, "BAT0", type="Battery", status="Charging", capacity="12")
    assert battery(ps) == (False, 12.0)


def test_usb_and_ups_supplies_do_not_count_as_batteries(ps: Path) -> None:
    supply(ps, "ucsi-source-psy-USBC000:001", type="USB", online="1")
    supply(ps, "AC", type="Mains", online="1")
    assert battery(ps) == (None, None)


def test_a_peripheral_battery_is_not_the_machines(ps: Path) -> None:
    # A desktop (no Mains entry, as many desktops expose none) with a Logitech mouse: the kernel's HID driver
    # registers its battery with type Battery and scope Device. upower and TLP skip scope=Device supplies.
    supply(ps, "hidpp_battery_0", type="Battery", scope="Device", status="Discharging", capacity="15")
    assert battery(ps) == (None, None)


# ---- temperature -----------------------------------------------------------------------------------------------------


def zone(root: Path, n: int, temp: str | None) -> None:
    d = root / f"thermal_zone{n}"
    d.mkdir(parents=True)
    (d / "type").write_text("x86_pkg_temp\n")
    if temp is not None:
        (d / "temp").write_text(temp + "\n")


@pytest.fixture
def thermal(tmp_path: Path) -> Path:
    root = tmp_path / "thermal"
    root.mkdir()
    return root


def test_no_thermal_class(tmp_path: Path) -> None:
    assert temperature(tmp_path / "missing") is None


def test_no_zones(thermal: Path) -> None:
    (thermal / "cooling_device0").mkdir()
    assert temperature(thermal) is None


def test_a_raspberry_pi_zone_in_millidegrees(thermal: Path) -> None:
    zone(thermal, 0, "82345")
    assert temperature(thermal) == 82.345


def test_the_hottest_zone_wins(thermal: Path) -> None:
    for n, t in enumerate(["45000", "71500", "38000"]):
        zone(thermal, n, t)
    assert temperature(thermal) == 71.5


def test_negative_temperatures(thermal: Path) -> None:
    zone(thermal, 0, "-5000")
    assert temperature(thermal) == -5.0
    zone(thermal, 1, "-12000")
    assert temperature(thermal) == -5.0


def test_garbage_missing_and_unreadable_zones_are_skipped(thermal: Path) -> None:
    zone(thermal, 0, "")
    zone(thermal, 1, "hot")
    zone(thermal, 2, "45.5")
    zone(thermal, 3, None)  # no temp file (a wifi zone whose interface is down gives ENODATA, the same)
    zone(thermal, 4, "-")
    zone(thermal, 5, "51000")
    assert temperature(thermal) == 51.0


def test_a_doubled_minus_sign_is_skipped(thermal: Path) -> None:
    zone(thermal, 0, "--5000")
    zone(thermal, 1, "51000")
    assert temperature(thermal) == 51.0


def test_only_garbage_is_none(thermal: Path) -> None:
    zone(thermal, 0, "n/a")
    assert temperature(thermal) is None


def test_ten_and_more_zones(thermal: Path) -> None:
    for n in range(12):
        zone(thermal, n, str(30000 + n * 1000))
    assert temperature(thermal) == 41.0


# ---- user_idle (logind) ----------------------------------------------------------------------------------------------


def loginctl(sessions: dict[str, str | None] | None, listing_ok: bool = True) -> Callable[[list[str]], str | None]:
    """A fake `run` answering loginctl: session id -> IdleHint (None: show-session fails)."""
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str | None:
        calls.append(argv)
        assert argv[0] == "loginctl"
        if argv[1] == "list-sessions":
            assert argv == ["loginctl", "list-sessions", "--no-legend"]
            if not listing_ok or sessions is None:
                return None
            return "\n".join(f"     {sid} 1000 alice seat0 tty{n}" for n, sid in enumerate(sessions))
        assert argv[1] == "show-session" and argv[3:] == ["-p", "IdleHint", "--value"], argv
        assert sessions is not None
        return sessions[argv[2]]

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_loginctl_failing_means_unknown() -> None:
    assert user_idle(loginctl(None, listing_ok=False)) is None


def test_no_sessions_means_unknown() -> None:
    assert user_idle(loginctl({})) is None


def test_one_idle_session() -> None:
    assert user_idle(loginctl({"2": "yes"})) is True


def test_one_active_session() -> None:
    assert user_idle(loginctl({"2": "no"})) is False


def test_mixed_sessions_mean_in_use() -> None:
    assert user_idle(loginctl({"2": "yes", "c1": "no", "7": "yes"})) is False


def test_every_session_idle() -> None:
    run = loginctl({"2": "yes", "c1": "yes"})
    assert user_idle(run) is True
    asked = [argv[2] for argv in run.calls if argv[1] == "show-session"]  # type: ignore[attr-defined]
    assert asked == ["2", "c1"]  # the session id, the first column, with the leading spaces gone


def test_sessions_whose_hint_cannot_be_read_are_ignored() -> None:
    assert user_idle(loginctl({"2": None, "3": "yes"})) is True
    assert user_idle(loginctl({"2": None, "3": "garbage"})) is None
    assert user_idle(loginctl({"2": None})) is None


def test_blank_lines_in_the_listing() -> None:
    def run(argv: list[str]) -> str | None:
        return "\n\n 4 1000 bob seat0 tty2\n   \n" if argv[1] == "list-sessions" else "no"

    assert user_idle(run) is False


def test_without_loginctl_on_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no loginctl
    assert user_idle() is None


def test_the_real_runner_with_a_fake_loginctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "loginctl"
    script.write_text('#!/bin/sh\nif [ "$1" = list-sessions ]; then echo " 5 1000 carol seat0 tty1"; '
                      'else echo yes; fi\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert user_idle() is True
    script.write_text("#!/bin/sh\nexit 1\n")
    assert user_idle() is None


# ---- LoadProbe: fake /proc -------------------------------------------------------------------------------------------

HZ_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


def proc_stat(ncpu: int, **ticks: int) -> str:
    """A /proc/stat with the given aggregate ticks (guest and guest_nice, already in user, may be given too)."""
    first = "cpu  " + " ".join(str(ticks.get(f, 0)) for f in HZ_FIELDS)
    per_cpu = [f"cpu{n} " + " ".join("0" for _ in HZ_FIELDS) for n in range(ncpu)]
    rest = ["intr 12345 0 0", "ctxt 99999", "btime 1700000000", "processes 4242", "procs_running 3",
            "softirq 1 2 3"]
    return "\n".join([first, *per_cpu, *rest]) + "\n"


def self_stat(utime: int, stime: int, comm: str = "python3") -> str:
    """A /proc/self/stat line: pid (comm) state ppid ... utime (14th) stime (15th) ... (52 fields)."""
    after = ["S", "1", "100", "100", "0", "-1", "4194560", "2000", "0", "5", "0", str(utime), str(stime),
             "7", "3", "20", "0", "9", "0", "12345"] + ["0"] * 30
    return f"4242 ({comm}) " + " ".join(after) + "\n"


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    (root / "self").mkdir(parents=True)
    return root


def write(proc: Path, stat: str, own: str) -> None:
    (proc / "stat").write_text(stat)
    (proc / "self" / "stat").write_text(own)


def test_the_first_sample_is_none(proc: Path) -> None:
    write(proc, proc_stat(4, user=100, system=50, idle=1000), self_stat(10, 5))
    assert LoadProbe(proc).sample() is None


def test_cores_of_others_between_two_samples(proc: Path) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(4, user=1000, nice=10, system=500, idle=8000, iowait=100, irq=5, softirq=5, steal=0),
          self_stat(200, 50))
    assert probe.sample() is None
    # 400 ticks pass on 4 CPUs (100 each): busy +230 (user 150, system 60, irq 10, softirq 10); idle +150,
    # iowait +20 do not count. This process used 70 of the 230 (utime 50 + stime 20).
    write(proc, proc_stat(4, user=1150, nice=10, system=560, idle=8150, iowait=120, irq=15, softirq=15, steal=0),
          self_stat(250, 70))
    assert probe.sample() == pytest.approx(4 * (230 - 70) / 400)  # 1.6 cores
    # The next sample compares with the second.
    write(proc, proc_stat(4, user=1150, nice=10, system=560, idle=8550, iowait=120, irq=15, softirq=15, steal=0),
          self_stat(250, 70))
    assert probe.sample() == 0.0


def test_steal_counts_as_busy_guest_is_not_counted_twice(proc: Path) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(2, user=100, idle=100, steal=0, guest=0), self_stat(0, 0))
    probe.sample()
    # +100 ticks on 2 CPUs: user +40 (of which guest 40, already inside user), steal +20, idle +40.
    write(proc, proc_stat(2, user=140, idle=140, steal=20, guest=40), self_stat(0, 0))
    assert probe.sample() == pytest.approx(2 * 60 / 100)


def test_only_this_process_busy_means_no_other_load(proc: Path) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(2, user=500, idle=500), self_stat(300, 100))
    probe.sample()
    # Every busy tick is ours: a worker computing on both cores is not "other programs".
    write(proc, proc_stat(2, user=700, idle=500), self_stat(450, 150))
    assert probe.sample() == 0.0


def test_own_ticks_never_make_the_load_negative(proc: Path) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(2, user=500, idle=500), self_stat(0, 0))
    probe.sample()
    write(proc, proc_stat(2, user=510, idle=590), self_stat(30, 0))  # rounding: own +30, machine busy +10
    assert probe.sample() == 0.0


def test_no_time_passed_or_counters_reset_is_none(proc: Path) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(2, user=500, idle=500), self_stat(0, 0))
    probe.sample()
    assert probe.sample() is None  # the same file twice: no ticks between
    write(proc, proc_stat(2, user=5, idle=5), self_stat(0, 0))  # a restored snapshot, counters went back
    assert probe.sample() is None
    write(proc, proc_stat(2, user=15, idle=15), self_stat(0, 0))  # and from there it measures again
    assert probe.sample() == pytest.approx(2 * 10 / 20)


@pytest.mark.parametrize("comm", ["python3", "depin worker", "a) b", "x ) (y", ")", "))) ((("])
def test_process_names_with_spaces_and_parentheses(proc: Path, comm: str) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(4, user=1000, idle=1000), self_stat(100, 100, comm))
    probe.sample()
    write(proc, proc_stat(4, user=1300, idle=1100), self_stat(150, 150, comm))
    assert probe.sample() == pytest.approx(4 * (300 - 100) / 400)


def test_the_number_of_cpus_comes_from_the_per_cpu_lines(proc: Path) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(8, user=0, idle=0), self_stat(0, 0))
    probe.sample()
    write(proc, proc_stat(8, user=800, idle=800), self_stat(0, 0))
    assert probe.sample() == pytest.approx(4.0)  # half of 8 CPUs busy


def test_missing_files_are_none(tmp_path: Path, proc: Path) -> None:
    assert LoadProbe(tmp_path / "nothing").sample() is None
    (proc / "stat").write_text(proc_stat(2, user=1, idle=1))
    assert LoadProbe(proc).sample() is None  # no self/stat


def test_a_missing_file_between_samples_keeps_the_earlier_sample(proc: Path) -> None:
    probe = LoadProbe(proc)
    write(proc, proc_stat(2, user=100, idle=100), self_stat(0, 0))
    probe.sample()
    (proc / "stat").unlink()
    assert probe.sample() is None
    write(proc, proc_stat(2, user=200, idle=200), self_stat(0, 0))
    assert probe.sample() == pytest.approx(1.0)


@pytest.mark.parametrize(("stat", "own"), [
    ("cpu  garbage\n", self_stat(0, 0)),
    ("", self_stat(0, 0)),
    (proc_stat(2, user=1, idle=1), "4242 (python3\n"),  # cut short while being read
    (proc_stat(2, user=1, idle=1), "4242 (python3) S 1\n"),
])
def test_malformed_proc_files_are_none(proc: Path, stat: str, own: str) -> None:
    write(proc, stat, own)
    assert LoadProbe(proc).sample() is None


def test_the_real_proc_measures_something() -> None:
    probe = LoadProbe()
    assert probe.sample() is None
    deadline = time.monotonic() + 30
    value = None
    while value is None and time.monotonic() < deadline:  # /proc/stat ticks at USER_HZ: wait for one
        time.sleep(0.05)
        value = probe.sample()
    assert value is not None and 0.0 <= value <= os.cpu_count()  # type: ignore[operator]


def test_cpu_count() -> None:
    assert 1 <= cpu_count() <= (os.cpu_count() or 1)


# ---- Probes.read -----------------------------------------------------------------------------------------------------


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_probes_read_assembles_one_readings(proc: Path, utc: None) -> None:
    write(proc, proc_stat(2, user=100, idle=100), self_stat(0, 0))
    clock = iter([1_700_000_000.25, 1_700_000_090.5])  # Tue 2023-11-14 22:13:20 UTC, then 90 s later
    p = Probes(load=LoadProbe(proc), power=lambda: (True, 55.0), heat=lambda: 61.5, idle=lambda: False,
               clock=lambda: next(clock))
    first = p.read()
    assert first == Readings(now_ms=1_700_000_000_250, weekday=1, minute=22 * 60 + 13, user_idle=False,
                             other_load=None, on_battery=True, battery_percent=55.0, temperature_c=61.5)
    write(proc, proc_stat(2, user=150, idle=150), self_stat(0, 0))
    second = p.read()
    assert (second.now_ms, second.weekday, second.minute) == (1_700_000_090_500, 1, 22 * 60 + 14)
    assert second.other_load == pytest.approx(1.0)


def test_probes_read_across_midnight(proc: Path, utc: None) -> None:
    p = Probes(load=LoadProbe(proc), power=lambda: (None, None), heat=lambda: None, idle=lambda: None,
               clock=lambda: 1_700_006_399.0)  # Tue 23:59:59 UTC
    r = p.read()
    assert (r.weekday, r.minute) == (1, 1439)
    p.clock = lambda: 1_700_006_400.0  # Wed 00:00:00
    r = p.read()
    assert (r.weekday, r.minute) == (2, 0)
    assert (r.user_idle, r.on_battery, r.battery_percent, r.temperature_c) == (None, None, None, None)


def machine_tree(root: Path) -> None:
    """A recorded machine: /proc and /sys under `root`."""
    write_root = root / "proc"
    (write_root / "self").mkdir(parents=True)
    write(write_root, proc_stat(2, user=100, idle=100), self_stat(0, 0))
    ps = root / "sys/class/power_supply"
    supply(ps, "AC", type="Mains", online="0")
    supply(ps, "BAT0", type="Battery", status="Discharging", capacity="47")
    zone(root / "sys/class/thermal", 0, "66000")


def test_of_this_machine_reads_under_its_root(tmp_path: Path) -> None:
    machine_tree(tmp_path)
    p = Probes.of_this_machine(tmp_path)
    p.clock = lambda: 1_700_000_000.0
    r = p.read()
    assert (r.on_battery, r.battery_percent, r.temperature_c, r.other_load) == (True, 47.0, 66.0, None)
    assert r.user_idle is None  # logind speaks for this machine, not for a recorded one
    write(tmp_path / "proc", proc_stat(2, user=200, idle=200), self_stat(0, 0))
    (tmp_path / "sys/class/thermal/thermal_zone0/temp").write_text("91000\n")
    (tmp_path / "sys/class/power_supply/AC/online").write_text("1\n")
    r = p.read()
    assert (r.on_battery, r.battery_percent, r.temperature_c, r.other_load) == (False, 47.0, 91.0, 1.0)


def test_of_this_machine_on_an_empty_root(tmp_path: Path) -> None:
    p = Probes.of_this_machine(tmp_path)
    r = p.read()
    assert (r.user_idle, r.other_load, r.on_battery, r.battery_percent, r.temperature_c) == (None,) * 5


def test_of_the_real_machine_uses_logind() -> None:
    from worker import probes

    assert Probes.of_this_machine().idle is probes.user_idle
    assert Probes.of_this_machine(Path("/")).load.proc == Path("/proc")
