"""The image gets every module: each file of each package pyproject.toml declares (and its package data) passes
.dockerignore and is copied to where `pip install .` in the build stage looks for it, with pyproject.toml and the
readme beside it. A package added to pyproject.toml but not to the Dockerfile fails here, not in a user's image."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pytest
import tomllib
from setuptools import find_packages

from tests.deploy.support import ROOT, DockerIgnore, Stage, parse_dockerfile

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IGNORE = DockerIgnore((ROOT / ".dockerignore").read_text())


def _declared_files() -> list[str]:
    """Context-relative paths of every file `pip install .` puts in the wheel: modules and package data."""
    tool = PYPROJECT["tool"]["setuptools"]
    include = tool["packages"]["find"]["include"]
    data: dict[str, list[str]] = tool.get("package-data", {})
    files: set[Path] = set()
    packages = find_packages(where=str(ROOT), include=include)
    assert packages, f"pyproject.toml's {include} finds no package"
    for package in packages:
        folder = ROOT / package.replace(".", "/")
        files.update(folder.glob("*.py"))
        for pattern in data.get(package, []):
            files.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(str(p.relative_to(ROOT)) for p in files)


def _build_stage() -> Stage:
    stages = parse_dockerfile(ROOT / "Dockerfile")
    builds = [s for s in stages if any(re.search(r"\bpip install\b.*\s\.(\s|$)", i.args) for i in s.all("RUN"))]
    assert len(builds) == 1, "one stage runs `pip install .`"
    return builds[0]


def _copied() -> tuple[dict[str, str], str]:
    """Context path -> where the build stage's COPY puts it (for files, and for folders: `folder/`), and the
    WORKDIR `pip install .` runs in."""
    placed: dict[str, str] = {}
    workdir = "/"
    for step in _build_stage().instructions:
        if step.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, step.args)
        elif step.keyword == "COPY" and "from" not in step.flags:
            *sources, dest = step.args.split()
            dest = posixpath.join(workdir, dest)
            into_folder = dest.endswith("/") or len(sources) > 1
            for source in sources:
                source = posixpath.normpath(source)
                if (ROOT / source).is_dir():  # Docker copies a folder's contents into dest
                    placed[source + "/"] = posixpath.normpath(dest) + "/"
                else:
                    placed[source] = posixpath.join(dest, posixpath.basename(source)) if into_folder else dest
    return placed, posixpath.normpath(workdir)


def _destination(path: str, placed: dict[str, str]) -> str | None:
    if path in placed:
        return posixpath.normpath(placed[path])
    folders = [f for f in placed if f.endswith("/") and (f == "./" or path.startswith(f))]
    if not folders:
        return None
    folder = max(folders, key=len)  # the deepest folder copied decides
    return posixpath.normpath(placed[folder] + (path if folder == "./" else path[len(folder):]))


FILES = _declared_files() + ["pyproject.toml", PYPROJECT["project"]["readme"]]


def test_the_declared_packages_and_their_data_are_found() -> None:
    assert {"depin", "coordinator", "worker"} <= {f.split("/")[0] for f in FILES}
    for package, patterns in PYPROJECT["tool"]["setuptools"].get("package-data", {}).items():
        for pattern in patterns:
            assert any(Path(f).match(f"{package}/{pattern}") for f in FILES), f"no file for {package}/{pattern}"


def test_every_declared_file_is_in_the_build_context() -> None:
    left_out = [f for f in FILES if IGNORE.excluded(f)]
    assert not left_out, f".dockerignore leaves these out of the build context: {left_out}"


def test_every_declared_file_is_copied_where_pip_install_looks() -> None:
    placed, workdir = _copied()
    wrong = {f: _destination(f, placed) for f in FILES if _destination(f, placed) != posixpath.join(workdir, f)}
    assert not wrong, f"not copied to {workdir}/PATH in the build stage (path: where it lands): {wrong}"


def test_secrets_and_local_state_stay_out_of_the_context() -> None:
    for path in (".venv/bin/python", ".git/config", "demo-data/worker.key", "tests/data/spec_examples.json",
                 "depin/__pycache__/codec.cpython-311.pyc", "mandelbrot.png", "worker.toml"):
        assert IGNORE.excluded(path), path


# Docker's own examples of .dockerignore rules, so the reader above is known to match the way Docker does.
@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "somedir/temp/file", True),
    ("*/temp*", "temporary.txt", False),
    ("*/*/temp*", "somedir/subdir/temporary.txt", True),
    ("*/*/temp*", "somedir/temporary.txt", False),
    ("temp?", "tempa", True),
    ("temp?", "tempab", False),
    ("**/*.go", "a/b/c.go", True),
    ("**/*.go", "c.go", True),
    ("*.md\n!README*.md", "README-secret.md", False),
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*\n!depin/", "depin/kernels/base.py", False),
    ("*\n!depin/", "tests/conftest.py", True),
])
def test_dockerignore_reader(patterns: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excluded(path) is excluded
