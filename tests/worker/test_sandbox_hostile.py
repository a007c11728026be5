"""Hostile kernels against worker.sandbox's operating-system layers, with no check and no numba in the way: the raw
loader (tests/worker/sandbox_kernels.py) runs plain Python, as a kernel that got past both would. Each attack runs
with all layers, then with each layer alone that is meant to stop it, to show that layer holds on its own; each must
end as a KernelFailed (most as a refused system call) with its effect absent, this process untouched, and the next
task of the same Sandbox run right in a fresh child.

Which layer stops what (where the worker runs as root, as here, `rlimits` includes becoming nobody):

| attack                         | landlock      | rlimits              | seccomp           |
|--------------------------------|---------------|----------------------|-------------------|
| open a file to write or read   | EACCES        | EMFILE (NOFILE)      | EPERM             |
| read /proc/<worker>/environ    | EACCES        | EMFILE               | EPERM             |
| connect to 127.0.0.1           | EACCES (TCP)  | EMFILE (no socket)   | EPERM             |
| fork, start a thread           | -             | EAGAIN (NPROC)       | EPERM             |
| execve                         | EACCES        | - (a new program)    | EPERM             |
| signal the worker              | EPERM (scope) | EPERM (nobody)       | EPERM             |
| raise its own rlimits          | -             | EPERM (nobody)       | EPERM             |
| allocate 10 GB                 | -             | MemoryError (AS)     | -                 |
| any other system call (uname)  | -             | -                    | killed (SIGSYS)   |

With no layer at all the process boundary still turns a segfault, an endless loop, a deep recursion, a huge answer
or garbage on the frames into a KernelFailed, and a print flood into a bounded log.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from depin.errors import KernelFailed
from tests.worker import sandbox_kernels as k
from worker import sandbox_layers
from worker.sandbox import LOG_BYTES, Sandbox
from worker.sandbox_layers import LAYERS, Limits

BUDGET = 60.0
ONE = ("float64", (1,))
OFFERED = sandbox_layers.probe(Limits())
SECRET = "not-for-kernels-3f9a"

# Each attack's `run` returns np.ones(1) only if the attack worked: the tests expect a KernelFailed instead.
ATTACKS = {
    "write_file": """
def run(task_params, inputs):
    with open(task_params["target"], "w") as f:
        f.write("pwned")
    return np.ones(1)
""",
    "read_secret": """
def run(task_params, inputs):
    with open(task_params["target"], "rb") as f:
        data = f.read()
    return np.frombuffer(data[:8].ljust(8, b"\\0"), dtype=np.float64).copy()
""",
    "read_worker_environ": """
def run(task_params, inputs):
    with open("/proc/%d/environ" % task_params["worker"], "rb") as f:
        f.read()
    return np.ones(1)
""",
    "connect": """
import socket
def run(task_params, inputs):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", task_params["port"]))
    s.sendall(b"pwned")
    return np.ones(1)
""",
    "fork": """
import os
def run(task_params, inputs):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return np.ones(1)
""",
    "thread": """
import threading
def run(task_params, inputs):
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    return np.ones(1)
""",
    "execve": """
import os
def run(task_params, inputs):
    os.execv("/bin/true", ["true"])
""",
    "signal_worker": """
import os
def run(task_params, inputs):
    os.kill(task_params["worker"], 0)  # signal 0: the permission check of a kill, without the kill
    return np.ones(1)
""",
    "raise_rlimit": """
import resource
def run(task_params, inputs):
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    return np.ones(1)
""",
    "allocate_10gb": """
def run(task_params, inputs):
    big = bytearray(10 * 2**30)
    return np.ones(1)
""",
    "uname": """
import os
def run(task_params, inputs):
    os.uname()
    return np.ones(1)
