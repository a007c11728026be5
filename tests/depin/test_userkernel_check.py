"""depin.userkernel.check (docs/KERNELS.md 2): every construct section 2 refuses, and every escape we could think
of, is refused with its line and what it is; a file that follows the rules gives its spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from depin.errors import KernelRefused, UserError
from depin.userkernel import check as check_module
from depin.userkernel.check import MAX_DEPTH, check

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "builtin"

BASE = '''"""A kernel for tests: twice each index, scaled."""
import math
import numpy as np

NAME = "probe"
PARAMS = {"n": (int, 1, 1000, "size"), "scale": (float, 0.0, 10.0, "scale", 1.0)}
INDEX = "n"
OUTPUT = ("float64", ("rows",))
MERGE = "concatenate"
COMPARE = "exact"


def helper(x):
    return x * 2.0


def compute(start, end, n, scale, out):
    for i in range(start, end):
        out[i - start] = helper(i * scale)
'''
BODY_LINE = BASE.splitlines().index("    for i in range(start, end):") + 1  # where `in_compute` puts its lines
TOP_LINE = BASE.count("\n") + 1  # where `at_top` puts its lines


def in_compute(*lines: str) -> str:
    """BASE with `lines` first in compute's body."""
    head, tail = BASE.split("    for i in range(start, end):\n")
    return head + "".join(f"    {line}\n" for line in lines) + "    for i in range(start, end):\n" + tail


def at_top(*lines: str) -> str:
    """BASE with `lines` added at its end (the top level)."""
    return BASE + "".join(f"{line}\n" for line in lines)


def refusal(source: str) -> str:
    with pytest.raises(KernelRefused) as info:
        check(source)
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    return str(info.value)


def test_the_base_file_and_the_built_in_kernels_written_as_files_pass() -> None:
    spec = check(BASE)
    assert (spec.name, spec.index, spec.output, spec.merge, spec.compare, spec.work) == (
        "probe", "n", ("float64", ("rows",)), "concatenate", "exact", ("rows",))
    assert [(p.name, p.type, p.minimum, p.maximum, p.default) for p in spec.params] == [
        ("n", int, 1, 1000, None), ("scale", float, 0.0, 10.0, 1.0)]
    assert spec.doc == "A kernel for tests: twice each index, scaled." and not spec.has_verify
    for name in ("mandelbrot", "nonce", "montecarlo"):
        assert check((EXAMPLES / f"{name}.py").read_text()).name == name


