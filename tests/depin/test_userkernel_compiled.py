"""depin.userkernel.compiled: kernel files compiled by numba. The three built-in kernels written as files
(examples/builtin/) give the built-ins' outputs; read-only inputs, bounds checks, uint64 wrap-around, the restricted
namespace, compile errors, and the on-disk cache by kernel id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin.errors import KernelRefused, UserError
from depin.kernels import mandelbrot, montecarlo, nonce
from depin.userkernel import source
from depin.userkernel.compiled import Compiled, compile_kernel
from depin.userkernel.spec import merge

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "builtin"
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "data" / "splitmix64_vectors.json").read_text())


def example(name: str) -> Compiled:
    return compile_kernel((EXAMPLES / f"{name}.py").read_text())


HEAD = '''"""A kernel for tests."""
import numpy as np

NAME = "probe"
PARAMS = {"n": (int, 1, 1000, "size")}
INDEX = "n"
OUTPUT = ("float64", ("rows",))
MERGE = "concatenate"
COMPARE = "exact"
'''


def probe(body: str, head: str = HEAD) -> str:
    return head + "\n\n" + body


# ---- the built-in kernels, as kernel files -----------------------------------------------------------------

@pytest.fixture(scope="module")
def files() -> dict[str, Compiled]:
    return {name: example(name) for name in ("mandelbrot", "nonce", "montecarlo")}


@pytest.mark.parametrize(("job", "ranges"), [
    (dict(width=37, height=23, x_min=-2.0, x_max=1.0, y_min=-1.2, y_max=1.2, max_iter=300),
     [(0, 23), (3, 9), (22, 23)]),
    (dict(width=64, height=48, x_min=-0.75, x_max=-0.73, y_min=0.1, y_max=0.12, max_iter=2000), [(0, 48), (17, 31)]),
    (dict(width=1, height=1, x_min=-1e6, x_max=1e6, y_min=-1e6, y_max=1e6, max_iter=1), [(0, 1)]),
])
def test_the_mandelbrot_file_gives_the_built_ins_bits(files: dict[str, Compiled], job: dict[str, Any],
                                                      ranges: list[tuple[int, int]]) -> None:
    for a, b in ranges:
        mine = files["mandelbrot"].run(dict(job, start=a, end=b))
        theirs = mandelbrot.run(dict(job, row_start=a, row_end=b))
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape and mine.tobytes() == theirs.tobytes()


@pytest.mark.parametrize(("seed", "difficulty", "first", "a", "b"), [
    (7, 8, 0, 0, 5000), (12345, 12, 1000, 0, 10_000), (12345, 12, 1000, 2000, 10_000), (1, 30, 0, 0, 1000),
    (2**63 - 1, 3, 2**62, 5, 400),
])
def test_the_nonce_file_gives_the_built_ins_bits(files: dict[str, Compiled], seed: int, difficulty: int, first: int,
                                                 a: int, b: int) -> None:
    t = dict(seed=seed, difficulty=difficulty, first=first, count=b, start=a, end=b)
    mine = files["nonce"].run(t)
    theirs = nonce.run(dict(seed=seed, difficulty=difficulty, start=first, count=b, nonce_start=first + a,
                            nonce_end=first + b))
    assert mine.dtype == theirs.dtype and mine.tobytes() == theirs.tobytes()
    assert files["nonce"].verify(t, None, mine)


def test_the_nonce_files_verify_agrees_with_the_built_ins(files: dict[str, Compiled]) -> None:
    job = dict(seed=12345, difficulty=12, first=1000, count=10_000)
    t, built_in = dict(job, start=0, end=10_000), dict(job, start=1000, nonce_start=1000, nonce_end=11_000)
    found = files["nonce"].run(t)
    solution = int(found[1])
    claims = [found, np.array([1, solution + 1], np.uint64), np.array([1, 999], np.uint64),
              np.array([1, 11_000], np.uint64), np.array([2, solution], np.uint64), np.array([0, 5], np.uint64)]
    for claim in claims:
        assert files["nonce"].verify(t, None, claim) is bool(nonce.verify(built_in, claim))
    assert not files["nonce"].verify(t, None, np.array([0, 0], np.uint64))  # there is a solution: "none" is wrong
    none_here = dict(job, seed=1, difficulty=30, count=1000, start=0, end=1000)
    assert files["nonce"].verify(none_here, None, np.array([0, 0], np.uint64))
    assert not files["nonce"].verify(t, None, np.array([1, solution], np.int64))  # the wrong dtype or shape
    assert not files["nonce"].verify(t, None, np.array([1, solution, 0], np.uint64))


@pytest.mark.parametrize("func", [0, 1, 2])
def test_the_montecarlo_file_gives_the_built_ins_bits_on_this_machine(files: dict[str, Compiled], func: int) -> None:
    for seed, a, b in [(3, 10, 90_000), (0, 0, 1), (2**63 - 1, 5_000_000_000, 5_000_004_096)]:
        mine = files["montecarlo"].run(dict(func=func, samples=10**10, seed=seed, start=a, end=b))
        theirs = montecarlo.run(dict(func=func, samples=10**10, seed=seed, sample_start=a, sample_end=b))
        assert mine.tobytes() == theirs.tobytes()


def test_the_files_merges_equal_the_built_ins(files: dict[str, Compiled]) -> None:
    job = dict(func=2, samples=100_000, seed=9)
    outs = [files["montecarlo"].run(dict(job, start=a, end=b)) for a, b in [(0, 33_333), (33_333, 66_666),
                                                                              (66_666, 100_000)]]
    total = merge(files["montecarlo"].spec, job, outs)
    assert total[0] / 100_000 == montecarlo.merge(job, outs)[0]  # the same sums, added in the same order
    job = dict(seed=5, difficulty=6, first=0, count=300)
    outs = [files["nonce"].run(dict(job, start=a, end=b)) for a, b in [(0, 100), (100, 200), (200, 300)]]
    assert np.array_equal(merge(files["nonce"].spec, job, outs), nonce.merge(job, outs))


def test_splitmix64_written_in_a_kernel_file_wraps_around_as_uint64() -> None:
    text = (EXAMPLES / "nonce.py").read_text()
    mix = text[text.index("def mix("):text.index("\n\n\ndef ", text.index("def mix("))]
    compiled = compile_kernel(probe(mix + '''


def compute(start, end, seed, n, out):
    for i in range(start, end):
        out[i - start] = mix(seed, i)
''', HEAD.replace('{"n"', '{"seed": (int, 0, 9_223_372_036_854_775_807, "seed"), "n"').replace(
        '("float64"', '("uint64"').replace("1000, \"size\"", "2_000_000, \"size\"")))
    for seed, outputs in VECTORS["sequences"].items():
        got = compiled.run({"seed": int(seed), "n": 5, "start": 0, "end": 5})
        assert [f"{int(v):016x}" for v in got] == outputs
    for seed, counter, want in VECTORS["at_counter"]:
        if counter < 2_000_000:
            got = compiled.run({"seed": seed, "n": counter + 1, "start": counter, "end": counter + 1})
            assert f"{int(got[0]):016x}" == want


# ---- what a compiled kernel may and may not do -------------------------------------------------------------

def test_an_index_out_of_range_raises_index_error() -> None:
    compiled = compile_kernel(probe("def compute(start, end, n, out):\n    for i in range(start, end):\n"
                                    "        out[i] = 1.0\n"))
    assert compiled.run({"n": 10, "start": 0, "end": 10}).tolist() == [1.0] * 10
    with pytest.raises(IndexError):
        compiled.run({"n": 10, "start": 3, "end": 7})  # out has 4 rows; i goes to 6


def test_writing_into_an_input_or_into_verifys_out_is_refused_at_compile_time() -> None:
    inputs = HEAD + 'INPUTS = {"w": ("float64", 1, "all")}\n'
    with pytest.raises(KernelRefused, match=r"compute does not compile: line \d+: .*setitem\(readonly array"):
        compile_kernel(probe("def compute(start, end, n, w, out):\n    w[0] = 1.0\n", inputs))
    verifying = HEAD.replace('"exact"', '"verify"')
    with pytest.raises(KernelRefused, match=r"verify does not compile: .*readonly array"):
        compile_kernel(probe("def compute(start, end, n, out):\n    out[0] = 1.0\n\n\n"
                             "def verify(start, end, n, out):\n    out[0] = 2.0\n    return True\n", verifying))


def test_inputs_are_read_only_views_all_or_by_rows() -> None:
    head = HEAD + 'INPUTS = {"w": ("float64", 1, "rows"), "m": ("int64", 2, "all")}\n'
    compiled = compile_kernel(probe('''def compute(start, end, n, w, m, out):
    for i in range(end - start):
        out[i] = w[i] * m[1, 0] + w.shape[0]
''', head))
    w, m = np.arange(10.0), np.array([[0, 0], [3, 0]], dtype=np.int64)
    assert compiled.run({"n": 10, "start": 3, "end": 7}, {"w": w, "m": m}).tolist() == [13.0, 16.0, 19.0, 22.0]
    assert w.flags.writeable and m.flags.writeable  # the caller's arrays are left as they were
    assert compiled.run({"n": 10, "start": 0, "end": 2}, {"w": w[::-1].copy()[::-1], "m": m}).tolist() == [2.0, 5.0]
    for given, says in [({"w": w}, "missing input 'm'"), ({"w": w, "m": m, "x": w}, "unknown input 'x'"),
                        ({"w": w.astype(np.float32), "m": m}, "input 'w' must be a float64 array of 1 axes"),
                        ({"w": w, "m": m[0]}, "input 'm' must be a int64 array of 2 axes"),
                        ({"w": w[:9], "m": m}, "must have 10 rows, not 9")]:
        with pytest.raises(UserError, match=says):
            compiled.run({"n": 10, "start": 3, "end": 7}, given)


def test_an_index_space_over_an_input() -> None:
    head = HEAD.replace('"n": (int, 1, 1000, "size")', '"k": (int, 1, 9, "scale")').replace(
        'INDEX = "n"', 'INDEX = "pts"') + 'INPUTS = {"pts": ("float64", 2, "rows")}\n'
    compiled = compile_kernel(probe('''def compute(start, end, k, pts, out):
    for i in range(end - start):
        out[i] = k * (pts[i, 0] + pts[i, 1])
''', head))
    pts = np.arange(12.0).reshape(6, 2)
    assert compiled.run({"k": 2, "start": 4, "end": 6}, {"pts": pts}).tolist() == [34.0, 42.0]
    with pytest.raises(UserError, match="end <= pts"):
        compiled.run({"k": 2, "start": 4, "end": 7}, {"pts": pts})


def test_task_parameters_are_checked_before_anything_runs() -> None:
    compiled = compile_kernel(probe("def compute(start, end, n, out):\n    out[0] = n\n"))
    for bad, says in [({"n": 10, "start": 3}, "task parameter end"), ({"n": 10, "start": 3, "end": 11}, "end <= n"),
                      ({"n": 10.0, "start": 0, "end": 1}, "task parameter n"), ({"n": 1001, "start": 0, "end": 1},
                                                                                  "outside")]:
        with pytest.raises(UserError, match=says):
            compiled.run(bad)
    with pytest.raises(TypeError):  # compiled once for its exact types: another type is not compiled anew
        compiled.compute_fn(0, 1, 10, np.zeros(1, dtype=np.float32))
    with pytest.raises(UserError, match="has no verify"):
        compiled.verify({"n": 10, "start": 0, "end": 1}, None, np.zeros(1))


def test_what_numba_refuses_is_a_kernel_refusal_naming_the_line() -> None:
    text = probe("def compute(start, end, n, out):\n    x = (1, 2)\n    out[0] = x + 1.5\n")
    line = text.splitlines().index("    out[0] = x + 1.5") + 1
    with pytest.raises(KernelRefused, match=rf"^compute does not compile: line {line}: No implementation of function"):
        compile_kernel(text)
    with pytest.raises(KernelRefused, match="compute must return nothing, not Literal"):
        compile_kernel(probe("def compute(start, end, n, out):\n    return 1\n"))
    verifying = HEAD.replace('"exact"', '"verify"')
    with pytest.raises(KernelRefused, match="verify must return a bool, not int64"):
        compile_kernel(probe("def compute(start, end, n, out):\n    pass\n\n\n"
                             "def verify(start, end, n, out):\n    return n\n", verifying))


def test_the_file_runs_in_a_namespace_of_np_math_its_functions_and_eight_builtins() -> None:
    compiled = example("montecarlo")
    space = compiled.compute_fn.py_func.__globals__
    assert set(space["__builtins__"]) == {"range", "len", "min", "max", "abs", "int", "float", "bool"}
    assert {k for k in space if not k.startswith("__")} == {"np", "math", "mix", "unit", "compute"}
    assert space["mix"] is not compiled.compute_fn and hasattr(space["mix"], "py_func")  # compiled helpers


def test_the_file_is_checked_again_and_nothing_of_a_refused_file_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hostile = probe(f"def compute(start, end, n, out, x=open({str(marker)!r}, 'w')):\n    pass\n")
    with pytest.raises(KernelRefused, match="a default argument is not allowed"):
        compile_kernel(hostile)
    top = HEAD + f"open({str(marker)!r}, 'w')\n\n\ndef compute(start, end, n, out):\n    pass\n"
    with pytest.raises(KernelRefused, match="an expression is not allowed at the top level"):
        compile_kernel(top)
    assert not marker.exists()


# ---- the on-disk cache -------------------------------------------------------------------------------------

_COMPILE = """
import sys
from pathlib import Path
from depin.userkernel.compiled import compile_kernel
c = compile_kernel(Path(sys.argv[1]).read_text(), cache_dir=Path(sys.argv[2]))
out = c.run({"width": 5, "height": 4, "max_iter": 50, "x_min": -2.0, "x_max": 1.0, "y_min": -1.0, "y_max": 1.0,
             "start": 1, "end": 3})
