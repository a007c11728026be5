"""The commands the installation docs show are ones that work: every `depin ...` line in a shell block of
deploy/README.md and README.md parses with the real command line (subcommand, flags, values), every
`docker run ... depin/IMAGE ARGS` line does once the image's entrypoint is put in front of ARGS, every
`docker build --target` names a stage, every file of this repository they mention exists, and every worker.toml
they show is one the worker accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.support import (
    DEPLOY_README,
    ROOT,
    after_depin,
    cli_refusal,
    parse_dockerfile,
    run_command,
    shell_commands,
)

DOCS = [DEPLOY_README, ROOT / "README.md"]
STAGES = parse_dockerfile(ROOT / "Dockerfile")
IMAGES = {"depin/worker": "worker", "depin/coordinator": "coordinator"}  # the tags deploy/README.md builds


def _commands(doc: Path) -> list[list[str]]:
    return shell_commands(doc.read_text(encoding="utf-8"))


def _depin_argvs(doc: Path) -> list[list[str]]:
    """argv after `depin` of every depin command in `doc`, direct or through a docker image's entrypoint."""
    found = []
    for argv in _commands(doc):
        if argv[:2] == ["docker", "run"]:
            image = next((i for i, t in enumerate(argv) if t in IMAGES), None)
            assert image is not None, f"{doc.name}: a docker run of an image these docs do not build: {argv}"
            # Arguments after the image replace CMD and follow ENTRYPOINT.
            entrypoint, _ = run_command(STAGES, IMAGES[argv[image]])
            found.append(after_depin(entrypoint) + argv[image + 1:])
            continue
        at = _command_word(argv)
        if argv[at] == "depin" or argv[at].endswith("/bin/depin"):
            found.append(argv[at + 1:])
    return found


def _command_word(argv: list[str]) -> int:
    """Where the program in `argv` is: after `sudo [-u USER]`, `VAR=value`s, and `docker exec [OPTIONS] NAME`."""
    i = 0
    while i < len(argv) - 1:
        if argv[i] == "sudo":
            i += 1
            while argv[i].startswith("-"):
                i += 2 if argv[i] in ("-u", "-g") else 1
        elif re.fullmatch(r"[A-Za-z_]\w*=.*", argv[i]):
            i += 1
        elif argv[i:i + 2] == ["docker", "exec"]:
            i += 2
            while argv[i].startswith("-"):
                i += 2 if argv[i] in ("-e", "-u", "-w", "--env", "--user", "--workdir") else 1
            i += 1  # the container
        else:
            break
    return i


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_depin_command_parses(doc: Path) -> None:
    refused = [f"depin {' '.join(argv)}: {why}" for argv in _depin_argvs(doc) if (why := cli_refusal(argv))]
    assert not refused, "\n".join(refused)


def test_the_deploy_docs_show_the_commands_that_matter() -> None:
    # So the test above cannot pass by finding nothing.
    argvs = _depin_argvs(DEPLOY_README)
    shown = {(a[0], "status" if "status" in a else "run") for a in argvs if a}
    assert {("worker", "run"), ("worker", "status"), ("coordinator", "run"), ("grant", "run")} <= shown
    docker_targets = {a[0] for a in argvs if "--data-dir" in a and "/data" in a}
    assert {"worker", "coordinator"} <= docker_targets


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docker_build_targets_exist(doc: Path) -> None:
    stages = {s.name for s in STAGES}
    for argv in _commands(doc):
        if argv[:2] == ["docker", "build"] and "--target" in argv:
            assert argv[argv.index("--target") + 1] in stages, argv
        if argv[:2] == ["docker", "build"] and "-t" in argv:
            assert argv[argv.index("-t") + 1] in IMAGES, f"{argv}: the docs run the images as {sorted(IMAGES)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_files_they_name_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w/.])((?:deploy|tests|benchmarks|docs)/[\w./-]*\w)", text))
    assert named, f"{doc.name} names no file of the repository"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_worker_toml_they_show_is_accepted(doc: Path) -> None:
    import tomllib

    from depin import config

    blocks = re.findall(r"^```toml\n(.*?)^```", doc.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert blocks, f"{doc.name} shows no worker.toml"
    for block in blocks:
        file = tomllib.loads(block)
        config.policy_settings(file, {})  # a UserError names a setting the worker would refuse
        config.bond_settings(file, {})