# Each: lines put first in compute's body, and what the refusal must say. Every item section 2 lists, and escapes.
IN_COMPUTE = [
    # imports, anywhere but the top
    (["import os"], "import of 'os'"),
    (["from numpy import zeros"], "'from numpy import ...'"),
    # numpy and math outside the allowlist
    (["x = np.lib"], "attribute 'np.lib'"),
    (["x = np.lib.npyio"], "attribute 'np.lib.npyio'"),
    (["x = np.ctypeslib.as_array(out)"], "attribute 'np.ctypeslib.as_array' is not allowed (an attribute chain)"),
    (["x = np.memmap(out)"], "attribute 'np.memmap'"),
    (["x = np.load(out)"], "attribute 'np.load'"),
    (["x = np.fromfile(out)"], "attribute 'np.fromfile'"),
    (["x = np.frombuffer(out)"], "attribute 'np.frombuffer'"),
    (["x = np.random.rand(3)"], "attribute 'np.random.rand' is not allowed (an attribute chain)"),
    (["x = np.__dict__"], "attribute 'np.__dict__'"),
    (["x = math.__loader__"], "attribute 'math.__loader__'"),
    (["x = math.pi.real"], "attribute chain"),
    (["x = np"], "'np' is only allowed as np.<function>"),
    (["x = np[0]"], "subscripting 'np'"),
    # builtins outside the allowlist
    *[([f"{f}(out)"], f"calling '{f}'") for f in ("exec", "eval", "open", "getattr", "setattr", "globals", "locals",
                                                   "vars", "__import__", "compile", "breakpoint", "input", "print",
                                                   "type", "id", "isinstance")],
    (["ｅｘｅｃ(out)"], "calling 'exec'"),  # fullwidth letters: Python reads them as exec (NFKC), and so do we
    (["x = getattr"], "name 'getattr'"),
    (["x = __builtins__"], "name '__builtins__'"),
    (["x = __name__"], "name '__name__'"),
    (["x = objmode"], "name 'objmode'"),
    (["x = numba"], "name 'numba'"),
    # dunder names and attributes, names starting with _
    (["x = out.__class__"], "attribute 'out.__class__'"),
    (["x = out.__class__.__subclasses__()"], "attribute 'out.__class__.__subclasses__'"),
    (["x = ().__class__"], "(an attribute of an expression)"),
    (["x = True.__class__"], "(an attribute of an expression)"),
    (["_x = 1"], "a variable named '_x'"),
    (["x = out._private"], "attribute 'out._private'"),
    # array attributes outside .shape .size .ndim .dtype, and calls of attributes
    (["x = out.ctypes"], "attribute 'out.ctypes'"),
    (["x = out.data"], "attribute 'out.data'"),
    (["x = out.base"], "attribute 'out.base'"),
    (["out.tofile(0)"], "attribute 'out.tofile'"),
    (["x = out.shape(0)"], "calling 'out.shape'"),
    (["x = out.dtype.type"], "attribute chain"),
    # attributes of call results and calls of call results
    (["x = np.zeros(3).tofile"], "an attribute of a call's result"),
    (["np.zeros(3).tofile(0)"], "an attribute of a call's result"),
    (["x = helper(1.0).real"], "an attribute of a call's result"),
    (["x = helper(1.0)(2.0)"], "calling"),
    (["x = helper"], "'helper' may only be called"),
    (["x = range"], "'range' may only be called"),
    (["y = 1", "x = y(2)"], "calling 'y'"),
    # keyword arguments other than dtype=
    (["x = np.zeros(3, like=out)"], "keyword argument like="),
    (["x = np.zeros(3, **out)"], "keyword argument **"),
    # shadowing np, math, builtins and the file's functions
    (["np = 3"], "a variable named 'np'"),
    (["math = 3"], "a variable named 'math'"),
    (["range = 3"], "a variable named 'range'"),
    (["max = 3"], "a variable named 'max'"),
    (["helper = 3"], "assignment to 'helper'"),
    (["for range in range(3):", "    pass"], "a variable named 'range'"),
    # statements
    (["with np.errstate():", "    pass"], "'with'"),
    (["try:", "    pass", "except Exception:", "    pass"], "'try'"),
    (["raise ValueError"], "'raise'"),
    (["global x"], "'global'"),
    (["nonlocal x"], "'nonlocal'"),
    (["x = 1", "del x"], "'del'"),
    (["assert n > 0"], "'assert'"),
    (["x: int = 1"], "an annotated assignment"),
    (["def inner(y):", "    return y"], "a nested 'def'"),
    (["class C:", "    pass"], "class"),
    (["match n:", "    case 1:", "        pass"], "'match'"),
    (["for j in out:", "    pass"], "'for' is only allowed over range(...)"),
    (["for j in range(3):", "    pass", "else:", "    pass"], "'else' on a loop"),
    (["while n > 0:", "    break", "else:", "    pass"], "'else' on a loop"),
    (["for j, k in range(3):", "    pass"], "one name"),
    (["out.shape = 3"], "assignment to"),
    (["n"], "an expression statement that is not a call"),
    # expressions
    (["x = lambda y: y"], "lambda"),
    (["x = [j for j in range(3)]"], "a list comprehension"),
    (["x = {j for j in range(3)}"], "a set comprehension"),
    (["x = {j: j for j in range(3)}"], "a dict comprehension"),
    (["x = sum(j for j in range(3))"], "calling 'sum'"),
    (["x = max(j for j in range(3))"], "a generator expression"),
    (["x = f'{n}'"], "an f-string"),
    (["x = 'os'"], "the str constant 'os'"),
    (["x = b'os'"], "the bytes constant"),
    (["x = ..."], "the ellipsis constant"),
    (["x = [1, 2]"], "a list"),
    (["x = {1: 2}"], "a dict"),
    (["x = {1, 2}"], "a set"),
    (["x = (y := 3)"], "':=' (walrus)"),
    (["x = (*out,)"], "a starred expression"),
    (["x, *y = 1, 2"], "assignment to"),
    (["x = helper(*out)"], "a starred expression"),
    (["x = yield 1"], "'yield'"),
    (["x = n in out"], "the operator in"),
    (["x = n is None"], "the operator in"),
    (["x = 2 ** 70000 if n else 18446744073709551616"], "does not fit in 64 bits"),
]


