"""depin.config, the worker's run-policy part: PolicySettings' checks, policy_settings from a TOML table and overrides,
read_toml, DEPIN_WORKER_* variables, the owner's page port and the probe root; and how the `depin worker` command line
puts flags over the environment over the file (without starting a worker)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pytest

from depin import config
from depin.config import (
    DEFAULT_PAGE_PORT,
    BondSettings,
    PolicySettings,
    Window,
    bond_settings,
    page_port,
    policy_settings,
    probe_root,
    read_toml,
    settings_from_environment,
)
from depin.errors import UserError

# ---- PolicySettings -------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = PolicySettings()
    assert (s.always, s.idle_seconds, s.max_other_load, s.run_on_battery, s.min_battery_percent,
            s.max_temperature_c, s.windows, s.threads, s.duty_cycle, s.on_pause, s.sample_seconds, s.watts) == (
        False, 60.0, 0.5, False, 40.0, 80.0, (), None, 1.0, "finish", 5.0, 10.0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("idle_seconds", -1, "idle_seconds must be 0..86400"),
    ("idle_seconds", math.nan, "idle_seconds must be 0..86400"),
    ("max_other_load", 0, "max_other_load must be more than 0 cores"),
    ("max_other_load", -0.5, "max_other_load must be more than 0 cores"),
    ("min_battery_percent", -1, "min_battery_percent must be 0..100"),
    ("min_battery_percent", 100.5, "min_battery_percent must be 0..100"),
    ("max_temperature_c", 19.9, "max_temperature_c must be 20..120"),
    ("max_temperature_c", 121, "max_temperature_c must be 20..120"),
    ("max_temperature_c", math.nan, "max_temperature_c must be 20..120"),
    ("threads", 0, "threads must be 1..1024"),
    ("threads", 1025, "threads must be 1..1024"),
    ("duty_cycle", 0.04, "duty_cycle must be 0.05..1"),
    ("duty_cycle", 1.01, "duty_cycle must be 0.05..1"),
    ("on_pause", "stop", "on_pause must be finish or return"),
    ("on_pause", "Finish", "on_pause must be finish or return"),
    ("sample_seconds", 0.09, "sample_seconds must be 0.1..600"),
    ("sample_seconds", 601, "sample_seconds must be 0.1..600"),
    ("watts", 0, "watts must be more than 0"),
    ("watts", 10_001, "watts must be more than 0"),
])
def test_validation_messages(field: str, value: Any, message: str) -> None:
    with pytest.raises(UserError) as caught:
        PolicySettings(**{field: value})
    assert str(caught.value) == f"worker policy: {message}"


@pytest.mark.parametrize(("field", "value"), [
    ("idle_seconds", 0), ("max_other_load", 0.01), ("min_battery_percent", 0), ("min_battery_percent", 100),
    ("max_temperature_c", 20), ("max_temperature_c", 120), ("threads", 1), ("threads", 1024), ("duty_cycle", 0.05),
    ("duty_cycle", 1), ("on_pause", "return"), ("sample_seconds", 0.1), ("sample_seconds", 600), ("watts", 10_000),
])
def test_the_bounds_are_inclusive(field: str, value: Any) -> None:
    assert getattr(PolicySettings(**{field: value}), field) == value


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        PolicySettings().always = True  # type: ignore[misc]


# ---- policy_settings: the file's [policy] table, then overrides ------------------------------------------------------


def test_an_empty_file_and_no_overrides_are_the_defaults() -> None:
    assert policy_settings({}, {}) == PolicySettings()
    assert policy_settings({"policy": {}}, {}) == PolicySettings()


def test_the_file_then_overrides() -> None:
    file = {"policy": {"idle_seconds": 120, "max_other_load": 1.5, "run_on_battery": True, "min_battery_percent": 30,
                       "max_temperature_c": 70.5, "threads": 2, "duty_cycle": 0.5, "on_pause": "return",
                       "sample_seconds": 2, "watts": 6.5,
                       "windows": ["Mon-Fri 19:00-07:00", "Sat,Sun 00:00-24:00"]}}
    s = policy_settings(file, {})
    assert s == PolicySettings(idle_seconds=120, max_other_load=1.5, run_on_battery=True, min_battery_percent=30,
                               max_temperature_c=70.5, threads=2, duty_cycle=0.5, on_pause="return",
                               sample_seconds=2, watts=6.5,
                               windows=(Window.parse("Mon-Fri 19:00-07:00"), Window.parse("Sat,Sun 00:00-24:00")))
    assert [w.text for w in s.windows] == ["Mon-Fri 19:00-07:00", "Sat,Sun 00:00-24:00"]
    over = policy_settings(file, {"idle_seconds": 5.0, "threads": None, "windows": ["22:00-06:00"], "always": True})
    assert (over.idle_seconds, over.threads, over.always) == (5.0, 2, True)  # None: not given, the file's stays
    assert over.windows == (Window.parse("22:00-06:00"),)  # a list replaces the file's, it does not add to it


def test_an_empty_windows_list_means_any_time() -> None:
    assert policy_settings({"policy": {"windows": ["Sat 10:00-11:00"]}}, {"windows": []}).windows == ()


def test_a_worker_table_is_refused_rather_than_ignored() -> None:
    with pytest.raises(UserError, match="unknown setting 'worker'"):  # nothing reads one: say so, do not ignore it
        policy_settings({"worker": {}, "policy": {"idle_seconds": 1}}, {})


@pytest.mark.parametrize(("file", "key"), [
    ({"polcy": {}}, "polcy"),
    ({"idle_seconds": 30}, "idle_seconds"),  # a setting outside [policy]
    ({"policy": {"idle_second": 30}}, "idle_second"),
    ({"policy": {"threads": 2, "zzz": 1, "aaa": 2}}, "aaa"),
])
def test_unknown_keys_are_refused(file: dict[str, Any], key: str) -> None:
    with pytest.raises(UserError) as caught:
        policy_settings(file, {})
    assert str(caught.value) == f"worker config: unknown setting {key!r}"


@pytest.mark.parametrize(("key", "value", "type_name"), [
    ("always", 1, "int"),  # an int is not a bool
    ("always", "yes", "str"),
    ("run_on_battery", 0, "int"),
    ("idle_seconds", True, "bool"),  # and a bool is not a number, though Python says it is an int
    ("max_other_load", False, "bool"),
    ("threads", True, "bool"),
    ("threads", 2.0, "float"),
    ("threads", "2", "str"),
    ("idle_seconds", "60", "str"),
    ("windows", "Mon-Fri 19:00-07:00", "str"),  # a list of windows, even of one
    ("windows", {"mon": "19:00-07:00"}, "dict"),
    ("on_pause", 1, "int"),
    ("watts", [15], "list"),
])
def test_wrong_types_are_refused(key: str, value: Any, type_name: str) -> None:
    message = f"worker config: {key} has the wrong type ({type_name})"
    with pytest.raises(UserError) as caught:
        policy_settings({"policy": {key: value}}, {})
    assert str(caught.value) == message
    with pytest.raises(UserError) as caught:  # from the overrides as well
        policy_settings({}, {key: value})
    assert str(caught.value) == message


def test_an_override_of_a_known_type_fixes_a_file_of_the_wrong_type() -> None:
    # Each value is checked as it is merged: the override replaces the bad value before it is looked at.
    assert policy_settings({"policy": {"idle_seconds": "60"}}, {"idle_seconds": 5}).idle_seconds == 5


def test_windows_are_parsed_and_checked() -> None:
    with pytest.raises(UserError, match="time window 'Mon-Fri 7pm-7am'"):
        policy_settings({"policy": {"windows": ["Mon-Fri 7pm-7am"]}}, {})
    with pytest.raises(UserError, match="time window '5'"):
        policy_settings({"policy": {"windows": [5]}}, {})


def test_values_out_of_range_are_refused_through_the_file() -> None:
    with pytest.raises(UserError, match="worker policy: duty_cycle must be 0.05..1"):
        policy_settings({"policy": {"duty_cycle": 2}}, {})


@pytest.mark.parametrize("policy", [5, True, 1.5])
def test_a_policy_that_is_not_a_table(policy: Any) -> None:
    with pytest.raises(UserError, match="worker config"):
        policy_settings({"policy": policy}, {})


def test_a_worker_table_with_settings_is_not_silently_ignored() -> None:
    with pytest.raises(UserError, match="worker config"):
        policy_settings({"worker": {"batch": 8, "bogus": 1}}, {})


# ---- bond_settings: the file's [bond] table, then overrides ----------------------------------------------------------


def test_bond_defaults_are_on_up_to_1000() -> None:
    assert BondSettings() == BondSettings(auto_bond=True, max_bond=1000)
    assert bond_settings({}, {}) == BondSettings()
    assert bond_settings({"policy": {"idle_seconds": 1}}, {"idle_seconds": 2.0}) == BondSettings()  # not its keys


def test_bond_file_then_overrides() -> None:
    file = {"bond": {"auto_bond": False, "max_bond": 300}, "policy": {"watts": 2}}
    assert bond_settings(file, {}) == BondSettings(auto_bond=False, max_bond=300)
    assert bond_settings(file, {"max_bond": 500, "auto_bond": None}) == BondSettings(auto_bond=False, max_bond=500)
    assert policy_settings(file, {}).watts == 2  # each table reads its own, and neither refuses the other


@pytest.mark.parametrize(("file", "message"), [
    ({"bond": {"max_bond": 1.5}}, "worker config: max_bond has the wrong type (float)"),
    ({"bond": {"max_bond": True}}, "worker config: max_bond has the wrong type (bool)"),
    ({"bond": {"auto_bond": "yes"}}, "worker config: auto_bond has the wrong type (str)"),
    ({"bond": {"target": 5}}, "worker config: unknown setting 'target'"),
    ({"bond": {"idle_seconds": 5}}, "worker config: unknown setting 'idle_seconds'"),  # a policy setting
    ({"policy": {"max_bond": 5}}, "worker config: unknown setting 'max_bond'"),  # in the wrong table
    ({"bond": 5}, "worker config: bond must be a table ([bond])"),
    ({"bond": {"max_bond": -1}}, "worker bond: max_bond must be a whole number of credits from 0 to 2^53 - 1"),
])
def test_bond_settings_refused(file: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as caught:
        (bond_settings if "policy" not in file else policy_settings)(file, {})
    assert str(caught.value) == message


# ---- read_toml ---------------------------------------------------------------------------------------------------


def test_read_toml(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text('[policy]\nidle_seconds = 30\nwindows = ["Mon-Fri 19:00-07:00"]\nrun_on_battery = true\n')
    data = read_toml(path, required=True)
    assert data == {"policy": {"idle_seconds": 30, "windows": ["Mon-Fri 19:00-07:00"], "run_on_battery": True}}
    assert read_toml(path, required=False) == data
    s = policy_settings(data, {})
    assert (s.idle_seconds, s.run_on_battery, [w.text for w in s.windows]) == (30, True, ["Mon-Fri 19:00-07:00"])


def test_a_missing_optional_file_is_empty(tmp_path: Path) -> None:
    assert read_toml(tmp_path / "worker.toml", required=False) == {}


def test_a_missing_required_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(UserError) as caught:
        read_toml(path, required=True)
    assert str(caught.value) == f"no config file {path}"


@pytest.mark.parametrize("text", ["[policy\nidle_seconds = 1\n", "idle_seconds = \n", "a = 1\na = 2\n",
                                  "[policy]\nwindows = [Mon]\n"])
@pytest.mark.parametrize("required", [True, False])
def test_bad_toml_is_one_clear_error_even_when_optional(tmp_path: Path, text: str, required: bool) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        read_toml(path, required=required)
    assert str(caught.value).startswith(f"config file {path}: ")
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_bytes(b"[policy]\nidle_seconds = 1 # \xff\xfe\n")
    with pytest.raises(UserError, match=f"config file {path}"):
        read_toml(path, required=False)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"config file {tmp_path}"):
        read_toml(tmp_path, required=True)


# ---- DEPIN_WORKER_* --------------------------------------------------------------------------------------------------


def test_nothing_set_is_nothing() -> None:
    assert settings_from_environment({}) == {}
    assert settings_from_environment({"DEPIN_COORDINATOR": "http://x:1", "DEPIN_WORKER_PAGE_PORT": "off",
                                    "DEPIN_WORKER_PROBE_ROOT": "/host"}) == {}  # not policy settings


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("true", True), ("TRUE", True), ("Yes", True),
                                            ("0", False), ("false", False), ("no", False), ("NO", False)])
def test_booleans(raw: str, value: bool) -> None:
    assert settings_from_environment({"DEPIN_WORKER_ALWAYS": raw, "DEPIN_WORKER_RUN_ON_BATTERY": raw}) == {
        "always": value, "run_on_battery": value}


@pytest.mark.parametrize("raw", ["", "on", "off", "2", "y", " 1", "truee"])
def test_bad_booleans(raw: str) -> None:
    with pytest.raises(UserError) as caught:
        settings_from_environment({"DEPIN_WORKER_RUN_ON_BATTERY": raw})
    assert str(caught.value) == "DEPIN_WORKER_RUN_ON_BATTERY must be true or false"


def test_numbers() -> None:
    env = {"DEPIN_WORKER_IDLE_SECONDS": "90", "DEPIN_WORKER_MAX_OTHER_LOAD": "1.25", "DEPIN_WORKER_THREADS": "3",
           "DEPIN_WORKER_MIN_BATTERY_PERCENT": "35", "DEPIN_WORKER_MAX_TEMPERATURE_C": "72.5",
           "DEPIN_WORKER_DUTY_CYCLE": "0.25", "DEPIN_WORKER_SAMPLE_SECONDS": "0.2", "DEPIN_WORKER_WATTS": "1e1"}
    got = settings_from_environment(env)
    assert got == {"idle_seconds": 90.0, "max_other_load": 1.25, "threads": 3, "min_battery_percent": 35.0,
                   "max_temperature_c": 72.5, "duty_cycle": 0.25, "sample_seconds": 0.2, "watts": 10.0}
    assert type(got["threads"]) is int and type(got["idle_seconds"]) is float
    s = policy_settings({}, got)  # and they pass the type checks
    assert (s.threads, s.idle_seconds, s.watts) == (3, 90.0, 10.0)


@pytest.mark.parametrize(("name", "raw"), [("DEPIN_WORKER_THREADS", "2.5"), ("DEPIN_WORKER_THREADS", "two"),
                                           ("DEPIN_WORKER_IDLE_SECONDS", "1m"), ("DEPIN_WORKER_WATTS", ""),
                                           ("DEPIN_WORKER_DUTY_CYCLE", "50%")])
def test_bad_numbers(name: str, raw: str) -> None:
    with pytest.raises(UserError) as caught:
        settings_from_environment({name: raw})
    assert str(caught.value) == f"{name} must be a number"


def test_a_number_that_is_nan_is_refused_by_the_settings() -> None:
    with pytest.raises(UserError, match="idle_seconds must be 0..86400"):
        policy_settings({}, settings_from_environment({"DEPIN_WORKER_IDLE_SECONDS": "nan"}))


def test_bond_settings_from_the_environment() -> None:
    got = settings_from_environment({"DEPIN_WORKER_AUTO_BOND": "false", "DEPIN_WORKER_MAX_BOND": "250"})
    assert got == {"auto_bond": False, "max_bond": 250}
    assert bond_settings({}, got) == BondSettings(auto_bond=False, max_bond=250)
    with pytest.raises(UserError, match="DEPIN_WORKER_MAX_BOND must be a number"):
        settings_from_environment({"DEPIN_WORKER_MAX_BOND": "1e3"})


def test_strings() -> None:
    assert settings_from_environment({"DEPIN_WORKER_ON_PAUSE": "return"}) == {"on_pause": "return"}
    with pytest.raises(UserError, match="on_pause must be finish or return"):
        policy_settings({}, settings_from_environment({"DEPIN_WORKER_ON_PAUSE": "later"}))


def test_windows_are_separated_by_semicolons() -> None:
    # Commas belong to the windows themselves ("Sat,Sun"), so the environment separates windows with ';'.
    got = settings_from_environment({"DEPIN_WORKER_WINDOWS": "Mon-Fri 19:00-07:00;Sat,Sun 00:00-24:00; ;"})
    assert got == {"windows": ["Mon-Fri 19:00-07:00", "Sat,Sun 00:00-24:00"]}
    s = policy_settings({}, got)
    assert s.windows == (Window.parse("Mon-Fri 19:00-07:00"), Window.parse("Sat,Sun 00:00-24:00"))
    assert settings_from_environment({"DEPIN_WORKER_WINDOWS": ""}) == {"windows": []}


def test_a_bad_window_in_the_environment() -> None:
    with pytest.raises(UserError, match="time window 'evenings'"):
        policy_settings({}, settings_from_environment({"DEPIN_WORKER_WINDOWS": "22:00-06:00;evenings"}))


# ---- page_port and probe_root --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "disabled", "env", "port"), [
    (None, False, {}, DEFAULT_PAGE_PORT),
    (None, False, {"DEPIN_WORKER_PAGE_PORT": "9000"}, 9000),
    (None, False, {"DEPIN_WORKER_PAGE_PORT": "0"}, 0),  # any free port
    (None, False, {"DEPIN_WORKER_PAGE_PORT": "65535"}, 65535),
    (None, False, {"DEPIN_WORKER_PAGE_PORT": "off"}, None),
    (None, False, {"DEPIN_WORKER_PAGE_PORT": "OFF"}, None),
    (7000, False, {"DEPIN_WORKER_PAGE_PORT": "off"}, 7000),  # the flag beats the environment
    (7000, False, {"DEPIN_WORKER_PAGE_PORT": "9000"}, 7000),
    (0, False, {}, 0),
    (7000, True, {"DEPIN_WORKER_PAGE_PORT": "9000"}, None),  # --no-page beats everything
    (None, True, {"DEPIN_WORKER_PAGE_PORT": "garbage"}, None),  # and the environment is then not even looked at
])
def test_page_port_precedence(flag: int | None, disabled: bool, env: dict[str, str], port: int | None) -> None:
    assert page_port(flag, disabled, env) == port
    assert DEFAULT_PAGE_PORT == 8643


@pytest.mark.parametrize("raw", ["garbage", "", "-1", "65536", "80.5", " 80", "0x50"])
def test_page_port_garbage(raw: str) -> None:
    with pytest.raises(UserError) as caught:
        page_port(None, False, {"DEPIN_WORKER_PAGE_PORT": raw})
    assert str(caught.value) == "DEPIN_WORKER_PAGE_PORT must be a port number or off"


def test_probe_root() -> None:
    assert probe_root({}) == Path("/")
    assert probe_root({"DEPIN_WORKER_PROBE_ROOT": ""}) == Path("/")
    assert probe_root({"DEPIN_WORKER_PROBE_ROOT": "/host"}) == Path("/host")


# ---- `depin worker`: flags over environment over file ------------------------------------------------------------


def _worker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str],
                   env: dict[str, str]) -> config.WorkerConfig:
    """The WorkerConfig `depin worker ARGV` builds, caught before the daemon starts."""
    from depin.cli import commands
    from depin.cli.main import build_parser

    built: list[config.WorkerConfig] = []
    real = config.WorkerConfig

    class Stop(Exception):
        pass

    def catch(**kwargs: Any) -> config.WorkerConfig:
        built.append(real(**kwargs))
        raise Stop

    monkeypatch.setattr(config, "environment", lambda: env)
    monkeypatch.setattr(config, "WorkerConfig", catch)
    args = build_parser().parse_args(["worker", "--data-dir", str(tmp_path), *argv])
    assert isinstance(args, argparse.Namespace)
    with pytest.raises(Stop):
        commands._worker(args)
    return built[0]


def test_flags_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "worker.toml").write_text('[policy]\nidle_seconds = 300\nwatts = 7\nwindows = ["Sat 10:00-11:00"]\n')
    cfg = _worker_config(monkeypatch, tmp_path, ["--idle-seconds", "10", "--window", "22:00-06:00",
                                                 "--window", "Sun 00:00-24:00"], {})
    p = cfg.policy
    assert (p.idle_seconds, p.watts) == (10, 7)
    assert [w.text for w in p.windows] == ["22:00-06:00", "Sun 00:00-24:00"]  # flags, repeated, replace the file's
    assert (p.always, p.run_on_battery) == (False, False)
    assert (cfg.page_port, cfg.probe_root) == (DEFAULT_PAGE_PORT, Path("/"))


@pytest.mark.parametrize(("argv", "batch"), [([], None), (["--batch", "auto"], None), (["--batch", "16"], 16)])
def test_batch_is_adaptive_unless_a_number_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   argv: list[str], batch: int | None) -> None:
    assert _worker_config(monkeypatch, tmp_path, argv, {}).batch == batch


@pytest.mark.parametrize("bad", [0, 257])
def test_a_batch_out_of_range_is_refused(tmp_path: Path, bad: int) -> None:
    with pytest.raises(UserError, match="--batch must be 'auto' or between 1 and 256"):
        config.WorkerConfig(coordinator="http://127.0.0.1:1", data_dir=tmp_path, coordinator_key=None, batch=bad)


def test_a_batch_that_is_neither_a_number_nor_auto_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from depin.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--batch", "lots"])
    assert "must be 'auto' or a whole number" in capsys.readouterr().err


def test_environment_settings_without_a_flag_reach_the_worker(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    (tmp_path / "worker.toml").write_text("[policy]\nsample_seconds = 30\n")
    env = {"DEPIN_WORKER_SAMPLE_SECONDS": "0.2", "DEPIN_WORKER_PROBE_ROOT": str(tmp_path / "machine"),
           "DEPIN_WORKER_PAGE_PORT": "9100"}
    cfg = _worker_config(monkeypatch, tmp_path, [], env)
    assert (cfg.policy.sample_seconds, cfg.page_port, cfg.probe_root) == (0.2, 9100, tmp_path / "machine")


@pytest.mark.parametrize(("name", "raw", "field", "value"), [
    ("DEPIN_WORKER_ALWAYS", "1", "always", True),
    ("DEPIN_WORKER_IDLE_SECONDS", "1", "idle_seconds", 1.0),
    ("DEPIN_WORKER_RUN_ON_BATTERY", "yes", "run_on_battery", True),
    ("DEPIN_WORKER_WINDOWS", "22:00-06:00", "windows", (Window.parse("22:00-06:00"),)),
])
def test_environment_settings_that_also_have_a_flag_reach_the_worker(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, raw: str, field: str, value: Any) -> None:
    cfg = _worker_config(monkeypatch, tmp_path, [], {name: raw})
    assert getattr(cfg.policy, field) == value


def test_flags_over_environment_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "worker.toml").write_text(
        '[policy]\nidle_seconds = 300\nmax_other_load = 2.0\nwatts = 7\nwindows = ["Sat 10:00-11:00"]\n')
    env = {"DEPIN_WORKER_IDLE_SECONDS": "120", "DEPIN_WORKER_MAX_OTHER_LOAD": "1.0",
           "DEPIN_WORKER_PROBE_ROOT": str(tmp_path / "machine"), "DEPIN_WORKER_PAGE_PORT": "9100"}
    cfg = _worker_config(monkeypatch, tmp_path, ["--idle-seconds", "10", "--window", "22:00-06:00",
                                                 "--window", "Sun 00:00-24:00"], env)
    p = cfg.policy
    assert p.idle_seconds == 10  # flag
    assert p.max_other_load == 1.0  # environment
    assert p.watts == 7  # file
    assert [w.text for w in p.windows] == ["22:00-06:00", "Sun 00:00-24:00"]  # flags, repeated
    assert (p.always, p.run_on_battery) == (False, False)  # flags not given do not override with False
    assert (cfg.page_port, cfg.probe_root) == (9100, tmp_path / "machine")


def test_every_policy_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = _worker_config(monkeypatch, tmp_path, [
        "--always", "--idle-seconds", "5", "--max-load", "1.5", "--max-temperature", "70", "--run-on-battery",
        "--threads", "2", "--duty-cycle", "0.5", "--on-pause", "return", "--watts", "9", "--no-page"], {})
    assert cfg.policy == PolicySettings(always=True, idle_seconds=5, max_other_load=1.5, max_temperature_c=70,
                                        run_on_battery=True, threads=2, duty_cycle=0.5, on_pause="return", watts=9)
    assert cfg.page_port is None and cfg.probe_root == Path("/")


@pytest.mark.parametrize(("file", "argv", "env", "bond"), [
    ("", [], {}, BondSettings()),  # on by default
    ("[bond]\nmax_bond = 300\n", [], {"DEPIN_WORKER_AUTO_BOND": "0"}, BondSettings(auto_bond=False, max_bond=300)),
    ("[bond]\nmax_bond = 300\n", ["--max-bond", "700"], {"DEPIN_WORKER_MAX_BOND": "500"},
     BondSettings(auto_bond=True, max_bond=700)),
    ("[bond]\nmax_bond = 300\n", ["--no-auto-bond"], {"DEPIN_WORKER_AUTO_BOND": "1"},
     BondSettings(auto_bond=False, max_bond=300)),
])
def test_bond_flags_over_environment_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file: str,
                                               argv: list[str], env: dict[str, str], bond: BondSettings) -> None:
    (tmp_path / "worker.toml").write_text(file)
    assert _worker_config(monkeypatch, tmp_path, argv, env).bond == bond


def test_an_explicit_config_file_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from depin.cli import commands
    from depin.cli.main import build_parser

    monkeypatch.setattr(config, "environment", lambda: {})
    args = build_parser().parse_args(["worker", "--data-dir", str(tmp_path), "--config", str(tmp_path / "x.toml")])
    with pytest.raises(UserError, match="no config file"):
        commands._worker(args)


def test_the_cli_reports_a_config_error_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from depin.cli.main import main

    (tmp_path / "worker.toml").write_text("[policy]\nidle_seconds = -5\n")
    assert main(["worker", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "depin: error: worker policy: idle_seconds must be 0..86400\n"


@pytest.mark.parametrize(("argv", "always"), [(["--once"], True), ([], False)])
def test_once_ignores_the_run_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str],
                                     always: bool) -> None:
    # A first test is typed at the keyboard: the machine is "in use" by definition, so --once runs regardless.
    assert _worker_config(monkeypatch, tmp_path, argv, {}).policy.always is always
