"""An independent ledger verifier (ledger_verifier.py, written from docs/LEDGER.md alone) against
(a) the shipped test vectors, (b) a real coordinator with real workers, over its HTTP endpoints, and
(c) a few hundred tampered copies of that real export, compared with `depin ledger verify --file`."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.independent import ledger_verifier as lv

ROOT = Path(__file__).resolve().parents[2]
DEPIN = Path(sys.executable).with_name("depin")
if not DEPIN.exists():
    DEPIN = ROOT / ".venv" / "bin" / "depin"
VECTORS = ROOT / "tests" / "data" / "ledger_chain.jsonl"
EXPECTED = ROOT / "tests" / "data" / "ledger_chain.expected.json"
TERMINAL = ("done", "failed", "cancelled")
KIND_REASON = "kind must be one of grant, escrow, reward, refund, bond, unbond, slash"


def h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


def hx(proof: list[bytes]) -> list[str]:
    return [p.hex() for p in proof]


def unhex(proof: list[str]) -> list[bytes]:
    return [bytes.fromhex(p) for p in proof]


# ==================================================================================================================
# (a) the test vectors of LEDGER.md section 15 and the worked examples of sections 3, 6, 7, 8, 9
# ==================================================================================================================


@pytest.fixture(scope="module")
def vectors() -> tuple[lv.Verdict, dict[str, Any]]:
    verdict = lv.verify_export(VECTORS.read_bytes())
    assert verdict.ok, verdict.error
    return verdict, json.loads(EXPECTED.read_text())


def test_vectors_entries_hashes_leaves_roots_balances(vectors: tuple[lv.Verdict, dict[str, Any]]) -> None:
    verdict, exp = vectors
    assert verdict.length == exp["entries"] == 22
    assert verdict.head == exp["head_hash"]
    assert verdict.root == exp["root_hash"]
    assert [lv.entry_body(e).hex() for e in verdict.entries] == exp["body_hex"]
    assert [lv.entry_hash(e) for e in verdict.entries] == exp["hashes"] == [e["hash"] for e in verdict.entries]
    assert [x.hex() for x in verdict.leaves] == exp["leaf_hashes"]
    roots = [r.hex() for r in lv.roots_by_size(verdict.leaves)]
    assert roots == exp["roots"]
    assert roots == [lv._mth_recursive(verdict.leaves[:s]).hex() for s in range(23)]  # both MTH agree
    assert roots[0] == hashlib.sha256(b"").hexdigest()
    assert verdict.balances == exp["balances"]  # every account that appears, mint and emptied escrows included
    assert (verdict.minted, verdict.in_escrow, verdict.in_accounts, verdict.in_bonds) == (
        exp["minted"], exp["in_escrow"], exp["in_accounts"], exp["in_bonds"])
    assert verdict.minted == verdict.in_accounts + verdict.in_escrow + verdict.in_bonds
    assert sum(verdict.balances.values()) == 0
    # the independent verifier's summary is what `depin ledger verify --file --json` reports (minus checkpoint)
    got = subprocess.run([str(DEPIN), "ledger", "verify", "--file", str(VECTORS), "--json"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert got.returncode == 0, got.stderr
    ref = json.loads(got.stdout)
    assert ref.pop("checkpoint") is None
    assert ref == verdict.summary()


def test_vectors_proofs(vectors: tuple[lv.Verdict, dict[str, Any]]) -> None:
    verdict, exp = vectors
    roots = [bytes.fromhex(r) for r in exp["roots"]]
    for p in exp["inclusion_proofs"]:
        m, n = p["index"], p["size"]
        assert hx(lv.inclusion_path(m, verdict.leaves[:n])) == p["proof"]
        assert lv.verify_inclusion(verdict.leaves[m], m, n, unhex(p["proof"]), roots[n])
    for p in exp["consistency_proofs"]:
        m, n = p["old"], p["new"]
        assert hx(lv.consistency_proof(m, verdict.leaves[:n])) == p["proof"]
        assert lv.verify_consistency(m, n, roots[m], roots[n], unhex(p["proof"]))
    # every index and size, and every pair of sizes, of the 22 entries: built and verified
    for n in range(1, 23):
        for m in range(n):
            assert lv.verify_inclusion(verdict.leaves[m], m, n, lv.inclusion_path(m, verdict.leaves[:n]), roots[n])
    for n in range(23):
        for m in range(n + 1):
            assert lv.verify_consistency(m, n, roots[m], roots[n], lv.consistency_proof(m, verdict.leaves[:n]))


def test_vectors_checkpoints(vectors: tuple[lv.Verdict, dict[str, Any]]) -> None:
    verdict, exp = vectors
    key = exp["checkpoint_key"]
    pub = bytes.fromhex(key["public_key_hex"])
    from nacl.signing import SigningKey

    assert bytes(SigningKey(bytes.fromhex(key["seed_hex"])).verify_key) == pub
    assert lv.party_id(pub) == key["id"]
    assert exp["checkpoints"]
    for c in exp["checkpoints"]:
        cp = c["json"]
        payload = lv.canonical_msgpack({k: cp[k] for k in ("coordinator", "root", "size", "time")})
        assert payload.hex() == c["signed_hex"]
        assert lv.checkpoint_signing_input(cp).hex() == c["signing_input_hex"]
        assert lv.checkpoint_problem(cp, pub) is None
        assert lv.check_checkpoint_against(verdict, cp, pub) is None
        assert cp["root"] == exp["roots"][cp["size"]]
        # altered: another signature byte, another root, another size, another key
        bad_sig = dict(cp, sig=cp["sig"][:-2] + ("00" if cp["sig"][-2:] != "00" else "01"))
        assert lv.checkpoint_problem(bad_sig, pub) == "bad checkpoint signature"
        other_root = exp["roots"][(cp["size"] + 1) % len(exp["roots"])]
        assert lv.checkpoint_problem(dict(cp, root=other_root), pub) == "bad checkpoint signature"
        assert lv.checkpoint_problem(dict(cp, size=cp["size"] + 1), pub) == "bad checkpoint signature"
        other = bytes(SigningKey(bytes(32)).verify_key)
        assert lv.checkpoint_problem(cp, other) == (f"checkpoint names coordinator {cp['coordinator']}, expected "
                                                    f"{lv.party_id(other)}")
        assert lv.checkpoint_problem(dict(cp, size=True), pub) == "checkpoint size must be an integer in [0, 2^63)"
        assert lv.checkpoint_problem({**cp, "x": 1}, pub) == (
            "a checkpoint must have exactly the fields coordinator, size, root, time, sig")
        assert lv.checkpoint_problem(dict(cp, root=cp["root"].upper()), pub) == (
            "checkpoint root must be 64 lowercase hex digits")


def test_worked_examples() -> None:
    """The numbers printed in LEDGER.md sections 3, 6, 7, 8.2 and 9 and PROTOCOL.md 3.4 and 4."""
    lines = VECTORS.read_text().splitlines()
    e0, e1 = json.loads(lines[0]), json.loads(lines[1])
    body0 = lv.entry_body(e0)
    assert len(body0) == 181 and body0[:1] == b"\x89"
    assert body0.hex() == (
        "89a6616d6f756e74cd03e8a466726f6da46d696e74a66a6f625f6964c0a46b696e64a56772616e74a9707265765f68617368d940"
        + "30" * 64 + "a373657100a77461736b5f6964c0a474696d65cf000001a3185c5000a2746fd920"
        + b"alice222222222222222222222222222".hex())
    assert lv.ENTRY_DOMAIN.hex() == "646570696e2f312f6c65646765722d656e74727900"
    assert lv.entry_hash(e0) == "e303dfbb81729845d6bdca5c6385ff157b311aa58de84493254f6fb6cb486dc5"
    body1 = lv.entry_body(e1)
    assert len(body1) == 215
    assert body1 == h("""89a6616d6f756e743fa466726f6dd920616c6963653232323232323232323232
        32323232323232323232323232323232a66a6f625f6964b03566316330613965
        3362326434653731a46b696e64a6657363726f77a9707265765f68617368d940
        6533303364666262383137323938343564366264636135633633383566663135
        3762333131616135386465383434393332353466366662366362343836646335
        a373657101a77461736b5f6964c0a474696d65cf000001a3185c53e8a2746fb7
        657363726f773a35663163306139653362326434653731""")
    assert lv.entry_hash(e1) == "66c0c7c51c7559acb3a1af8df974f61e67500719505e8a8fbce2c16bdee82c90"
    # 3.1: the key encodings
    for key, enc in (("amount", "a6616d6f756e74"), ("from", "a466726f6d"), ("job_id", "a66a6f625f6964"),
                     ("kind", "a46b696e64"), ("prev_hash", "a9707265765f68617368"), ("seq", "a3736571"),
                     ("task_id", "a77461736b5f6964"), ("time", "a474696d65"), ("to", "a2746f")):
        assert lv.canonical_msgpack(key).hex() == enc
    # 6: leaves and subtree roots
    v = lv.verify_export(VECTORS.read_bytes())
    leaves = v.leaves[:13]  # sections 6 and 7 work on the first 13 entries: the market before bonds
    assert leaves[0].hex() == "4c4d9f1415304dad59a3f0c4c1ccefeb5ae1ab868d8d9b034a7034e3bf465a55"
    mth = lambda a, b: lv.merkle_root(leaves[a:b]).hex()  # noqa: E731
    assert mth(0, 2) == "a594b495674184c40438a57ff4a8a9b013a0e4236eee907da32ad4885d92d542"
    assert mth(0, 3) == "371f129250450141f279fd63172b5f918ae5ecf0975633c9cc4a5fdb0c71b72c"
    assert mth(2, 4) == "df3518f1cdcd273193e42a5a9a9dfb1158cf9a7ad0c4bb5af8fbfdf13bf597ff"
    assert mth(4, 8) == "e0bb3d2b844fc7ca1cb7eaa9bf0f60e5da44c7023a47b48ea799b518e8e6b3bd"
    assert mth(8, 13) == "603d7d6a69c540003b52198a5a36ca6fc116d9689c18f596fd71a06622491d78"
    assert mth(0, 13) == "c029529db18911f008bd0de4fe879f44f604b514837cea74760a4045406fe4ba"
    # 7.1: entry 5 in the tree of 13; 7.2: from 3 to 13
    assert leaves[5].hex() == "eb14f5d6ef110afcaa71c1945b650c1762858962d4868b69839be10fb9251a0a"
    assert lv.inclusion_path(5, leaves) == [leaves[4], bytes.fromhex(mth(6, 8)), bytes.fromhex(mth(0, 4)),
                                            bytes.fromhex(mth(8, 13))]
    assert lv.consistency_proof(3, leaves) == [leaves[2], leaves[3], bytes.fromhex(mth(0, 2)),
                                               bytes.fromhex(mth(4, 8)), bytes.fromhex(mth(8, 13))]
    # 8.2: the checkpoint of size 8
    cp = {"coordinator": "mw3am46w5weex4a4fqrc3avnub2a6knm", "size": 8, "root": mth(0, 8), "time": 1800000007500,
          "sig": "3540ea18bff976f99e332cb9b84627dd4e75090d416f3cfee2c8a3ff6364101ac7118842059bd553250e40b5bd00b881"
                 "2a8d4bfb6e97fb23ba9f989865167c04"}
    pub = bytes.fromhex("79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664")
    si = lv.checkpoint_signing_input(cp)
    assert len(si) == 157 and si[:19].hex() == "646570696e2f312f636865636b706f696e7400" and si[19] == 0x84
    assert lv.checkpoint_problem(cp, pub) is None
    # PROTOCOL.md 3.4 and 4: the encoder on general values, the id of the seed 00..1f
    assert lv.canonical_msgpack({"zeta": None, "b": True, "a": -1, "f": 1.5, "neg": -200, "big": 300,
                                 "list": [0, 127, 128, -32, -33]}) == h(
        "87 a161 ff a162 c3 a3626967 cd012c a166 cb3ff8000000000000 a46c697374 95 00 7f cc80 e0 d0df a36e6567 d1ff38"
        " a47a657461 c0")
    assert lv.canonical_msgpack({"nonce": bytes(range(16)), "kernels": ["mandelbrot@1"]}) == h(
        "82 a76b65726e656c73 91 ac6d616e64656c62726f744031 a56e6f6e6365 c410000102030405060708090a0b0c0d0e0f")
    assert lv.canonical_msgpack({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5}) == h("85 a15a03 a16105 a2616104 a17a02 "
                                                                                "a2c3a901")
    assert lv.party_id(h("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")) == (
        "kzdvvj2umnduyauf35o36k6kw462mujv")
    # integer and string header boundaries
    for value, enc in ((127, "7f"), (128, "cc80"), (255, "ccff"), (256, "cd0100"), (65535, "cdffff"),
                       (65536, "ce00010000"), (2**32 - 1, "ceffffffff"), (2**32, "cf0000000100000000"),
                       (2**63 - 1, "cf7fffffffffffffff")):
        assert lv.canonical_msgpack(value).hex() == enc
    assert lv.canonical_msgpack("x" * 31)[:1] == b"\xbf" and lv.canonical_msgpack("x" * 32)[:2] == b"\xd9\x20"
    assert lv.canonical_msgpack("x" * 256)[:3] == b"\xda\x01\x00"
    assert lv.canonical_msgpack("x" * 65536)[:5] == b"\xdb\x00\x01\x00\x00"


def test_proof_verifiers_refuse_altered_proofs() -> None:
    """Every index and size up to 40: the right proof passes; altered, shortened, lengthened proofs, another index
    or another root fail. (Another size can pass when the path has the same shape: the size is bound by the signed
    checkpoint, not by the proof.)"""
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(40)]
    roots = lv.roots_by_size(leaves)
    junk = hashlib.sha256(b"junk").digest()
    for n in range(1, 41):
        for m in range(n):
            proof = lv.inclusion_path(m, leaves[:n])
            assert lv.verify_inclusion(leaves[m], m, n, proof, roots[n])
            assert not lv.verify_inclusion(leaves[m], m, n, proof + [junk], roots[n])
            assert not lv.verify_inclusion(leaves[m], n, n, proof, roots[n])
            assert not lv.verify_inclusion(junk, m, n, proof, roots[n])
            if proof:
                assert not lv.verify_inclusion(leaves[m], m, n, proof[:-1], roots[n])
                for i in range(len(proof)):
                    bad = list(proof)
                    bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
                    assert not lv.verify_inclusion(leaves[m], m, n, bad, roots[n])
                other = (m + 1) % n
                if other != m:
                    assert not lv.verify_inclusion(leaves[m], other, n, proof, roots[n])
    for n in range(41):
        for m in range(n + 1):
            proof = lv.consistency_proof(m, leaves[:n])
            assert lv.verify_consistency(m, n, roots[m], roots[n], proof)
            assert not lv.verify_consistency(m, n, roots[m], roots[n], proof + [junk])
            if 0 < m:
                assert not lv.verify_consistency(m, n, junk, roots[n], proof)
            if 0 < m < n:
                assert not lv.verify_consistency(m, n, roots[m], junk, proof)
                assert not lv.verify_consistency(m, n, roots[m], roots[n], proof[:-1])
                for i in range(len(proof)):
                    bad = list(proof)
                    bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
                    assert not lv.verify_consistency(m, n, roots[m], roots[n], bad)
            if m < n:
                assert not lv.verify_consistency(n, m, roots[n], roots[m], proof)


def test_reading_rules_of_section_4_1() -> None:
    """The behaviours section 4.1 states, on the vectors (no reference needed)."""
    data = VECTORS.read_bytes()
    lines = data.decode().splitlines()
    ok = lv.verify_export(data)
    for variant in (data.replace(b"\n", b"\r\n"), data.replace(b"\n", b"\r"), data[:-1],
                    b"\n \t\n" + data.replace(b"\n", b"\n\n\x0c\n\xe3\x80\x80\n"),  # blank lines, isspace() ones
                    "\n".join(json.dumps(dict(reversed(json.loads(x).items())), indent=None) for x in lines).encode()):
        v = lv.verify_export(variant)
        assert v.ok and v.root == ok.root and v.length == 22, v.error
    # a byte-order mark is not skipped
    v = lv.verify_export(b"\xef\xbb\xbf" + data)
    assert (v.first_bad, v.reason) == (0, "not a valid JSON object (Unexpected UTF-8 BOM (decode using utf-8-sig): "
                                          "line 1 column 1 (char 0))")
    # a byte that is not UTF-8: inside a string, the field's check; inside a key, the fields check; elsewhere, JSON
    raw = data.split(b"\n")
    for where, new, reason in (
            (b'"to":"', b'"to":"\xff', "to must be a non-empty string"),
            (b'"task_id":', b'"task_id":"\xc3",', None),
            (b'"amount"', b'"amou\x80nt"', lv.REASON_FIELDS),
            (b'"amount"', b'\xfe"amount"', None)):
        copy = list(raw)
        copy[4] = copy[4].replace(where, new, 1)
        v = lv.verify_export(b"\n".join(copy))
        assert v.first_bad == 4, v.error
        if reason:
            assert v.reason == reason
        elif b"task_id" in where:
            assert v.reason.startswith("not a valid JSON object (")  # '"task_id":"\xc3",null' is not JSON
    v = lv.verify_export(b"\n".join(raw[:4] + [b"\xff"] + raw[4:]))  # never blank
    assert v.first_bad == 4 and v.reason.startswith("not a valid JSON object")
    # a repeated key, even with equal values; lone surrogates; kinds that are not strings
    dup = lines[4][:-1] + ',"amount":' + str(json.loads(lines[4])["amount"]) + "}"
    v = lv.verify_export("\n".join(lines[:4] + [dup] + lines[5:]).encode())
    assert (v.first_bad, v.reason) == (4, "not a valid JSON object (duplicate key)")
    e = json.loads(lines[4])
    for key, value, reason in (("task_id", "\ud800", "task_id must be a string or null"),
                               ("from", "\udc00x", "from must be a non-empty string"),
                               ("kind", ["reward"], KIND_REASON),
                               ("kind", {}, KIND_REASON),
                               ("amount", True, "amount must be a positive integer"),
                               ("amount", 7.0, "amount must be a positive integer"),
                               ("seq", 2**63, "seq must be an integer in [0, 2^63)"),
                               ("hash", e["hash"].upper(), "hash must be 64 lowercase hex digits")):
        line = json.dumps(dict(e, **{key: value}))
        v = lv.verify_export("\n".join(lines[:4] + [line] + lines[5:]).encode("utf-8", "surrogatepass"))
        assert (v.first_bad, v.reason) == (4, reason)
    v = lv.verify_export("\n".join(lines[:4] + ["[" * 100000 + "]" * 100000] + lines[5:]).encode())
    assert (v.first_bad, v.reason) == (4, "not a valid JSON object (nested too deeply)")
    v = lv.verify_export(b"")
    assert v.ok and v.length == 0 and v.head == "0" * 64 and v.root == hashlib.sha256(b"").hexdigest()


# ==================================================================================================================
# (b) a real coordinator, three real workers, three jobs (one cancelled), and its HTTP endpoints
# ==================================================================================================================


def http_get(url: str, timeout: float = 15.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 120.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Run:
    tmp: Path
    url: str
    env: dict[str, str]
    public_key: bytes
    coordinator_id: str
    submitter: str
    workers: list[str]
    jobs: dict[str, str]  # name -> job id
    export: Path
    export_bytes: bytes
    cli_verify: dict[str, Any]
    latest: dict[str, Any]
    checkpoints: dict[int, dict[str, Any]]  # every checkpoint the coordinator kept, by size
    status_ledger: dict[str, Any]
    logs: dict[str, Path] = field(default_factory=dict)

    def get(self, path: str) -> Any:
        status, body = http_get(self.url + path)
        assert status == 200, (path, status, body)
        return body

    def depin(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DEPIN), *args], capture_output=True, text=True, timeout=timeout, env=self.env,
                              cwd=self.tmp, stdin=subprocess.DEVNULL)


class Procs:
    """Processes this test started, each in its own session; stopped by their own ids only."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        out = open(cwd / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        err = open(cwd / f"{name}.err", "wb")  # noqa: SIM115
        p = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                             start_new_session=True)
        self.items.append((name, p))
        return p

    def stop(self, p: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        return p.returncode

    def close(self) -> None:
        for _, p in reversed(self.items):
            self.stop(p)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("ledger-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
    env.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "depin-independent-numba-cache"))
    # The workers compute whenever there is work (they share this machine) and serve no owner's page.
    env.update(PYTHONUNBUFFERED="1", DEPIN_HOME=str(tmp / "home"), DEPIN_WORKER_ALWAYS="1",
               DEPIN_WORKER_PAGE_PORT="off")
    procs = Procs()

    def depin(*args: str) -> subprocess.CompletedProcess[str]:
        got = subprocess.run([str(DEPIN), *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp,
                             stdin=subprocess.DEVNULL)
        assert got.returncode == 0, (args, got.returncode, got.stdout, got.stderr)
        return got

    try:
        coord = procs.spawn("coordinator", [str(DEPIN), "coordinator", "--data-dir", str(tmp / "coord"), "--port",
                                            "0", "--checkpoint-interval", "0.5"], env, tmp)

        def listening() -> str | None:
            assert coord.poll() is None, (tmp / "coordinator.err").read_text()
            for line in (tmp / "coordinator.out").read_text().splitlines():
                if line.startswith("coordinator listening on "):
                    return line.split()[-1]
            return None

        url = wait_until("the coordinator to listen", listening, 60)
        seen: dict[int, dict[str, Any]] = {}

        def note_checkpoint() -> None:
            status, cp = http_get(url + "/v1/ledger/checkpoint")
            assert status == 200, cp
            seen[cp["size"]] = cp

        note_checkpoint()
        info = http_get(url + "/v1/info")[1]
        public_key = bytes.fromhex(info["public_key"])
        submitter = json.loads(depin("keygen", "--home", str(tmp / "sub"), "--json").stdout)["id"]
        for amount in (1000, 500):
            granted = json.loads(depin("grant", submitter, str(amount), "--data-dir", str(tmp / "coord"),
                                       "--coordinator", url, "--json").stdout)
            assert granted["account"] == submitter and granted["amount"] == amount
            time.sleep(0.6)  # let a checkpoint of this size be signed (interval 0.5 s)
            note_checkpoint()
        for i in range(3):
            wdir = tmp / f"w{i}"
            # --min-price 4: nobody takes the price-3 job, which is then cancelled with its escrow untouched
            procs.spawn(f"w{i}", [str(DEPIN), "worker", "--coordinator", url, "--data-dir", str(wdir),
                                  "--min-price", "4", "--audit-interval", "1"], env, tmp)
        sub = ["--home", str(tmp / "sub"), "--coordinator", url, "--json"]
        jobs: dict[str, str] = {}
        jobs["a"] = json.loads(depin("submit", "mandelbrot", "-p", "width=32", "-p", "height=12", "-p", "max_iter=50",
                                     "--tasks", "3", "--replicas", "2", "--price", "5", *sub).stdout)["job_id"]
        jobs["b"] = json.loads(depin("submit", "mandelbrot", "-p", "width=16", "-p", "height=8", "--tasks", "2",
                                     "--replicas", "2", "--price", "3", *sub).stdout)["job_id"]
        note_checkpoint()

        def ended(job: str) -> dict[str, Any] | None:
            status, body = http_get(f"{url}/v1/jobs/{job}")
            assert status == 200, body
            return body if body["state"] in TERMINAL else None

        assert wait_until("job a to end", lambda: ended(jobs["a"]), 150)["state"] == "done"
        note_checkpoint()
        assert http_get(f"{url}/v1/jobs/{jobs['b']}")[1]["state"] == "queued"
        cancelled = json.loads(depin("cancel", jobs["b"], "--home", str(tmp / "sub"), "--coordinator", url,
                                     "--json").stdout)
        assert cancelled["state"] == "cancelled", cancelled
        time.sleep(0.6)
        note_checkpoint()
        jobs["c"] = json.loads(depin("submit", "mandelbrot", "-p", "width=16", "-p", "height=8", "-p", "max_iter=40",
                                     "--tasks", "2", "--replicas", "3", "--price", "7", *sub).stdout)["job_id"]
        assert wait_until("job c to end", lambda: ended(jobs["c"]), 150)["state"] == "done"

        def covered() -> dict[str, Any] | None:
            book = http_get(url + "/v1/status")[1]["ledger"]
            cp = book["checkpoint"]
            return book if cp is not None and cp["size"] == book["entries"] else None

        status_ledger = wait_until("a checkpoint covering the whole ledger", covered, 60)
        note_checkpoint()
        # the workers audit every second: let them audit the final checkpoint once, then stop them
        time.sleep(1.5)
        for name, p in procs.items:
            if name.startswith("w"):
                rc = procs.stop(p)
                log = (tmp / f"{name}.err").read_text(errors="replace")
                assert "LEDGER ALARM" not in log and rc != 4, log[-3000:]
        workers = sorted(w["worker_id"] for w in http_get(url + "/v1/workers")[1]["workers"])
        assert len(workers) == 3, workers
        export = tmp / "ledger.jsonl"
        wrote = depin("ledger", "export", "-o", str(export), "--coordinator", url)
        assert wrote.stdout.strip() == f"wrote {status_ledger['entries']} ledger entries to {export}", wrote.stdout
        got = subprocess.run([str(DEPIN), "ledger", "verify", "--file", str(export), "--json"], capture_output=True,
                             text=True, timeout=60, env=env, cwd=tmp)
        assert got.returncode == 0, got.stderr
        latest = http_get(url + "/v1/ledger/checkpoint")[1]
        # every checkpoint the coordinator kept: it can be fetched by its size (8.4)
        for size in range(latest["size"] + 1):
            status, cp = http_get(f"{url}/v1/ledger/checkpoint?size={size}")
            if status == 200:
                seen[size] = cp
            else:
                assert (status, cp) == (404, {"error": f"no checkpoint of size {size}"}), cp
                assert size not in seen, f"checkpoint {size} was served as the latest, then not by its size"
        yield Run(tmp=tmp, url=url, env=env, public_key=public_key, coordinator_id=info["coordinator_id"],
                  submitter=submitter, workers=workers, jobs=jobs, export=export, export_bytes=export.read_bytes(),
                  cli_verify=json.loads(got.stdout), latest=latest, checkpoints=dict(sorted(seen.items())),
                  status_ledger=status_ledger)
    finally:
        procs.close()


def test_real_export_agrees_with_cli_and_checkpoint(run: Run) -> None:
    v = lv.verify_export(run.export_bytes)
    assert v.ok, v.error
    ref = dict(run.cli_verify)
    assert ref.pop("checkpoint") is None
    assert v.summary() == ref
    # the exporter's format of 4.1, byte for byte
    assert run.export_bytes == b"".join(
        json.dumps({k: e[k] for k in lv.FIELD_ORDER}, separators=(",", ":")).encode() + b"\n" for e in v.entries)
    # what happened: 2 grants, 3 escrows, rewards of jobs a (3 tasks x 2) and c (2 tasks x 3 replicas... quorum 2),
    # and three refunds, the cancelled job's whole escrow
    kinds = [e["kind"] for e in v.entries]
    assert kinds.count("grant") == 2 and kinds.count("escrow") == 3 and kinds.count("refund") == 3
    assert v.minted == 1500 and v.in_escrow == 0 and v.in_accounts == 1500
    by_job = {j: [e for e in v.entries if e["job_id"] == run.jobs[j]] for j in run.jobs}
    assert [e["kind"] for e in by_job["b"]] == ["escrow", "refund"]
    assert by_job["b"][0]["amount"] == by_job["b"][1]["amount"] == 2 * 3 * (2 + 3)  # tasks x price x max_results
    assert {e["to"] for e in v.entries if e["kind"] == "reward"} <= set(run.workers)
    # the root is the coordinator's latest checkpoint, which covers the whole export
    cp = run.latest
    assert lv.party_id(run.public_key) == run.coordinator_id == cp["coordinator"]
    assert lv.checkpoint_problem(cp, run.public_key) is None
    assert cp["size"] == v.length and cp["root"] == v.root
    assert lv.check_checkpoint_against(v, cp, run.public_key) is None
    assert run.status_ledger["head_hash"] == v.head and run.status_ledger["root_hash"] == v.root
    assert (run.status_ledger["minted"], run.status_ledger["in_escrow"]) == (v.minted, v.in_escrow)
    # every checkpoint the coordinator kept is validly signed and has the root of the first `size` entries
    assert 0 in run.checkpoints and len(run.checkpoints) >= 3, sorted(run.checkpoints)
    assert run.checkpoints[0]["root"] == hashlib.sha256(b"").hexdigest()
    for size, c in run.checkpoints.items():
        assert c["size"] == size and lv.checkpoint_problem(c, run.public_key) is None
        assert c["root"] == v.root_at(size)
    # every balance, as the coordinator answers it (mint and emptied escrows included)
    for account, credits in v.balances.items():
        got = run.get("/v1/accounts/" + urllib.parse.quote(account, safe=""))
        assert got == {"account": account, "balance": credits}
    # the same entries over GET /v1/ledger, verified as parsed objects
    page = run.get("/v1/ledger?start=0&limit=10000")
    assert page["total"] == v.length
    assert lv.verify_entries(page["entries"]).summary() == v.summary()
    # and `depin ledger verify --coordinator` reports the same numbers and the latest checkpoint
    got = run.depin("ledger", "verify", "--coordinator", run.url, "--json",
                    "--coordinator-key", run.public_key.hex())
    assert got.returncode == 0, got.stderr
    live = json.loads(got.stdout)
    assert live.pop("checkpoint") == cp
    assert live == v.summary()


def test_real_inclusion_proofs(run: Run) -> None:
    v = lv.verify_export(run.export_bytes)
    pub = run.public_key
    n = run.latest["size"]
    for entry in v.entries:
        s = entry["seq"]
        answer = run.get(f"/v1/ledger/proof/inclusion?seq={s}")
        assert answer["checkpoint"] == run.latest
        assert lv.check_inclusion_answer(answer, pub, seq=s, size=n) == entry
        assert answer["proof"] == hx(lv.inclusion_path(s, v.leaves[:n]))
        # against every older checkpoint that covers it
        for size in run.checkpoints:
            if s < size < n:
                old = run.get(f"/v1/ledger/proof/inclusion?seq={s}&size={size}")
                assert lv.check_inclusion_answer(old, pub, seq=s, size=size) == entry
                assert old["proof"] == hx(lv.inclusion_path(s, v.leaves[:size]))
        # an altered answer is refused
        if answer["proof"]:
            bad = dict(answer, proof=answer["proof"][:-1])
            with pytest.raises(lv.ProofRefused):
                lv.check_inclusion_answer(bad, pub)
        with pytest.raises(lv.ProofRefused, match="hash does not match"):
            lv.check_inclusion_answer(dict(answer, entry=dict(entry, amount=entry["amount"] + 1)), pub)
        rehashed = dict(entry, time=entry["time"] + 1)
        rehashed["hash"] = lv.entry_hash(rehashed)
        with pytest.raises(lv.ProofRefused, match="inclusion proof"):
            lv.check_inclusion_answer(dict(answer, entry=rehashed), pub)
        with pytest.raises(lv.ProofRefused, match="bad checkpoint signature"):
            lv.check_inclusion_answer(dict(answer, checkpoint=dict(run.latest, time=run.latest["time"] + 1)), pub)
    # the credits of every worker (7.15): the entries to it, each proved in the latest checkpoint
    for worker in run.workers:
        answer = run.get(f"/v1/accounts/{worker}/credits?after=-1")
        assert lv.checkpoint_problem(answer["checkpoint"], pub) is None
        mine = [e for e in v.entries if e["to"] == worker]
        assert [c["entry"] for c in answer["credits"]] == mine
        for c in answer["credits"]:
            assert lv.check_inclusion_answer({"entry": c["entry"], "checkpoint": answer["checkpoint"],
                                              "proof": c["proof"]}, pub) == c["entry"]
    # the errors of PROTOCOL.md 7.19
    assert http_get(f"{run.url}/v1/ledger/proof/inclusion?seq={n}") == (
        404, {"error": f"no entry {n} in the checkpoint of size {n}"})
    assert http_get(f"{run.url}/v1/ledger/proof/inclusion") == (400, {"error": "query parameter seq is required"})
    missing = next(s for s in range(1, n + 2) if s not in run.checkpoints)
    assert http_get(f"{run.url}/v1/ledger/proof/inclusion?seq=0&size={missing}") == (
        404, {"error": f"no checkpoint of size {missing}"})


def test_real_consistency_proofs(run: Run) -> None:
    v = lv.verify_export(run.export_bytes)
    pub = run.public_key
    n = run.latest["size"]
    sizes = sorted(run.checkpoints)
    # between every two checkpoints the coordinator signed: both roots signed, the proof checked
    pairs = [(m, k) for m in sizes for k in sizes if m <= k]
    assert any(0 < m < k for m, k in pairs), sizes
    for m, k in pairs:
        answer = run.get(f"/v1/ledger/proof/consistency?from={m}&to={k}")
        old = run.checkpoints[m]
        assert lv.checkpoint_problem(old, pub) is None
        assert lv.check_consistency_answer(answer, pub, m, old["root"], new_size=k) == run.checkpoints[k]
        assert answer["proof"] == hx(lv.consistency_proof(m, v.leaves[:k]))
        if 0 < m < k:
            with pytest.raises(lv.ProofRefused, match="does not extend"):
                lv.check_consistency_answer(dict(answer, proof=answer["proof"][1:]), pub, m, old["root"])
            with pytest.raises(lv.ProofRefused, match="does not extend"):  # a root the client did not hold
                lv.check_consistency_answer(answer, pub, m, v.root_at(m - 1))
    # from every size, checkpoint or not, to the latest
    for m in range(n + 1):
        answer = run.get(f"/v1/ledger/proof/consistency?from={m}")
        assert lv.check_consistency_answer(answer, pub, m, v.root_at(m), new_size=n) == run.latest
        assert answer["proof"] == hx(lv.consistency_proof(m, v.leaves))
        assert (answer["proof"] == []) == (m in (0, n))
    assert http_get(f"{run.url}/v1/ledger/proof/consistency?from={n + 1}") == (
        404, {"error": f"cannot prove consistency from size {n + 1} to size {n}"})
    assert http_get(f"{run.url}/v1/ledger/proof/consistency") == (400, {"error": "query parameter from is required"})


# ==================================================================================================================
# (c) tampered copies of the real export: this verifier and `depin ledger verify --file` agree
# ==================================================================================================================

# Runs the real CLI's entry point once per argument list, in one process (`depin` takes ~0.3 s to start): for each,
# the exit code, stdout and stderr. test_reference_driver_is_the_cli checks it against real processes.
REFERENCE_DRIVER = r"""
import contextlib, io, json, sys
from depin.cli.main import main
for line in sys.stdin.read().split("\n"):
    if not line:
        continue
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["depin", *json.loads(line)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main()
        except SystemExit as exc:
            rc = exc.code
    print(json.dumps({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}), flush=True)
"""


def reference_runs(argvs: list[list[str]], cwd: Path = ROOT) -> list[dict[str, Any]]:
    got = subprocess.run([sys.executable, "-c", REFERENCE_DRIVER], input="\n".join(json.dumps(a) for a in argvs),
                         capture_output=True, text=True, timeout=300, cwd=cwd)
    assert got.returncode == 0, got.stderr[-3000:]
    out = [json.loads(line) for line in got.stdout.splitlines()]
    assert len(out) == len(argvs)
    return out


def reference_verdicts(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """`depin ledger verify --file P --json` for every P."""
    runs = reference_runs([["ledger", "verify", "--file", str(p), "--json"] for p in paths])
    return {str(p): r for p, r in zip(paths, runs, strict=True)}


def parse_reference(r: dict[str, Any], path: Path) -> tuple[bool, int | None, str | None]:
    """(ok, first bad position, 'entry P: reason') from the CLI's --json output, checking its stderr line too."""
    if r["rc"] == 0:
        assert r["stderr"] == ""
        return True, None, None
    assert r["rc"] == 4, r
    j = json.loads(r["stdout"])
    assert j["ok"] is False and type(j["first_bad_seq"]) is int
    assert r["stderr"] == f"depin: error: ledger of {path} is broken at seq {j['first_bad_seq']}: {j['error']}\n"
    return False, j["first_bad_seq"], j["error"]


def dumps(e: dict[str, Any]) -> str:
    return json.dumps(e, separators=(",", ":"))


def jsonl(entries: list[dict[str, Any]]) -> bytes:
    return "".join(dumps(e) + "\n" for e in entries).encode()


def rechain(entries: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Renumber from `start` on and recompute every seq, prev_hash and hash from there (a forger's chain)."""
    out = [dict(e) for e in entries]
    prev = out[start - 1]["hash"] if start else lv.ZERO_HASH
    for i in range(start, len(out)):
        out[i]["seq"] = i
        out[i]["prev_hash"] = prev
        out[i]["hash"] = lv.entry_hash(out[i])
        prev = out[i]["hash"]
    return out


def field_line(e: dict[str, Any], key: str, raw: str) -> str:
    """The entry as one JSON line with `key`'s value replaced by the raw JSON text `raw`."""
    return "{" + ",".join(json.dumps(k) + ":" + (raw if k == key else json.dumps(e[k], separators=(",", ":")))
                          for k in lv.FIELD_ORDER) + "}"


@dataclass
class Case:
    name: str
    data: bytes
    expect: str | None = None  # a substring the spec says the verdict must have ("ok", or part of 'entry P: ...')


def tampered_copies(base: list[dict[str, Any]]) -> list[Case]:
    cases: list[Case] = []
    n = len(base)
    lines = [dumps(e) for e in base]
    idx = {k: [i for i, e in enumerate(base) if e["kind"] == k] for k in lv.KINDS}
    parties = sorted({a for e in base for a in (e["from"], e["to"]) if lv.is_party(a)})
    jobs = sorted({e["job_id"] for e in base if e["job_id"]})

    def add(name: str, data: bytes | list[dict[str, Any]], expect: str | None = None) -> None:
        cases.append(Case(name, data if isinstance(data, bytes) else jsonl(data), expect))

    def with_line(i: int, text: str) -> bytes:
        return ("\n".join(lines[:i] + [text] + lines[i + 1:]) + "\n").encode("utf-8", "surrogatepass")

    def edit(i: int, **changes: Any) -> list[dict[str, Any]]:
        out = [dict(e) for e in base]
        out[i].update(changes)
        return out

    add("intact", jsonl(base), "ok")
    # ---- one field changed in place, nothing recomputed: the entry fails check 3, 4 or 5 at its own position
    for i, e in enumerate(base):
        other_party = next(p for p in parties if p != e["to"])
        add(f"amount+1@{i}", edit(i, amount=e["amount"] + 1), f"entry {i}: hash does not match its contents")
        add(f"time+1@{i}", edit(i, time=e["time"] + 1), f"entry {i}: hash does not match its contents")
        add(f"to@{i}", edit(i, to=other_party), f"entry {i}: hash does not match its contents")
        add(f"kind@{i}", edit(i, kind=lv.KINDS[(lv.KINDS.index(e["kind"]) + 1) % 4]), f"entry {i}: hash does not")
        add(f"seq@{i}", edit(i, seq=i + 1), f"entry {i}: found seq {i + 1} where {i} was expected")
        add(f"prev@{i}", edit(i, prev_hash=("f" if e["prev_hash"][0] != "f" else "e") + e["prev_hash"][1:]),
            f"entry {i}: prev_hash does not match the hash of entry {i - 1}")
        add(f"hash@{i}", edit(i, hash=("f" if e["hash"][0] != "f" else "e") + e["hash"][1:]),
            f"entry {i}: hash does not match its contents")
        add(f"job_id@{i}", edit(i, job_id=(e["job_id"] or "") + "x"), f"entry {i}: hash does not")
    # ---- removed, duplicated, swapped lines, as they are and with the chain recomputed after them
    for i in range(n):
        removed = base[:i] + base[i + 1:]
        add(f"remove@{i}", removed, "ok" if i == n - 1 else f"entry {i}: found seq {i + 1} where {i} was expected")
        add(f"remove+rechain@{i}", rechain(removed, i) if i < n - 1 else removed)
        dup = base[:i + 1] + [base[i]] + base[i + 1:]
        add(f"duplicate@{i}", dup, f"entry {i + 1}: found seq {i} where {i + 1} was expected")
        add(f"duplicate+rechain@{i}", rechain(dup, i + 1))
        if i < n - 1:
            swapped = base[:i] + [base[i + 1], base[i]] + base[i + 2:]
            add(f"swap@{i}", swapped, f"entry {i}: found seq {i + 1} where {i} was expected")
            add(f"swap+rechain@{i}", rechain(swapped, i))
        add(f"truncate@{i}", jsonl(base[:i]), "ok")
        add(f"cut-line@{i}", jsonl(base[:i]) + lines[i][: len(lines[i]) // 2].encode() + b"\n" + jsonl(base[i + 1:]),
            f"entry {i}: not a valid JSON object (")
    # ---- money rules broken, every hash recomputed so that only the rule breaks (section 5.1, in order)
    g0, g1 = idx["grant"][0], idx["grant"][-1]
    esc = idx["escrow"][0]
    ej = base[esc]["job_id"]
    rew = next(i for i in idx["reward"] if base[i]["job_id"] == ej)
    ref = next(i for i in idx["refund"] if base[i]["job_id"] == ej)
    funder = base[esc]["from"]
    worker = base[rew]["to"]
    other_job = next(j for j in jobs if j != ej)

    def rule(name: str, i: int, expect: str, **changes: Any) -> None:
        add(f"rule {name}@{i}", rechain(edit(i, **changes), i), f"entry {i}: {expect}")

    rule("G1", g0, "a grant must come from mint", **{"from": funder})
    rule("G1-escrow", g0, "a grant must come from mint", **{"from": "escrow:" + ej})
    for bad_to in ("mint", "escrow:" + ej, funder.upper(), funder[:31], funder + "a", funder[:31] + "1",
                   funder[:31] + "8", funder[:31] + "="):
        rule(f"G2 {bad_to}", g0, "a grant must go to a party id", to=bad_to)
    rule("G3 job", g0, "a grant has no job_id or task_id", job_id=ej)
    rule("G3 empty job", g0, "a grant has no job_id or task_id", job_id="")
    rule("G3 task", g0, "a grant has no job_id or task_id", task_id="t")
    rule("G4", g1, "grants would exceed 9223372036854775807 credits in all",
         amount=lv.MAX_CREDITS - sum(base[i]["amount"] for i in idx["grant"] if i < g1) + 1)
    maxed = rechain(edit(g0, amount=lv.MAX_CREDITS), g0)
    add("G4 second grant after a maximal one", maxed, f"entry {g1}: grants would exceed")
    rule("G4 edge ok", g1, "", amount=lv.MAX_CREDITS - sum(base[i]["amount"] for i in idx["grant"] if i < g1))
    cases[-1].expect = None  # the escrow later may still be fine: just compare with the reference
    for k, i in (("escrow", esc), ("reward", rew), ("refund", ref)):
        art = "an" if k == "escrow" else "a"
        rule(f"J1 null {k}", i, f"{art} {k} needs a job_id", job_id=None)
        rule(f"J1 empty {k}", i, f"{art} {k} needs a job_id", job_id="")
    rule("E1 mint", esc, "an escrow must come from a party id", **{"from": "mint"})
    rule("E1 escrow", esc, "an escrow must come from a party id", **{"from": "escrow:" + other_job})
    rule("E2", esc, f"an escrow for job {ej} must go to escrow:{ej}", to="escrow:" + other_job)
    rule("E2 party", esc, f"an escrow for job {ej} must go to escrow:{ej}", to=funder)
    rule("E3", esc, "an escrow has no task_id", task_id=ej + "-0")
    rule("E3 empty", esc, "an escrow has no task_id", task_id="")
    refunded = dict(base[esc])
    add("E4 second escrow", rechain(base[:esc + 1] + [refunded] + base[esc + 1:], esc + 1),
        f"entry {esc + 1}: job {ej} is already funded")
    later_escrow = [dict(base[esc], time=base[-1]["time"] + 1)]
    add("E4 escrow again after refund", rechain(base + later_escrow, n), f"entry {n}: job {ej} is already funded")
    book = lv.Book()
    for e in base[:esc]:
        book.apply(e)
    have = book.balance(funder)
    rule("E5", esc, f"{funder} has {have} credits, cannot pay {have + 1}", amount=have + 1)
    rule("E5 other payer", esc, f"{worker} has 0 credits, cannot pay {base[esc]['amount']}", **{"from": worker})
    rule("X1 reward", rew, f"a reward for job {ej} must come from escrow:{ej}", **{"from": "escrow:" + other_job})
    rule("X1 refund", ref, f"a refund for job {ej} must come from escrow:{ej}", **{"from": funder})
    rule("X2 reward", rew, "job nojob was never funded", job_id="nojob", **{"from": "escrow:nojob"})
    rule("X2 refund", ref, "job nojob was never funded", job_id="nojob", **{"from": "escrow:nojob"})
    add("X2 reward before its escrow", rechain(base[:esc] + [base[rew]] + base[esc:rew] + base[rew + 1:], esc),
        f"entry {esc}: job {ej} was never funded")
    add("X3 reward after refund", rechain(base[:ref + 1] + [dict(base[rew], to=parties[-1])] + base[ref + 1:],
                                          ref + 1), f"entry {ref + 1}: the escrow of job {ej} was already refunded")
    add("X3 second refund", rechain(base[:ref + 1] + [base[ref]] + base[ref + 1:], ref + 1),
        f"entry {ref + 1}: the escrow of job {ej} was already refunded")
    rule("R1 mint", rew, "a reward must go to a party id", to="mint")
    rule("R1 escrow", rew, "a reward must go to a party id", to="escrow:" + ej)
    rule("R1 short", rew, "a reward must go to a party id", to=worker[:-1])
    rule("R2 null", rew, "a reward needs a task_id", task_id=None)
    rule("R2 empty", rew, "a reward needs a task_id", task_id="")
    add("R3 paid twice", rechain(base[:rew + 1] + [base[rew]] + base[rew + 1:], rew + 1),
        f"entry {rew + 1}: task {base[rew]['task_id']} already rewarded {worker}")
    book = lv.Book()
    for e in base[:rew]:
        book.apply(e)
    left = book.balance("escrow:" + ej)
    rule("R4", rew, f"escrow:{ej} has {left} credits, cannot pay {left + 1}", amount=left + 1)
    rule("R4 exact", rew, "", amount=left)
    cases[-1].expect = None  # takes the whole escrow: the next reward or the refund breaks; compare only
    rule("F1", ref, f"a refund for job {ej} must go to its funder {funder}", to=worker)
    rule("F2", ref, "a refund has no task_id", task_id="t")
    rule("F2 empty", ref, "a refund has no task_id", task_id="")
    rule("F3 more", ref, f"a refund must return the whole escrow ({base[ref]['amount']} credits)",
         amount=base[ref]["amount"] + 1)
    rule("F3 less", ref, f"a refund must return the whole escrow ({base[ref]['amount']} credits)",
         amount=base[ref]["amount"] - 1)
    rule("reward raised", rew, "", amount=base[rew]["amount"] * 10)
    cases[-1].expect = f"entry {ref}: a refund must return the whole escrow"
    rule("reward to another worker", rew, "", to="abcdefghijklmnopqrstuvwxyz234567")  # unpaid for that task
    cases[-1].expect = "ok"  # keeps every money rule: only a checkpoint tells
    rule("time rewritten", rew, "", time=0)
    cases[-1].expect = "ok"
    # every kind, for every entry, with the chain recomputed: the rules decide
    for i, e in enumerate(base):
        for k in lv.KINDS:
            if k != e["kind"]:
                add(f"kind {k}+rechain@{i}", rechain(edit(i, kind=k), i))
        add(f"task swap+rechain@{i}", rechain(edit(i, task_id=None if e["task_id"] else f"{e['job_id']}-9"), i))
        add(f"amount-1+rechain@{i}", rechain(edit(i, amount=max(1, e["amount"] - 1)), i))
    # ---- the reading rules of 4.1 and the shape rules of check 2
    data = jsonl(base)
    add("crlf", data.replace(b"\n", b"\r\n"), "ok")
    add("cr", data.replace(b"\n", b"\r"), "ok")
    add("no final newline", data[:-1], "ok")
    add("mixed line ends", b"".join(x.encode() + (b"\r\n", b"\n", b"\r")[i % 3] for i, x in enumerate(lines)), "ok")
    add("empty", b"", "ok")
    add("blank only", b"\n\n \t\n\r\n", "ok")
    for label, ws in (("space", " "), ("tab", "\t"), ("ff", "\x0c"), ("vt", "\x0b"), ("fs", "\x1c"),
                      ("ideographic", "\u3000"), ("nel", "\x85"), ("line sep", "\u2028"), ("nbsp", "\xa0")):
        add(f"blank line {label}", ("\n".join(lines[:3] + [ws * 2] + lines[3:]) + "\n").encode(), "ok")
    for label, junk in (("zwsp", "\u200b"), ("nul", "\x00"), ("bom", "\ufeff"), ("x", "x")):
        add(f"not blank {label}", ("\n".join(lines[:3] + [junk] + lines[3:]) + "\n").encode(),
            "entry 3: not a valid JSON object (")
    for label, ch in (("line sep", "\u2028"), ("nel", "\x85"), ("vt", "\x0b"), ("ff", "\x0c"), ("fs", "\x1c"),
                      ("para sep", "\u2029"), ("emoji", "\U0001f600"), ("e-acute", "\xe9"), ("nul", "\x00")):
        t = rechain(edit(rew, task_id=base[rew]["task_id"] + ch), rew)
        raw = "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in t).encode()
        add(f"raw {label} inside a string", raw, "ok")
        add(f"escaped {label} inside a string", jsonl(t), "ok")
    add("reordered keys and spaces", "".join(json.dumps(dict(reversed(list(e.items())))) + "\n"
                                            for e in base).encode(), "ok")
    add("indent-free spaces around", "".join("  " + json.dumps(e) + " \t\n" for e in base).encode(), "ok")
    add("bom", b"\xef\xbb\xbf" + data, "entry 0: not a valid JSON object (Unexpected UTF-8 BOM")
    add("bom line 3", ("\n".join(lines[:3] + ["\ufeff" + lines[3]] + lines[4:]) + "\n").encode(),
        "entry 3: not a valid JSON object (Unexpected UTF-8 BOM")
    raw_lines = data.split(b"\n")
    for label, old, new, expect in (
            ("bad byte in to", b'"to":"', b'"to":"\xff', "entry 5: to must be a non-empty string"),
            ("bad byte in from", b'"from":"', b'"from":"\xc3', "entry 5: from must be a non-empty string"),
            ("bad byte in key", b'"amount"', b'"amo\x80unt"', f"entry 5: {lv.REASON_FIELDS}"),
            ("bad byte between", b',"to"', b',\xfe"to"', "entry 5: not a valid JSON object ("),
            ("bad byte in kind", b'"kind":"', b'"kind":"\xe2\x82', "entry 5: kind must be one of"),
            ("bad byte in hash", b'"hash":"', b'"hash":"\xff', "entry 5: hash must be 64 lowercase hex digits"),
            ("bad byte at end", b"}", b"}\xff", "entry 5: not a valid JSON object (")):
        copy = list(raw_lines)
        copy[5] = copy[5].replace(old, new, 1)
        add(label, b"\n".join(copy), expect)
    add("bad byte alone", b"\n".join(raw_lines[:5] + [b"\x80"] + raw_lines[5:]), "entry 5: not a valid JSON")
    for label, seq in (("overlong", b"\xc0\xaf"), ("encoded surrogate", b"\xed\xa0\x80"),
                       ("beyond U+10FFFF", b"\xf4\x90\x80\x80"), ("truncated sequence", b"\xe2\x82")):
        copy = list(raw_lines)
        copy[5] = copy[5].replace(b'"job_id":"', b'"job_id":"' + seq, 1)
        add(f"not UTF-8: {label} in job_id", b"\n".join(copy), "entry 5: job_id must be a string or null")
    escaped = "".join(c if c in '":,{}' or not c.isalpha() else f"\\u{ord(c):04x}" for c in lines[5])
    add("every letter escaped", with_line(5, escaped), "ok")
    add("leading zeros", with_line(5, field_line(base[5], "seq", "05")), "entry 5: not a valid JSON object (")
    add("amount 1e400", with_line(5, field_line(base[5], "amount", "1e400")), "entry 5: amount must be a positive")
    e5 = base[5]
    for label, key, raw, expect in (
            ("seq bool", "seq", "true", "seq must be an integer in [0, 2^63)"),
            ("seq float", "seq", "5.0", "seq must be an integer in [0, 2^63)"),
            ("seq exp", "seq", "5e0", "seq must be an integer in [0, 2^63)"),
            ("seq string", "seq", '"5"', "seq must be an integer in [0, 2^63)"),
            ("seq negative", "seq", "-5", "seq must be an integer in [0, 2^63)"),
            ("seq 2^63", "seq", str(2**63), "seq must be an integer in [0, 2^63)"),
            ("seq 40 digits", "seq", "9" * 40, "seq must be an integer in [0, 2^63)"),
            ("time 2^63", "time", str(2**63), "time must be an integer in [0, 2^63)"),
            ("time negative", "time", "-1", "time must be an integer in [0, 2^63)"),
            ("time null", "time", "null", "time must be an integer in [0, 2^63)"),
            ("kind list", "kind", '["reward"]', KIND_REASON),
            ("kind object", "kind", "{}", KIND_REASON),
            ("kind upper", "kind", '"Reward"', KIND_REASON),
            ("kind surrogate", "kind", '"\\ud800"', KIND_REASON),
            ("from empty", "from", '""', "from must be a non-empty string"),
            ("from null", "from", "null", "from must be a non-empty string"),
            ("from surrogate", "from", '"\\udc80"', "from must be a non-empty string"),
            ("to number", "to", "5", "to must be a non-empty string"),
            ("to surrogate", "to", '"a\\ud800b"', "to must be a non-empty string"),
            ("to high-low pair", "to", '"\\ud83d\\ude00"', "hash does not match its contents"),
            ("to reversed pair", "to", '"\\ude00\\ud83d"', "to must be a non-empty string"),
            ("amount 0", "amount", "0", "amount must be a positive integer"),
            ("amount -1", "amount", "-1", "amount must be a positive integer"),
            ("amount 2^63", "amount", str(2**63), "amount must be a positive integer"),
            ("amount float", "amount", "7.0", "amount must be a positive integer"),
            ("amount bool", "amount", "false", "amount must be a positive integer"),
            ("job_id number", "job_id", "1", "job_id must be a string or null"),
            ("job_id surrogate", "job_id", '"\\udfff"', "job_id must be a string or null"),
            ("job_id nested duplicate", "job_id", '{"a":1,"a":2}', "not a valid JSON object (duplicate key)"),
            ("task_id list", "task_id", "[]", "task_id must be a string or null"),
            ("task_id nested 50", "task_id", "[" * 50 + "]" * 50, "task_id must be a string or null"),
            ("task_id surrogate", "task_id", '"\\ud800"', "task_id must be a string or null"),
            ("task_id nul", "task_id", '"\\u0000"', "hash does not match its contents"),
            ("prev_hash upper", "prev_hash", json.dumps(e5["prev_hash"].upper()), "prev_hash must be 64 lowercase"),
            ("prev_hash short", "prev_hash", json.dumps(e5["prev_hash"][:-1]), "prev_hash must be 64 lowercase"),
            ("prev_hash null", "prev_hash", "null", "prev_hash must be 64 lowercase hex digits"),
            ("hash upper", "hash", json.dumps(e5["hash"].upper()), "hash must be 64 lowercase hex digits"),
            ("hash long", "hash", json.dumps(e5["hash"] + "0"), "hash must be 64 lowercase hex digits"),
            ("hash with g", "hash", json.dumps("g" + e5["hash"][1:]), "hash must be 64 lowercase hex digits")):
        add(label, with_line(5, field_line(e5, key, raw)), f"entry 5: {expect}")
    add("seq -0 at entry 0", with_line(0, field_line(base[0], "seq", "-0")), "ok")
    add("prev_hash wrong at entry 0", edit(0, prev_hash="1" * 64),
        "entry 0: prev_hash does not match the hash of entry -1")
    add("missing field", with_line(5, dumps({k: v for k, v in e5.items() if k != "time"})), f"entry 5: "
                                                                                             f"{lv.REASON_FIELDS}")
    add("extra field", with_line(5, dumps(dict(e5, note=1))), f"entry 5: {lv.REASON_FIELDS}")
    add("extra field instead", with_line(5, dumps({("Time" if k == "time" else k): v for k, v in e5.items()})),
        f"entry 5: {lv.REASON_FIELDS}")
    add("repeated key", with_line(5, lines[5][:-1] + ',"seq":5}'), "entry 5: not a valid JSON object (duplicate key)")
    add("repeated key differing", with_line(5, '{"seq":4,' + lines[5][1:]),
        "entry 5: not a valid JSON object (duplicate key)")
    for label, text, expect in (("array", "[1,2]", "not a JSON object"), ("number", "5", "not a JSON object"),
                                ("string", '"x"', "not a JSON object"), ("null", "null", "not a JSON object"),
                                ("true", "true", "not a JSON object"), ("empty object", "{}", lv.REASON_FIELDS),
                                ("two objects", lines[5] + lines[6], "not a valid JSON object (Extra data"),
                                ("trailing comma", lines[5][:-1] + ",}", "not a valid JSON object (Expecting"),
                                ("single quotes", lines[5].replace('"', "'"), "not a valid JSON object (Expecting"),
                                ("raw tab in string", field_line(e5, "task_id", '"a\tb"'),
                                 "not a valid JSON object (Invalid control character"),
                                ("deep 100000", "[" * 100000 + "]" * 100000,
                                 "not a valid JSON object (nested too deeply)"),
                                ("deep objects 3000", '{"a":' * 3000 + "1" + "}" * 3000,
                                 "not a valid JSON object (nested too deeply)"),
                                ("unclosed", lines[5][:-1], "not a valid JSON object ("),
                                ("comment", lines[5] + " // x", "not a valid JSON object (Extra data")):
        add(f"line is {label}", with_line(5, text), f"entry 5: {expect}")
    # ---- random damage: one byte changed, deleted or inserted somewhere (no hash recomputed)
    rnd = random.Random(20261121)
    alphabet = b'{}[]:,"0123456789abcdefz-.eE \t\\/nul'
    for k in range(120):
        buf = bytearray(data)
        pos = rnd.randrange(len(buf))
        op = k % 3
        if op == 0:
            buf[pos] = rnd.choice(alphabet)
        elif op == 1:
            del buf[pos]
        else:
            buf.insert(pos, rnd.choice(alphabet))
        add(f"random {k} ({'replace delete insert'.split()[op]} at {pos})", bytes(buf))
    return cases


# Cases where this verifier (reading the spec strictly) and the reference give the same position but different
# reasons, because the reference's JSON parser (Python's json) differs from RFC 8259; recorded in the report:
# NaN/Infinity accepted as numbers (then check 2), and integers of more than 4300 digits refused in check 1.
STRICT_ONLY = {
    "NaN seq": ("seq", "NaN", "entry 5: not a valid JSON object (NaN is not JSON)",
                "entry 5: seq must be an integer in [0, 2^63)"),
    "Infinity amount": ("amount", "Infinity", "entry 5: not a valid JSON object (Infinity is not JSON)",
                        "entry 5: amount must be a positive integer"),
    "-Infinity time": ("time", "-Infinity", "entry 5: not a valid JSON object (-Infinity is not JSON)",
                       "entry 5: time must be an integer in [0, 2^63)"),
    "seq of 5000 digits": ("seq", "1" * 5000, "entry 5: seq must be an integer in [0, 2^63)",
                           "entry 5: not a valid JSON object (Exceeds the limit (4300 digits) for integer string "
                           "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the "
                           "limit)"),
}


def test_tampered_copies_agree_with_the_reference(run: Run, tmp_path: Path) -> None:
    base = [dict(e) for e in lv.verify_export(run.export_bytes).entries]
    cases = tampered_copies(base)
    lines = [dumps(e) for e in base]
    for label, (key, raw, _, _) in STRICT_ONLY.items():
        cases.append(Case(f"strict: {label}", ("\n".join(lines[:5] + [field_line(base[5], key, raw)] + lines[6:])
                                                + "\n").encode()))
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), [n for n in names if names.count(n) > 1]
    paths = []
    for i, c in enumerate(cases):
        p = tmp_path / f"case{i:04d}.jsonl"
        p.write_bytes(c.data)
        paths.append(p)
    ref = reference_verdicts(paths)
    failures, broken, kinds_of_reason = [], 0, set()
    for c, p in zip(cases, paths, strict=True):
        r_ok, r_pos, r_err = parse_reference(ref[str(p)], p)
        strict = lv.verify_export(c.data)
        compat = lv.verify_export(c.data, strict_json=False)  # Python's own JSON reading, as the reference's
        label = c.name.removeprefix("strict: ")
        if label in STRICT_ONLY:
            _, _, strict_error, compat_error = STRICT_ONLY[label]
            ok = (strict.error == strict_error and compat.error == compat_error == r_err)
        else:
            ok = (strict.ok, strict.first_bad, strict.error) == (compat.ok, compat.first_bad, compat.error) == (
                r_ok, r_pos, r_err)
        if ok and r_ok:  # both accept: the same numbers
            reported = json.loads(ref[str(p)]["stdout"])
            ok = reported.pop("checkpoint") is None and reported == strict.summary()
        if ok and c.expect is not None:  # and what the spec says the verdict is
            ok = (c.expect == "ok" and strict.ok) or (c.expect != "ok" and not strict.ok and c.expect in strict.error)
        if not ok:
            failures.append(f"{c.name}: mine {strict.error or 'ok'!r} / compat {compat.error or 'ok'!r} / "
                            f"reference {r_err or 'ok'!r} / spec {c.expect!r}")
        broken += not r_ok
        if r_err:
            kinds_of_reason.add(r_err.split(": ", 1)[1].split(" (")[0][:40])
    assert not failures, f"{len(failures)} of {len(cases)} disagree:\n" + "\n".join(failures)
    assert len(cases) >= 300 and broken >= 250, (len(cases), broken)
    assert len(kinds_of_reason) >= 40, sorted(kinds_of_reason)


# ---- the bond kinds, on the test vectors (a real coordinator writes no bonds yet): the shipped tampered copies, and
# every entry of the vectors changed and rechained, agree with the reference and with the spec's reasons.

TAMPERED = ROOT / "tests" / "data" / "ledger_chain.tampered.json"


def bond_cases() -> list[Case]:
    base: list[dict[str, Any]] = [json.loads(line) for line in VECTORS.read_text().splitlines()]
    cases = [Case(f"shipped {c['rule']} {c['name']}", jsonl(base[:c["prefix"]] + c["then"]), c["error"])
             for c in json.loads(TAMPERED.read_text())["cases"]]
    cases.append(Case("vectors intact", jsonl(base), "ok"))
    for i, e in enumerate(base):
        for k in lv.KINDS:
            if k != e["kind"]:
                cases.append(Case(f"vectors kind {k}@{i}", jsonl(rechain([*base[:i], dict(e, kind=k), *base[i + 1:]],
                                                                          i))))
        for name, changes in (("amount+1", {"amount": e["amount"] + 1}), ("no job", {"job_id": None}),
                              ("no task", {"task_id": None}), ("task 9", {"task_id": f"{e['job_id']}-9"}),
                              ("to mint", {"to": "mint"}), ("from carol", {"from": "carol" + "3" * 27})):
            cases.append(Case(f"vectors {name}@{i}", jsonl(rechain([*base[:i], dict(e, **changes), *base[i + 1:]],
                                                                   i))))
    return cases


def test_bond_kinds_agree_with_the_reference(tmp_path: Path) -> None:
    cases = bond_cases()
    paths = []
    for i, c in enumerate(cases):
        p = tmp_path / f"bond{i:04d}.jsonl"
        p.write_bytes(c.data)
        paths.append(p)
    ref = reference_verdicts(paths)
    failures, reasons = [], set()
    for c, p in zip(cases, paths, strict=True):
        r_ok, r_pos, r_err = parse_reference(ref[str(p)], p)
        mine = lv.verify_export(c.data)
        ok = (mine.ok, mine.first_bad, mine.error) == (r_ok, r_pos, r_err)
        if ok and r_ok:
            reported = json.loads(ref[str(p)]["stdout"])
            ok = reported.pop("checkpoint") is None and reported == mine.summary()
        if ok and c.expect is not None:
            ok = (c.expect == "ok" and mine.ok) or (c.expect != "ok" and mine.error == c.expect)
        if not ok:
            failures.append(f"{c.name}: mine {mine.error or 'ok'!r} / reference {r_err or 'ok'!r} / spec {c.expect!r}")
        if r_err:
            reasons.add(r_err.split(": ", 1)[1])
    assert not failures, f"{len(failures)} of {len(cases)} disagree:\n" + "\n".join(failures)
    for start in ("a bond ", "an unbond ", "a slash ", "already slashed"):  # the new rules are reached
        assert any(start in r for r in reasons), start


def test_reference_driver_is_the_cli(run: Run, tmp_path: Path) -> None:
    """The batch driver above reports what the real `depin ledger verify --file` process reports."""
    base = lv.verify_export(run.export_bytes).entries
    samples = [jsonl(base), jsonl(rechain([dict(e) for e in base[:3]] + [dict(base[3], amount=10**6)]
                                          + [dict(e) for e in base[4:]], 3)), b"\xef\xbb\xbf" + jsonl(base)]
    paths = []
    for i, data in enumerate(samples):
        p = tmp_path / f"s{i}.jsonl"
        p.write_bytes(data)
        paths.append(p)
    batch = reference_verdicts(paths)
    for p in paths:
        got = subprocess.run([str(DEPIN), "ledger", "verify", "--file", str(p), "--json"], capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
        assert (got.returncode, got.stdout, got.stderr) == (batch[str(p)]["rc"], batch[str(p)]["stdout"],
                                                            batch[str(p)]["stderr"])


def test_checkpoints_agree_with_the_reference(run: Run, tmp_path: Path) -> None:
    """`depin ledger verify --file F --checkpoint CP --coordinator-key HEX` (a flag LEDGER.md section 13 does not
    list) and check_checkpoint_against agree: every checkpoint of the real run against the real export, and
    checkpoints of the test key (LEDGER.md 15) good, altered, malformed or not matching the vectors."""
    from nacl.signing import SigningKey

    exp = json.loads(EXPECTED.read_text())
    key = SigningKey(bytes.fromhex(exp["checkpoint_key"]["seed_hex"]))
    vpub = bytes(key.verify_key)

    def signed(size: int, root: str, t: int = 1800000000000) -> dict[str, Any]:
        cp: dict[str, Any] = {"coordinator": lv.party_id(vpub), "size": size, "root": root, "time": t}
        cp["sig"] = key.sign(lv.checkpoint_signing_input(cp)).signature.hex()
        return cp

    real = lv.verify_export(run.export_bytes)
    vec = lv.verify_export(VECTORS.read_bytes())
    good = signed(5, exp["roots"][5])
    trials: list[tuple[str, Path, lv.Verdict, Any, bytes, str | None]] = []  # name, file, verdict, cp, key, reason
    for size, cp in run.checkpoints.items():
        trials.append((f"real {size}", run.export, real, cp, run.public_key, None))
    for size in range(23):
        trials.append((f"vectors {size}", VECTORS, vec, signed(size, exp["roots"][size]), vpub, None))
    for c in exp["checkpoints"]:
        trials.append((f"shipped {c['json']['size']}", VECTORS, vec, c["json"], vpub, None))
    sig = good["sig"]
    for name, cp, reason in (
            ("bad sig", dict(good, sig=sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]),
             "bad checkpoint signature"),
            ("time changed", dict(good, time=good["time"] + 1), "bad checkpoint signature"),
            ("extra key", {**good, "extra": 1}, "a checkpoint must have exactly the fields coordinator, size, root, "
                                                "time, sig"),
            ("missing sig", {k: v for k, v in good.items() if k != "sig"}, "a checkpoint must have exactly the "
                                                                           "fields coordinator, size, root, time, sig"),
            ("coordinator upper", dict(good, coordinator=good["coordinator"].upper()),
             "checkpoint coordinator must be a party id"),
            ("size bool", dict(good, size=True), "checkpoint size must be an integer in [0, 2^63)"),
            ("size float", dict(good, size=5.0), "checkpoint size must be an integer in [0, 2^63)"),
            ("size 2^63", dict(good, size=2**63), "checkpoint size must be an integer in [0, 2^63)"),
            ("root upper", dict(good, root=good["root"].upper()), "checkpoint root must be 64 lowercase hex digits"),
            ("time negative", dict(good, time=-1), "checkpoint time must be an integer in [0, 2^63)"),
            ("sig short", dict(good, sig=sig[:-2]), "checkpoint sig must be 128 lowercase hex digits"),
            # several fields bad at once: the first in the order of the table of 8.1
            ("all bad", dict(good, coordinator="x", size=-1, root="x", time=-1, sig="x"),
             "checkpoint coordinator must be a party id"),
            ("size and time bad", dict(good, size="5", time="1"), "checkpoint size must be an integer in [0, 2^63)"),
            ("root and time bad", dict(good, root=None, time=None), "checkpoint root must be 64 lowercase hex digits"),
            ("time and sig bad", dict(good, time=None, sig=None), "checkpoint time must be an integer in [0, 2^63)"),
            ("wrong root, signed", signed(8, exp["roots"][7]), None),
            ("beyond the export, signed", signed(23, exp["roots"][22]), None)):
        trials.append((name, VECTORS, vec, cp, vpub, reason))
    trials.append(("another key", VECTORS, vec, good, bytes(SigningKey(bytes(32)).verify_key),
                   f"checkpoint names coordinator {good['coordinator']}, expected "
                   f"{lv.party_id(bytes(SigningKey(bytes(32)).verify_key))}"))
    argvs = []
    for i, (_, path, _, cp, pub, _) in enumerate(trials):
        cp_path = tmp_path / f"cp{i}.json"
        cp_path.write_text(json.dumps(cp))
        argvs.append(["ledger", "verify", "--file", str(path), "--checkpoint", str(cp_path), "--coordinator-key",
                      pub.hex(), "--json"])
    failures = []
    for (name, _, verdict, cp, pub, reason), r in zip(trials, reference_runs(argvs), strict=True):
        mine = lv.check_checkpoint_against(verdict, cp, pub)
        theirs = None if r["rc"] == 0 else r["stderr"].removeprefix("depin: error: ").strip()
        if theirs is not None and theirs.startswith("cannot read checkpoint "):  # a malformed kept file: exit code 2
            theirs = theirs.split(": ", 1)[1] if r["rc"] == 2 else theirs
        if r["rc"] == 0:
            reported = json.loads(r["stdout"])
            if reported.pop("checkpoint") != cp or reported != verdict.summary():
                failures.append(f"{name}: reference reported {r['stdout']}")
        ok = (mine is None) == (theirs is None) and r["rc"] in (0, 2, 4)
        if reason is not None:  # the reasons section 8.3 gives: exactly the reference's
            ok = ok and mine == reason == theirs
        elif name.endswith("signed"):  # no reason in the spec for these; both refuse
            ok = ok and mine is not None
        if not ok:
            failures.append(f"{name}: mine {mine!r}, reference rc {r['rc']} {theirs!r}")
    assert not failures, "\n".join(failures)