@pytest.mark.parametrize(("lines", "says"), IN_COMPUTE, ids=[" / ".join(c[0]) for c in IN_COMPUTE])
def test_a_construct_in_a_function_is_refused_with_its_line(lines: list[str], says: str) -> None:
    message = refusal(in_compute(*lines))
    assert message.startswith(f"line {BODY_LINE}, ") or message.startswith(f"line {BODY_LINE + 1}, "), message
    assert says in message, message


TOP = [
    (["import os"], "import of 'os'"),
    (["import sys"], "import of 'sys'"),
    (["import ctypes"], "import of 'ctypes'"),
    (["import cffi"], "import of 'cffi'"),
    (["import numba"], "import of 'numba'"),
    (["import importlib"], "import of 'importlib'"),
    (["import numpy"], "import of 'numpy'"),
    (["import numpy as xp"], "import of 'numpy as xp'"),
    (["import numpy.ctypeslib as np"], "import of 'numpy.ctypeslib as np'"),
    (["import math as m"], "import of 'math as m'"),
    (["import math, os"], "import of 'math, os'"),
    (["import numpy as np"], "numpy is imported twice"),
    (["from math import *"], "'from math import ...'"),
    (["from numpy import zeros"], "'from numpy import ...'"),
    (["from . import x"], "'from . import ...'"),
    (["X = 1"], "assignment to 'X' at the top level"),
    (["np = 1"], "assignment to 'np' at the top level"),
    (["NAME = 'again'"], "NAME is assigned twice"),
    (["NAME: str = 'x'"], "an annotated assignment"),
    (["A = B = 1"], "an assignment"),
    (["compute(0, 1, 1, 1.0, None)"], "an expression"),
    (["if __name__ == '__main__':", "    pass"], "'if'"),
    (["for i in range(3):", "    pass"], "'for'"),
    (["while True:", "    pass"], "'while'"),
    (["try:", "    import os", "except ImportError:", "    pass"], "'try'"),
    (["with open('x') as f:", "    pass"], "'with'"),
    (["class Kernel:", "    pass"], "class"),
    (["async def go():", "    pass"], "'async def'"),
    (["'a second string'"], "an expression"),
    (["@np.vectorize", "def deco(x):", "    return x"], "a decorator"),
    (["def dflt(x=open):", "    return x"], "a default argument"),
    (["def dflt2(x=np.lib):", "    return x"], "a default argument"),
    (["def kwd(*, x):", "    return x"], "only plain arguments"),
    (["def var(*xs):", "    return 1"], "only plain arguments"),
    (["def kw(**xs):", "    return 1"], "only plain arguments"),
    (["def pos(x, /):", "    return x"], "only plain arguments"),
    (["def ann(x: open('/etc/passwd')):", "    return x"], "an annotation"),
    (["def ret(x) -> open('/etc/passwd'):", "    return x"], "an annotation"),
    (["def _hidden(x):", "    return x"], "a function named '_hidden'"),
    (["def np(x):", "    return x"], "a function named 'np'"),
    (["def range(x):", "    return x"], "a function named 'range'"),
    (["def helper(x):", "    return x"], "'helper' is defined twice"),
    (["def gen(x):", "    yield x"], "not a call"),
    (["def shadow(np):", "    return 1"], "an argument named 'np'"),
    (["def shadow(helper):", "    return 1"], "an argument named 'helper'"),
    (["def shadow(_x):", "    return 1"], "an argument named '_x'"),
    (["def rec(x):", "    return rec(x)"], "recursion is not allowed"),
    (["def ping(x):", "    return pong(x)", "def pong(x):", "    return ping(x)"], "recursion is not allowed"),
]