""",
}

EACCES, EMFILE, EPERM = "Permission denied", "Too many open files", "Operation not permitted"
# The table of the module's header, as data: attack -> (reason, {layer alone or "all": words in the message}).
TABLE: dict[str, tuple[str, dict[str, str]]] = {
    "write_file": ("error", {"landlock": EACCES, "rlimits": EMFILE, "seccomp": EPERM, "all": EPERM}),
    "read_secret": ("error", {"landlock": EACCES, "rlimits": EMFILE, "seccomp": EPERM, "all": EPERM}),
    "read_worker_environ": ("error", {"landlock": EACCES, "rlimits": EMFILE, "seccomp": EPERM, "all": EPERM}),
    "connect": ("error", {"landlock": EACCES, "rlimits": EMFILE, "seccomp": EPERM, "all": EPERM}),
    "fork": ("error", {"rlimits": "Resource temporarily unavailable", "seccomp": EPERM, "all": EPERM}),
    "thread": ("error", {"rlimits": "can't start new thread", "seccomp": "can't start new thread",
                         "all": "can't start new thread"}),
    "execve": ("error", {"landlock": EACCES, "seccomp": EPERM, "all": EPERM}),
    "signal_worker": ("error", {"landlock": EPERM, "rlimits": EPERM, "seccomp": EPERM, "all": EPERM}),
    # Python's words for setrlimit's EPERM
    "raise_rlimit": ("error", {"rlimits": "not allowed to raise", "seccomp": "not allowed to raise",
                               "all": "not allowed to raise"}),
    "allocate_10gb": ("memory", {"rlimits": "MemoryError", "all": "MemoryError"}),
    "uname": ("syscall", {"seccomp": "forbidden system call", "all": "forbidden system call"}),
}
STOPPED = [(attack, LAYERS if layer == "all" else (layer,), reason, words)
           for attack, (reason, by_layer) in TABLE.items() for layer, words in by_layer.items()]

# A second source in every Sandbox: after the attack's failure, a fresh child must run this task right.
FINE = {"target": "", "port": 0, "worker": 0, "ok": 1}


def _unless_offered(layers: tuple[str, ...]) -> None:
    missing = [layer for layer in layers if not OFFERED[layer].startswith("available")]
    if missing:
        pytest.skip(f"{missing[0]} is not offered on this machine: {OFFERED[missing[0]]}")


def _guarded(source: str) -> str:
    # The attack runs unless the task says ok: the same Sandbox then shows its next child serves a plain task.
    return source + """
_attack = run
def run(task_params, inputs):
    if task_params.get("ok"):
        return np.full(1, 7.0)
    return _attack(task_params, inputs)
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.setblocking(False)
    yield server
    server.close()


def _params(tmp_path: Path, listener: socket.socket) -> dict[str, Any]:
    return {"target": str(tmp_path / "target"), "port": listener.getsockname()[1], "worker": os.getpid()}


@pytest.mark.parametrize("attack, layers, reason, words", STOPPED,
                         ids=[f"{a}-{'+'.join(ls) if ls != LAYERS else 'all'}" for a, ls, _, _ in STOPPED])
def test_each_attack_is_stopped_by_each_layer_meant_to_stop_it(
        tmp_path: Path, listener: socket.socket, attack: str, layers: tuple[str, ...], reason: str,
        words: str) -> None:
    _unless_offered(layers)
    cache = tmp_path / "cache"
    params = _params(tmp_path, listener)
    if attack == "read_secret":  # a key the worker keeps in the kernels' cache dir: not readable either
        cache.mkdir()
        (cache / "worker.key").write_text(SECRET)
        params["target"] = str(cache / "worker.key")
    with Sandbox(_guarded(ATTACKS[attack]), attack, cache, Limits(layers=layers), k.RAW) as sb:
        sb.start()
        assert all(sb.layers()[layer].startswith("active") for layer in layers), sb.layers()
        with pytest.raises(KernelFailed) as failed:
            sb.run(params, {}, BUDGET, expect=ONE)
        assert failed.value.reason == reason and words in str(failed.value), str(failed.value)
        assert SECRET not in str(failed.value) + sb.log()
        assert sb.run(FINE, {}, BUDGET, expect=ONE).tolist() == [7.0]  # the next task, in a fresh child
        assert sb.children == 2
    if attack == "write_file":
        assert not (tmp_path / "target").exists()
    if attack == "connect":
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_with_no_layer_the_attacks_would_work(tmp_path: Path, listener: socket.socket) -> None:
    # The control: the same kernels do what they try when nothing stops them, so the tests above can fail.
    params = _params(tmp_path, listener)
    for attack in ("write_file", "fork", "thread", "signal_worker"):
        with Sandbox(_guarded(ATTACKS[attack]), attack, tmp_path / "cache", Limits(layers=()), k.RAW) as sb:
            assert sb.run(params, {}, BUDGET, expect=ONE).tolist() == [1.0], attack
    assert (tmp_path / "target").read_text() == "pwned"
    with Sandbox(_guarded(ATTACKS["connect"]), "connect", tmp_path / "cache", Limits(layers=()), k.RAW) as sb:
        sb.run(params, {}, BUDGET, expect=ONE)
    conn, _ = listener.accept()
    conn.close()


