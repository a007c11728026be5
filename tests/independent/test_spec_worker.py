"""Interoperability of a worker written from docs/PROTOCOL.md alone (spec_worker.py) with the real depin
coordinator and a real depin worker, and the spec's worked examples checked against that worker's code."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from tests.independent import spec_worker as sw
from tests.spec_examples import SPEC

ROOT = Path(__file__).resolve().parents[2]


def h(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


def f64(bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(bits))[0])


# --------------------------------------------------------------------------------------------------
# The spec's worked examples, against spec_worker's own encoder, signer and kernel
# --------------------------------------------------------------------------------------------------

LEASE_REQUEST = {"wait_ms": 20000, "max_tasks": 4, "kernels": ["mandelbrot@1"], "ts": 1700000000000,
                 "nonce": bytes(range(16))}
# PROTOCOL.md 3.4 prints the "kernels" key as `a7 6b65726e656c`, one byte short (the `73` of "s" is missing; the
# header a7 says 7 bytes and the text says 81 bytes in all). The full hex of 5.4 has it right. Corrected here:
LEASE_REQUEST_HEX = """85 a76b65726e656c73 91 ac6d616e64656c62726f744031 a96d61785f7461736b73 04 a56e6f6e6365
    c410000102030405060708090a0b0c0d0e0f a27473 cf0000018bcfe56800 a7776169745f6d73 cd4e20"""


def test_spec_examples_encode_and_sign() -> None:
    # 3.4: the three canonical-encoding examples
    payload = sw.packb(LEASE_REQUEST)
    assert payload == h(LEASE_REQUEST_HEX) and len(payload) == 81
    assert payload == h("""85a76b65726e656c7391ac6d616e64656c62726f744031a96d61785f7461736b
        7304a56e6f6e6365c410000102030405060708090a0b0c0d0e0fa27473cf0000
        018bcfe56800a7776169745f6d73cd4e20""")  # the payload as printed inside 5.4's signing input
    mixed = {"zeta": None, "b": True, "a": -1, "f": 1.5, "neg": -200, "big": 300, "list": [0, 127, 128, -32, -33]}
    assert sw.packb(mixed) == h("""87 a161 ff  a162 c3  a3626967 cd012c  a166 cb3ff8000000000000
        a46c697374 95 00 7f cc80 e0 d0df  a36e6567 d1ff38  a47a657461 c0""")
    assert sw.packb({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5}) == h("85 a15a03 a16105 a2616104 a17a02 a2c3a901")
    assert sw.packb(1.0) == h("cb3ff0000000000000")
    for example in (payload, sw.packb(mixed)):
        assert sw.packb(sw.unpackb_canonical(example)) == example
    # 3.3: deviations are refused by the decode-and-re-encode test
    for bad in ("d000", "cd0001", "ca3f800000", "a1ff", "a2c3", "8282a16101a16102", "82a16201a16102",
                "82a16101a16102", "0000", "c70100", "a16101", "d9016101"):
        with pytest.raises(sw.MsgpackError):
            sw.unpackb_canonical(h(bad))

    # 4: the id of the seed 00..1f
    key = SigningKey(bytes(range(32)))
    pub = bytes(key.verify_key)
    assert pub == h("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
    assert hashlib.sha256(pub).hexdigest() == "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"
    assert sw.party_id(pub) == "kzdvvj2umnduyauf35o36k6kw462mujv"

    # 5.4: signing the lease request, and the 200-byte envelope
    si = sw.signing_input("lease-request", payload)
    assert si == h("646570696e2f312f6c656173652d7265717565737400") + payload and len(si) == 103
    expected_sig = h("""97a146d708d18fdc24ffd42c5b3dd2c3fd99b5b97ee027340e099e57aaf37dfb
                        93e7325f6f3212a9a85a5a755dbdcf0b22b07b3f86b8769681e6a39dd1e05a00""")
    assert sw.verify(pub, "lease-request", payload, expected_sig)
    assert sw.sign(key, "lease-request", payload) == expected_sig  # Ed25519 is deterministic
    assert not sw.verify(pub, "release", payload, expected_sig)  # the kind is bound
    body = sw.packb({"key": pub, "payload": payload, "sig": expected_sig})
    assert len(body) == 200
    assert body == h("83a36b6579c420") + pub + h("a77061796c6f6164c451") + payload + h("a3736967c440") + expected_sig

    # 8.4: the task, its signature, and the lease answer, through the worker's own checks
    ckey = SigningKey(bytes(range(0x20, 0x40)))
    wkey = SigningKey(bytes(range(0x40, 0x60)))
    cpub = bytes(ckey.verify_key)
    assert cpub == h("29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7")
    assert sw.party_id(cpub) == "et3o22wl7yiatqbq27ffm7btzjedbeiu"
    assert sw.party_id(bytes(wkey.verify_key)) == "am4wegjdp522mtysv237hfzdvp2abmla"
    task: dict[str, Any] = {
        "coordinator": "et3o22wl7yiatqbq27ffm7btzjedbeiu", "job_id": "00000000000000a0", "kernel": "mandelbrot",
        "kernel_version": 1, "params": {"height": 4, "max_iter": 32, "row_end": 2, "row_start": 0, "width": 8,
                                        "x_max": 1.0, "x_min": -2.0, "y_max": 1.2, "y_min": -1.2},
        "task_id": "00000000000000a0-0"}
    task_bytes = sw.packb(task)
    assert task_bytes == h("""
        86ab636f6f7264696e61746f72d9206574336f3232776c377969617471627132
        3766666d3762747a6a656462656975a66a6f625f6964b0303030303030303030
        30303030306130a66b65726e656caa6d616e64656c62726f74ae6b65726e656c
        5f76657273696f6e01a6706172616d7389a668656967687404a86d61785f6974
        657220a7726f775f656e6402a9726f775f737461727400a5776964746808a578
        5f6d6178cb3ff0000000000000a5785f6d696ecbc000000000000000a5795f6d
        6178cb3ff3333333333333a5795f6d696ecbbff3333333333333a77461736b5f
        6964b2303030303030303030303030303061302d30""") and len(task_bytes) == 245
    task_sig = h("""33d25d0570ab58e5af79ce1f9a773f9da3a18d57b96d91cd068cd1c2d4c6c17f
                    e0380e2a4a3d5219d52978e9f031cc2cdf9d54171eea257a60a5766a0b5db30b""")
    assert sw.sign(ckey, "task", task_bytes) == task_sig
    grant = {"lease_id": "00000000000000a1", "expires_ms": 1700000060100, "task": task_bytes, "sig": task_sig}
    answer = sw.packb({"leases": [grant]})
    assert answer == h("""
        81a66c65617365739184aa657870697265735f6d73cf0000018bcfe652c4a86c
        656173655f6964b030303030303030303030303030306131a3736967c44033d2
        5d0570ab58e5af79ce1f9a773f9da3a18d57b96d91cd068cd1c2d4c6c17fe038
        0e2a4a3d5219d52978e9f031cc2cdf9d54171eea257a60a5766a0b5db30ba474
        61736bc4f586ab636f6f7264696e61746f72d9206574336f3232776c37796961
        74716271323766666d3762747a6a656462656975a66a6f625f6964b030303030
        303030303030303030306130a66b65726e656caa6d616e64656c62726f74ae6b
        65726e656c5f76657273696f6e01a6706172616d7389a668656967687404a86d
        61785f6974657220a7726f775f656e6402a9726f775f737461727400a5776964
        746808a5785f6d6178cb3ff0000000000000a5785f6d696ecbc0000000000000
        00a5795f6d6178cb3ff3333333333333a5795f6d696ecbbff3333333333333a7
        7461736b5f6964b2303030303030303030303030303061302d30""") and len(answer) == 378
    worker = sw.SpecWorker.__new__(sw.SpecWorker)
    worker.coord_key, worker.coord_id, worker.min_price = cpub, sw.party_id(cpub), 0
    # Since issue 4 a task carries the job's `price` (a required seventh field, int[1..2^40-1]): the six-field task
    # printed above is refused, properly signed or not. The 8.4 example became the job submitted at price 1; its
    # bytes, signature and lease answer, as transcribed in tests/data/spec_examples.json, are re-derived here.
    with pytest.raises(sw.ProtocolViolation, match="task fields"):
        worker.check_grant(sw.unpackb(answer)["leases"][0])
    vector = SPEC["task"]
    priced = {**task, "price": 1}
    priced_bytes = sw.packb(priced)
    assert priced_bytes == h(vector["task0_payload_hex"]) and priced_bytes[0] == 0x87
    priced_sig = sw.sign(ckey, "task", priced_bytes)
    assert priced_sig == h(vector["task0_sig_hex"])
    priced_grant = {**grant, "task": priced_bytes, "sig": priced_sig}
    assert sw.packb({"leases": [priced_grant]}) == h(vector["lease_answer_hex"])
    assert worker.check_grant(sw.unpackb(h(vector["lease_answer_hex"]))["leases"][0]) == priced
    with pytest.raises(sw.ProtocolViolation):  # signed by someone else
        worker.check_grant({**priced_grant, "sig": sw.sign(wkey, "task", priced_bytes)})
    with pytest.raises(sw.ProtocolViolation):  # a param missing, properly signed
        no_y_min = sw.packb({**priced, "params": {k: v for k, v in task["params"].items() if k != "y_min"}})
        worker.check_grant({**priced_grant, "task": no_y_min, "sig": sw.sign(ckey, "task", no_y_min)})
    for price in (0, 2**40, -1, True, 1.0, "10", None):  # out of range or not an int: refused, properly signed
        mispriced = sw.packb({**priced, "price": price})
        with pytest.raises(sw.ProtocolViolation, match="price"):
            worker.check_grant({**priced_grant, "task": mispriced, "sig": sw.sign(ckey, "task", mispriced)})
    top = sw.packb({**priced, "price": 2**40 - 1})
    assert worker.check_grant({**priced_grant, "task": top, "sig": sw.sign(ckey, "task", top)})["price"] == 2**40 - 1
    # A worker asking a minimum price refuses a task paying less, and takes one paying exactly that.
    worker.min_price = 2
    with pytest.raises(sw.ProtocolViolation, match="below our minimum"):
        worker.check_grant(priced_grant)
    worker.min_price = 1
    assert worker.check_grant(priced_grant) == priced
    worker.min_price = 0

    # 9.3 and 13.6: the kernel and the digest (the price does not enter the computation)
    out = sw.mandelbrot(task["params"])
    amap = sw.array_map(out)
    assert sw.packb(amap) == h("""83 a464617461 c440 01000000 03000000 03000000 04000000 06000000 06000000
        03000000 02000000 04000000 05000000 0c000000 20000000 20000000 20000000 08000000 03000000
        a56474797065 a675696e743332 a57368617065 920208""")
    assert sw.digest(amap) == "cf95a92d387f0e4aea483a7b01041ee95f4d379774930c1c0669f05e6528e5af"
    whole = sw.mandelbrot({**task["params"], "row_end": 4})
    assert whole.tolist() == [[1, 3, 3, 4, 6, 6, 3, 2], [4, 5, 12, 32, 32, 32, 8, 3],
                              [4, 5, 12, 32, 32, 32, 8, 3], [1, 3, 3, 4, 6, 6, 3, 2]]
    fma_vector = {"width": 97, "height": 61, "x_min": f64("bfe7d97f62b6ae7d"), "x_max": f64("bfe7c91d14e3bcd3"),
                  "y_min": f64("3fbcd9e83e425aee"), "y_max": f64("3fbd5cfaacd9e83e"), "max_iter": 2000,
                  "row_start": 7, "row_end": 50}
    sw.check_mandelbrot_params(fma_vector)
    out = sw.mandelbrot(fma_vector)
    assert int(out.sum()) == 505_492
    assert sw.digest(sw.array_map(out)) == "43d082621287d68fc2af8cff75afce072b3106b42a6a573c8650f9310d8d2a59"

    # 7.4: the results request and its signed acknowledgement
    item = {"lease_id": "00000000000000a1", "task_id": "00000000000000a0-0", "output": amap, "elapsed_ms": 3}
    nonce = bytes(range(0x10, 0x20))
    results_payload = sw.packb({"results": [item], "ts": 1700000000500, "nonce": nonce})
    assert len(results_payload) == 213
    assert results_payload == h("""
        83a56e6f6e6365c410101112131415161718191a1b1c1d1e1fa7726573756c74
        739184aa656c61707365645f6d7303a86c656173655f6964b030303030303030
        303030303030306131a66f757470757483a464617461c4400100000003000000
        0300000004000000060000000600000003000000020000000400000005000000
        0c0000002000000020000000200000000800000003000000a56474797065a675
        696e743332a57368617065920208a77461736b5f6964b2303030303030303030
        303030303061302d30a27473cf0000018bcfe569f4""")
    assert sw.sign(wkey, "results", results_payload) == h("""
        86b025ccc650b2407dedfcafa792feed73626e7d2457ccc2de4a6504e993cb6a
        daa2bfeff4c6c3a10446bfeda655f2d4d354a06497456e4cfa8aae1721b71600""")
    ack_payload = sw.packb({"acks": [{"lease_id": "00000000000000a1", "reason": "", "status": "accepted"}],
                            "request_nonce": nonce, "worker_id": "am4wegjdp522mtysv237hfzdvp2abmla"})
    assert len(ack_payload) == 134
    ack_sig = h("""c0c5dbd78064169d1f64c6ab7cdaa9182bc4ac803c20c21d165c2f0d5d3b5f76
                   4374507b5adaacf682c7ed57346928e397e032d1e4593ad5649eaed3a83fa803""")
    assert sw.sign(ckey, "results-ack", ack_payload) == ack_sig
    worker.worker_id = "am4wegjdp522mtysv237hfzdvp2abmla"
    ack_body = sw.packb({"key": cpub, "payload": ack_payload, "sig": ack_sig})
    assert worker.check_ack(ack_body, nonce, ["00000000000000a1"])[0]["status"] == "accepted"
    for wrong in ((ack_body, bytes(16), ["00000000000000a1"]), (ack_body, nonce, ["00000000000000a2"]),
                  (sw.packb({"key": cpub, "payload": ack_payload, "sig": task_sig}), nonce, ["00000000000000a1"])):
        with pytest.raises(sw.ProtocolViolation):
            worker.check_ack(*wrong)

    # LEDGER.md 9 (as transcribed in tests/data/spec_examples.json): entry hashes through the same generic encoder
    # (the pre-issue-4 example, a reward from mint, still hashes as printed: hashing knows nothing of money rules)
    entry = {"seq": 0, "time": 1795248062486, "kind": "reward", "from": "mint",
             "to": "dui5r4he4dcdwybt3o246j6jmsvd64fg", "amount": 7, "job_id": "84abe3f9cef16e54",
             "task_id": "84abe3f9cef16e54-0", "prev_hash": "0" * 64}
    assert len(sw.packb(entry)) == 214
    assert ledger_hash(entry) == "fe0fbdd9025b6e08ec68f96dcf1e3cb129e50a9741fa992c9301f939ce08b86a"
    book = SPEC["ledger"]
    prev = "0" * 64
    for line, body_hex, expected in zip(book["jsonl"], book["body_hex"], book["hashes"], strict=True):
        e = json.loads(line)
        assert e["prev_hash"] == prev and e["hash"] == expected == ledger_hash(e)
        assert sw.packb({k: v for k, v in e.items() if k != "hash"}) == h(body_hex)
        prev = e["hash"]


def ledger_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(b"depin/1/ledger-entry\x00" + sw.packb(body)).hexdigest()


# --------------------------------------------------------------------------------------------------
# End to end: a real coordinator, one real depin worker and one spec worker; replicas 2
# --------------------------------------------------------------------------------------------------


class Proc:
    """A subprocess whose stdout and stderr lines are collected by threads."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        for stream in (self.p.stdout, self.p.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line.rstrip("\n"))
            self.lines.put(line)

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise AssertionError(f"{self.name} did not print {prefix!r}:\n" + "\n".join(self.log))

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=5)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "depin.cli.main", *args]