@pytest.mark.parametrize(("lines", "says"), TOP, ids=[" / ".join(c[0]) for c in TOP])
def test_a_construct_at_the_top_level_is_refused_with_its_line(lines: list[str], says: str) -> None:
    message = refusal(at_top(*lines))
    assert any(message.startswith(f"line {TOP_LINE + k}, ") for k in range(len(lines))), message
    assert says in message, message


def test_where_a_refusal_points() -> None:
    assert refusal(in_compute("x = np.lib")) == f"line {BODY_LINE}, col 9: attribute 'np.lib' is not allowed"
    assert refusal(at_top("import os")).startswith(f"line {TOP_LINE}, col 1: import of 'os' is not allowed")


def test_a_syntax_error_and_absurd_nesting_are_refused_not_crashed_on() -> None:
    assert refusal(at_top("def f(:")).startswith(f"line {TOP_LINE}, col 7: syntax error")
    assert f"nesting deeper than {MAX_DEPTH}" in refusal(in_compute(f"x = {'-' * 150}1"))
    assert "nesting deeper" in refusal(in_compute(f"x = {' + '.join(['n'] * 120)}"))
    assert "too deeply to parse" in refusal(in_compute(f"x = {'-' * 30_000}1"))
    assert "cannot be parsed" in refusal(BASE + "x = 1\0\n")


def test_recursion_is_refused_at_the_call_that_closes_the_cycle() -> None:
    message = refusal(at_top("def ping(x):", "    return pong(x)", "def pong(x):", "    return ping(x)"))
    assert message.startswith(f"line {TOP_LINE + 1}, col 12:") and "ping calls itself" in message


def test_allowed_constructs_pass() -> None:
    spec = check(in_compute(
        "a, b = n, 2",
        "c = a if b > 1 else -a",
        "d = np.zeros((3, 4), dtype=np.float64)",
        "d[0, 1:3] = math.sqrt(2.0) + np.pi",
        "d[1][2] += out.shape[0] * out.size + out.ndim",
        "e = np.zeros(2, dtype=out.dtype)",
        "j = 0",
        "while j < 3 and not (j == 7 or j != j):",
        "    j += 1",
        "    if j > 1:",
        "        continue",
        "    elif j < 0:",
        "        break",
        "    else:",
        "        pass",
        "for k in range(0, 10, 2):",
        "    c = c ^ (k << 1) | (k >> 1) & ~k",
        "f = min(abs(c), len(out), int(2.5), 7) + max(float(1), bool(0)) + 1j",
        "g = np.float64(1.0) / 3.0 // 1 % 2 ** 2",
        "h = np.zeros((2, 2)) @ np.ones((2, 2))",
        "x = 18446744073709551615",
    ))
    assert spec.name == "probe"


def test_function_docstrings_are_allowed_and_other_strings_are_not() -> None:
    with_doc = BASE.replace("def helper(x):\n", 'def helper(x):\n    """Twice x."""\n')
    assert check(with_doc).name == "probe"
    assert "not a call" in refusal(with_doc.replace("return x * 2.0", '"""again"""\n    return x * 2.0'))
    assert "the str constant" in refusal(with_doc.replace("return x * 2.0", 'return "x"'))


def test_a_node_no_handler_visited_is_refused_by_the_last_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Were a handler to forget a child (here: subscripts' indexes go unvisited), the pass over every node still
    # finds what nobody accepted.
    monkeypatch.setattr(check_module._Function, "index", lambda self, i: None)
    message = refusal(in_compute("x = out[np.lib]"))
    assert message == f"line {BODY_LINE}, col 13: 'Attribute' is not allowed"
