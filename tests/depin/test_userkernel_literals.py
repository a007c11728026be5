"""The literals of a kernel file (docs/KERNELS.md 1, depin.userkernel._literals): each rule of section 1's table
refused with a message that names it, and what a good file's spec holds."""

from __future__ import annotations

import pytest

from depin.errors import KernelRefused
from depin.kernels.base import Tolerance
from depin.userkernel.check import check
from depin.userkernel.spec import Input

LITERALS = {
    "NAME": '"probe"',
    "PARAMS": '{"n": (int, 1, 1000, "size"), "scale": (float, 0.0, 10.0, "scale", 1.0)}',
    "INDEX": '"n"',
    "OUTPUT": '("float64", ("rows",))',
    "MERGE": '"concatenate"',
    "COMPARE": '"exact"',
}
COMPUTE = "def compute(start, end, n, scale, out):\n    out[0] = scale\n"


def kernel(doc: str = "A kernel for tests.", functions: str = COMPUTE, **literals: str | None) -> str:
    """A kernel file with LITERALS changed by `literals` (None: left out)."""
    values = {**LITERALS, **literals}
    lines = [f'"""{doc}"""' if doc else "", "import numpy as np", ""]
    lines += [f"{name} = {value}" for name, value in values.items() if value is not None]
    return "\n".join(lines) + "\n\n\n" + functions


def refusal(source: str) -> str:
    with pytest.raises(KernelRefused) as info:
        check(source)
    return str(info.value)


def test_a_good_file_gives_its_spec() -> None:
    spec = check(kernel(WORK='("rows", "n", 3)', PLATFORM='"same"', SAMPLE='{"n": 7, "scale": 2}'))
    assert spec.work == ("rows", "n", 3) and spec.platform == "same"
    assert spec.sample == {"n": 7, "scale": 2.0} and isinstance(spec.sample["scale"], float)
    spec = check(kernel(COMPARE='("tolerance", 0, 1e-9)', INPUTS='{"w": ("float32", 2, "rows"), "v": ("int64", 1,'
                        ' "all")}', functions=COMPUTE.replace("scale, out", "scale, w, v, out")))
    assert spec.compare == Tolerance(0.0, 1e-9)
    assert spec.inputs == (Input("w", "float32", 2, "rows"), Input("v", "int64", 1, "all"))
    spec = check(kernel(INDEX='"w"', INPUTS='{"w": ("float64", 1, "rows")}', PARAMS="{}",
                        functions="def compute(start, end, w, out):\n    out[0] = w[start]\n"))
    assert spec.index == "w" and spec.params == ()


