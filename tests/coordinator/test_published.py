"""coordinator.published: a kernel file admitted (checked by depin.userkernel, canonical, named by its id) and
registered again after a restart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coordinator import published
from depin import kernels
from depin.errors import KernelRefused
from depin.userkernel import source

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "builtin"


def test_a_kernel_file_is_admitted_canonical_named_by_its_id_and_registered() -> None:
    raw = (EXAMPLES / "mandelbrot.py").read_bytes().replace(b"\n", b"\r\n")
    admitted = published.admit(raw)
    assert admitted.kernel_id == source.kernel_id(raw) == hashlib.sha256(admitted.source).hexdigest()
    assert admitted.source == (EXAMPLES / "mandelbrot.py").read_bytes()  # canonical: \n line endings
    assert admitted.name == "mandelbrot" and admitted.kernel.key == f"{admitted.kernel_id}@0"
    assert published.load(raw) is not None and kernels.get(admitted.kernel_id, 0).name == admitted.kernel_id


def test_a_refused_file_is_a_user_error_naming_its_line() -> None:
    raw = (EXAMPLES / "mandelbrot.py").read_bytes().replace(b'NAME = "', b'import os\nNAME = "')
    line = raw.decode().splitlines().index("import os") + 1
    with pytest.raises(KernelRefused, match=f"line {line}, col 1: import of 'os' is not allowed"):
        published.admit(raw)
