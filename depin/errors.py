"""The one error tree of depin.

Every failure a user or a peer can cause is a `DepinError`. The CLI prints `str(err)` as one line and
exits with `err.exit_code`; the coordinator maps `err.http_status` to the HTTP answer. Nothing else
(no stray ValueError, KeyError or msgpack exception) is allowed to cross a module boundary.
"""

from __future__ import annotations


class DepinError(Exception):
    """Base of every error depin raises on purpose."""

    http_status = 500
    exit_code = 1


class UserError(DepinError):
    """Bad input from the person at the keyboard: printed as one line, exit code 2."""

    http_status = 400
    exit_code = 2


class BadRequest(UserError):
    """The coordinator refused a request as malformed (HTTP 400), with its reason."""


class NotFound(UserError):
    """An unknown job, task, worker or file."""

    http_status = 404


class Conflict(UserError):
    """The request is well formed but the state does not allow it (e.g. cancelling a finished job)."""

    http_status = 409


class PaymentRequired(UserError):
    """The submitter's account cannot cover what the job may cost (HTTP 402)."""

    http_status = 402


class KernelRefused(UserError):
    """A kernel file that is not one depin will run (docs/KERNELS.md 1 to 3): its message names the line, the column
    and the construct, or the rule of the file format it breaks."""


class ConnectionFailed(DepinError):
    """The coordinator could not be reached."""

    exit_code = 3


class ProtocolError(DepinError):
    """A message that does not follow docs/PROTOCOL.md."""


class PeerProtocolError(ProtocolError):
    """The other side sent something malformed (bad msgpack, missing field, wrong type)."""

    http_status = 400


class LocalProtocolError(ProtocolError):
    """We were about to send something malformed: a bug on our side."""


class Forbidden(ProtocolError):
    """Authenticated, but not allowed: someone else's lease, someone else's job (for a CLI user: exit code 2)."""

    http_status = 403
    exit_code = 2


class Banned(Forbidden):
    """The coordinator refuses this worker for good (403 `worker banned: ...`): for a CLI user, exit code 5."""

    exit_code = 5


class Replayed(ProtocolError):
    """A signed request seen before, or outside the allowed clock window."""

    http_status = 409


class TooManyRequests(ProtocolError):
    """Over the request rate allowed for one key or address."""

    http_status = 429


class TooLarge(ProtocolError):
    """A request body over the endpoint's limit."""

    http_status = 413


class VerificationError(DepinError):
    """Anything cryptographic or ledger-related that does not check out."""

    http_status = 401


class KeyMismatch(VerificationError):
    """The coordinator's key differs from the one pinned on first contact."""


class LedgerError(VerificationError):
    """A ledger chain that does not verify; `seq` is the first bad entry."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class KernelFailed(DepinError):
    """A published kernel failed on this worker: it raised an error, crashed, overran its budget, or this worker
    refused it (docs/KERNELS.md 4). The task's result says so instead of carrying an output (PROTOCOL.md 7.4).

    `reason` says which, as one of REASONS: "error" (the kernel raised one, e.g. IndexError from bounds checking,
    or a system call refused to it), "memory" (an allocation failed), "timeout" (killed at its wall-clock budget),
    "crash" (its process died: a signal, the CPU limit), "syscall" (killed by seccomp for a forbidden system call),
    "malformed" (an answer that is not the output asked for), "refused" (it did not pass the check or compile)."""

    REASONS = ("error", "memory", "timeout", "crash", "syscall", "malformed", "refused")

    def __init__(self, message: str, reason: str = "error") -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown KernelFailed reason {reason!r}")
        super().__init__(message)
        self.reason = reason


class SandboxClosed(DepinError):
    """The worker closed a kernel's sandbox while it ran a task (it is shutting down): the task was not run."""


class StateError(DepinError):
    """An illegal state transition: always a bug, never user input."""
