"""Section 1 of docs/KERNELS.md: a kernel file's literal assignments, read with `ast.literal_eval` (never executed)
and checked for types and ranges, into a `Spec`. Each refusal names the line and the rule."""

from __future__ import annotations

import ast
import keyword
import math
import re
from collections.abc import Mapping
from typing import Any

from depin.errors import KernelRefused, UserError
from depin.kernels.base import Param, Tolerance
from depin.userkernel._refusal import refused
from depin.userkernel.spec import DTYPES, INT64_MAX, MERGES, Dim, Input, Spec

REQUIRED = ("NAME", "PARAMS", "INDEX", "OUTPUT", "MERGE", "COMPARE")
OPTIONAL = ("WORK", "INPUTS", "PLATFORM", "SAMPLE")
NAMES = REQUIRED + OPTIONAL
RESERVED = ("start", "end", "out", "rows")  # compute's own arguments, and the "rows" of OUTPUT and WORK
BUILTINS = ("range", "len", "min", "max", "abs", "int", "float", "bool")  # the builtins a kernel may call
MAX_PARAMS, MAX_INPUTS, MAX_DIMS, MAX_WORK_ENTRIES, MAX_DOC = 32, 8, 4, 8, 200

_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
_PARAM = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _literal(node: ast.expr, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise refused(node, f"{what} must be a literal (numbers, strings, tuples, dicts)") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _string(node: ast.expr, what: str, choices: tuple[str, ...]) -> str:
    value = _literal(node, what)
    if value not in choices:
        raise refused(node, f"{what} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return str(value)


def _dict(node: ast.expr, what: str, limit: int) -> list[tuple[str, ast.expr]]:
    # A dict literal's (key, value node) pairs: keys are names, none twice.
    if not isinstance(node, ast.Dict):
        raise refused(node, f"{what} must be a dict literal {{name: ...}}")
    if len(node.keys) > limit:
        raise refused(node, f"{what} has {len(node.keys)} entries, at most {limit}")
    pairs: list[tuple[str, ast.expr]] = []
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:
            raise refused(value, f"'**' in {what} is not allowed")
        name = _literal(key, f"a name in {what}")
        if not isinstance(name, str) or not _PARAM.fullmatch(name):
            raise refused(key, f"{what} name {name!r} must match [a-z][a-z0-9_]{{0,31}}")
        if name in RESERVED or keyword.iskeyword(name) or name in ("np", "math") + BUILTINS:
            raise refused(key, f"{what} name {name!r} is reserved")
        if name in (n for n, _ in pairs):
            raise refused(key, f"{what} names {name!r} twice")
        pairs.append((name, value))
    return pairs


def _bound(node: ast.expr, kind: type, what: str) -> int | float:
    value = _literal(node, what)
    if kind is int and (type(value) is not int or not -INT64_MAX - 1 <= value <= INT64_MAX):
        raise refused(node, f"{what} must be an integer in int64, not {value!r}")
    if kind is float and (not _is_number(value) or not math.isfinite(value)):
        raise refused(node, f"{what} must be a finite number, not {value!r}")
    return value if kind is int else float(value)


def _param(name: str, node: ast.expr) -> Param:
    if not isinstance(node, ast.Tuple) or len(node.elts) not in (4, 5):
        raise refused(node, f"PARAMS[{name!r}] must be (type, min, max, doc) or (type, min, max, doc, default)")
    kind_node, lo_node, hi_node, doc_node, *default_node = node.elts
    if not isinstance(kind_node, ast.Name) or kind_node.id not in ("int", "float"):
        raise refused(kind_node, f"PARAMS[{name!r}]: the type must be the bare name int or float")
    kind = int if kind_node.id == "int" else float
    lo = _bound(lo_node, kind, f"PARAMS[{name!r}] min")
    hi = _bound(hi_node, kind, f"PARAMS[{name!r}] max")
    if lo > hi:
        raise refused(node, f"PARAMS[{name!r}]: min {lo} is above max {hi}")
    doc = _literal(doc_node, f"PARAMS[{name!r}] doc")
    if not isinstance(doc, str) or not 0 < len(doc) <= MAX_DOC or "\n" in doc:
        raise refused(doc_node, f"PARAMS[{name!r}] doc must be one line of 1 to {MAX_DOC} characters")
    default = None
    if default_node:
        default = _bound(default_node[0], kind, f"PARAMS[{name!r}] default")
        if not lo <= default <= hi:
            raise refused(default_node[0], f"PARAMS[{name!r}] default {default} is outside [{lo}, {hi}]")
    return Param(name, kind, lo, hi, doc, default)


def _input(name: str, node: ast.expr) -> Input:
    value = _literal(node, f"INPUTS[{name!r}]")
    if (not isinstance(value, tuple) or len(value) != 3 or value[0] not in DTYPES or type(value[1]) is not int
            or not 1 <= value[1] <= MAX_DIMS or value[2] not in ("all", "rows")):
        raise refused(node, f"INPUTS[{name!r}] must be (dtype, ndim, part): dtype one of {' '.join(DTYPES)},"
                            f" ndim 1 to {MAX_DIMS}, part \"all\" or \"rows\"")
    return Input(name, value[0], value[1], value[2])


def _dims(node: ast.expr, what: str, ints: dict[str, Param], limit: int) -> tuple[Dim, ...]:
    # OUTPUT's shape or WORK: a tuple of int literals >= 1, "rows", and names of int parameters whose min is >= 0.
    value = _literal(node, what)
    if not isinstance(value, tuple) or not 1 <= len(value) <= limit:
        raise refused(node, f"{what} must be a tuple of 1 to {limit} entries")
    for d in value:
        if type(d) is int and d >= 1 or d == "rows":
            continue
        if not isinstance(d, str) or d not in ints:
            raise refused(node, f"{what}: {d!r} is not a positive int, \"rows\", or an int parameter's name")
        if ints[d].minimum < 0:
            raise refused(node, f"{what}: parameter {d!r} may be negative (its min is {ints[d].minimum})")
    return value


def _compare(node: ast.expr) -> str | Tolerance:
    value = _literal(node, "COMPARE")
    if value in ("exact", "verify"):
        return str(value)
    if (isinstance(value, tuple) and len(value) == 3 and value[0] == "tolerance"
            and all(_is_number(v) and math.isfinite(v) and v >= 0 for v in value[1:])):
        return Tolerance(float(value[1]), float(value[2]))
    raise refused(node, "COMPARE must be \"exact\", \"verify\" or (\"tolerance\", abs_tol, rel_tol) with"
                        " finite tolerances >= 0")


def _signature(fn: ast.FunctionDef, want: list[str]) -> None:
    got = [a.arg for a in fn.args.args]
    if got != want:
        raise refused(fn, f"{fn.name}'s arguments must be ({', '.join(want)}), not ({', '.join(got)})")


def read(doc: str | None, assigned: Mapping[str, ast.expr], functions: Mapping[str, ast.FunctionDef]) -> Spec:
    """The spec of a file whose top level holds docstring `doc`, the literal assignments `assigned` (name -> value
    node) and the functions `functions`; a KernelRefused naming the first rule it breaks."""
    if not doc or not doc.strip():
        raise KernelRefused("the kernel file must start with a docstring saying what it computes")
    first = doc.strip().splitlines()[0].strip()
    if len(first) > MAX_DOC:
        raise KernelRefused(f"the docstring's first line is {len(first)} characters, over {MAX_DOC}")
    missing = [n for n in REQUIRED if n not in assigned] + [n for n in ("compute",) if n not in functions]
    if missing:
        raise KernelRefused(f"the kernel file has no {missing[0]} (docs/KERNELS.md 1)")
    name = _literal(assigned["NAME"], "NAME")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise refused(assigned["NAME"], f"NAME must match [a-z][a-z0-9-]{{0,39}}, not {name!r}")
    params = tuple(_param(n, v) for n, v in _dict(assigned["PARAMS"], "PARAMS", MAX_PARAMS))
    inputs = tuple(_input(n, v) for n, v in _dict(assigned["INPUTS"], "INPUTS", MAX_INPUTS)) \
        if "INPUTS" in assigned else ()
    names = [p.name for p in params] + [i.name for i in inputs]
    clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(functions)))
    if clash:
        raise refused(assigned["PARAMS"], f"the name {clash[0]!r} is given to two things (parameters, inputs,"
                                          " functions)")
    ints = {p.name: p for p in params if p.type is int}
    index = _literal(assigned["INDEX"], "INDEX")
    if not isinstance(index, str):
        raise refused(assigned["INDEX"], "INDEX must be the name of an int parameter or of an input")
    if index in ints:
        if ints[index].minimum < 1:
            raise refused(assigned["INDEX"], f"INDEX {index!r}: its min must be at least 1 (every job has an index)")
    elif index not in {i.name for i in inputs}:
        raise refused(assigned["INDEX"], f"INDEX must name an int parameter or an input, not {index!r}")
    out = assigned["OUTPUT"]
    if not isinstance(out, ast.Tuple) or len(out.elts) != 2:
        raise refused(out, "OUTPUT must be a tuple (dtype, shape)")
    dtype = _string(out.elts[0], "OUTPUT's dtype", DTYPES)
    shape = _dims(out.elts[1], "OUTPUT's shape", ints, MAX_DIMS)
    merge = _string(assigned["MERGE"], "MERGE", MERGES)
    if "rows" in shape[1:] or "rows" in shape and merge != "concatenate":
        raise refused(assigned["OUTPUT"], "\"rows\" may only be OUTPUT's first entry, with MERGE = \"concatenate\""
                                          " (tasks have different numbers of rows)")
    compare = _compare(assigned["COMPARE"])
    if (compare == "verify") != ("verify" in functions):
        raise refused(assigned["COMPARE"], "a verify function goes with COMPARE = \"verify\", and only with it")
    want = ["start", "end", *(p.name for p in params), *(i.name for i in inputs), "out"]
    for fn in ("compute", "verify"):
        if fn in functions:
            _signature(functions[fn], want)
    return Spec(
        name=name, doc=first, params=params, index=index, output=(dtype, shape), merge=merge, compare=compare,
        work=_dims(assigned["WORK"], "WORK", ints, MAX_WORK_ENTRIES) if "WORK" in assigned else ("rows",),
        inputs=inputs,
        platform=_string(assigned["PLATFORM"], "PLATFORM", ("any", "same")) if "PLATFORM" in assigned else "any",
        has_verify="verify" in functions,
        sample=_sample(assigned["SAMPLE"], params) if "SAMPLE" in assigned else None,
    )


def _sample(node: ast.expr, params: tuple[Param, ...]) -> dict[str, Any]:
    known = {p.name: p for p in params}
    sample: dict[str, Any] = {}
    for name, value in _dict(node, "SAMPLE", MAX_PARAMS):
        if name not in known:
            raise refused(value, f"SAMPLE names {name!r}, which is not a parameter")
        try:
            sample[name] = known[name].parse(_literal(value, f"SAMPLE[{name!r}]"))
        except UserError as exc:
            raise refused(value, f"SAMPLE: {exc}") from None
    return sample