BAD = [
    # the docstring and the required names
    ({"doc": ""}, "must start with a docstring"),
    ({"doc": "x" * 201}, "first line is 201 characters, over 200"),
    ({"NAME": None}, "has no NAME"),
    ({"PARAMS": None}, "has no PARAMS"),
    ({"INDEX": None}, "has no INDEX"),
    ({"OUTPUT": None}, "has no OUTPUT"),
    ({"MERGE": None}, "has no MERGE"),
    ({"COMPARE": None}, "has no COMPARE"),
    ({"functions": "def other(x):\n    return x\n"}, "has no compute"),
    # literals only
    ({"NAME": '"pro" + "be"'}, "NAME must be a literal"),
    ({"PARAMS": '{"n": (int, 1, 2**10, "size")}'}, "PARAMS['n'] max must be a literal"),
    ({"PARAMS": 'dict(n=(int, 1, 2, "size"))'}, "PARAMS must be a dict literal"),
    # NAME
    ({"NAME": '"Probe"'}, "NAME must match"),
    ({"NAME": '"1probe"'}, "NAME must match"),
    ({"NAME": '"p" * 2'}, "NAME must be a literal"),
    ({"NAME": repr("p" * 41)}, "NAME must match"),
    ({"NAME": "7"}, "NAME must match"),
    # PARAMS
    ({"PARAMS": "{" + ", ".join(f'"p{i}": (int, 1, 2, "x")' for i in range(33)) + "}"}, "33 entries, at most 32"),
    ({"PARAMS": '{"N": (int, 1, 2, "size")}'}, "PARAMS name 'N' must match"),
    ({"PARAMS": '{"n" * 1: (int, 1, 2, "size")}'}, "a name in PARAMS must be a literal"),
    ({"PARAMS": '{"' + "n" * 33 + '": (int, 1, 2, "size")}'}, "must match"),
    *[({"PARAMS": f'{{"{n}": (int, 1, 2, "x")}}'}, f"PARAMS name '{n}' is reserved")
      for n in ("start", "end", "out", "rows", "if", "np", "math", "max", "range")],
    ({"PARAMS": '{"n": (int, 1, 2, "x"), "n": (int, 1, 3, "y")}'}, "PARAMS names 'n' twice"),
    ({"PARAMS": '{"n": (int, 1, 2)}'}, "must be (type, min, max, doc)"),
    ({"PARAMS": '{"n": [int, 1, 2, "x"]}'}, "must be (type, min, max, doc)"),
    ({"PARAMS": '{"n": ("int", 1, 2, "x")}'}, "the type must be the bare name int or float"),
    ({"PARAMS": '{"n": (str, 1, 2, "x")}'}, "the type must be the bare name int or float"),
    ({"PARAMS": '{"n": (int, 1.0, 2, "x")}'}, "PARAMS['n'] min must be an integer in int64"),
    ({"PARAMS": '{"n": (int, True, 2, "x")}'}, "PARAMS['n'] min must be an integer in int64"),
    ({"PARAMS": '{"n": (int, 1, 9223372036854775808, "x")}'}, "PARAMS['n'] max must be an integer in int64"),
    ({"PARAMS": '{"n": (int, 1, 10, "x"), "scale": (float, 0.0, 1e999, "y")}'}, "max must be a finite number"),
    ({"PARAMS": '{"n": (int, 1, 10, "x"), "scale": (float, "0", 1.0, "y")}'}, "min must be a finite number"),
    ({"PARAMS": '{"n": (int, 5, 1, "x")}'}, "PARAMS['n']: min 5 is above max 1"),
    ({"PARAMS": '{"n": (int, 1, 2, "")}'}, "doc must be one line of 1 to 200 characters"),
    ({"PARAMS": '{"n": (int, 1, 2, 7)}'}, "doc must be one line"),
    ({"PARAMS": '{"n": (int, 1, 2, "two\\nlines")}'}, "doc must be one line"),
    ({"PARAMS": '{"n": (int, 1, 2, "x", 3)}'}, "PARAMS['n'] default 3 is outside [1, 2]"),
    ({"PARAMS": '{"n": (int, 1, 2, "x", 1.5)}'}, "PARAMS['n'] default must be an integer"),
    ({"PARAMS": '{"n": (int, 1, 2, "x", None)}'}, "PARAMS['n'] default must be an integer"),
    ({"PARAMS": '{**{"n": (int, 1, 2, "x")}}'}, "'**' in PARAMS"),
    # INDEX
    ({"INDEX": "3"}, "INDEX must be the name of an int parameter or of an input"),
    ({"INDEX": '"m"'}, "INDEX must name an int parameter or an input, not 'm'"),
    ({"INDEX": '"scale"'}, "INDEX must name an int parameter or an input, not 'scale'"),
    ({"PARAMS": '{"n": (int, 0, 10, "x"), "scale": (float, 0.0, 1.0, "y")}'}, "its min must be at least 1"),
    # OUTPUT
    ({"OUTPUT": '"float64"'}, "OUTPUT must be a tuple (dtype, shape)"),
    ({"OUTPUT": '("float16", ("rows",))'}, "OUTPUT's dtype must be one of"),
    ({"OUTPUT": '("object", ("rows",))'}, "OUTPUT's dtype must be one of"),
    ({"OUTPUT": '("float64", ["rows"])'}, "OUTPUT's shape must be a tuple of 1 to 4 entries"),
    ({"OUTPUT": '("float64", ())'}, "OUTPUT's shape must be a tuple of 1 to 4 entries"),
    ({"OUTPUT": '("float64", ("rows", 1, 1, 1, 1))'}, "OUTPUT's shape must be a tuple of 1 to 4 entries"),
    ({"OUTPUT": '("float64", ("rows", 0))'}, "0 is not a positive int"),
    ({"OUTPUT": '("float64", ("rows", -2))'}, "-2 is not a positive int"),
    ({"OUTPUT": '("float64", ("rows", 1.5))'}, "1.5 is not a positive int"),
    ({"OUTPUT": '("float64", ("rows", True))'}, "True is not a positive int"),
    ({"OUTPUT": '("float64", ("rows", "scale"))'}, "'scale' is not a positive int"),
    ({"OUTPUT": '("float64", ("rows", "width"))'}, "'width' is not a positive int"),
    ({"OUTPUT": '("float64", ("rows", "k"))', "PARAMS": '{"n": (int, 1, 9, "x"), "k": (int, -1, 9, "y")}',
      "functions": COMPUTE.replace("scale", "k")}, "parameter 'k' may be negative"),
    ({"OUTPUT": '("float64", (3, "rows"))'}, "\"rows\" may only be OUTPUT's first entry"),
    ({"MERGE": '"stack"'}, "with MERGE = \"concatenate\""),
    ({"MERGE": '"sum"'}, "with MERGE = \"concatenate\""),
    # MERGE, COMPARE, WORK, PLATFORM
    ({"MERGE": '"mean"'}, "MERGE must be one of 'concatenate', 'stack', 'sum', 'min', 'max', not 'mean'"),
    ({"COMPARE": '"close"'}, "COMPARE must be \"exact\", \"verify\" or (\"tolerance\""),
    ({"COMPARE": '("tolerance", -1.0, 0.0)'}, "finite tolerances >= 0"),
    ({"COMPARE": '("tolerance", 1e999, 0.0)'}, "finite tolerances >= 0"),
    ({"COMPARE": '("tolerance", 1e-9)'}, "COMPARE must be"),
    ({"COMPARE": '("tolerance", True, 0.0)'}, "COMPARE must be"),
    ({"COMPARE": '"verify"'}, "a verify function goes with COMPARE = \"verify\""),
    ({"functions": COMPUTE + "\n\ndef verify(start, end, n, scale, out):\n    return True\n"},
     "a verify function goes with COMPARE = \"verify\", and only with it"),
    ({"WORK": '"rows"'}, "WORK must be a tuple of 1 to 8 entries"),
    ({"WORK": "()"}, "WORK must be a tuple"),
    ({"WORK": '("rows",) * 9'}, "WORK must be a literal"),
    ({"WORK": "(" + "1, " * 9 + ")"}, "WORK must be a tuple of 1 to 8 entries"),
    ({"WORK": '("rows", "scale")'}, "WORK: 'scale' is not a positive int"),
    ({"PLATFORM": '"all"'}, "PLATFORM must be one of 'any', 'same'"),
    # INPUTS
    ({"INPUTS": '{"w": ("float16", 1, "rows")}'}, "INPUTS['w'] must be (dtype, ndim, part)"),
    ({"INPUTS": '{"w": ("float64", 0, "rows")}'}, "ndim 1 to 4"),
    ({"INPUTS": '{"w": ("float64", 5, "rows")}'}, "ndim 1 to 4"),
    ({"INPUTS": '{"w": ("float64", 1, "some")}'}, "part \"all\" or \"rows\""),
    ({"INPUTS": '{"n": ("float64", 1, "all")}'}, "the name 'n' is given to two things"),
    ({"INPUTS": '{"out": ("float64", 1, "all")}'}, "INPUTS name 'out' is reserved"),
    ({"INPUTS": "{" + ", ".join(f'"w{i}": ("float64", 1, "all")' for i in range(9)) + "}"}, "at most 8"),
    # SAMPLE
    ({"SAMPLE": '{"m": 3}'}, "SAMPLE names 'm', which is not a parameter"),
    ({"SAMPLE": '{"n": 3000}'}, "SAMPLE: parameter n: 3000 is outside [1, 1000]"),
    ({"SAMPLE": '{"n": 2.5}'}, "SAMPLE: parameter n: must be int"),
    # compute's (and verify's) arguments, and names given twice
    ({"functions": "def compute(start, end, n, scale):\n    pass\n"}, "compute's arguments must be (start, end, n,"
                                                                      " scale, out), not (start, end, n, scale)"),
    ({"functions": "def compute(start, end, scale, n, out):\n    pass\n"}, "compute's arguments must be"),
    ({"COMPARE": '"verify"', "functions": COMPUTE + "\n\ndef verify(start, end, n, out):\n    return True\n"},
     "verify's arguments must be (start, end, n, scale, out)"),
    ({"functions": COMPUTE + "\n\ndef scale(x):\n    return x\n"}, "an argument named 'scale' is not allowed"),
]


@pytest.mark.parametrize(("change", "says"), BAD, ids=[str(c[0])[:60] for c in BAD])
def test_each_rule_of_section_1_is_refused_by_name(change: dict[str, str | None], says: str) -> None:
    message = refusal(kernel(**change))
    assert says in message, message


def test_a_literal_refusal_points_at_its_line() -> None:
    message = refusal(kernel(MERGE='"mean"'))
    line = kernel(MERGE='"mean"').splitlines().index('MERGE = "mean"') + 1
    assert message.startswith(f"line {line}, col 9: MERGE must be one of")
