"""Accounts and the money rules of the ledger: who may move credits where, checked entry by entry.

Accounts are the `mint`, each party (a submitter or worker id), one escrow per job (`escrow:<job_id>`) and one bond
per party (`bond:<party_id>`). Credits enter only by a `grant` from the mint, move into a job's escrow when the job is
submitted (`escrow`), and leave the escrow either as a `reward` to a worker or as the one `refund` of what is left to
the party that funded it. A party locks credits in its own bond (`bond`) and takes them back (`unbond`); a `slash`
pays from its bond to the funder of a job it harmed, at most once per (task, bonded party), even after that job
ended. No account but the mint ever goes below zero, so the credits held by parties, escrows and bonds always add up
to the amount minted. `Accounts.apply` enforces every rule of docs/LEDGER.md section 5 and raises LedgerError at the
first broken one; the coordinator runs the same rules on every entry it writes, and `ledger.verify` on every entry
it reads. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from depin.errors import LedgerError

if TYPE_CHECKING:
    from depin.ledger import Entry

MINT = "mint"
ESCROW_PREFIX = "escrow:"
BOND_PREFIX = "bond:"
MAX_MINTED = 2**63 - 1  # every balance, and their sum, fits a signed 64-bit integer
_PARTY = re.compile(r"[a-z2-7]{32}")


def is_party(account: str) -> bool:
    """A submitter's or worker's id (PROTOCOL.md section 4), as opposed to the mint or an escrow."""
    return _PARTY.fullmatch(account) is not None


def is_bond(account: str) -> bool:
    """A party's bond account: `bond:` followed by a party id."""
    return account.startswith(BOND_PREFIX) and is_party(account[len(BOND_PREFIX):])


def is_account(account: str) -> bool:
    """Any account name the ledger can hold: the mint, a party id, a job's escrow, or a party's bond."""
    return (account == MINT or is_party(account) or (account.startswith(ESCROW_PREFIX) and len(account) > 7)
            or is_bond(account))


def escrow_account(job_id: str) -> str:
    """The escrow account of a job."""
    return ESCROW_PREFIX + job_id


def bond_account(party: str) -> str:
    """The bond account of a party."""
    return BOND_PREFIX + party


def holdings(balances: Mapping[str, int]) -> tuple[int, int, int]:
    """(in accounts, in escrow, in bonds): what parties, escrows and bonds hold; together, the credits minted."""
    parties = escrowed = bonded = 0
    for account, credits in balances.items():
        if account.startswith(ESCROW_PREFIX):
            escrowed += credits
        elif account.startswith(BOND_PREFIX):
            bonded += credits
        elif account != MINT:
            parties += credits
    return parties, escrowed, bonded


_BOND_KINDS = ("bond", "unbond", "slash")


def _owner(bond: str) -> str:
    return bond[len(BOND_PREFIX):]


@dataclass
class _Escrow:
    funder: str
    closed: bool = False
    rewarded: set[tuple[str, str]] = field(default_factory=set)  # (task_id, worker) pairs paid so far