def signed_post(url: str, path: str, key: SigningKey, kind: str, payload: dict[str, Any]) -> tuple[int, bytes]:
    """POST a signed envelope built with the spec's own encoder (section 5.2); (status, body) even for 4xx."""
    body, _ = sw.envelope(key, kind, {**payload, **sw.fresh()})
    req = urllib.request.Request(url + path, data=body, method="POST",
                                 headers={"Content-Type": "application/msgpack"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.timeout(90)
def test_spec_worker_interoperates(tmp_path: Path, procs: list[Proc]) -> None:
    env = {**os.environ, "DEPIN_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("DEPIN_COORDINATOR", None)

    coord = Proc("coordinator", cli("coordinator", "--data-dir", str(tmp_path / "coord"), "--host", "127.0.0.1",
                                    "--port", "0"), env)
    procs.append(coord)
    url = coord.wait_line("coordinator listening on ", timeout=20)
    assert url.startswith("http://127.0.0.1:")

    width, height, tasks, price = 96, 60, 6, 10
    # The operator grants the submitter (the key in DEPIN_HOME) exactly what the job may cost: 6 tasks x 5 results
    # (replicas + 3) x 10 credits.
    keygen = subprocess.run(cli("keygen", "--json"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert keygen.returncode == 0, keygen.stderr
    submitter = SigningKey((tmp_path / "home" / "key").read_bytes())
    submitter_id = sw.party_id(bytes(submitter.verify_key))
    assert json.loads(keygen.stdout)["id"] == submitter_id
    max_cost = tasks * 5 * price
    granted = subprocess.run(cli("grant", submitter_id, str(max_cost), "--data-dir", str(tmp_path / "coord"),
                                 "--coordinator", url), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert granted.returncode == 0, granted.stderr
    sub = subprocess.run(cli("submit", "mandelbrot", "-p", f"width={width}", "-p", f"height={height}",
                             "-p", "max_iter=300", "--tasks", str(tasks), "--replicas", "2",
                             "--price", str(price), "--coordinator", url, "--json"),
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert sub.returncode == 0, sub.stderr
    job_id = json.loads(sub.stdout)["job_id"]

    # A spec worker asking more than the job pays is offered nothing (its lease request's min_price), and leaves.
    picky = Proc("picky-spec-worker", [sys.executable, "-m", "tests.independent.spec_worker", "--coordinator", url,
                                       "--data-dir", str(tmp_path / "picky"), "--wait-ms", "500", "--exit-when-idle",
                                       "--min-price", str(price + 1)], env)
    procs.append(picky)
    picky_id = picky.wait_line("spec worker ", timeout=10)
    assert picky.p.wait(timeout=20) == 0, "\n".join(picky.log)
    assert not any("refusing a task" in line for line in picky.log), picky.log  # it was never even offered one
    assert get_json(f"{url}/v1/workers")["workers"][0]["worker_id"] == picky_id
    assert get_json(f"{url}/v1/workers")["workers"][0]["min_price"] == price + 1
    assert get_json(f"{url}/v1/jobs/{job_id}")["state"] == "queued"

    spec_dir = tmp_path / "spec-worker"
    spec_id = sw.party_id(bytes(sw.load_or_create_key(spec_dir).verify_key))
    # exactly two workers and replicas 2: every task needs one result from each
    procs.append(Proc("depin-worker", cli("worker", "--coordinator", url, "--data-dir", str(tmp_path / "w")), env))
    spec = Proc("spec-worker", [sys.executable, "-m", "tests.independent.spec_worker", "--coordinator", url,
                                "--data-dir", str(spec_dir), "--max-tasks", "2", "--wait-ms", "3000",
                                "--exit-when-idle"], env)
    procs.append(spec)
    assert spec.wait_line("spec worker ", timeout=10) == spec_id

    deadline = time.monotonic() + 45
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = get_json(f"{url}/v1/jobs/{job_id}")
        if job["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.2)
    logs = "\n".join(f"[{p.name}] {line}" for p in procs for line in p.log)
    assert job.get("state") == "done", f"job: {job}\n{logs}"
    assert job["tasks_validated"] == tasks

    # the spec worker leaves on its own once nothing is left for it, with an empty journal
    assert spec.p.wait(timeout=20) == 0, logs
    assert not list((spec_dir / "journal").glob("*.result"))
    assert (spec_dir / "coordinator.pub").read_text().strip() == get_json(f"{url}/v1/info")["public_key"]

    workers = {w["worker_id"]: w for w in get_json(f"{url}/v1/workers")["workers"]}
    assert spec_id in workers, workers
    mine = workers[spec_id]
    assert mine["tasks_validated"] == tasks and mine["tasks_rejected"] == 0, mine
    assert mine["balance"] == tasks * job["price"]
    others = [w for wid, w in workers.items() if wid not in (spec_id, picky_id)]
    assert len(others) == 1 and others[0]["tasks_validated"] == tasks and others[0]["tasks_rejected"] == 0
    assert workers[picky_id]["balance"] == 0

    # the merged result (only its submitter may ask, with a signed request) equals the whole image computed by the
    # spec kernel
    status, body = signed_post(url, f"/v1/jobs/{job_id}/result", SigningKey(bytes(range(32))), "result-request",
                               {"job_id": job_id})
    assert status == 403, body
    status, body = signed_post(url, f"/v1/jobs/{job_id}/result", submitter, "result-request", {"job_id": job_id})
    assert status == 200, body
    result = sw.unpackb_canonical(body)
    params = {**result["params"], "row_start": 0, "row_end": height}
    expected = sw.array_map(sw.mandelbrot(params))
    assert result["output"] == expected

    # the ledger: the reference verifier, and an independent check with the spec encoder
    ver = subprocess.run(cli("ledger", "verify", "--coordinator", url), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    assert ver.returncode == 0, ver.stdout + ver.stderr
    entries = get_json(f"{url}/v1/ledger?start=0&limit=10000")["entries"]
    # the grant, the job's escrow of its max cost, one reward per validated result, the refund of the rest
    escrow = f"escrow:{job_id}"
    assert [(e["kind"], e["from"], e["to"], e["amount"]) for e in entries[:2]] == [
        ("grant", "mint", submitter_id, max_cost), ("escrow", submitter_id, escrow, max_cost)]
    assert [e["kind"] for e in entries[2:]] == ["reward"] * (2 * tasks) + ["refund"]
    assert all(e["from"] == escrow and e["amount"] == price for e in entries[2:-1])
    assert (entries[-1]["from"], entries[-1]["to"], entries[-1]["amount"]) == (
        escrow, submitter_id, max_cost - 2 * tasks * price)
    prev = "0" * 64
    held: dict[str, int] = {}
    for seq, e in enumerate(entries):
        assert e["seq"] == seq and e["prev_hash"] == prev and ledger_hash(e) == e["hash"]
        prev = e["hash"]
        held[e["from"]] = held.get(e["from"], 0) - e["amount"]
        held[e["to"]] = held.get(e["to"], 0) + e["amount"]
    assert sum(e["amount"] for e in entries if e["to"] == spec_id) == tasks * job["price"]
    # conservation: nobody but the mint below zero, the escrow empty, everything minted held by the parties
    assert held.pop("mint") == -max_cost and held.pop(escrow) == 0
    assert all(v >= 0 for v in held.values()) and sum(held.values()) == max_cost
