"""The operating system's layers around a kernel's sandbox child (docs/KERNELS.md 4, layers 3 to 5).

The child calls `apply` once, after compiling its kernel and before its first task: from then on it needs no new
file, no new process or thread, no socket and no more memory than its tasks' arrays, and each layer takes one of
these away on its own, so that a kernel that got past the check and numba still meets every other layer:

* `landlock`: the file system is read-only and only below the Python installation and the imported packages; no
  TCP bind or connect (ABI 4); no abstract UNIX socket or signal outside the child (ABI 6).
  Enforced for the calling thread, so only while the child has one thread.
* `rlimits`: RLIMIT_AS (the address space mapped once compiled, plus `Limits.memory_bytes`), RLIMIT_FSIZE 0 (no
  file grows), RLIMIT_NOFILE (no fd beyond those open: no file, socket or pipe), RLIMIT_CORE 0, RLIMIT_CPU
  (`Limits.cpu_seconds` from now, a backstop to the worker's wall-clock kill) and RLIMIT_NPROC 0 (no process or
  thread). A child of a root worker then becomes the user nobody: root could raise its limits again, and
  RLIMIT_NPROC never binds root.
* `seccomp`: a filter built by libseccomp (the pyseccomp bindings, or libseccomp's own `seccomp` module) allowing
  only the system calls a child makes while serving tasks (`ALLOWED`, measured with strace, see
  benchmarks/RESULTS.md); those a hostile kernel would try (`REFUSED`: files, sockets, processes, threads, signals
  to others, tracing) fail with EPERM, so it sees a refused call; any other call kills the child.

A layer that cannot be applied here (no library, an old kernel, a second thread) is reported as off with the
reason, never an error: volunteers run many kernels on many machines. `probe` says what this machine offers,
without applying anything, for `depin worker status` before a child has reported.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import resource
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from depin.errors import UserError

LAYERS = ("landlock", "rlimits", "seccomp")  # in the order `apply` applies them

# What a child calls while serving tasks, measured with `strace -f` attached once it was ready, over tasks of every
# outcome (outputs of 1 to 100,000 rows with a 64 MiB input, an IndexError from bounds checking, a MemoryError, an
# error raised by raw Python, a print flood) and its exit at the end of stdin: the pipes, memory (Python's arenas,
# glibc's malloc, numba's arrays), one futex and the signal handlers Python resets on the way out.
ALLOWED = ("read", "write", "mmap", "munmap", "mremap", "brk", "madvise", "futex", "rt_sigaction", "rt_sigreturn",
           "exit", "exit_group")
# What a hostile kernel would try, refused with EPERM (the call fails, the child lives and reports an error).
REFUSED = (
    "open", "openat", "openat2", "creat", "truncate", "ftruncate", "rename", "renameat", "renameat2", "unlink",
    "unlinkat", "mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod",
    "fchmodat", "chown", "fchown", "fchownat", "lchown", "mknod", "mknodat", "access", "faccessat", "faccessat2",
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendto", "sendmsg", "recvfrom",
    "recvmsg", "fork", "vfork", "clone", "clone3", "execve", "execveat", "ptrace", "process_vm_readv",
    "process_vm_writev", "kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal", "setrlimit", "prlimit64",
    "prctl", "seccomp", "pipe", "pipe2", "dup", "dup2", "dup3", "ioctl", "memfd_create", "mount", "chroot",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "personality", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "keyctl", "add_key", "request_key",
    "gettid", "mprotect", "rt_sigprocmask",  # what starting a thread calls before clone3, so that it fails cleanly
)


@dataclass(frozen=True)
class Limits:
    """What a sandbox child may use, and which layers hold it to that (all of them but in tests of one layer)."""

    memory_bytes: int = 1 << 30  # address space the child may map beyond what it holds once compiled
    # CPU time from the first task on, over the child's life: the worker starts a new child when the next task's
    # budget might not fit in what is left, so this should be at least the largest budget (it bounds a task's CPU).
    cpu_seconds: int = 3600
    layers: tuple[str, ...] = LAYERS

    def __post_init__(self) -> None:
        if self.memory_bytes < 1 << 20 or self.cpu_seconds < 1:
            raise UserError("a sandbox needs at least 1 MiB of memory and 1 s of CPU")
        unknown = set(self.layers) - set(LAYERS)
        if unknown:
            raise UserError(f"unknown sandbox layer {sorted(unknown)[0]!r}; known: {', '.join(LAYERS)}")

    def to_wire(self) -> dict[str, Any]:
        """As the hello message carries it."""
        return {"memory_bytes": self.memory_bytes, "cpu_seconds": self.cpu_seconds, "layers": list(self.layers)}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Limits:
        """Inverse of to_wire (in the child, from its trusted parent)."""
        return cls(int(obj["memory_bytes"]), int(obj["cpu_seconds"]), tuple(obj["layers"]))


def _seccomp_module() -> ModuleType | None:
    # libseccomp's own bindings where the system has them (Debian's python3-seccomp), else pyseccomp (same API).
    for name in ("seccomp", "pyseccomp"):
        try:
            return __import__(name)
        except (ImportError, OSError, RuntimeError):  # pyseccomp raises RuntimeError without libseccomp.so.2
            continue
    return None


def _landlock_abi() -> tuple[ModuleType | None, int]:
    try:
        import landlockpy
    except ImportError:
        return None, 0
    try:
        return landlockpy, landlockpy.abi_version()
    except OSError:
        return landlockpy, 0


def _seccomp_in_kernel() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def probe(limits: Limits) -> dict[str, str]:
    """What each layer would be on this machine, as `apply` reports it, without applying anything."""
    out = {}
    for layer in LAYERS:
        if layer not in limits.layers:
            out[layer] = "off: disabled by the worker"
        elif layer == "landlock":
            module, abi = _landlock_abi()
            out[layer] = ("off: the landlockpy package is not installed" if module is None
                          else "off: the Linux kernel has no Landlock (or it is disabled at boot)" if abi < 1
                          else f"available: Landlock ABI {abi}")
        elif layer == "seccomp":
            module, why = _seccomp_or_why()
            out[layer] = f"off: {why}" if module is None else f"available: libseccomp, {len(ALLOWED)} calls allowed"
        else:
            out[layer] = "available" + _root_note(_nobody())
    return out


def _seccomp_or_why() -> tuple[ModuleType | None, str]:
    # The bindings, or why there are none.
    if not _seccomp_in_kernel():
        return None, "the Linux kernel has no seccomp"
    module = _seccomp_module()
    if module is None:
        return None, "neither libseccomp's Python bindings nor pyseccomp with libseccomp.so.2 is installed"
    return module, ""


def _nobody() -> tuple[int, int] | None:
    # Where the worker runs as root, the user the child becomes: root may raise its own limits again, and RLIMIT_NPROC
    # never binds root.
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _root_note(nobody: tuple[int, int] | None) -> str:
    if os.geteuid() != 0:
        return ""
    if nobody is None:
        return "; stays root (no user nobody): root may raise these limits and RLIMIT_NPROC does not bind it"
    return "; drops from root to nobody"


@dataclass(frozen=True)
class _Facts:
    # What the layers need to know about the process, read before any of them (Landlock then hides /proc).
    vm_size: int
    top_fd: int
    cpu_used: float
    threads: int
    seccomp: ModuleType | None
    no_seccomp: str  # why seccomp is None
    landlock: ModuleType | None
    abi: int
    nobody: tuple[int, int] | None  # the user to become, if root


def _facts() -> _Facts:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    landlock, abi = _landlock_abi()
    seccomp, no_seccomp = _seccomp_or_why()
    return _Facts(_vm_size(), max(_open_fds()), usage.ru_utime + usage.ru_stime, _threads(), seccomp, no_seccomp,
                  landlock, abi, _nobody())


def apply(limits: Limits, readable: Iterable[str]) -> dict[str, str]:
    """Apply the layers of `limits` to this process (the child, single-threaded, compiled); each layer's report."""
    facts = _facts()
    steps = {"landlock": lambda: _landlock(facts, readable), "rlimits": lambda: _rlimits(facts, limits),
             "seccomp": lambda: _seccomp(facts)}
    report = {}
    for layer in LAYERS:
        if layer not in limits.layers:
            report[layer] = "off: disabled by the worker"
            continue
        try:
            report[layer] = steps[layer]()
        except (OSError, ValueError, RuntimeError) as exc:
            report[layer] = f"off: {type(exc).__name__}: {exc}"[:300]
    return report


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _landlock(facts: _Facts, readable: Iterable[str]) -> str:
    landlockpy, abi = facts.landlock, facts.abi
    if landlockpy is None:
        return "off: the landlockpy package is not installed"
    if abi < 1:
        return "off: the Linux kernel has no Landlock (or it is disabled at boot)"
    if facts.threads > 1:
        return f"off: the child has {facts.threads} threads and Landlock binds only the calling one"
    scopes = landlockpy.Scope.ABSTRACT_UNIX_SOCKET | landlockpy.Scope.SIGNAL
    read = landlockpy.AccessFS.READ_FILE | landlockpy.AccessFS.READ_DIR
    with landlockpy.Ruleset(scoped=scopes) as ruleset:  # handles every access this ABI knows: all denied...
        paths = sorted({p for p in readable if os.path.isdir(p)})
        for path in paths:
            ruleset.allow_path(path, read)  # ...but reading below these
        ruleset.restrict()
        net = "no TCP" if ruleset.handled_net else "TCP not covered (ABI < 4)"
        return f"active: Landlock ABI {abi}, read-only below {len(paths)} directories, {net}"