OTHER = {
    "segfault": ("import ctypes\ndef run(task_params, inputs):\n    ctypes.string_at(0)\n",
                 "crash", "SIGSEGV", ()),
    "loop_forever": ("def run(task_params, inputs):\n    while True:\n        pass\n",
                     "timeout", "overran its budget of 3 s", ()),
    "recurse": ("def run(task_params, inputs):\n    return run(task_params, inputs)\n",
                "error", "RecursionError", ()),
    "huge_output": ("def run(task_params, inputs):\n    return np.zeros(100 * 2**20 // 8)\n",
                    "malformed", "over the cap", ()),
    "wrong_dtype": ("def run(task_params, inputs):\n    return np.ones(1, dtype=np.int64)\n",
                    "malformed", "not the float64", ()),
    "huge_frame_header": ("import os\ndef run(task_params, inputs):\n    os.write(3, b'\\x7f\\xff\\xff\\xff')\n"
                          "    return np.ones(1)\n", "malformed", "over the cap", LAYERS),
    "garbage_frame": ("import os\ndef run(task_params, inputs):\n    os.write(3, b'\\x00\\x00\\x00\\x02\\xc1\\xc1')\n"
                      "    return np.ones(1)\n", "malformed", "malformed msgpack", LAYERS),
    "exit": ("import os\ndef run(task_params, inputs):\n    os._exit(0)\n", "crash", "exited with code 0", LAYERS),
}


@pytest.mark.parametrize("attack", sorted(OTHER))
def test_what_the_process_boundary_turns_into_a_failure(tmp_path: Path, attack: str) -> None:
    source, reason, words, layers = OTHER[attack]
    _unless_offered(layers)
    budget = 3.0 if attack == "loop_forever" else BUDGET
    with Sandbox(_guarded(source), attack, tmp_path, Limits(layers=layers), k.RAW) as sb:
        with pytest.raises(KernelFailed) as failed:
            sb.run({}, {}, budget, expect=ONE)
        assert failed.value.reason == reason and words in str(failed.value), str(failed.value)
        assert sb.run({"ok": 1}, {}, BUDGET, expect=ONE).tolist() == [7.0]


def test_the_cpu_limit_ends_a_loop_the_wall_clock_budget_would_allow(tmp_path: Path) -> None:
    source = "def run(task_params, inputs):\n    while True:\n        pass\n"
    with Sandbox(source, "spin", tmp_path, Limits(cpu_seconds=1, layers=("rlimits",)), k.RAW) as sb:
        with pytest.raises(KernelFailed, match="CPU time limit") as failed:
            sb.run({}, {}, BUDGET, expect=ONE)
        assert failed.value.reason == "crash"


def test_a_print_flood_goes_to_the_bounded_log_not_into_the_frames(tmp_path: Path) -> None:
    source = """
import sys
def run(task_params, inputs):
    for i in range(20_000):
        print("flood " * 100)
    sys.stdout.flush()
    return np.full(1, 3.0)
"""
    with Sandbox(source, "flood", tmp_path, Limits(), k.RAW) as sb:
        assert sb.run({}, {}, BUDGET, expect=ONE).tolist() == [3.0]
        assert sb.children == 1 and "flood" in sb.log() and len(sb.log()) <= LOG_BYTES


def test_the_child_sees_none_of_the_workers_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPIN_TEST_SECRET", SECRET)
    source = "import os\nSEEN = dict(os.environ)\ndef run(task_params, inputs):\n" \
             "    return np.array([float(any('not-for-kernels' in v for v in SEEN.values()))])\n"
    with Sandbox(source, "env", tmp_path, Limits(), k.RAW) as sb:
        assert sb.run({}, {}, BUDGET, expect=ONE).tolist() == [0.0]


def test_a_child_that_writes_between_tasks_is_replaced_before_the_next(tmp_path: Path) -> None:
    # It answers, then writes a stray frame after its answer: the next task must not read that as its answer.
    source = """
import os, struct
from depin import codec
def run(task_params, inputs):
    if task_params.get("stray"):
        body = codec.encode({"kind": "output", "array": codec.array_to_wire(np.full(1, 666.0))})
        os.write(3, struct.pack(">I", len(body)) + body + struct.pack(">I", len(body)) + body)
        return np.full(1, 1.0)
    return np.full(1, 2.0)
"""
    with Sandbox(source, "stray", tmp_path, Limits(layers=()), k.RAW) as sb:
        first = sb.run({"stray": 1}, {}, BUDGET, expect=ONE)
        assert first.tolist() == [666.0]  # its first frame was taken as the answer: a lie, but of the right form
        assert sb.run({}, {}, BUDGET, expect=ONE).tolist() == [2.0]
        assert sb.children == 2
