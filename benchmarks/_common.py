"""What every benchmark report starts with (the commit measured, the machine it ran on), and the measuring helpers
the benchmarks share: CPU seconds from /proc, the load average, the py-spy binary."""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def revision() -> str:
    """The commit measured, and whether the product code differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "depin", "coordinator", "worker")
    return f"commit {git('rev-parse', '--short', 'HEAD') or '?'}" + (" + uncommitted product changes" if dirty else "")


def machine(*, with_gcc: bool = False) -> str:
    """One line about the machine and the software."""
    import numba
    import numpy as np

    model = "?"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    line = (f"{os.cpu_count()} CPUs ({model}); Python {platform.python_version()}, numba {numba.__version__}, "
            f"numpy {np.__version__}")
    if with_gcc:
        gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
        line += f", gcc {gcc}"
    return line


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot, from /proc/stat."""
    first = pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


def py_spy() -> str:
    """The py-spy binary (on PATH or next to this interpreter), or exit saying how to install it."""
    found = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
    if not pathlib.Path(found).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy (or -e '.[bench]')")
    return found
