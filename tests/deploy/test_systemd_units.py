"""The systemd units: `systemd-analyze verify` finds nothing (and does find a broken copy), their exposure score
stays where the hardening put it, the keys deploy/README.md and issue 5 promise are there with their values, and
ExecStart is a command the CLI accepts, from where deploy/README.md installs it.

systemd-analyze checks that ExecStart's program exists; this machine has no /opt/depin, so it verifies a copy of
each unit, in a temporary folder, whose only change is that path pointing at a stub."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from depin.cli.main import build_parser
from tests.deploy.support import (
    INSTALL_PREFIX,
    cli_refusal,
    expand_specifiers,
    parse_unit,
    systemd_analyze,
    unit_files,
)

PROGRAM = f"{INSTALL_PREFIX}/bin/depin"
WORKER = "depin-worker.service"
COORDINATOR = "depin-coordinator.service"
# `systemd-analyze security` exposure, in tenths (0 = everything locked, 100 = nothing), as systemd 252 scores
# these units today (worker 1.5: it keeps W+X memory for numba and the network; coordinator 1.2), plus 0.2.
MAX_EXPOSURE = {WORKER: 17, COORDINATOR: 14}


def _unit(name: str) -> Path:
    return next(p for p in unit_files() if p.name == name)


def _with_stub(unit: Path, tmp_path: Path, change: tuple[str, str] | None = None) -> Path:
    stub = tmp_path / "bin" / "depin"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = unit.read_text()
    assert PROGRAM in text
    text = text.replace(PROGRAM, str(stub))
    if change is not None:
        assert change[0] in text
        text = text.replace(*change)
    copy = tmp_path / unit.name
    copy.write_text(text)
    return copy


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_units_are_found() -> None:
    assert {p.name for p in unit_files()} == {WORKER, COORDINATOR}


@pytest.mark.parametrize("name", [WORKER, COORDINATOR])
def test_systemd_analyze_verify_finds_nothing(name: str, tmp_path: Path) -> None:
    done = _verify(_with_stub(_unit(name), tmp_path))
    # An unknown key is only a warning (exit 0), so any output at all fails.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


@pytest.mark.parametrize("change", [("\nNice=19", "\nNcie=19"), ("CPUSchedulingPolicy=idle", "CPUSchedulingPolicy=low"),
                                    ("ProtectSystem=strict", "ProtectSystem=very")])
def test_systemd_analyze_verify_finds_a_broken_copy(change: tuple[str, str], tmp_path: Path) -> None:
    done = _verify(_with_stub(_unit(WORKER), tmp_path, change))
    assert (done.stdout + done.stderr).strip(), f"systemd-analyze accepted {change[1]!r}"


@pytest.mark.parametrize("name", [WORKER, COORDINATOR])
def test_exposure_score(name: str, tmp_path: Path) -> None:
    done = subprocess.run([systemd_analyze(), "security", "--offline=true", f"--threshold={MAX_EXPOSURE[name]}",
                           str(_with_stub(_unit(name), tmp_path))],
                          capture_output=True, text=True, timeout=60, check=False)
    overall = [line for line in done.stdout.splitlines() if "Overall exposure" in line]
    assert done.returncode == 0, f"{name}: {overall} is above {MAX_EXPOSURE[name] / 10}:\n{done.stdout}"


# ---- the keys -------------------------------------------------------------------------------------------------

_TRUE = {"yes", "true", "on", "1"}
_HARDENING = {  # both units
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
    "LockPersonality": "yes", "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
    "DynamicUser": "yes", "Restart": "on-failure",
}
_WORKER_ONLY = {"Nice": "19", "CPUSchedulingPolicy": "idle", "IOSchedulingClass": "idle"}


def _last(section: dict[str, list[str]], key: str) -> str | None:
    values = section.get(key)
    return values[-1] if values else None


def _same(value: str | None, want: str) -> bool:
    if value is None:
        return False
    return (value in _TRUE) if want == "yes" else value == want


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * units[suffix]
    return float(value)


@pytest.mark.parametrize("name", [WORKER, COORDINATOR])
def test_hardening_and_restart_keys(name: str) -> None:
    unit = parse_unit(_unit(name))
    service = unit["Service"]
    want = {**_HARDENING, **(_WORKER_ONLY if name == WORKER else {})}
    wrong = {k: _last(service, k) for k, v in want.items() if not _same(_last(service, k), v)}
    assert not wrong, f"{name}: these keys are missing or differ from {want}: {wrong}"
    families = set(" ".join(service["RestrictAddressFamilies"]).split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert 1 <= _seconds(_last(service, "RestartSec") or "0") <= 300
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(unit["Unit"])
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_worker_can_jit() -> None:
    # numba maps the code it compiles executable: MemoryDenyWriteExecute=yes would kill the worker at its first task.
    value = _last(parse_unit(_unit(WORKER))["Service"], "MemoryDenyWriteExecute")
    assert value is None or value not in _TRUE


def test_the_coordinator_refuses_writable_executable_memory() -> None:
    # It never compiles (tests/deploy/test_coordinator_no_jit.py), so it may refuse W+X memory.
    assert _last(parse_unit(_unit(COORDINATOR))["Service"], "MemoryDenyWriteExecute") in _TRUE


def test_the_worker_can_read_battery_and_temperature() -> None:
    paths = " ".join(parse_unit(_unit(WORKER))["Service"].get("ReadOnlyPaths", [])).split()
    assert {p.lstrip("-") for p in paths} >= {"/sys/class/power_supply", "/sys/class/thermal"}
    assert not parse_unit(_unit(WORKER))["Service"].get("InaccessiblePaths")


@pytest.mark.parametrize(("name", "codes"), [(WORKER, {"4", "5"}), (COORDINATOR, {"4"})])
def test_verdicts_are_not_restarted(name: str, codes: set[str]) -> None:
    # Worker: 4 = LEDGER ALARM, 5 = banned (depin/cli/main.py); restarting cannot change either.
    service = parse_unit(_unit(name))["Service"]
    assert codes <= set(" ".join(service["RestartPreventExitStatus"]).split())


def test_the_worker_is_given_time_to_finish_its_task() -> None:
    assert _seconds(_last(parse_unit(_unit(WORKER))["Service"], "TimeoutStopSec") or "0") >= 60


@pytest.mark.parametrize(("name", "command"), [(WORKER, "worker"), (COORDINATOR, "coordinator")])
def test_exec_start_is_a_command_the_cli_accepts(name: str, command: str) -> None:
    service = parse_unit(_unit(name))["Service"]
    argv = shlex.split(expand_specifiers(_last(service, "ExecStart") or ""))
    assert argv[0] == PROGRAM, f"ExecStart runs {argv[0]}, deploy/README.md installs {PROGRAM}"
    assert cli_refusal(argv[1:]) is None, cli_refusal(argv[1:])
    args = build_parser().parse_args(argv[1:])
    assert args.command == command
    # The data dir is the one StateDirectory= creates and keeps for the service's user.
    assert args.data_dir == f"/var/lib/{_last(service, 'StateDirectory')}"
