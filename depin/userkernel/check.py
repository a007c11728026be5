"""The check of a kernel file (docs/KERNELS.md 2): an allowlist over its AST, then its spec (section 1).

How it works: the file is parsed (never executed), its nesting depth bounded, then every statement and expression is
visited by a handler that knows what that construct may contain; each node a handler accepts is marked. A node of a
kind no handler accepts is refused where it stands, and a last pass over all nodes refuses any node left unmarked,
so a construct nobody thought of is refused rather than let through: an allowlist, never a denylist.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from depin.errors import KernelRefused
from depin.userkernel import _literals
from depin.userkernel._refusal import refused
from depin.userkernel.spec import Spec

MAX_DEPTH = 100  # nested nodes: deeper than any real kernel, shallow enough for every recursive walk here
ARRAY_ATTRS = ("shape", "size", "ndim", "dtype")
MATH = frozenset("sqrt exp log log2 log10 log1p expm1 sin cos tan asin acos atan atan2 sinh cosh tanh floor ceil fabs"
                 " pow hypot isnan isinf isfinite copysign pi e inf nan".split())
NP = frozenset("sqrt exp log log2 log10 log1p expm1 sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh floor"
               " ceil abs fabs minimum maximum zeros empty ones zeros_like empty_like sum prod dot where isnan isinf"
               " isfinite uint8 int32 uint32 int64 uint64 float32 float64 pi e inf nan".split())
MODULES = {"np": NP, "math": MATH}
_BUILTIN_LIST = " ".join(_literals.BUILTINS)
CONSTRUCTS = {
    ast.ClassDef: "class", ast.With: "'with'",
    ast.AsyncWith: "'async with'", ast.AsyncFunctionDef: "'async def'", ast.AsyncFor: "'async for'", ast.Try: "'try'",
    ast.TryStar: "'try'", ast.Raise: "'raise'", ast.Global: "'global'", ast.Nonlocal: "'nonlocal'",
    ast.Delete: "'del'", ast.Assert: "'assert'", ast.AnnAssign: "an annotated assignment", ast.Match: "'match'",
    ast.Lambda: "lambda", ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression", ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string", ast.NamedExpr: "':=' (walrus)", ast.Starred: "a starred expression",
    ast.Await: "'await'", ast.Yield: "'yield'", ast.YieldFrom: "'yield from'", ast.List: "a list", ast.Set: "a set",
    ast.Dict: "a dict", ast.FunctionDef: "a nested 'def'", ast.If: "'if'", ast.For: "'for'", ast.While: "'while'",
    ast.Expr: "an expression", ast.Assign: "an assignment",
}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift, ast.BitOr,
           ast.BitXor, ast.BitAnd, ast.MatMult)
_UNARY = (ast.UAdd, ast.USub, ast.Not, ast.Invert)
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_UNMARKED = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)  # checked by their parent


def construct(node: ast.AST) -> str:
    """How a refusal names a node's kind."""
    if isinstance(node, ast.Constant):
        return f"the {type(node.value).__name__} constant {node.value!r:.40}"
    if isinstance(node, ast.Import):
        return "import of " + repr(", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names))
    if isinstance(node, ast.ImportFrom):
        return f"'from {node.module or '.'} import ...'"
    return CONSTRUCTS.get(type(node), f"'{type(node).__name__}'")


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source, filename="<kernel>")
    except SyntaxError as exc:
        if exc.lineno is None:  # a NUL byte
            raise KernelRefused(f"the kernel file cannot be parsed: {exc.msg}") from None
        raise KernelRefused(f"line {exc.lineno}, col {exc.offset}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # a NUL byte, on older Pythons
        raise KernelRefused(f"the kernel file cannot be parsed: {exc}") from None
    except (RecursionError, MemoryError):  # what CPython's parser raises for absurd nesting
        raise KernelRefused("the kernel file is nested too deeply to parse") from None


def _bound_depth(tree: ast.AST) -> None:
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise refused(node, f"nesting deeper than {MAX_DEPTH} levels is not allowed")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class _Checker:
    def __init__(self) -> None:
        self.marked: set[int] = set()
        self.functions: dict[str, ast.FunctionDef] = {}
        self.calls: dict[str, list[tuple[str, ast.Call]]] = {}  # function -> the file's functions it calls

    def mark(self, *nodes: ast.AST) -> None:
        self.marked.update(id(n) for n in nodes)

    # ---- the top level ----------------------------------------------------------------------------------

    def module(self, tree: ast.Module) -> Spec:
        doc, assigned, imported = None, dict[str, ast.expr](), set[str]()
        self.mark(tree)
        for i, stmt in enumerate(tree.body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                doc = stmt.value.value
                self.mark(stmt, stmt.value)
            elif isinstance(stmt, ast.Import):
                self._import(stmt, imported)
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                name = stmt.targets[0].id
                if name not in _literals.NAMES:
                    raise refused(stmt, f"assignment to {name!r} at the top level is not allowed (only"
                                        f" {', '.join(_literals.NAMES)})")
                if name in assigned or name in self.functions:
                    raise refused(stmt, f"{name} is assigned twice")
                assigned[name] = stmt.value
                self.mark(stmt, stmt.targets[0])
            elif isinstance(stmt, ast.FunctionDef):
                self._header(stmt, assigned)
            else:
                raise refused(stmt, f"{construct(stmt)} is not allowed at the top level (only the docstring, two"
                                    " imports, the literals of docs/KERNELS.md 1 and functions)")
        for fn in self.functions.values():
            _Function(self, fn).check()
        self._no_recursion()
        spec = _literals.read(doc, assigned, self.functions)
        for value in assigned.values():  # read by literal_eval, never executed: every node in it is inert
            self.mark(*ast.walk(value))
        self._all_marked(tree)
        return spec

    def _import(self, stmt: ast.Import, imported: set[str]) -> None:
        (alias, *more) = stmt.names
        wanted = {"numpy": "np", "math": None}
        if more or alias.name not in wanted or alias.asname != wanted[alias.name]:
            raise refused(stmt, f"{construct(stmt)} is not allowed (only 'import numpy as np' and 'import math')")
        if alias.name in imported:
            raise refused(stmt, f"{alias.name} is imported twice")
        imported.add(alias.name)
        self.mark(stmt, alias)

    def _header(self, fn: ast.FunctionDef, assigned: dict[str, ast.expr]) -> None:
        _name_ok(fn, fn.name, "a function")
        if fn.name in self.functions or fn.name in assigned:
            raise refused(fn, f"{fn.name!r} is defined twice")
        if fn.decorator_list:
            raise refused(fn.decorator_list[0], "a decorator is not allowed")
        a = fn.args
        defaults = [*a.defaults, *(d for d in a.kw_defaults if d is not None)]
        if defaults:
            raise refused(defaults[0], "a default argument is not allowed")
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
            raise refused(fn, f"{fn.name}: only plain arguments are allowed (no *args, **kwargs, '/' or '*')")
        if fn.returns is not None:
            raise refused(fn.returns, "an annotation is not allowed")
        for arg in a.args:
            if arg.annotation is not None:
                raise refused(arg.annotation, "an annotation is not allowed")
            _name_ok(arg, arg.arg, "an argument")
        self.functions[fn.name] = fn
        self.calls[fn.name] = []
        self.mark(fn, a, *a.args)

    def _no_recursion(self) -> None:
        for name in self.functions:
            if name in self._reach(name):
                call = next(call for callee, call in self.calls[name] if callee == name or name in self._reach(callee))
                raise refused(call, f"recursion is not allowed ({name} calls itself, directly or not)")

    def _reach(self, name: str) -> set[str]:
        seen, todo = set[str](), [name]
        while todo:
            for callee, _ in self.calls[todo.pop()]:
                if callee not in seen:
                    seen.add(callee)
                    todo.append(callee)
        return seen

    def _all_marked(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if id(node) not in self.marked and not isinstance(node, _UNMARKED):
                raise refused(node, f"{construct(node)} is not allowed")


def _name_ok(node: ast.AST, name: str, what: str) -> None:
    """Refuse a name that starts with '_' or would shadow np, math or an allowed builtin."""
    if name.startswith("_"):
        raise refused(node, f"{what} named {name!r} is not allowed (no names starting with '_')")
    if name in MODULES or name in _literals.BUILTINS:
        raise refused(node, f"{what} named {name!r} is not allowed (it would shadow {name})")


class _Function:
    """One top-level function: its statements and expressions, against the allowlist."""

    def __init__(self, checker: _Checker, fn: ast.FunctionDef) -> None:
        self.c, self.fn = checker, fn
        self.locals = {a.arg for a in fn.args.args}
        for a in fn.args.args:
            if a.arg in checker.functions:
                raise refused(a, f"an argument named {a.arg!r} is not allowed (it would shadow the function)")
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                if node.id in checker.functions:
                    raise refused(node, f"assignment to {node.id!r} is not allowed (it would shadow the function)")
                _name_ok(node, node.id, "a variable")
                self.locals.add(node.id)

    def check(self) -> None:
        body = self.fn.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            self.c.mark(body[0], body[0].value)  # a docstring
            body = body[1:]
        self.block(body)

    def block(self, stmts: Iterable[ast.stmt]) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, s: ast.stmt) -> None:
        if isinstance(s, ast.Assign):
            for t in s.targets:
                self.target(t)
            self.expr(s.value)
        elif isinstance(s, ast.AugAssign):
            if not isinstance(s.target, (ast.Name, ast.Subscript)) or not isinstance(s.op, _BINOPS):
                raise refused(s, "this augmented assignment is not allowed")
            self.target(s.target)
            self.expr(s.value)
        elif isinstance(s, ast.For):
            it = s.iter
            if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                    and 1 <= len(it.args) <= 3 and not it.keywords):
                raise refused(it, "'for' is only allowed over range(...)")
            if not isinstance(s.target, ast.Name):
                raise refused(s.target, "a 'for' loop's variable must be one name")
            self.c.mark(it, it.func)
            self.exprs(it.args)
            self.target(s.target)
            self.loop(s)
        elif isinstance(s, ast.While):
            self.expr(s.test)
            self.loop(s)
        elif isinstance(s, ast.If):
            self.expr(s.test)
            self.block(s.body)
            self.block(s.orelse)
        elif isinstance(s, ast.Return):
            if s.value is not None:
                self.expr(s.value)
        elif isinstance(s, ast.Expr):
            if not isinstance(s.value, ast.Call):
                raise refused(s, "an expression statement that is not a call is not allowed")
            self.expr(s.value)
        elif not isinstance(s, (ast.Break, ast.Continue, ast.Pass)):
            raise refused(s, f"{construct(s)} is not allowed")
        self.c.mark(s)

    def loop(self, s: ast.For | ast.While) -> None:
        if s.orelse:
            raise refused(s, "'else' on a loop is not allowed")
        self.block(s.body)

    def target(self, t: ast.expr) -> None:
        if isinstance(t, ast.Name):  # a local: its name was checked in __init__
            self.c.mark(t)
        elif isinstance(t, ast.Tuple) and all(isinstance(e, ast.Name) for e in t.elts):
            self.c.mark(t, *t.elts)
        elif isinstance(t, ast.Subscript):
            self.subscript(t)
        else:
            raise refused(t, f"assignment to {construct(t)} is not allowed (only names, tuples of names and"
                             " subscripts)")

    def exprs(self, nodes: Iterable[ast.expr]) -> None:
        for n in nodes:
            self.expr(n)

    def expr(self, e: ast.expr) -> None:
        if isinstance(e, ast.Constant):
            if e.value is not None and not isinstance(e.value, (bool, int, float, complex)):
                raise refused(e, f"{construct(e)} is not allowed (no strings in functions)")
            if isinstance(e.value, int) and e.value >= 2**64:
                raise refused(e, f"the integer {e.value} does not fit in 64 bits")
        elif isinstance(e, ast.Name):
            self.name(e)
        elif isinstance(e, ast.Attribute):
            self.attribute(e)
        elif isinstance(e, ast.Call):
            self.call(e)
        elif isinstance(e, ast.BinOp) and isinstance(e.op, _BINOPS):
            self.exprs((e.left, e.right))
        elif isinstance(e, ast.UnaryOp) and isinstance(e.op, _UNARY):
            self.expr(e.operand)
        elif isinstance(e, ast.BoolOp):
            self.exprs(e.values)
        elif isinstance(e, ast.Compare) and all(isinstance(op, _COMPARE) for op in e.ops):
            self.exprs((e.left, *e.comparators))
        elif isinstance(e, ast.IfExp):
            self.exprs((e.test, e.body, e.orelse))
        elif isinstance(e, ast.Subscript):
            self.subscript(e)
        elif isinstance(e, ast.Tuple):
            self.exprs(e.elts)
        else:
            what = f"the operator in {ast.unparse(e)!r:.60}" if isinstance(e, (ast.Compare, ast.BinOp)) \
                else construct(e)
            raise refused(e, f"{what} is not allowed")
        self.c.mark(e)

    def name(self, e: ast.Name) -> None:
        if e.id in self.locals:
            return
        if e.id in MODULES:
            raise refused(e, f"{e.id!r} is only allowed as {e.id}.<function> (the allowlisted ones)")
        if e.id in self.c.functions or e.id in _literals.BUILTINS:
            raise refused(e, f"{e.id!r} may only be called")
        if e.id.startswith("_"):
            raise refused(e, f"name {e.id!r} is not allowed (no names starting with '_')")
        raise refused(e, f"name {e.id!r} is not allowed (not an argument, a local, a function of the file or an"
                         f" allowed builtin: {_BUILTIN_LIST})")

    def attribute(self, e: ast.Attribute) -> None:
        dotted = _dotted(e)
        if not isinstance(e.value, ast.Name):
            why = ("an attribute of a call's result" if isinstance(e.value, ast.Call) else "an attribute chain"
                   if isinstance(e.value, ast.Attribute) else "an attribute of an expression")
            raise refused(e, f"attribute {dotted!r} is not allowed ({why})")
        base = e.value.id
        allowed = MODULES.get(base, ARRAY_ATTRS if base in self.locals else ())
        if not isinstance(e.ctx, ast.Load) or e.attr not in allowed:
            raise refused(e, f"attribute {dotted!r} is not allowed")
        self.c.mark(e.value)

    def call(self, e: ast.Call) -> None:
        f = e.func
        if isinstance(f, ast.Name) and f.id not in self.locals and (
                f.id in self.c.functions or f.id in _literals.BUILTINS):
            if f.id in self.c.functions:
                self.c.calls[self.fn.name].append((f.id, e))
            self.c.mark(f)
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in MODULES:
            self.attribute(f)
            self.c.mark(f)
        else:
            if isinstance(f, ast.Attribute):
                self.attribute(f)  # refuses chains, attributes of results and the like by what they are
            what = _dotted(f) if isinstance(f, (ast.Name, ast.Attribute)) else construct(f)
            raise refused(e, f"calling {what!r} is not allowed (only the file's functions, {_BUILTIN_LIST}, and"
                             " the allowlisted np. and math. functions)")
        for k in e.keywords:
            if k.arg != "dtype":
                raise refused(k, "keyword argument " + (f"{k.arg}=" if k.arg else "**") + " is not allowed (only"
                                 " dtype=)")
            self.c.mark(k)
            self.expr(k.value)
        self.exprs(e.args)

    def subscript(self, e: ast.Subscript) -> None:
        if isinstance(e.value, ast.Name) and e.value.id not in self.locals:
            raise refused(e, f"subscripting {e.value.id!r} is not allowed (only arrays and tuples you hold)")
        self.expr(e.value)
        self.index(e.slice)
        self.c.mark(e)

    def index(self, i: ast.expr) -> None:
        if isinstance(i, ast.Slice):
            self.exprs(x for x in (i.lower, i.upper, i.step) if x is not None)
            self.c.mark(i)
        elif isinstance(i, ast.Tuple):
            for x in i.elts:
                self.index(x)
            self.c.mark(i)
        else:
            self.expr(i)


def _dotted(e: ast.expr) -> str:
    try:
        return ast.unparse(e)
    except (ValueError, RecursionError):  # pragma: no cover - depth is bounded before
        return type(e).__name__


def check(source: str) -> Spec:
    """The spec of a kernel file (its canonical source, decoded), or a KernelRefused naming the line, the column
    and the construct (or the rule) it breaks."""
    tree = _parse(source)
    _bound_depth(tree)
    return _Checker().module(tree)
