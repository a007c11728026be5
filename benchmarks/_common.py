"""What every benchmark report starts with: the commit measured and the machine it ran on."""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess

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