print(c.cached, out.sum())
"""


def _compile_in_a_fresh_process(cache: Path) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    done = subprocess.run([sys.executable, "-c", _COMPILE, str(EXAMPLES / "mandelbrot.py"), str(cache)],
                          capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    cached, total = done.stdout.split()
    return cached == "True", int(total)


def test_compiled_code_is_cached_on_disk_by_kernel_id(tmp_path: Path) -> None:
    raw = (EXAMPLES / "mandelbrot.py").read_bytes()
    kid = source.kernel_id(raw)
    first = _compile_in_a_fresh_process(tmp_path)
    assert (tmp_path / kid / "kernel.py").read_bytes() == source.canonical(raw)
    assert list((tmp_path / kid / "__pycache__").glob("kernel.compute-*.nbi"))
    second = _compile_in_a_fresh_process(tmp_path)
    assert first == (False, second[1]) and second[0]  # compiled, then loaded: the same output
    (tmp_path / kid / "kernel.py").write_bytes(b"# not the kernel\n")  # a damaged copy is written again
    assert _compile_in_a_fresh_process(tmp_path)[1] == first[1]
    assert (tmp_path / kid / "kernel.py").read_bytes() == source.canonical(raw)
    assert not compile_kernel(raw.decode()).cached  # no cache_dir: no cache
