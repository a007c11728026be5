"""`depin demo` end to end, as a user runs it: exit 0, the job paid from a grant with the rest refunded, the ledger
verified against the signed checkpoint, a PNG written, nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.support import DEPIN, Cluster, wait_until


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (e.g. a data dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


@pytest.mark.timeout(240)
def test_demo_runs_end_to_end(cluster: Cluster, tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    scratch = tmp_path / "scratch"  # the demo's temporary dir lands here, so its processes are ours to find
    scratch.mkdir()
    picture = tmp_path / "out" / "demo.png"
    picture.parent.mkdir()
    demo = cluster.spawn("demo", [str(DEPIN), "demo", "--output", str(picture)], cwd=work,
                         stdout_path=tmp_path / "demo.out", env=cluster.env(TMPDIR=str(scratch)))
    code = demo.wait(timeout=200)
    out = (tmp_path / "demo.out").read_text()
    assert code == 0, demo.tail()
    assert "Traceback" not in demo.log()
    ledger_lines = [line for line in out.splitlines() if line.startswith("ledger ")]
    assert len(ledger_lines) == 1 and "ok:" in ledger_lines[0], out
    verified = re.fullmatch(r"ledger +ok: (\d+) entries, root [0-9a-f]{64} signed by the coordinator;"
                            r" conservation holds \((\d+) minted\)", ledger_lines[0])
    assert verified, ledger_lines[0]
    # The money: a grant funds the job, the validated results are paid, the rest goes back to the submitter.
    granted = re.search(r"^grant +(\d+) credits to the submitter [a-z2-7]{32}$", out, re.M)
    paid = re.search(r"^paid +(\d+) credits for validated results; (\d+) of (\d+) back with the submitter$", out, re.M)
    assert granted and paid, out
    assert int(paid[1]) > 0 and int(paid[1]) + int(paid[2]) == int(paid[3]) == int(granted[1]) == int(verified[2])
    assert re.search(r"^proof +entry \d+ \(refund of \d+\) checked against the checkpoint$", out, re.M), out
    assert re.search(r"^owner page +http://127\.0\.0\.1:\d+/ ", out, re.M), out  # worker 0 serves its page
    with Image.open(picture) as im:
        assert im.format == "PNG"
        assert im.size == (960, 720)
        im.load()
        assert len(im.getcolors(1 << 16) or range(1 << 16)) > 8  # a picture, not a blank
    # It wrote nothing into the working directory and left no coordinator or worker behind.
    assert list(work.iterdir()) == []
    wait_until(lambda: not processes_mentioning(str(scratch)), "the demo's processes to be gone", timeout=30)
    assert list(scratch.iterdir()) == [], "the demo left its temporary directory behind"


def test_demo_refuses_too_few_workers(cluster: Cluster) -> None:
    got = subprocess.run([str(DEPIN), "demo", "--workers", "1", "--output", str(cluster.root / "x.png")],
                         capture_output=True, text=True, timeout=60, env=cluster.env(), cwd=cluster.root)
    assert got.returncode == 2
    assert got.stderr.startswith("depin: error:") and got.stderr.count("\n") == 1, got.stderr
    assert not (cluster.root / "x.png").exists()
