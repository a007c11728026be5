"""Summarise py-spy raw stacks (from bench_pipeline.py --profile DIR) as markdown tables.

    .venv/bin/python benchmarks/profile_summary.py DIR/coordinator.txt [--top 25] [--thread MainThread]

Each input line is `thread (tid): name;frame;frame;... count`, outermost frame first, as py-spy
`record --format raw` writes it. "inclusive" is the share of samples with the function anywhere on the stack
(counted once per stack), "self" the share with it as the innermost frame. Samples were taken with --idle, so
the shares are of wall-clock time, waits included. Frames on more than 90% of the stacks (the process's own
main(), the event loop's run_forever) are left out of the inclusive table: they say nothing.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

_LINE = re.compile(r":\d+\)$")


def _frame(raw: str) -> str:
    # "Store.save (coordinator/store.py:88)" -> "Store.save (coordinator/store.py)": aggregate over lines.
    return _LINE.sub(")", raw.strip())


def parse(path: str, thread: str | None, *, exclude: bool = False,
          lines: bool = False) -> list[tuple[list[str], int]]:
    """(frames outermost first, sample count) for every stack of the chosen thread (all threads if None; with
    `exclude`, every thread but that one); frames name their line too with `lines`, else they are aggregated over
    lines."""
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            body, _, count = line.rpartition(" ")
            parts = body.split(";")
            label, frames = parts[0], parts[1:]
            if thread is not None and label.endswith(f": {thread}") == exclude:
                continue
            stacks.append(([p.strip() if lines else _frame(p) for p in frames], int(count)))
    return stacks


def summarise(stacks: list[tuple[list[str], int]], top: int, rate_hz: float | None = None,
              units: int | None = None) -> str:
    """Markdown tables of the top inclusive and self functions; with a sampling rate and a unit count (e.g. the
    results processed while sampling), also wall milliseconds per unit."""
    total = sum(n for _, n in stacks)
    per = rate_hz is not None and units is not None

    def ms(n: int) -> str:
        return f" {n / rate_hz / units * 1e3:.3f} |" if per else ""  # type: ignore[operator]

    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        for fr in set(frames):
            inclusive[fr] += n
        if frames:
            own[frames[-1]] += n
    unit_head, unit_rule = (" ms per unit (incl.) |", "---:|") if per else ("", "")
    out = [f"{total} samples" + (f" at {rate_hz:g} Hz, {units} units" if per else ""), "",
           f"| inclusive | self |{unit_head} function |", f"|---:|---:|{unit_rule}---|"]
    for fr, n in [(fr, n) for fr, n in inclusive.most_common() if n < 0.9 * total][:top]:
        out.append(f"| {n / total:.1%} | {own[fr] / total:.1%} |{ms(n)} `{fr}` |")
    out += ["", f"| self |{unit_head.replace('incl.', 'self')} function (innermost frame) |", f"|---:|{unit_rule}---|"]
    for fr, n in own.most_common(top):
        out.append(f"| {n / total:.1%} |{ms(n)} `{fr}` |")
    return "\n".join(out)


def callers(stacks: list[tuple[list[str], int]], target: str, depth: int) -> str:
    """Where the time in `target` (a function name prefix) comes from: the `depth` frames above it."""
    total = sum(n for _, n in stacks)
    paths: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        for i, fr in enumerate(frames):
            if fr.startswith(target):
                paths[" < ".join(f.split(" (")[0] for f in reversed(frames[max(0, i - depth):i + 1]))] += n
                break
    out = [f"| share of all samples | `{target}` called from |", "|---:|---|"]
    out += [f"| {n / total:.1%} | {path} |" for path, n in paths.most_common()]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--thread", help="only this thread name (e.g. MainThread); default all threads")
    ap.add_argument("--lines", action="store_true", help="keep line numbers: a row per line, not per function")
    ap.add_argument("--rate", type=float, help="py-spy sampling rate in Hz (with --units: ms per unit)")
    ap.add_argument("--units", type=int, help="how many units (e.g. results) were processed while sampling")
    ap.add_argument("--callers", metavar="FUNC", help="instead: where time in FUNC (name prefix) is spent from")
    ap.add_argument("--depth", type=int, default=3, help="frames above FUNC to show with --callers (default 3)")
    args = ap.parse_args()
    stacks = parse(args.path, args.thread, lines=args.lines)
    if args.callers:
        print(callers(stacks, args.callers, args.depth))
    else:
        print(summarise(stacks, args.top, args.rate, args.units))
    return 0


if __name__ == "__main__":
    sys.exit(main())
