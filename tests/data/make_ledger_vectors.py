"""Generate the ledger known-answer vectors: tests/data/ledger_chain.jsonl, .expected.json and .tampered.json.

    .venv/bin/python -m tests.data.make_ledger_vectors          # rewrite the three files
    .venv/bin/python -m tests.data.make_ledger_vectors --check  # exit 1 if the committed files differ

The chain is a small but complete market, written through the reference implementation (`ledger.Book.append`, so
every money rule is checked as it is written) with fixed times and fixed party ids: two grants, a job that ends done
(rewards from several workers, three on one task, then the refund of what is left), and a job cancelled before any
result (its whole escrow refunded); then bonds: two workers bond, a third job is funded, one worker is slashed while
it runs and again after a job's refund, one unbonds part of its bond. The first 13 entries (the market without
bonds) are unchanged since before bonds existed. ledger_chain.tampered.json holds copies that break each rule of the
bond kinds, with the first bad position and reason every verifier must report. The expected file holds everything an
independent verifier should re-derive from the export alone: each entry's hashed body and hash, each Merkle leaf
hash, the tree head at every size, the final balances and the amount minted, inclusion and consistency proofs, and
two checkpoints signed by a fixed test key. tests/depin/test_ledger_vectors.py checks the files equal this output
and re-derives every value.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from depin import checkpoint, codec, crypto, ledger, merkle
from depin.accounts import bond_account, escrow_account, holdings
from depin.errors import LedgerError

HERE = Path(__file__).resolve().parent
JSONL = HERE / "ledger_chain.jsonl"
EXPECTED = HERE / "ledger_chain.expected.json"
TAMPERED = HERE / "ledger_chain.tampered.json"

# Party ids are 32 characters a-z, 2-7, like a key's id; readable names padded with a digit that base32 allows.
ALICE = "alice" + "2" * 27  # submitter of job J1
BOB = "bob" + "2" * 29  # submitter of job J2
CAROL = "carol" + "3" * 27  # workers
DAVE = "dave" + "3" * 28
ERIN = "erin" + "3" * 28
J1 = "5f1c0a9e3b2d4e71"  # done: 3 tasks, price 7, max_results 3 -> escrow 63; 7 rewards, refund 14
J2 = "5f1c0a9e3b2d4e72"  # cancelled: 2 tasks, price 5, max_results 2 -> escrow 20, refunded whole
J3 = "5f1c0a9e3b2d4e73"  # done: 1 task, price 5, max_results 2 -> escrow 10; 1 reward, refund 5
T0 = 1_800_000_000_000  # unix ms of the first entry; entry n is written at T0 + 1000 n

CHECKPOINT_SEED = bytes(range(1, 33))  # 0x01..0x20: a test key, never a real coordinator's
CHECKPOINT_SIZES = (8, 13)
INCLUSION = ((0, 13), (5, 13), (12, 13), (7, 8), (2, 3), (0, 1))
CONSISTENCY = ((1, 13), (3, 13), (8, 13), (12, 13), (4, 8), (5, 11))

# (kind, from, to, amount, job_id, task_id)
SCRIPT: list[tuple[str, str, str, int, str | None, str | None]] = [
    ("grant", ledger.MINT, ALICE, 1000, None, None),
    ("escrow", ALICE, escrow_account(J1), 63, J1, None),
    ("grant", ledger.MINT, BOB, 500, None, None),
    ("reward", escrow_account(J1), CAROL, 7, J1, f"{J1}-0"),
    ("reward", escrow_account(J1), DAVE, 7, J1, f"{J1}-0"),
    ("escrow", BOB, escrow_account(J2), 20, J2, None),
    ("reward", escrow_account(J1), CAROL, 7, J1, f"{J1}-1"),
    ("reward", escrow_account(J1), ERIN, 7, J1, f"{J1}-1"),
    ("reward", escrow_account(J1), DAVE, 7, J1, f"{J1}-1"),  # a third replica the trust policy added: paid too
    ("refund", escrow_account(J2), BOB, 20, J2, None),  # J2 cancelled before any result
    ("reward", escrow_account(J1), DAVE, 7, J1, f"{J1}-2"),
    ("reward", escrow_account(J1), ERIN, 7, J1, f"{J1}-2"),
    ("refund", escrow_account(J1), ALICE, 14, J1, None),  # J1 done: 63 - 7 x 7
    # ---- bonds (entries 13 on)
    ("bond", CAROL, bond_account(CAROL), 10, None, None),
    ("bond", DAVE, bond_account(DAVE), 15, None, None),
    ("escrow", BOB, escrow_account(J3), 10, J3, None),
    ("slash", bond_account(DAVE), BOB, 5, J3, f"{J3}-0"),  # dave's result for J3-0 proven wrong while J3 runs
    ("reward", escrow_account(J3), CAROL, 5, J3, f"{J3}-0"),
    ("unbond", bond_account(CAROL), CAROL, 4, None, None),  # part of carol's bond back
    ("slash", bond_account(DAVE), ALICE, 7, J1, f"{J1}-1"),  # after J1's refund: its funder is made whole
    ("refund", escrow_account(J3), BOB, 5, J3, None),
    ("slash", bond_account(CAROL), ALICE, 6, J1, f"{J1}-1"),  # the same task, another bonded party
]


def build_entries() -> list[ledger.Entry]:
    """The chain, written through a Book (so every money rule holds)."""
    book = ledger.Book()
    out = []
    for n, (kind, from_, to, amount, job_id, task_id) in enumerate(SCRIPT):
        entry, _ = book.append(time=T0 + 1000 * n, kind=kind, from_=from_, to=to, amount=amount, job_id=job_id,
                               task_id=task_id)
        out.append(entry)
    return out


# Copies that break each rule of the bond kinds (LEDGER.md 5.1, rules B, U, S): the first `prefix` entries of the
# chain, then the entries of `then` (hashed and linked as a forger would), the last of which breaks `rule`.
# (name, rule, prefix, then: [(kind, from, to, amount, job_id, task_id)])
Move = tuple[str, str, str, int, str | None, str | None]
B_CAROL, B_DAVE, B_ERIN, B_ALICE = (bond_account(p) for p in (CAROL, DAVE, ERIN, ALICE))
TAMPERED_CASES: list[tuple[str, str, int, list[Move]]] = [
    ("bond from the mint", "B1", 13, [("bond", ledger.MINT, bond_account(ledger.MINT), 1, None, None)]),
    ("bond from a bond", "B1", 14, [("bond", B_CAROL, bond_account(B_CAROL), 1, None, None)]),
    ("bond into another's bond", "B2", 13, [("bond", CAROL, B_DAVE, 10, None, None)]),
    ("bond to a party", "B2", 13, [("bond", CAROL, ERIN, 10, None, None)]),
    ("bond with a job", "B3", 13, [("bond", CAROL, B_CAROL, 10, J1, None)]),
    ("bond with a task", "B3", 13, [("bond", CAROL, B_CAROL, 10, None, f"{J1}-0")]),
    ("bond more than held", "B4", 13, [("bond", CAROL, B_CAROL, 15, None, None)]),
    ("unbond from a party", "U1", 18, [("unbond", CAROL, CAROL, 4, None, None)]),
    ("unbond from a malformed bond", "U1", 18, [("unbond", "bond:carol", CAROL, 4, None, None)]),
    ("unbond to another party", "U2", 18, [("unbond", B_CAROL, ERIN, 4, None, None)]),
    ("unbond with a task", "U3", 18, [("unbond", B_CAROL, CAROL, 4, None, f"{J3}-0")]),
    ("unbond more than bonded", "U4", 18, [("unbond", B_CAROL, CAROL, 11, None, None)]),
    ("unbond a bond never made", "U4", 18, [("unbond", B_ERIN, ERIN, 1, None, None)]),
    ("slash without a job", "S1", 16, [("slash", B_DAVE, BOB, 5, None, f"{J3}-0")]),
    ("slash from a party", "S2", 16, [("slash", DAVE, BOB, 5, J3, f"{J3}-0")]),
    ("slash from an escrow", "S2", 16, [("slash", escrow_account(J3), BOB, 5, J3, f"{J3}-0")]),
    ("slash without a task", "S3", 16, [("slash", B_DAVE, BOB, 5, J3, "")]),
    ("slash for a job never funded", "S4", 15, [("slash", B_DAVE, BOB, 5, J3, f"{J3}-0")]),
    ("slash to the worker paid instead", "S5", 16, [("slash", B_DAVE, CAROL, 5, J3, f"{J3}-0")]),
    ("slash to another funder", "S5", 19, [("slash", B_DAVE, BOB, 7, J1, f"{J1}-1")]),
    ("slash back to the bonded party", "S6", 19, [("bond", ALICE, B_ALICE, 50, None, None),
                                                   ("slash", B_ALICE, ALICE, 7, J1, f"{J1}-1")]),
    ("slash the same task and party twice", "S7", 20, [("slash", B_DAVE, ALICE, 1, J1, f"{J1}-1")]),
    ("slash the same pair in another job", "S7", 20, [("slash", B_DAVE, BOB, 1, J3, f"{J1}-1")]),
    ("slash more than bonded", "S8", 19, [("slash", B_DAVE, ALICE, 11, J1, f"{J1}-1")]),
]


def tampered(entries: list[ledger.Entry]) -> list[dict[str, Any]]:
    """Each case of TAMPERED_CASES, its entries and what `ledger.verify` says of them."""
    out = []
    for name, rule, prefix, then in TAMPERED_CASES:
        chain = [e.to_dict() for e in entries[:prefix]]
        for n, (kind, from_, to, amount, job_id, task_id) in enumerate(then):
            fields = {"seq": prefix + n, "time": T0 + 1000 * (prefix + n), "kind": kind, "from": from_, "to": to,
                      "amount": amount, "job_id": job_id, "task_id": task_id, "prev_hash": chain[-1]["hash"]}
            chain.append({**fields, "hash": ledger.entry_hash(fields)})
        try:
            ledger.verify(chain)
        except LedgerError as exc:
            out.append({"name": name, "rule": rule, "prefix": prefix, "then": chain[prefix:],
                        "first_bad_seq": exc.seq, "error": str(exc)})
            continue
        raise AssertionError(f"tampered case {name!r} breaks no rule")
    return out


def jsonl(entries: list[ledger.Entry]) -> str:
    """The export, byte for byte as `depin ledger export` writes it."""
    return "".join(json.dumps(e.to_dict(), separators=(",", ":")) + "\n" for e in entries)


def _hex(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def expected(entries: list[ledger.Entry]) -> dict[str, Any]:
    """Every value a verifier should re-derive from the export."""
    leaves = [ledger.leaf_of(e.hash) for e in entries]
    tree = merkle.MemoryTree(leaves)
    summary = ledger.verify(entries)
    key = crypto.SigningKey(CHECKPOINT_SEED)
    checkpoints = []
    for size in CHECKPOINT_SIZES:
        cp = checkpoint.sign(key, size=size, root=tree.root(size), time=entries[size - 1].time + 500)
        checkpoints.append({"json": cp.to_json(), "signed_hex": cp.signed_bytes().hex(),
                            "signing_input_hex": crypto.signing_input("checkpoint", cp.signed_bytes()).hex()})
    in_accounts, escrowed, bonded = holdings(summary.balances)
    return {
        "_comment": (
            "Known answers for ledger_chain.jsonl, generated by `.venv/bin/python -m tests.data.make_ledger_vectors`"
            " with the reference implementation and re-derived by tests/depin/test_ledger_vectors.py. body_hex[n] is"
            " the canonical msgpack of entry n without `hash`; hashes[n] = SHA-256('depin/1/ledger-entry' 00 ||"
            " body); leaf_hashes[n] = SHA-256(00 || the 32 bytes of hashes[n]); roots[s] is the RFC 9162 tree head"
            " of the first s entries (roots[0] = SHA-256 of nothing). Proofs are RFC 9162 2.1.3 / 2.1.4, nearest"
            " hash first. Checkpoints are Ed25519 by the test key below over 'depin/1/checkpoint' 00 || the canonical"
            " msgpack of {coordinator, root (hex), size, time}."
        ),
        "entries": summary.entries,
        "head_hash": summary.head_hash,
        "root_hash": summary.root_hash,
        "body_hex": [codec.encode({k: v for k, v in e.to_dict().items() if k != "hash"}).hex() for e in entries],
        "hashes": [e.hash for e in entries],
        "leaf_hashes": _hex(leaves),
        "roots": _hex([tree.root(size) for size in range(len(entries) + 1)]),
        "balances": dict(sorted(summary.balances.items())),
        "minted": summary.minted,
        "in_escrow": escrowed,
        "in_accounts": in_accounts,
        "in_bonds": bonded,
        "inclusion_proofs": [{"index": i, "size": n, "proof": _hex(merkle.inclusion_proof(tree, i, n))}
                             for i, n in INCLUSION],
        "consistency_proofs": [{"old": m, "new": n, "proof": _hex(merkle.consistency_proof(tree, m, n))}
                               for m, n in CONSISTENCY],
        "checkpoint_key": {"seed_hex": CHECKPOINT_SEED.hex(), "public_key_hex": key.public.hex(), "id": key.id},
        "checkpoints": checkpoints,
    }


def render() -> tuple[str, str, str]:
    """The three files' text."""
    entries = build_entries()
    cases = {"_comment": (
        "Copies of ledger_chain.jsonl that break each rule of the bond kinds (LEDGER.md 5.1): the first `prefix`"
        " entries of the chain, then the entries of `then`, whose hashes and links are right, so only the money rule"
        " named by `rule` is broken. Every verifier must report first_bad_seq and, as the reason, `error` without"
        " its `entry <p>: ` prefix. Generated by `.venv/bin/python -m tests.data.make_ledger_vectors`."),
        "cases": tampered(entries)}
    return (jsonl(entries), json.dumps(expected(entries), indent=2) + "\n",
            json.dumps(cases, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Write the vector files (or, with --check, compare them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    args = parser.parse_args(argv)
    chain, answers, broken = render()
    if args.check:
        same = JSONL.read_text() == chain and EXPECTED.read_text() == answers and TAMPERED.read_text() == broken
        print("ledger vectors are up to date" if same else "ledger vectors differ from the generator's output")
        return 0 if same else 1
    JSONL.write_text(chain)
    EXPECTED.write_text(answers)
    TAMPERED.write_text(broken)
    print(f"wrote {JSONL.name} ({chain.count(chr(10))} entries), {EXPECTED.name} and {TAMPERED.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