def _vm_size() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _open_fds() -> list[int]:
    listed = [int(name) for name in os.listdir("/proc/self/fd")]  # includes the fd listdir itself used, now closed
    live = []
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:
            continue
        live.append(fd)
    return live


def _rlimits(facts: _Facts, limits: Limits) -> str:
    address_space = facts.vm_size + limits.memory_bytes
    nofile = facts.top_fd + 1
    cpu = int(facts.cpu_used) + 1 + limits.cpu_seconds
    for which, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_NPROC, 0),
                         (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_AS, address_space)):
        resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit, SIGKILL a second later
    note = _root_note(facts.nobody)  # while still root
    if facts.nobody is not None:  # last: root could set the limits, nobody cannot raise them
        uid, gid = facts.nobody
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    return (f"active: AS {address_space >> 20} MiB, FSIZE 0, NOFILE {nofile}, CORE 0, CPU {limits.cpu_seconds} s, "
            f"NPROC 0{note}")


def _seccomp(facts: _Facts) -> str:
    seccomp = facts.seccomp
    if seccomp is None:
        return "off: " + facts.no_seccomp
    rules = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    for name, action in [(n, seccomp.ALLOW) for n in ALLOWED] + [(n, seccomp.ERRNO(errno.EPERM)) for n in REFUSED]:
        try:
            rules.add_rule(action, name)
        except (OSError, ValueError, RuntimeError):  # a call this architecture does not have (open, fork on arm64)
            continue
    rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)  # every thread, should there be any
    rules.load()
    return f"active: libseccomp, {len(ALLOWED)} calls allowed, {len(REFUSED)} refused, the rest fatal"


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when the thread that started it ends (the worker died or was killed)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
