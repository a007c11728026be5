"""Readers of the deployment files for tests/deploy: Dockerfiles (stages and instructions), .dockerignore (Docker's
matching rules), systemd units (sections with repeated keys), shell commands in Markdown, and the linters' paths.

Each reader does only what the checks need, and says so; none of them is a general parser of its format.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from depin.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNIT_DIR = ROOT / "deploy" / "systemd"
DEPLOY_README = ROOT / "deploy" / "README.md"
INSTALL_PREFIX = "/opt/depin"  # where deploy/README.md installs depin, and where the units run it from
REQUIRE_ENV = "DEPIN_REQUIRE_LINTERS"  # set by `make lint-deploy`: a missing hadolint fails instead of skipping


# ---- tools ----------------------------------------------------------------------------------------------------

def hadolint() -> str:
    """The hadolint of this venv (tests/deploy/setup_linters.sh puts it there), else one on PATH; skip if none."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found:
        return found
    reason = "hadolint is not installed: `make lint-deploy` installs it (tests/deploy/requirements-lint.txt)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def systemd_analyze() -> str:
    """systemd-analyze from Debian's systemd package; skip (with the reason) where it is not installed."""
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; tests/deploy/setup_linters.sh installs"
                    " it when run as root): the units get only the key checks")
    return found


# ---- the command line ---------------------------------------------------------------------------------------

def _option_strings(argv: list[str]) -> set[str]:
    """The flags of the (sub)commands `argv` names, spelled out in full."""
    parser = build_parser()
    options = set(parser._option_string_actions)
    for token in argv:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is not None and token in sub.choices:
            parser = sub.choices[token]
            options |= set(parser._option_string_actions)
    return options


def cli_refusal(argv: list[str]) -> str | None:
    """Why `depin ARGV` would be refused by the real command line (None if it is accepted), with flags spelled out
    in full: argparse takes an unambiguous prefix (--conf for --config), which a later flag could make ambiguous."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as exc:  # the CLI's one-line usage error, exit 2; --help exits 0
        if exc.code:
            return err.getvalue().strip()
    options = _option_strings(argv)
    abbreviated = [t for t in argv if t.startswith("--") and t.split("=")[0] not in options]
    return f"not flags of this command: {abbreviated}" if abbreviated else None


# ---- Dockerfiles ----------------------------------------------------------------------------------------------

def dockerfiles() -> list[Path]:
    """Every Dockerfile of the repository (Dockerfile, Dockerfile.*, *.Dockerfile), outside hidden folders."""
    found = {p for n in ("Dockerfile", "Dockerfile.*", "*.Dockerfile") for p in ROOT.rglob(n)
             if not any(part.startswith(".") or part == "node_modules" for part in p.relative_to(ROOT).parts[:-1])}
    return sorted(found)


@dataclass
class Instruction:
    """One Dockerfile instruction: keyword (upper case), its flags (--from=build) and the rest of the line."""

    keyword: str
    flags: dict[str, str]
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD/HEALTHCHECK CMD (shell form is refused)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split("CMD", 1)[1] if "CMD" in text else text
        value = json.loads(text.strip())
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.keyword} is not in exec form: {self.args}")
        return value


@dataclass
class Stage:
    """A build stage: its FROM image (with ARG defaults substituted), its name, and its instructions."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """This stage's own instructions with `keyword`."""
        return [i for i in self.instructions if i.keyword == keyword]


_FLAG = re.compile(r"--([a-z-]+)=(\S+)\s*")


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments dropped, global ARG defaults substituted
    into FROM. Enough for these checks; not BuildKit's full grammar (no heredocs, no escape directive)."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        flags: dict[str, str] = {}
        while (m := _FLAG.match(rest)) is not None:
            flags[m.group(1)] = m.group(2)
            rest = rest[m.end():]
        if keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, flags, rest))
    return stages


def lineage(stages: list[Stage], target: Stage) -> list[Stage]:
    """`target` and the stages it is built FROM, base first."""
    by_name = {s.name: s for s in stages if s.name}
    chain = [target]
    while chain[0].image in by_name:
        chain.insert(0, by_name[chain[0].image])
    return chain


def effective(stages: list[Stage], target: Stage, keyword: str) -> Instruction | None:
    """The instruction with `keyword` in force in `target` (the last one in its lineage), or None."""
    found = [i for s in lineage(stages, target) for i in s.all(keyword)]
    return found[-1] if found else None


def run_command(stages: list[Stage], target: str) -> tuple[list[str], list[str]]:
    """The ENTRYPOINT and CMD (exec form) in force in the stage named `target`."""
    stage = next((s for s in stages if s.name == target), None)
    assert stage is not None, f"the Dockerfile has no stage named {target}"
    entry, cmd = effective(stages, stage, "ENTRYPOINT"), effective(stages, stage, "CMD")
    assert entry is not None, f"{target}: no ENTRYPOINT"
    return entry.exec_form(), (cmd.exec_form() if cmd else [])


def after_depin(argv: list[str]) -> list[str]:
    """The arguments `depin` gets in `argv` (which may start with wrappers such as nice)."""
    assert "depin" in argv, f"does not run depin: {argv}"
    return argv[argv.index("depin") + 1:]


# ---- .dockerignore --------------------------------------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # Go's filepath.Match plus Docker's `**`: `*` and `?` never cross a `/`, `**` crosses any number of them.
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)  # a class, [^...] negated, as in Python
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


class DockerIgnore:
    """Docker's .dockerignore rules: patterns in order, the last one matching a path (or any directory above it)
    decides, `!` re-includes; paths are relative to the context, cleaned, without a leading `/`."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            cleaned = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
            self.patterns.append((negated, _pattern_regex(cleaned)))

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated) is left out of the build context."""
        parts = path.split("/")
        candidates = [path] + ["/".join(parts[:i]) for i in range(1, len(parts))]
        excluded = False
        for negated, regex in self.patterns:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not negated
        return excluded


# ---- systemd units --------------------------------------------------------------------------------------------

def unit_files() -> list[Path]:
    """Every systemd unit under deploy/systemd."""
    return sorted(p for p in UNIT_DIR.iterdir() if p.suffix in (".service", ".socket", ".timer", ".path"))


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given, in order (systemd keys may repeat; an empty value resets a list)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line or line.endswith("\\"):
            raise ValueError(f"{path.name}:{number}: not a key=value line in a section: {raw!r}")
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


SPECIFIERS = {"%S": "/var/lib", "%E": "/etc", "%C": "/var/cache", "%L": "/var/log", "%t": "/run", "%%": "%"}


def expand_specifiers(text: str) -> str:
    """A system unit's path specifiers (the ones these units may use) as systemd expands them; others refused."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) not in SPECIFIERS:
            raise ValueError(f"specifier {m.group(0)} is not one these tests know")
        return SPECIFIERS[m.group(0)]
    return re.sub(r"%.", one, text)


# ---- shell commands in Markdown ---------------------------------------------------------------------------------

def shell_commands(markdown: str) -> list[list[str]]:
    """The commands of every ```sh / ```bash / ```console block, as argv lists: `\\` continuations joined,
    comments dropped, `&&`/`;`/`|` chains split."""
    commands: list[list[str]] = []
    for block in re.findall(r"^[ \t]*```(?:sh|bash|shell|console)\n(.*?)^[ \t]*```", markdown, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if not line or line.startswith("#"):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            argv: list[str] = []
            for token in lexer:
                if token and set(token) <= set(";&|"):
                    if argv:
                        commands.append(argv)
                    argv = []
                else:
                    argv.append(token)
            if argv:
                commands.append(argv)
    return commands
