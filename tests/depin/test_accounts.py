"""depin.accounts: every money rule refuses exactly what it names, at the entry's seq, and any run of valid market
operations keeps the books balanced (what parties and escrows hold is what the mint gave, and nobody is below 0)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from depin import accounts, ledger
from depin.accounts import MAX_MINTED, MINT, Accounts, bond_account, escrow_account, holdings, is_bond, is_party
from depin.errors import LedgerError, VerificationError

ALICE = "alice" + "2" * 27
BOB = "bob" + "2" * 29
CAROL = "carol" + "3" * 27
DAVE = "dave" + "3" * 28
J1, J2, J3 = "job1", "job2", "job3"
E1, E2, E3 = escrow_account(J1), escrow_account(J2), escrow_account(J3)

# The market before each case: alice and bob funded, J1 open (30 escrowed, 5 paid to carol for J1-0), J2 refunded.
PREFIX: list[dict[str, Any]] = [
    {"kind": "grant", "from_": MINT, "to": ALICE, "amount": 100},
    {"kind": "grant", "from_": MINT, "to": BOB, "amount": 50},
    {"kind": "escrow", "from_": ALICE, "to": E1, "amount": 30, "job_id": J1},
    {"kind": "reward", "from_": E1, "to": CAROL, "amount": 5, "job_id": J1, "task_id": f"{J1}-0"},
    {"kind": "escrow", "from_": BOB, "to": E2, "amount": 10, "job_id": J2},
    {"kind": "refund", "from_": E2, "to": BOB, "amount": 10, "job_id": J2},
]
SEQ = len(PREFIX)  # the seq of the entry under test

# One valid next entry of each kind; each case below changes it to break one rule.
VALID: dict[str, dict[str, Any]] = {
    "grant": {"kind": "grant", "from_": MINT, "to": ALICE, "amount": 10, "job_id": None, "task_id": None},
    "escrow": {"kind": "escrow", "from_": BOB, "to": E3, "amount": 5, "job_id": J3, "task_id": None},
    "reward": {"kind": "reward", "from_": E1, "to": DAVE, "amount": 5, "job_id": J1, "task_id": f"{J1}-0"},
    "refund": {"kind": "refund", "from_": E1, "to": ALICE, "amount": 25, "job_id": J1, "task_id": None},
}


def _book(prefix: list[dict[str, Any]] = PREFIX) -> ledger.Book:
    book = ledger.Book()
    for n, e in enumerate(prefix):
        book.append(time=n, **e)
    return book


def _state(book: ledger.Book) -> tuple[Any, ...]:
    """Everything a refused entry must leave alone, escrow states (closed, paid pairs) included."""
    return book.size, book.root(), dict(book.accounts.balances), {
        j: (book.accounts.funder(j), dataclasses.astuple(book.accounts._escrows[j])) for j in (J1, J2, J3)
        if book.accounts.funder(j) is not None}


def test_the_starting_books() -> None:
    book = _book()
    assert book.accounts.balances == {MINT: -150, ALICE: 70, BOB: 50, CAROL: 5, E1: 25, E2: 0}
    assert book.accounts.minted == 150
    assert (book.accounts.funder(J1), book.accounts.funder(J2), book.accounts.funder(J3)) == (ALICE, BOB, None)


@pytest.mark.parametrize("kind", list(VALID))
def test_each_valid_entry_is_accepted(kind: str) -> None:
    book = _book()
    entry, _ = book.append(time=99, **VALID[kind])
    assert entry.seq == SEQ
    assert sum(v for k, v in book.accounts.balances.items() if k != MINT) == book.accounts.minted


RULES: list[tuple[str, dict[str, Any], str]] = [
    # grants
    ("grant", {"from_": BOB}, "a grant must come from mint"),
    ("grant", {"from_": E1}, "a grant must come from mint"),
    ("grant", {"to": MINT}, "a grant must go to a party id"),
    ("grant", {"to": E1}, "a grant must go to a party id"),
    ("grant", {"to": ALICE.upper()}, "a grant must go to a party id"),
    ("grant", {"to": ALICE[:-1]}, "a grant must go to a party id"),
    ("grant", {"to": ALICE + "2"}, "a grant must go to a party id"),
    ("grant", {"to": "alice" + "1" * 27}, "a grant must go to a party id"),  # 0, 1, 8, 9 are not base32
    ("grant", {"job_id": J1}, "a grant has no job_id or task_id"),
    ("grant", {"job_id": ""}, "a grant has no job_id or task_id"),
    ("grant", {"task_id": "t"}, "a grant has no job_id or task_id"),
    ("grant", {"amount": MAX_MINTED - 150 + 1}, f"grants would exceed {MAX_MINTED} credits in all"),
    # every kind but grant needs a job
    ("escrow", {"job_id": None}, "an? escrow needs a job_id"),
    ("escrow", {"job_id": ""}, "an? escrow needs a job_id"),
    ("reward", {"job_id": None}, "a reward needs a job_id"),
    ("refund", {"job_id": None}, "a refund needs a job_id"),
    # escrows
    ("escrow", {"from_": MINT}, "an escrow must come from a party id"),
    ("escrow", {"from_": E1}, "an escrow must come from a party id"),
    ("escrow", {"to": E1}, f"an escrow for job {J3} must go to {E3}"),
    ("escrow", {"to": BOB}, f"an escrow for job {J3} must go to {E3}"),
    ("escrow", {"task_id": f"{J3}-0"}, "an escrow has no task_id"),
    ("escrow", {"job_id": J1, "to": E1}, f"job {J1} is already funded"),
    ("escrow", {"job_id": J2, "to": E2}, f"job {J2} is already funded"),  # refunded: closed for good
    ("escrow", {"amount": 51}, f"{BOB} has 50 credits, cannot pay 51"),
    ("escrow", {"from_": DAVE}, f"{DAVE} has 0 credits, cannot pay 5"),
    # rewards and refunds come from the job's open escrow
    ("reward", {"from_": MINT}, f"a reward for job {J1} must come from {E1}"),
    ("reward", {"from_": E2}, f"a reward for job {J1} must come from {E1}"),
    ("reward", {"from_": ALICE}, f"a reward for job {J1} must come from {E1}"),
    ("reward", {"job_id": J3, "from_": E3}, f"job {J3} was never funded"),
    ("reward", {"job_id": J2, "from_": E2, "task_id": f"{J2}-0"}, f"the escrow of job {J2} was already refunded"),
    ("refund", {"from_": ALICE}, f"a refund for job {J1} must come from {E1}"),
    ("refund", {"job_id": J3, "from_": E3}, f"job {J3} was never funded"),
    ("refund", {"job_id": J2, "from_": E2, "to": BOB, "amount": 1}, f"the escrow of job {J2} was already refunded"),
    # rewards
    ("reward", {"to": MINT}, "a reward must go to a party id"),
    ("reward", {"to": E1}, "a reward must go to a party id"),
    ("reward", {"task_id": None}, "a reward needs a task_id"),
    ("reward", {"to": CAROL}, f"task {J1}-0 already rewarded {CAROL}"),
    ("reward", {"amount": 26}, f"{E1} has 25 credits, cannot pay 26"),
    # refunds
    ("refund", {"to": BOB}, f"a refund for job {J1} must go to its funder {ALICE}"),
    ("refund", {"to": CAROL}, f"a refund for job {J1} must go to its funder {ALICE}"),
    ("refund", {"task_id": f"{J1}-0"}, "a refund has no task_id"),
    ("refund", {"amount": 24}, r"a refund must return the whole escrow \(25 credits\)"),
    ("refund", {"amount": 26}, r"a refund must return the whole escrow \(25 credits\)"),
]


@pytest.mark.parametrize(("kind", "changes", "message"), RULES,
                         ids=[f"{k}-{m[:40]}-{'-'.join(c)}" for k, c, m in RULES])
def test_each_rule_refuses_exactly_what_it_names(kind: str, changes: dict[str, Any], message: str) -> None:
    book = _book()
    before = _state(book)
    with pytest.raises(LedgerError, match=f"^entry {SEQ}: {message}$") as info:
        book.append(time=99, **{**VALID[kind], **changes})
    assert info.value.seq == SEQ
    assert isinstance(info.value, VerificationError)
    assert _state(book) == before  # a refused entry changes nothing
    book.append(time=99, **VALID[kind])  # and the book still takes the valid one


def test_every_rule_message_is_covered() -> None:
    # The messages of Accounts._problem, as templates; each must be matched by a case above.
    templates = ["a grant must come from mint", "a grant must go to a party id", "a grant has no job_id",
                 "grants would exceed", "needs a job_id", "an escrow must come from a party id",
                 "an escrow for job", "an escrow has no task_id", "is already funded", "credits, cannot pay",
                 "must come from escrow:", "was never funded", "was already refunded", "a reward must go to a party",
                 "a reward needs a task_id", "already rewarded", "must go to its funder", "a refund has no task_id",
                 "a refund must return the whole escrow"]
    for t in templates:
        assert any(t in m for _, _, m in RULES), t


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        # Two rules broken: the one listed first in Accounts._problem is named, so every verifier agrees.
        ({"kind": "grant", "from_": BOB, "to": MINT, "amount": 1, "job_id": J1}, "a grant must come from mint"),
        ({"kind": "escrow", "from_": MINT, "to": BOB, "amount": 1, "job_id": J1}, "an escrow must come from a party"),
        ({"kind": "reward", "from_": MINT, "to": MINT, "amount": 1, "job_id": J3}, f"a reward for job {J3} must come"),
        ({"kind": "refund", "from_": E2, "to": ALICE, "amount": 99, "job_id": J2},
         f"the escrow of job {J2} was already refunded"),
        ({"kind": "reward", "from_": E1, "to": CAROL, "amount": 99, "job_id": J1, "task_id": f"{J1}-0"},
         f"task {J1}-0 already rewarded"),
    ],
)
def test_the_first_rule_in_order_is_the_one_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(LedgerError, match=f"^entry {SEQ}: {message}"):
        _book().append(time=99, **entry)


# ---- overdrafts, refunds, rewards, the mint cap -------------------------------------------------------------


def test_a_party_may_escrow_its_whole_balance_and_not_one_credit_more() -> None:
    book = _book()
    book.append(time=1, kind="escrow", from_=BOB, to=E3, amount=50, job_id=J3)
    assert book.accounts.balance(BOB) == 0
    with pytest.raises(LedgerError, match=f"entry {SEQ + 1}: {BOB} has 0 credits, cannot pay 1"):
        book.append(time=2, kind="escrow", from_=BOB, to=escrow_account("job4"), amount=1, job_id="job4")


def test_an_escrow_pays_out_exactly_what_it_holds() -> None:
    book = _book()
    for n, worker in enumerate((DAVE, ALICE, BOB, CAROL, DAVE)):
        book.append(time=n, kind="reward", from_=E1, to=worker, amount=5, job_id=J1, task_id=f"{J1}-{n + 1}")
    assert book.accounts.balance(E1) == 0
    with pytest.raises(LedgerError, match=f"{E1} has 0 credits, cannot pay 1"):
        book.append(time=9, kind="reward", from_=E1, to=CAROL, amount=1, job_id=J1, task_id=f"{J1}-9")
    # Spent to the last credit: no refund can be written (amounts are positive), the escrow just stays empty.
    with pytest.raises(LedgerError, match=r"a refund must return the whole escrow \(0 credits\)"):
        book.append(time=9, kind="refund", from_=E1, to=ALICE, amount=1, job_id=J1)


def test_the_refund_closes_the_escrow_for_good() -> None:
    book = _book()
    book.append(time=1, **VALID["refund"])
    assert book.accounts.balance(E1) == 0 and book.accounts.balance(ALICE) == 95
    closed = f"the escrow of job {J1} was already refunded"
    for entry in (VALID["reward"], {**VALID["refund"], "amount": 1},
                  {**VALID["reward"], "to": CAROL, "task_id": f"{J1}-7"}):
        with pytest.raises(LedgerError, match=closed):
            book.append(time=2, **entry)
    with pytest.raises(LedgerError, match=f"job {J1} is already funded"):
        book.append(time=2, kind="escrow", from_=ALICE, to=E1, amount=1, job_id=J1)


def test_a_reward_is_paid_once_per_task_and_worker() -> None:
    book = _book()
    book.append(time=1, kind="reward", from_=E1, to=DAVE, amount=1, job_id=J1, task_id=f"{J1}-0")
    book.append(time=2, kind="reward", from_=E1, to=DAVE, amount=1, job_id=J1, task_id=f"{J1}-1")  # other task
    book.append(time=3, kind="reward", from_=E1, to=ALICE, amount=1, job_id=J1, task_id=f"{J1}-1")  # other worker
    for who, task in ((DAVE, "0"), (DAVE, "1"), (ALICE, "1"), (CAROL, "0")):
        with pytest.raises(LedgerError, match=f"task {J1}-{task} already rewarded {who}"):
            book.append(time=4, kind="reward", from_=E1, to=who, amount=1, job_id=J1, task_id=f"{J1}-{task}")


def test_the_same_task_id_in_another_job_is_another_task() -> None:
    book = _book()
    book.append(time=1, kind="escrow", from_=BOB, to=E3, amount=5, job_id=J3)
    book.append(time=2, kind="reward", from_=E3, to=CAROL, amount=5, job_id=J3, task_id=f"{J1}-0")


def test_grants_are_capped_at_2_63_minus_1_in_all() -> None:
    book = ledger.Book()
    book.append(time=0, kind="grant", from_=MINT, to=ALICE, amount=MAX_MINTED - 1)
    with pytest.raises(LedgerError, match=f"entry 1: grants would exceed {MAX_MINTED} credits in all"):
        book.append(time=1, kind="grant", from_=MINT, to=BOB, amount=2)
    book.append(time=1, kind="grant", from_=MINT, to=BOB, amount=1)
    assert book.accounts.minted == MAX_MINTED == 2**63 - 1
    assert book.accounts.balance(MINT) == -(2**63 - 1)
    with pytest.raises(LedgerError, match=f"entry 2: grants would exceed {MAX_MINTED} credits in all"):
        book.append(time=2, kind="grant", from_=MINT, to=BOB, amount=1)
    # The credits still move: a party holding nearly 2^63 may escrow all of it.
    book.append(time=3, kind="escrow", from_=ALICE, to=E1, amount=MAX_MINTED - 1, job_id=J1)


def test_one_grant_may_mint_the_whole_cap() -> None:
    book = ledger.Book()
    entry, _ = book.append(time=0, kind="grant", from_=MINT, to=ALICE, amount=MAX_MINTED)
    assert ledger.verify([entry.to_dict()]).minted == MAX_MINTED


# ---- the Accounts object itself -----------------------------------------------------------------------------


def _entry(seq: int, **fields: Any) -> ledger.Entry:
    return dataclasses.replace(ledger.make_entry(None, time=0, **fields), seq=seq)


def test_check_changes_nothing_and_apply_moves_the_credits() -> None:
    acc = Accounts()
    grant = _entry(0, kind="grant", from_=MINT, to=ALICE, amount=7)
    acc.check(grant)
    assert acc.balances == {} and acc.minted == 0
    acc.apply(grant)
    assert acc.balances == {MINT: -7, ALICE: 7} and acc.minted == 7
    with pytest.raises(LedgerError, match="entry 5: a grant must come from mint") as info:
        acc.check(_entry(5, kind="grant", from_=ALICE, to=BOB, amount=1))
    assert info.value.seq == 5


def test_balance_of_an_unknown_account_is_zero() -> None:
    assert Accounts().balance("anything") == 0 and Accounts().funder(J1) is None


def test_restore_escrow_gives_the_same_rules_as_a_replay() -> None:
    # The coordinator's restart rebuilds escrows from stored entries instead of replaying them.
    replayed = _book().accounts
    restored = Accounts()
    restored.balances = dict(replayed.balances)
    restored.restore_escrow(J1, ALICE, False, {(f"{J1}-0", CAROL)})
    restored.restore_escrow(J2, BOB, True, set())
    for kind, changes, message in RULES:
        if "grants would exceed" in message:
            continue
        e = _entry(SEQ, **{**VALID[kind], **changes})
        for acc in (replayed, restored):
            with pytest.raises(LedgerError, match=message):
                acc.check(e)
    for valid in VALID.values():
        restored.check(_entry(SEQ, **valid))


@pytest.mark.parametrize(
    ("account", "party"),
    [(ALICE, True), ("a" * 32, True), ("2" * 32, True), ("7" * 32, True), (MINT, False), (E1, False),
     ("a" * 31, False), ("a" * 33, False), ("A" * 32, False), ("1" * 32, False), ("8" * 32, False),
     ("a" * 31 + "\n", False), ("", False)],
)
def test_is_party(account: str, party: bool) -> None:
    assert is_party(account) is party


def test_escrow_account_names() -> None:
    assert escrow_account("abc") == "escrow:abc" == accounts.ESCROW_PREFIX + "abc"
    assert accounts.MINT == ledger.MINT == "mint"


# ---- bonds: bond, unbond, slash ---------------------------------------------------------------------------------

B_CAROL, B_DAVE, B_ALICE, B_BOB = (bond_account(p) for p in (CAROL, DAVE, ALICE, BOB))

# The market above, then: carol bonds 4 of her 5; dave, granted 20, bonds 10; dave is slashed 2 for a task of J2 after
# J2's refund (to J2's funder, bob).
BONDED: list[dict[str, Any]] = [
    *PREFIX,
    {"kind": "bond", "from_": CAROL, "to": B_CAROL, "amount": 4},
    {"kind": "grant", "from_": MINT, "to": DAVE, "amount": 20},
    {"kind": "bond", "from_": DAVE, "to": B_DAVE, "amount": 10},
    {"kind": "slash", "from_": B_DAVE, "to": BOB, "amount": 2, "job_id": J2, "task_id": f"{J2}-0"},
]
BSEQ = len(BONDED)

BOND_VALID: dict[str, dict[str, Any]] = {
    "bond": {"kind": "bond", "from_": DAVE, "to": B_DAVE, "amount": 10, "job_id": None, "task_id": None},
    "unbond": {"kind": "unbond", "from_": B_DAVE, "to": DAVE, "amount": 8, "job_id": None, "task_id": None},
    "slash": {"kind": "slash", "from_": B_CAROL, "to": ALICE, "amount": 4, "job_id": J1, "task_id": f"{J1}-0"},
}


def test_the_bonded_books() -> None:
    acc = _book(BONDED).accounts
    assert (acc.bonded(CAROL), acc.bonded(DAVE), acc.bonded(ALICE)) == (4, 8, 0)
    assert (acc.balance(CAROL), acc.balance(DAVE), acc.balance(BOB)) == (1, 10, 52)
    assert holdings(acc.balances) == (70 + 52 + 1 + 10, 25, 12) and sum(holdings(acc.balances)) == acc.minted == 170


@pytest.mark.parametrize("kind", list(BOND_VALID))
def test_each_valid_bond_entry_is_accepted(kind: str) -> None:
    book = _book(BONDED)
    entry, _ = book.append(time=99, **BOND_VALID[kind])
    assert entry.seq == BSEQ
    assert sum(holdings(book.accounts.balances)) == book.accounts.minted


BOND_RULES: list[tuple[str, dict[str, Any], str]] = [
    # bond: from a party to its own bond, no job or task, no overdraft
    ("bond", {"from_": MINT, "to": bond_account(MINT)}, "a bond must come from a party id"),
    ("bond", {"from_": B_DAVE, "to": bond_account(B_DAVE)}, "a bond must come from a party id"),
    ("bond", {"from_": E1}, "a bond must come from a party id"),
    ("bond", {"to": B_CAROL}, f"a bond from {DAVE} must go to {B_DAVE}"),
    ("bond", {"to": DAVE}, f"a bond from {DAVE} must go to {B_DAVE}"),
    ("bond", {"to": E1}, f"a bond from {DAVE} must go to {B_DAVE}"),
    ("bond", {"job_id": J1}, "a bond has no job_id or task_id"),
    ("bond", {"job_id": ""}, "a bond has no job_id or task_id"),
    ("bond", {"task_id": "t"}, "a bond has no job_id or task_id"),
    ("bond", {"amount": 11}, f"{DAVE} has 10 credits, cannot pay 11"),
    ("bond", {"from_": ALICE, "to": B_ALICE, "amount": 71}, f"{ALICE} has 70 credits, cannot pay 71"),
    # unbond: from a bond back to its owner only, no job or task, not more than is bonded
    ("unbond", {"from_": DAVE}, "an unbond must come from a bond account"),
    ("unbond", {"from_": E1}, "an unbond must come from a bond account"),
    ("unbond", {"from_": "bond:" + DAVE[:-1]}, "an unbond must come from a bond account"),
    ("unbond", {"from_": "bond:mint", "to": MINT}, "an unbond must come from a bond account"),
    ("unbond", {"to": CAROL}, f"an unbond from {B_DAVE} must go to {DAVE}"),
    ("unbond", {"to": B_DAVE}, f"an unbond from {B_DAVE} must go to {DAVE}"),
    ("unbond", {"job_id": J1}, "an unbond has no job_id or task_id"),
    ("unbond", {"task_id": f"{J1}-0"}, "an unbond has no job_id or task_id"),
    ("unbond", {"amount": 9}, f"{B_DAVE} has 8 credits, cannot pay 9"),
    ("unbond", {"from_": B_BOB, "to": BOB, "amount": 1}, f"{B_BOB} has 0 credits, cannot pay 1"),
    # slash: from a bond to the funder of a funded job, once per (task, bonded party), not to itself, no overdraft
    ("slash", {"job_id": None}, "a slash needs a job_id"),
    ("slash", {"job_id": ""}, "a slash needs a job_id"),
    ("slash", {"from_": CAROL}, "a slash must come from a bond account"),
    ("slash", {"from_": E1}, "a slash must come from a bond account"),
    ("slash", {"task_id": None}, "a slash needs a task_id"),
    ("slash", {"task_id": ""}, "a slash needs a task_id"),
    ("slash", {"job_id": J3}, f"job {J3} was never funded"),
    ("slash", {"to": CAROL}, f"a slash for job {J1} must go to its funder {ALICE}"),
    ("slash", {"to": BOB}, f"a slash for job {J1} must go to its funder {ALICE}"),
    ("slash", {"to": E1}, f"a slash for job {J1} must go to its funder {ALICE}"),
    ("slash", {"from_": B_ALICE}, f"a slash cannot pay {ALICE} from its own bond"),
    ("slash", {"from_": B_DAVE, "to": BOB, "job_id": J2, "task_id": f"{J2}-0"}, f"task {J2}-0 already slashed {DAVE}"),
    ("slash", {"from_": B_DAVE, "task_id": f"{J2}-0"}, f"task {J2}-0 already slashed {DAVE}"),  # in any job
    ("slash", {"amount": 5}, f"{B_CAROL} has 4 credits, cannot pay 5"),
]


@pytest.mark.parametrize(("kind", "changes", "message"), BOND_RULES,
                         ids=[f"{k}-{m[:40]}-{'-'.join(c)}" for k, c, m in BOND_RULES])
def test_each_bond_rule_refuses_exactly_what_it_names(kind: str, changes: dict[str, Any], message: str) -> None:
    book = _book(BONDED)
    before = book.size, dict(book.accounts.balances), set(book.accounts._slashed)
    with pytest.raises(LedgerError, match=f"^entry {BSEQ}: {message}$") as info:
        book.append(time=99, **{**BOND_VALID[kind], **changes})
    assert info.value.seq == BSEQ
    assert (book.size, book.accounts.balances, book.accounts._slashed) == before
    book.append(time=99, **BOND_VALID[kind])


def test_every_bond_rule_message_is_covered() -> None:
    templates = ["a bond must come from a party id", "a bond from", "a bond has no job_id or task_id",
                 "an unbond must come from a bond account", "an unbond from", "an unbond has no job_id or task_id",
                 "a slash needs a job_id", "a slash must come from a bond account", "a slash needs a task_id",
                 "was never funded", "a slash for job", "from its own bond", "already slashed", "cannot pay"]
    for t in templates:
        assert any(t in m for k, _, m in BOND_RULES if k in ("bond", "unbond", "slash")), t


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "bond", "from_": MINT, "to": DAVE, "amount": 99, "job_id": J1}, "a bond must come from a party id"),
        ({"kind": "unbond", "from_": DAVE, "to": CAROL, "amount": 99, "job_id": J1},
         "an unbond must come from a bond account"),
        ({"kind": "slash", "from_": CAROL, "to": CAROL, "amount": 99}, "a slash needs a job_id"),
        ({"kind": "slash", "from_": CAROL, "to": CAROL, "amount": 99, "job_id": J3}, "a slash must come from a bond"),
        ({"kind": "slash", "from_": B_CAROL, "to": CAROL, "amount": 99, "job_id": J3}, "a slash needs a task_id"),
        ({"kind": "slash", "from_": B_CAROL, "to": CAROL, "amount": 99, "job_id": J3, "task_id": "t"},
         f"job {J3} was never funded"),
        ({"kind": "slash", "from_": B_ALICE, "to": BOB, "amount": 99, "job_id": J1, "task_id": "t"},
         f"a slash for job {J1} must go to its funder {ALICE}"),
        ({"kind": "slash", "from_": B_BOB, "to": BOB, "amount": 99, "job_id": J2, "task_id": f"{J2}-0"},
         f"a slash cannot pay {BOB} from its own bond"),
        ({"kind": "slash", "from_": B_DAVE, "to": BOB, "amount": 99, "job_id": J2, "task_id": f"{J2}-0"},
         f"task {J2}-0 already slashed {DAVE}"),
    ],
)
def test_the_first_bond_rule_in_order_is_the_one_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(LedgerError, match=f"^entry {BSEQ}: {message}"):
        _book(BONDED).append(time=99, **entry)


def test_a_slash_may_follow_the_refund_and_pays_the_funder() -> None:
    book = _book(BONDED)
    book.append(time=99, kind="slash", from_=B_CAROL, to=BOB, amount=4, job_id=J2, task_id=f"{J2}-0")  # J2 refunded
    assert (book.accounts.bonded(CAROL), book.accounts.balance(BOB)) == (0, 56)
    assert book.accounts.balance(E2) == 0  # the escrow stays closed: a slash does not touch it


def test_a_bond_is_unbonded_in_parts_and_not_one_credit_more() -> None:
    book = _book(BONDED)
    for amount in (3, 4, 1):
        book.append(time=99, kind="unbond", from_=B_DAVE, to=DAVE, amount=amount)
    assert (book.accounts.bonded(DAVE), book.accounts.balance(DAVE)) == (0, 18)
    with pytest.raises(LedgerError, match=f"{B_DAVE} has 0 credits, cannot pay 1$"):
        book.append(time=99, kind="unbond", from_=B_DAVE, to=DAVE, amount=1)


def test_one_slash_per_task_and_bonded_party() -> None:
    book = _book(BONDED)
    book.append(time=99, kind="bond", from_=DAVE, to=B_DAVE, amount=10)
    book.append(time=99, kind="slash", from_=B_DAVE, to=ALICE, amount=1, job_id=J1, task_id=f"{J1}-0")
    book.append(time=99, kind="slash", from_=B_CAROL, to=ALICE, amount=1, job_id=J1, task_id=f"{J1}-0")  # another party
    book.append(time=99, kind="slash", from_=B_DAVE, to=ALICE, amount=1, job_id=J1, task_id=f"{J1}-1")  # another task
    with pytest.raises(LedgerError, match=f"task {J1}-0 already slashed {DAVE}$"):
        book.append(time=99, kind="slash", from_=B_DAVE, to=ALICE, amount=1, job_id=J1, task_id=f"{J1}-0")


def test_restore_slashes_gives_the_same_rules_as_a_replay() -> None:
    replayed = _book(BONDED).accounts
    restored = Accounts()
    restored.balances = dict(replayed.balances)
    restored.restore_escrow(J1, ALICE, False, {(f"{J1}-0", CAROL)})
    restored.restore_escrow(J2, BOB, True, set())
    restored.restore_slashes([(f"{J2}-0", DAVE)])
    for kind, changes, message in BOND_RULES:
        e = _entry(BSEQ, **{**BOND_VALID[kind], **changes})
        for acc in (replayed, restored):
            with pytest.raises(LedgerError, match=message):
                acc.check(e)
    for valid in BOND_VALID.values():
        restored.check(_entry(BSEQ, **valid))


@pytest.mark.parametrize(
    ("account", "bond"),
    [(B_ALICE, True), ("bond:" + "a" * 32, True), ("bond:" + ALICE[:-1], False), ("bond:" + ALICE + "2", False),
     ("bond:" + ALICE.upper(), False), ("bond:", False), ("bond:mint", False), (ALICE, False), (E1, False),
     ("Bond:" + ALICE, False), ("bond:bond:" + ALICE, False), (MINT, False)],
)
def test_is_bond_and_is_account(account: str, bond: bool) -> None:
    assert is_bond(account) is bond
    assert accounts.is_account(account) is (bond or account in (ALICE, E1, MINT))


def test_bond_account_names() -> None:
    assert bond_account(ALICE) == "bond:" + ALICE == accounts.BOND_PREFIX + ALICE
    assert Accounts().bonded(ALICE) == 0


# ---- any run of valid operations keeps the books balanced ---------------------------------------------------------

PARTIES = [ALICE, BOB, CAROL, DAVE]


@st.composite
def _market(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A run of grants, escrows, rewards, refunds, bonds, unbonds and slashes that respects every rule."""
    balances = dict.fromkeys(PARTIES, 0)
    bonds = dict.fromkeys(PARTIES, 0)
    open_jobs: dict[str, tuple[str, int, set[tuple[str, str]]]] = {}  # job -> (funder, held, rewarded)
    funders: dict[str, str] = {}  # every job ever funded, open or not -> its funder
    slashed: set[tuple[str, str]] = set()
    ops: list[dict[str, Any]] = []
    jobs = 0
    for _ in range(draw(st.integers(1, 40))):
        choices = ["grant"]
        if any(balances.values()):
            choices += ["escrow", "bond"]
        if any(held for _, held, _ in open_jobs.values()):
            choices += ["reward", "reward", "refund"]
        if any(bonds.values()):
            choices.append("unbond")
            if funders:
                choices.append("slash")
        kind = draw(st.sampled_from(choices))
        if kind in ("bond", "unbond", "slash"):
            held_in = balances if kind == "bond" else bonds
            party = draw(st.sampled_from([p for p in PARTIES if held_in[p]]))
            amount = draw(st.integers(1, held_in[party]))
            if kind == "slash":
                job = draw(st.sampled_from(sorted(funders)))
                task = f"{job}-{draw(st.integers(0, 3))}"
                if funders[job] == party or (task, party) in slashed:
                    continue
                slashed.add((task, party))
                bonds[party] -= amount
                balances[funders[job]] += amount
                ops.append({"kind": "slash", "from_": bond_account(party), "to": funders[job], "amount": amount,
                            "job_id": job, "task_id": task})
                continue
            sign = 1 if kind == "bond" else -1
            balances[party] -= sign * amount
            bonds[party] += sign * amount
            ends = (party, bond_account(party)) if kind == "bond" else (bond_account(party), party)
            ops.append({"kind": kind, "from_": ends[0], "to": ends[1], "amount": amount})
        elif kind == "grant":
            to = draw(st.sampled_from(PARTIES))
            amount = draw(st.integers(1, 10**6))
            balances[to] += amount
            ops.append({"kind": "grant", "from_": MINT, "to": to, "amount": amount})
        elif kind == "escrow":
            funder = draw(st.sampled_from([p for p in PARTIES if balances[p]]))
            amount = draw(st.integers(1, balances[funder]))
            jobs += 1
            job = f"job{jobs}"
            balances[funder] -= amount
            open_jobs[job] = (funder, amount, set())
            funders[job] = funder
            ops.append({"kind": "escrow", "from_": funder, "to": escrow_account(job), "amount": amount,
                        "job_id": job})
        else:
            job = draw(st.sampled_from(sorted(j for j, (_, held, _) in open_jobs.items() if held)))
            funder, held, rewarded = open_jobs[job]
            if kind == "refund":
                del open_jobs[job]
                balances[funder] += held
                ops.append({"kind": "refund", "from_": escrow_account(job), "to": funder, "amount": held,
                            "job_id": job})
                continue
            worker = draw(st.sampled_from(PARTIES))
            task = f"{job}-{draw(st.integers(0, 3))}"
            if (task, worker) in rewarded:
                continue
            amount = draw(st.integers(1, held))
            rewarded.add((task, worker))
            open_jobs[job] = (funder, held - amount, rewarded)
            balances[worker] += amount
            ops.append({"kind": "reward", "from_": escrow_account(job), "to": worker, "amount": amount,
                        "job_id": job, "task_id": task})
    return ops


