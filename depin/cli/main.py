"""`depin`: the command line. Builds the config once, runs one command, and turns every error into one line.

Exit codes: 0 success; 1 a job that ended badly (wait) or a generic failure; 2 bad input, or a request the
coordinator refuses (not your job, not enough credits); 3 coordinator unreachable; 4 a verification failure (bad
signature, changed key, broken or forked ledger); 5 a worker its coordinator banned; 70 an internal bug; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from depin.errors import DepinError, VerificationError

EXIT_INTERNAL = 70


def _add_coordinator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coordinator", metavar="URL",
                   help="coordinator URL (default: $DEPIN_COORDINATOR, else http://127.0.0.1:8642)")


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def _batch(text: str) -> int | None:
    # --batch: "auto" (None: adaptive) or a count; the range is WorkerConfig's to check.
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be 'auto' or a whole number") from None


def _add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="where your key lives (default: $DEPIN_HOME, else ~/.depin)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own errors are user errors too: one line, exit 2.
        raise SystemExit(_fail(f"{self.prog}: {message}", 2))


def build_parser() -> argparse.ArgumentParser:
    """The full `depin` argument parser."""
    parser = _Parser(prog="depin", description="depin: a compute marketplace on spare hardware")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("coordinator", help="run a coordinator")
    p.add_argument("--data-dir", required=True, help="where the database and the coordinator key live")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8642, help="port to listen on; 0 picks a free one (default 8642)")
    p.add_argument("--lease-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="seconds before an unanswered lease is given to another worker (default 60)")
    p.add_argument("--rate-per-key", type=float, default=500.0, metavar="N",
                   help="signed requests per second allowed per key, bursts of 2N; 0 = no limit (default 500)")
    p.add_argument("--rate-per-address", type=float, default=2000.0, metavar="N",
                   help="requests per second allowed per network address, bursts of 2N; 0 = no limit (default 2000)")
    p.add_argument("--checkpoint-every", type=int, default=1000, metavar="N",
                   help="sign a ledger checkpoint after N new entries (default 1000)")
    p.add_argument("--checkpoint-interval", type=float, default=5.0, metavar="SECONDS",
                   help="...or after this many seconds if the ledger grew at all (default 5)")

    p = sub.add_parser("worker", help="run a worker daemon (or `depin worker status`)")
    p.add_argument("action", nargs="?", choices=("run", "status"), default="run",
                   help="run (default) the daemon, or show the status of the worker of --data-dir")
    _add_coordinator(p)
    _add_json(p)
    p.add_argument("--data-dir", required=True, help="where the worker key, journal and numba cache live")
    p.add_argument("--config", metavar="FILE", help="TOML settings (default: DATA_DIR/worker.toml if it exists)")
    p.add_argument("--always", action="store_true", default=None,
                   help="a dedicated machine: compute whenever there is work (ignore idle, battery, heat, hours)")
    p.add_argument("--idle-seconds", type=float, metavar="S", help="quiet time after use before computing (60)")
    p.add_argument("--max-load", type=float, metavar="CORES", dest="max_other_load",
                   help="cores other programs may use before the machine counts as in use (0.5)")
    p.add_argument("--max-temperature", type=float, metavar="C", dest="max_temperature_c",
                   help="pause above this CPU temperature in °C (80)")
    p.add_argument("--run-on-battery", action="store_true", default=None, help="keep computing on battery")
    p.add_argument("--window", action="append", metavar="WHEN", dest="windows",
                   help="allowed hours, e.g. 'Mon-Fri 19:00-07:00' (repeatable; default any time)")
    p.add_argument("--threads", type=int, help="CPU threads for kernels (default all)")
    p.add_argument("--duty-cycle", type=float, metavar="F", help="fraction of time to compute, 0.05..1 (1)")
    p.add_argument("--on-pause", choices=("finish", "return"), help="finish the task in hand or give it back (finish)")
    p.add_argument("--watts", type=float, help="extra draw of one busy core, for the energy estimate (10)")
    p.add_argument("--page-port", type=int, metavar="PORT",
                   help="the owner's page on 127.0.0.1 (default 8643; 0 picks a free port)")
    p.add_argument("--no-page", action="store_true", help="do not serve the owner's page")
    p.add_argument("--coordinator-key", metavar="HEX", help="the coordinator public key to pin (else: first contact)")
    p.add_argument("--batch", type=_batch, default=None, metavar="N|auto",
                   help="tasks to lease per request (default auto: about 100 ms of work, from measured speed)")
    p.add_argument("--once", action="store_true",
                   help="compute a single task, report it, and exit (a first test: ignores the run policy)")
    p.add_argument("--owner", metavar="ID", help="your id (depin keygen): your workers never cross-check each other")
    p.add_argument("--min-price", type=int, default=0, metavar="CREDITS",
                   help="only take tasks of jobs paying at least this per validated result (default 0: any)")
    p.add_argument("--kernels", choices=("all", "builtin"), default="all",
                   help="which kernels to run: all (default: the built-in ones and, in a sandbox, kernels that"
                        " submitters published) or builtin (only depin's own)")
    p.add_argument("--no-auto-bond", action="store_const", const=False, dest="auto_bond",
                   help="do not lock earned credits in the bond (default: lock them, up to --max-bond)")
    p.add_argument("--max-bond", type=int, metavar="CREDITS",
                   help="the most credits auto-bonding keeps in the bond (default 1000)")
    p.add_argument("--audit-interval", type=float, default=30.0, metavar="SECONDS",
                   help="how often to check the ledger: new checkpoints, consistency, proofs of credits (default 30)")

    p = sub.add_parser("submit", help="submit a job")
    _add_coordinator(p)
    _add_home(p)
    _add_json(p)
    p.add_argument("kernel", help="kernel name (see `depin kernels`)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a kernel parameter")
    p.add_argument("--tasks", type=int, default=8, help="how many tasks to split the job into (default 8)")
    p.add_argument("--replicas", type=int, help="copies of each task sent out at first (default max(2, quorum))")
    p.add_argument("--quorum", type=int, help="agreeing results that validate a task (default min(2, replicas))")
    p.add_argument("--max-errors", type=int, help="error results a task survives before it fails (default 3)")
    p.add_argument("--max-results", type=int, help="results per task before it fails (default replicas+3)")
    p.add_argument("--price", type=int, default=10,
                   help="credits paid per validated result (default 10); tasks x max-results x price is escrowed")

    for name, text in (("status", "show a job"), ("wait", "wait for a job, with a progress bar"),
                       ("cancel", "cancel a job you submitted")):
        p = sub.add_parser(name, help=text)
        _add_coordinator(p)
        _add_json(p)
        if name == "cancel":
            _add_home(p)
        p.add_argument("job", help="job id")

    p = sub.add_parser("result", help="download a finished job's result (yours only)")
    _add_coordinator(p)
    _add_home(p)
    p.add_argument("job", help="job id")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help=".npy (numpy array) or .png (image)")

    for name, text in (("jobs", "list jobs"), ("earnings", "credits per worker"), ("kernels", "list kernels")):
        p = sub.add_parser(name, help=text)
        if name != "kernels":
            _add_coordinator(p)
        _add_json(p)

    p = sub.add_parser("kernel", help="work with a kernel file of your own (docs/KERNELS.md)")
    ksub = p.add_subparsers(dest="kernel_command", metavar="ACTION", parser_class=_Parser)
    ksub.required = True
    kp = ksub.add_parser("check", help="check, compile and sample-run a kernel file; print its id and cost")
    kp.add_argument("file", help="the kernel file (.py)")
    _add_json(kp)

    p = sub.add_parser("grant", help="(operator) grant credits to an account, signed with the coordinator's key")
    _add_coordinator(p)
    _add_json(p)
    p.add_argument("account", help="the account id to credit (a submitter's id, see depin keygen)")
    p.add_argument("amount", type=int, help="whole credits")
    p.add_argument("--data-dir", required=True, help="the coordinator's data dir (its key authorises the grant)")

    for name, text in (("bond", "lock a worker's credits in its bond: trusted sooner, slashed if it cheats"),
                       ("unbond", "take credits back from a worker's bond")):
        p = sub.add_parser(name, help=text)
        _add_coordinator(p)
        _add_json(p)
        p.add_argument("amount", type=int, help="whole credits")
        p.add_argument("--data-dir", required=True,
                       help="the worker's data dir (its worker.key signs: the worker is the bonded party)")

    p = sub.add_parser("balance", help="an account's credits (yours by default)")
    _add_coordinator(p)
    _add_home(p)
    _add_json(p)
    p.add_argument("account", nargs="?", help="account id (default: your key's id)")

    p = sub.add_parser("receipts", help="a worker's results, rewards and checked ledger proofs")
    _add_coordinator(p)
    _add_json(p)
    p.add_argument("--worker", metavar="ID", help="the worker id (default: the worker of --data-dir)")
    p.add_argument("--data-dir", help="a worker's data dir: alone, its journal (offline); with --coordinator, its id")
    p.add_argument("--coordinator-key", metavar="HEX", help="expect this coordinator public key")

    p = sub.add_parser("provenance", help="how a job's output was made: kernel, workers, agreement, proved payments")
    _add_coordinator(p)
    _add_json(p)
    p.add_argument("job", help="job id")
    p.add_argument("--coordinator-key", metavar="HEX", help="expect this coordinator public key")

    p = sub.add_parser("ledger", help="export, verify or prove the ledger")
    lsub = p.add_subparsers(dest="ledger_command", metavar="ACTION", parser_class=_Parser)
    lsub.required = True
    for name, text in (("export", "write the ledger as JSON Lines"),
                       ("verify", "check the chain, the money rules and the signed Merkle root")):
        lp = lsub.add_parser(name, help=text)
        _add_coordinator(lp)
        lp.add_argument("--data-dir", help="read a coordinator's data dir instead of asking it")
        if name == "export":
            lp.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write (- for stdout)")
        else:
            lp.add_argument("--file", help="verify a JSON Lines export")
            lp.add_argument("--checkpoint", metavar="FILE",
                            help="with --file or --data-dir: a kept checkpoint the ledger must extend")
            lp.add_argument("--coordinator-key", metavar="HEX",
                            help="expect (with --checkpoint: use) this coordinator public key")
            _add_json(lp)
    lp = lsub.add_parser("prove", help="check the signed checkpoint, entries' inclusion, and growth since a checkpoint")
    _add_coordinator(lp)
    _add_json(lp)
    lp.add_argument("seq", type=int, nargs="*", help="entries to prove included")
    lp.add_argument("--since", metavar="FILE", help="a checkpoint you kept: prove the ledger still extends it")
    lp.add_argument("--save", metavar="FILE", help="keep the latest checkpoint in FILE (for a later --since)")
    lp.add_argument("--coordinator-key", metavar="HEX", help="expect this coordinator public key")

    p = sub.add_parser("keygen", help="create (or show) your key")
    _add_home(p)
    _add_json(p)

    p = sub.add_parser("demo", help="run a whole job on local workers and show the result")
    p.add_argument("--workers", type=int, default=3, help="local worker processes (default 3)")
    p.add_argument("--output", default="mandelbrot.png", help="where to write the picture (default mandelbrot.png)")
    p.add_argument("--keep", action="store_true", help="keep everything running (and the status page up) until Ctrl-C")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"depin: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `depin` console script."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        from depin.cli import commands

        return commands.dispatch(args)
    except VerificationError as exc:
        return _fail(str(exc), 4)
    except DepinError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line, never a traceback (unless DEPIN_DEBUG=1 asks for one)
        from depin.config import environment

        if environment().get("DEPIN_DEBUG") == "1":
            raise
        return _fail(f"internal error ({type(exc).__name__}: {exc}); please report it", EXIT_INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