class Accounts:
    """Balances and escrow states after some prefix of the ledger."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self._escrows: dict[str, _Escrow] = {}  # job id -> its escrow
        self._slashed: set[tuple[str, str]] = set()  # (task_id, bonded party) pairs slashed so far

    def balance(self, account: str) -> int:
        """Credits in an account (0 if it never appeared)."""
        return self.balances.get(account, 0)

    def held(self, job_id: str) -> int:
        """Credits still in a job's escrow."""
        return self.balance(escrow_account(job_id))

    def bonded(self, party: str) -> int:
        """Credits locked in a party's bond."""
        return self.balance(bond_account(party))

    @property
    def minted(self) -> int:
        """Credits ever granted."""
        return -self.balance(MINT)

    def funder(self, job_id: str) -> str | None:
        """Who funded a job's escrow, if it was funded."""
        escrow = self._escrows.get(job_id)
        return None if escrow is None else escrow.funder

    def restore_escrow(self, job_id: str, funder: str, closed: bool, rewarded: set[tuple[str, str]]) -> None:
        """Rebuild one escrow's state from stored entries (the coordinator's restart)."""
        self._escrows[job_id] = _Escrow(funder, closed, rewarded)

    def restore_slashes(self, slashed: Iterable[tuple[str, str]]) -> None:
        """Rebuild the (task_id, bonded party) pairs already slashed from stored entries (the coordinator's restart)."""
        self._slashed.update(slashed)

    def check(self, e: Entry) -> None:
        """Raise LedgerError (at e.seq) if `e` breaks a rule after the entries applied so far; change nothing."""
        self._check(e)

    def apply(self, e: Entry) -> None:
        """Check `e` and move its credits."""
        self._check(e)
        escrow = self._escrows.get(e.job_id or "")
        if e.kind == "escrow":
            self._escrows[e.job_id or ""] = _Escrow(e.from_)
        elif e.kind == "reward" and escrow is not None:
            escrow.rewarded.add((e.task_id or "", e.to))
        elif e.kind == "refund" and escrow is not None:
            escrow.closed, escrow.rewarded = True, set()
        elif e.kind == "slash":
            self._slashed.add((e.task_id or "", _owner(e.from_)))
        self.balances[e.from_] = self.balance(e.from_) - e.amount
        self.balances[e.to] = self.balance(e.to) + e.amount

    def _check(self, e: Entry) -> None:
        problem = self._problem(e)
        if problem is not None:
            raise LedgerError(f"entry {e.seq}: {problem}", e.seq)

    def _problem(self, e: Entry) -> str | None:
        # The rules of LEDGER.md section 5, in the order it lists them (so every verifier names the same one).
        job = e.job_id
        escrow = self._escrows.get(job) if job is not None else None
        if e.kind == "grant":
            if e.from_ != MINT:
                return "a grant must come from mint"
            if not is_party(e.to):
                return "a grant must go to a party id"
            if job is not None or e.task_id is not None:
                return "a grant has no job_id or task_id"
            if self.minted + e.amount > MAX_MINTED:
                return f"grants would exceed {MAX_MINTED} credits in all"
            return None
        if e.kind in _BOND_KINDS:
            return self._bond_problem(e)
        if not job:
            return f"{'an' if e.kind == 'escrow' else 'a'} {e.kind} needs a job_id"
        account = escrow_account(job)
        if e.kind == "escrow":
            if not is_party(e.from_):
                return "an escrow must come from a party id"
            if e.to != account:
                return f"an escrow for job {job} must go to {account}"
            if e.task_id is not None:
                return "an escrow has no task_id"
            if escrow is not None:
                return f"job {job} is already funded"
            return self._overdraft(e)
        if e.from_ != account:
            return f"a {e.kind} for job {job} must come from {account}"
        if escrow is None:
            return f"job {job} was never funded"
        if escrow.closed:
            return f"the escrow of job {job} was already refunded"
        if e.kind == "reward":
            if not is_party(e.to):
                return "a reward must go to a party id"
            if not e.task_id:
                return "a reward needs a task_id"
            if (e.task_id, e.to) in escrow.rewarded:
                return f"task {e.task_id} already rewarded {e.to}"
            return self._overdraft(e)
        # refund
        if e.to != escrow.funder:
            return f"a refund for job {job} must go to its funder {escrow.funder}"
        if e.task_id is not None:
            return "a refund has no task_id"
        if e.amount != self.balance(account):
            return f"a refund must return the whole escrow ({self.balance(account)} credits)"
        return None

    def _bond_problem(self, e: Entry) -> str | None:
        # Rules B, U and S of LEDGER.md section 5.1, after those of the first four kinds.
        if e.kind == "bond":
            if not is_party(e.from_):
                return "a bond must come from a party id"
            if e.to != bond_account(e.from_):
                return f"a bond from {e.from_} must go to {bond_account(e.from_)}"
            if e.job_id is not None or e.task_id is not None:
                return "a bond has no job_id or task_id"
            return self._overdraft(e)
        if e.kind == "unbond":
            if not is_bond(e.from_):
                return "an unbond must come from a bond account"
            if e.to != _owner(e.from_):
                return f"an unbond from {e.from_} must go to {_owner(e.from_)}"
            if e.job_id is not None or e.task_id is not None:
                return "an unbond has no job_id or task_id"
            return self._overdraft(e)
        # slash
        job = e.job_id
        if not job:
            return "a slash needs a job_id"
        if not is_bond(e.from_):
            return "a slash must come from a bond account"
        if not e.task_id:
            return "a slash needs a task_id"
        funder = self.funder(job)
        if funder is None:
            return f"job {job} was never funded"
        if e.to != funder:
            return f"a slash for job {job} must go to its funder {funder}"
        owner = _owner(e.from_)
        if owner == funder:
            return f"a slash cannot pay {owner} from its own bond"
        if (e.task_id, owner) in self._slashed:
            return f"task {e.task_id} already slashed {owner}"
        return self._overdraft(e)

    def _overdraft(self, e: Entry) -> str | None:
        have = self.balance(e.from_)
        if have < e.amount:
            return f"{e.from_} has {have} credits, cannot pay {e.amount}"
        return None
