"""coordinator.published: a kernel file admitted (checked by depin.userkernel, canonical, named by its id) and
registered again after a restart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from coordinator import published
from depin import kernels
from depin.errors import KernelRefused
from depin.kernels import mandelbrot
from depin.userkernel import source
from tests.coordinator.sched_support import KERNELS, PARAMS, SUBMITTER, WORKER_KEYS, new_scheduler, task_of, wid

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


def test_a_published_file_is_submitted_split_and_leased_by_its_id_and_its_outputs_merge() -> None:
    s = new_scheduler()
    row, new = s.publish(now=0, publisher=SUBMITTER, raw=(EXAMPLES / "mandelbrot.py").read_bytes())
    assert new and row.name == "mandelbrot" and s.publish(now=1, publisher=SUBMITTER, raw=row.source)[1] is False
    job = s.submit(now=1, submitter=SUBMITTER, kernel_name=row.kernel_id, params={"width": 8, "height": 6},
                   n_tasks=3, replicas=2, max_results=None, price=7, max_errors=None)
    s.touch_worker(now=2, worker_id=wid("A"), public_key=WORKER_KEYS["A"].public)
    grants = s.lease(now=2, worker_id=wid("A"), max_tasks=8, kernels_ok=KERNELS, published=True, platform=None)
    tasks = sorted((task_of(g) for g in grants), key=lambda t: t["params"]["start"])
    assert [(t["kernel"], t["kernel_version"]) for t in tasks] == [(row.kernel_id, 0)] * 3
    assert [(t["params"]["start"], t["params"]["end"]) for t in tasks] == [(0, 2), (2, 4), (4, 6)]
    kernel = kernels.get(row.kernel_id, 0)
    assert kernel.output_spec(tasks[1]["params"]) == ("uint32", (2, 8))
    image = mandelbrot.merge(mandelbrot.validate(PARAMS), [np.ones((2, 8), np.uint32)] * 3)
    assert np.array_equal(kernel.merge(job.params, [np.ones((2, 8), np.uint32)] * 3), image)