@given(_market())
def test_any_valid_run_conserves_credits_and_verify_agrees_with_the_book(ops: list[dict[str, Any]]) -> None:
    book = ledger.Book()
    entries = []
    for n, op in enumerate(ops):
        entry, _ = book.append(time=n, **op)
        entries.append(entry)
        held = {k: v for k, v in book.accounts.balances.items() if k != MINT}
        assert sum(held.values()) == book.accounts.minted == sum(holdings(book.accounts.balances))
        assert all(v >= 0 for v in held.values())
    summary = ledger.verify([e.to_dict() for e in entries])
    assert summary.balances == book.accounts.balances
    assert (summary.entries, summary.head_hash, summary.root_hash) == (
        book.size, book.head.hash if book.head else ledger.GENESIS_PREV, book.root().hex())
    assert summary.minted == sum(op["amount"] for op in ops if op["kind"] == "grant")


@given(_market(), st.data())
def test_overdrawing_any_account_is_refused_at_any_point(ops: list[dict[str, Any]], data: st.DataObject) -> None:
    book = ledger.Book()
    for n, op in enumerate(ops):
        book.append(time=n, **op)
    party = data.draw(st.sampled_from(PARTIES))
    have = book.accounts.balance(party)
    with pytest.raises(LedgerError, match=f"entry {book.size}: {party} has {have} credits, cannot pay {have + 1}"):
        book.append(time=0, kind="escrow", from_=party, to=escrow_account("fresh"), amount=have + 1,
                    job_id="fresh")
    held = {str(op["job_id"]): book.accounts.balance(op["to"]) for op in ops if op["kind"] == "escrow"}
    refunded = {op["job_id"] for op in ops if op["kind"] == "refund"}
    open_ones = [j for j in sorted(held) if j not in refunded]
    if open_ones:
        job = data.draw(st.sampled_from(open_ones))
        with pytest.raises(LedgerError, match="cannot pay"):
            book.append(time=0, kind="reward", from_=escrow_account(job), to=party, amount=held[job] + 1,
                        job_id=job, task_id="never-paid-before")
