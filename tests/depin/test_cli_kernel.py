"""`depin kernel check FILE`: what a kernel file declares, its id, compile time, a sample task and its cost; a
refused file is one line on stderr and exit code 2 (depin.cli.kernel_cmd)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from depin.cli import main as cli
from depin.userkernel import source

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "builtin"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["kernel", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_the_id_the_declarations_the_sample_and_the_cost(capsys: pytest.CaptureFixture[str]) -> None:
    path = EXAMPLES / "mandelbrot.py"
    code, out, err = run(capsys, str(path))
    assert code == 0 and err == ""
    kid = source.kernel_id(path.read_bytes())
    lines = out.splitlines()
    assert lines[0].startswith(f"{kid}@0: Mandelbrot escape-time counts")
    assert "  -p max_iter=<int>  iteration limit per pixel (default 256; 1..1000000)" in lines
    assert f"name      mandelbrot (a label; the kernel is its id, {kid[:12]} for short)" in lines
    assert "output    uint32 (rows, width), merged by concatenate" in lines and "compare   exact" in lines
    assert "work      rows x width x max_iter" in lines and "publish   yes" in lines
    sample = next(line for line in lines if line.startswith("sample"))
    # SAMPLE = {"width": 8, "height": 8, "max_iter": 64}, defaults for the rest, rows [0, 4)
    assert sample.startswith("sample    [0, 4) with width=8, height=8, x_min=-2.0, x_max=1.0, y_min=-1.2, y_max=1.2,"
                             " max_iter=64: uint32[4, 8] [1, 2, 3, 3, 5, 4, 2, 2]")
    assert any(line.startswith("compile   ") and line.endswith(" s") for line in lines)
    assert any(line.startswith("cost      ") and "s per unit of WORK on this machine" in line for line in lines)


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(EXAMPLES / "nonce.py"), "--json")
    info = json.loads(out)
    assert code == 0 and info["kernel_id"] == source.kernel_id((EXAMPLES / "nonce.py").read_bytes())
    assert (info["name"], info["index"], info["merge"], info["compare"], info["work"]) == (
        "nonce", "count", "stack", "verify", ["rows"])
    assert info["output"] == {"dtype": "uint64", "shape": [2]}
    assert [p["name"] for p in info["params"]] == ["seed", "difficulty", "first", "count"]
    sample = info["sample"]
    assert sample["params"] == {"seed": 7, "difficulty": 4, "first": 0, "count": 64, "start": 0, "end": 4}
    assert sample["verify"] is True and sample["dtype"] == "uint64" and sample["shape"] == [2]
    assert sample["work"] == sample["measured_on"][1] - sample["measured_on"][0] > 0
    assert sample["seconds_per_work"] == sample["seconds"] / sample["work"] > 0 and info["compile_seconds"] > 0
    assert not info["publishable"] and "COMPARE = \"verify\" is not served yet" in info["why_not_publishable"]
    code, out, _ = run(capsys, str(EXAMPLES / "montecarlo.py"), "--json")
    assert json.loads(out)["compare"] == ["tolerance", 0.0, 1e-8] and json.loads(out)["publishable"]


@pytest.mark.parametrize(("content", "says"), [
    (b"import os\n", "depin: error: line 1, col 1: import of 'os' is not allowed"),
    (b"\xff", "depin: error: the kernel file is not UTF-8"),
    (None, "depin: error: cannot read"),
])
def test_a_refusal_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None,
                                         says: str) -> None:
    path = tmp_path / "kernel.py"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run(capsys, str(path))
    assert code == 2 and out == "" and err.startswith(says) and err.count("\n") == 1


def test_a_kernel_that_fails_on_its_sample_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "kernel.py"
    path.write_text((EXAMPLES / "mandelbrot.py").read_text().replace("out[r - start, c]", "out[r - start + 4, c]"))
    done = subprocess.run([sys.executable, "-m", "depin.cli.main", "kernel", "check", str(path)], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.startswith("depin: error: the sample task {") and done.stderr.endswith(
        "failed: IndexError: index is out of bounds\n") and done.stderr.count("\n") == 1
