"""The worker daemon: lease, check, compute, journal, report; reconnect with backoff; stop cleanly.

One loop: flush journaled results, long-poll for a batch of leases, compute each in a thread (numba releases the
GIL, so the event loop keeps answering signals), journal every result before sending it, then report the batch.
When the coordinator is unreachable the loop backs off (exponential, jittered, capped) and retries, and the journal
keeps every finished result until a signed acknowledgement arrives. Every `audit_interval` the worker audits the
ledger (worker.witness): a coordinator caught rewriting it, or lying about a credit, stops the worker with exit
code 4 and an alarm in the journal. At the same pace, when credits came in, it locks them in its bond up to a target
(worker.bonding), unless the owner turned auto-bonding off. On SIGTERM it finishes the task in hand, gives back the
leases it has not started, reports what it finished and exits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from depin import kernels, protocol
from depin.client import Client, fresh
from depin.config import WorkerConfig
from depin.crypto import SigningKey, VerifyKey, open_envelope
from depin.errors import (
    BadRequest,
    Banned,
    ConnectionFailed,
    DepinError,
    Forbidden,
    KeyMismatch,
    PeerProtocolError,
    VerificationError,
)
from depin.ledger_client import ForkEvidence
from worker import bonding, pinning, policy, status, tasks, witness
from worker.journal import Journal
from worker.page import OwnerPage
from worker.probes import Probes

log = logging.getLogger("depin.worker")

# Results per request are capped by size as well as count, well under the coordinator's 64 MiB body limit.
FLUSH_MAX_BYTES = 16 << 20


class LedgerAlarm(Exception):
    """The witness caught the coordinator's ledger lying (its cause says how)."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter; `rand` is injected so tests can fix it."""

    base_s: float = 0.25
    cap_s: float = 30.0
    rand: Callable[[], float] = random.random
    failures: int = 0

    def next_delay(self) -> float:
        """The wait before the next attempt, after one more failure."""
        self.failures += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.failures, 20))
        return float(ceiling / 2 + self.rand() * ceiling / 2)

    def reset(self) -> None:
        """Called after a success."""
        self.failures = 0


@dataclass
class Stats:
    """What this worker has done since it started."""

    computed: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


class Worker:
    """One worker process."""

    def __init__(self, config: WorkerConfig, key: SigningKey, probes: Probes | None = None) -> None:
        self.config = config
        self.key = key
        self.journal = Journal(config.data_dir / "journal.sqlite3")
        self.stop = asyncio.Event()
        self.backoff = Backoff(cap_s=config.max_backoff_s)
        self.stats = Stats()
        self.coordinator: VerifyKey | None = None
        self.kernel_keys = [k.key for k in kernels.all_kernels()]
        self._next_audit = 0.0  # monotonic time of the next ledger audit
        self.probes = probes or Probes.of_this_machine(config.probe_root)
        self.board = status.Board(worker_id=key.id, coordinator=config.coordinator)
        earlier = status.read(self._status_path) or {}
        if isinstance(earlier.get("cpu_seconds"), (int, float)):
            self.board.cpu_seconds = float(earlier["cpu_seconds"])  # energy is counted over the data dir's life
        self._memory = policy.Memory()
        self._allowed = asyncio.Event()  # set while the policy says run
        self._resumed = False  # interrupted tasks in the journal are finished once, after connecting
        self._bond_rules: bonding.Rules | None = None  # the coordinator's, from /v1/info
        self._prices = bonding.Prices()  # of the tasks computed lately: the bond target follows them
        self._bond_on = config.bond.auto_bond  # until the owner's setting or a ban says otherwise
        self._bond_due = True  # something changed that may call for a bond (a start, credits in, a higher price)
        self._next_bond = 0.0  # monotonic time before which no bond is looked at again
        self.board.bond = status.BondState(config.bond.auto_bond, config.bond.max_bond,
                                           note="on" if config.bond.auto_bond else "off")
        if config.policy.always:
            self._allowed.set()

    @property
    def _status_path(self) -> Path:
        return self.config.data_dir / "status.json"

    def _publish(self) -> None:
        try:
            status.write(self._status_path, {**self.board.snapshot(), "pid": os.getpid()})
        except OSError as exc:
            log.warning("cannot write %s: %s", self._status_path, exc.strerror)

    def _sample_policy(self, readings: policy.Readings | None = None) -> None:
        """Decide on `readings` (read now if not given), and say so when the decision changes."""
        if self.config.policy.always:
            decision = policy.Decision(True, "always on (--always)")
        else:
            readings = readings or self.probes.read()
            decision, self._memory = policy.decide(self.config.policy, readings, self._memory)
            self.board.readings = {k: v for k, v in vars(readings).items() if k not in ("weekday", "minute")}
        if decision.run:
            self._allowed.set()
        else:
            self._allowed.clear()
        state = "running" if decision.run else "paused"
        if self.board.state not in ("stopping", "alarm") and self.board.move(state, decision.reason):
            log.info("%s: %s", "running" if decision.run else "paused", decision.reason)
        self._publish()

    async def _policy_loop(self) -> None:
        while not self.stop.is_set():
            try:  # the probes read files and may run loginctl: off the event loop
                readings = None if self.config.policy.always else await asyncio.get_running_loop().run_in_executor(
                    None, self.probes.read)
                self._sample_policy(readings)
            except Exception:  # a probe that breaks must not stop the sampling: the last decision stands
                log.exception("reading the machine failed; keeping the last decision")
            await self._sleep(self.config.policy.sample_seconds)

    async def run(self) -> int:
        """Work until stopped (or after one task with --once); the process exit code."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._publish()
        page = await self._start_page()  # up before the kernels compile, so the owner sees "starting"
        sampler: asyncio.Future[None] | None = None
        try:
            for kernel in kernels.all_kernels():
                await loop.run_in_executor(None, kernel.warmup)
            log.info("worker %s ready (kernels compiled in %.1fs); %d results waiting in the journal",
                     self.key.id, time.perf_counter() - started, self.journal.count())
            self._sample_policy()
            sampler = asyncio.ensure_future(self._policy_loop())
            return await self._work()
        finally:
            if sampler is not None:
                sampler.cancel()
            if page is not None:
                await page.stop()
            if self.board.state != "alarm":
                self.board.move("stopped", "stopped")
            self.board.task = None
            self._publish()

    async def _start_page(self) -> OwnerPage | None:
        """The owner's page on 127.0.0.1, unless disabled; a taken port is logged, and the worker works on."""
        if self.config.page_port is None:
            return None
        page = OwnerPage(self.board, self.config.data_dir / "journal.sqlite3", watts=self.config.policy.watts,
                         port=self.config.page_port)
        try:
            url = await page.start()
        except DepinError as exc:
            log.error("no owner's page: %s", exc)
            return None
        log.info("owner page on %s", url)
        return page

    async def _work(self) -> int:
        try:
            async with Client(self.config.coordinator) as client:
                while not self.stop.is_set():
                    try:
                        await self._cycle(client)
                        self.backoff.reset()
                    except ConnectionFailed as exc:
                        delay = self.backoff.next_delay()
                        log.warning("%s; retrying in %.1fs", exc, delay)
                        await self._sleep(delay)
                    except KeyMismatch as exc:
                        log.error("%s", exc)
                        return 4
                    except LedgerAlarm as exc:
                        return self._raise_alarm(exc)
                    except Forbidden as exc:
                        # 403 on a worker request means this key is banned for good (PROTOCOL.md 12.5): stop.
                        log.error("the coordinator refuses this worker: %s", exc)
                        return 5
                    except DepinError as exc:
                        # A 5xx, a refused request or a bad answer may pass (a restart, a clock step): back off.
                        delay = self.backoff.next_delay()
                        log.warning("coordinator exchange failed: %s; retrying in %.1fs", exc, delay)
                        await self._sleep(delay)
                    if self.config.once and self.stats.accepted + self.stats.rejected > 0:
                        break
                await self._flush(client, final=True)
                try:
                    await self._audit(client, force=True)
                except LedgerAlarm as exc:
                    return self._raise_alarm(exc)
                except DepinError as exc:
                    log.warning("final ledger audit skipped: %s", exc)
            log.info("worker stopped: %d computed, %d accepted, %d rejected, %d unacknowledged in the journal",
                     self.stats.computed, self.stats.accepted, self.stats.rejected, self.journal.count())
        finally:
            self.journal.close()
        return 0

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _connect(self, client: Client) -> VerifyKey:
        if self.coordinator is None:
            info = await client.get_json("/v1/info")
            if not isinstance(info, dict) or info.get("protocol") != protocol.PROTOCOL_VERSION:
                theirs = info.get("protocol") if isinstance(info, dict) else None
                raise PeerProtocolError(f"coordinator speaks protocol {theirs}, we speak {protocol.PROTOCOL_VERSION}")
            self.coordinator = pinning.pin(self.config.data_dir / "coordinator.pub", info.get("public_key"),
                                           self.config.coordinator_key)
            if info.get("coordinator_id") != self.coordinator.id:
                self.coordinator = None
                raise PeerProtocolError("coordinator_id in /v1/info is not the id of its public_key")
            self._bond_rules = bonding.Rules.from_info(info)
            log.info("connected to coordinator %s", self.coordinator.id)
        return self.coordinator

    def _give_back_now(self) -> bool:
        """Asked between chunks (in the computing thread): stop this task now? Only for a pause with on_pause =
        return; SIGTERM finishes the task in hand."""
        return not self._allowed.is_set() and self.config.policy.on_pause == "return"

    def _after_chunk(self, computed_s: float) -> None:
        """After each chunk (in the computing thread): with a duty cycle below 1, rest in proportion."""
        if self.board.task is not None:
            self.board.task.chunks_done += 1
        duty = self.config.policy.duty_cycle
        if duty < 1.0:
            time.sleep(computed_s * (1 - duty) / duty)

    def _raise_alarm(self, exc: LedgerAlarm) -> int:
        message = str(exc.__cause__ or exc)
        self.board.move("alarm", message)
        evidence = exc.__cause__.evidence() if isinstance(exc.__cause__, ForkEvidence) else None
        self.journal.alarm(message, int(time.time() * 1000), evidence)
        held = self.journal.latest_checkpoint()
        log.critical("!!! LEDGER ALARM: %s", message)
        log.critical("!!! this worker kept checkpoint %s; the evidence is in %s (depin receipts --data-dir %s)."
                     " Stopping: do not work for this coordinator until its operator explains.",
                     held.to_json() if held else None, self.config.data_dir / "journal.sqlite3",
                     self.config.data_dir)
        return 4

    async def _audit(self, client: Client, force: bool = False) -> None:
        """Audit the ledger if it is time (or `force`); VerificationErrors become LedgerAlarm."""
        now = time.monotonic()
        if self.coordinator is None or (not force and now < self._next_audit):
            return
        self._next_audit = now + self.config.audit_interval_ms / 1000
        try:
            if await witness.audit(client, self.coordinator, self.journal, self.key.id):
                self._bond_due = True  # new credits: perhaps enough for a bond
        except VerificationError as exc:
            raise LedgerAlarm(str(exc)) from exc
        except ConnectionFailed:
            raise
        except DepinError as exc:  # a refused or garbled answer: no verdict on the ledger; work on, retry later
            log.warning("ledger audit failed (%s); retrying in %.0fs", exc, self.config.audit_interval_ms / 1000)

    async def _autobond(self, client: Client) -> None:
        """Lock spendable credits in the bond, as worker.bonding plans it: when something changed (credits proved,
        results accepted, a higher price), at most once per audit interval. A refusal is shown, logged once, and
        tried again an interval later; a banned worker stops trying (its next lease request stops it); an
        unreachable coordinator is the cycle's to back off from."""
        view = self.board.bond
        now = time.monotonic()
        if view is None or not self._bond_on or not self._bond_due or now < self._next_bond:
            return
        self._next_bond = now + self.config.audit_interval_ms / 1000
        self._bond_due = False
        rules = self._bond_rules
        if rules is None:
            self._bond_note("idle: the coordinator does not publish its bond rules (min_bond, bond_per_price)", True)
            return
        try:
            view.balance = await client.balance(self.key.id)
            view.bonded = await client.balance(f"bond:{self.key.id}")
            plan = bonding.plan(rules, max_bond=self.config.bond.max_bond, balance=view.balance, bonded=view.bonded,
                                price=self._prices.highest(int(time.time() * 1000)))
            view.target = plan.target
            if plan.amount:
                answer = await client.move_bond(self.key, "bond", plan.amount)
                view.bonded, view.balance = int(answer["bonded"]), int(answer["balance"])
                log.info("bonded %d credits (ledger entry %s): bond %d, balance %d, target %d", plan.amount,
                         answer["seq"], view.bonded, view.balance, plan.target)
        except ConnectionFailed:
            self._bond_due = True
            raise
        except Banned as exc:
            self._bond_on = False
            self._bond_note(f"stopped: {exc}", True)
            return
        except (DepinError, KeyError, TypeError, ValueError) as exc:  # e.g. 402: the balance moved meanwhile
            self._bond_due = True
            self._bond_note(f"refused ({exc}); trying again in {self.config.audit_interval_ms / 1000:.0f}s", True)
            return
        self._bond_note(f"bonded {plan.amount} credits" if plan.amount else plan.note, False)

    def _bond_note(self, note: str, problem: bool) -> None:
        """Say why the bond is what it is: on the board always, in the log only a problem, and only when it is new."""
        view = self.board.bond
        assert view is not None
        if problem and note != view.note:
            log.warning("auto-bond %s", note)
        view.note = note
        self._publish()

    async def _resume(self, coordinator: VerifyKey) -> None:
        """Finish the tasks a crash or a stop interrupted, from their last saved chunk (once, after connecting)."""
        for grant in self.journal.unfinished():
            if self.stop.is_set() or not self._allowed.is_set():
                return
            try:
                checked = tasks.check(grant, coordinator, self.config.min_price)
            except (VerificationError, PeerProtocolError) as exc:
                log.warning("dropping the saved progress of lease %s: %s", grant.lease_id, exc)
                self.journal.drop_progress([grant.lease_id])
                continue
            log.info("resuming %s from its saved progress", checked.task.task_id)
            if await self._compute(checked) is None:
                return  # paused again: the progress is saved, and the next cycle resumes it
        self._resumed = True

    async def _cycle(self, client: Client) -> None:
        coordinator = await self._connect(client)
        if not self._resumed:
            await self._resume(coordinator)
        await self._flush(client)
        await self._audit(client)
        await self._autobond(client)
        if not self._allowed.is_set():  # paused: keep flushing and auditing, lease nothing
            waiting = asyncio.ensure_future(self._allowed.wait())
            await asyncio.wait({waiting, asyncio.ensure_future(self.stop.wait())},
                               timeout=self.config.audit_interval_ms / 1000, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            return
        grants = await self._lease(client)
        if grants is None:
            return
        for i, grant in enumerate(grants):
            if self.stop.is_set() or (self.config.once and self.stats.computed > 0) or not self._allowed.is_set():
                await self._release(client, [g.lease_id for g in grants[i:]])  # paused or stopping: give back
                break
            try:
                checked = tasks.check(grant, coordinator, self.config.min_price)
            except VerificationError as exc:
                # Not signed by the key we pinned: perhaps another coordinator now answers at this URL. Give the
                # work back, forget the connection so the next cycle re-reads /v1/info (a changed key then stops
                # the worker), and back off instead of asking again at once.
                log.error("refusing lease %s: %s", grant.lease_id, exc)
                await self._release(client, [g.lease_id for g in grants[i:]])
                self.coordinator = None
                raise
            except PeerProtocolError as exc:
                # A task we cannot run; released, it may come straight back, so back off before asking again.
                log.error("refusing lease %s: %s", grant.lease_id, exc)
                await self._release(client, [g.lease_id for g in grants[i:]])
                raise
            if await self._compute(checked) is None:  # paused, on_pause = return: progress saved, resumes if leased
                log.info("returning lease %s mid-task: %s", checked.lease_id, self.board.reason)
                self.journal.released([checked.lease_id])  # before the network call: never resume a released lease
                await self._release(client, [g.lease_id for g in grants[i:]])
                break
        await self._flush(client)

    async def _compute(self, checked: tasks.Checked) -> protocol.ResultItem | None:
        """Run a checked task chunk by chunk off the event loop and journal its result; None if a pause with
        on_pause = return stopped it (its progress is saved)."""
        self.board.task = status.CurrentTask(
            lease_id=checked.lease_id, task_id=checked.task.task_id, job_id=checked.task.job_id,
            kernel=f"{checked.task.kernel}@{checked.task.kernel_version}", price=checked.task.price,
            started_ms=int(time.time() * 1000))
        self._publish()
        cpu_before = time.process_time()
        run = functools.partial(tasks.run, checked, self.journal.progress, should_stop=self._give_back_now,
                                after_chunk=self._after_chunk, threads=self.config.policy.threads)
        try:
            item = await asyncio.get_running_loop().run_in_executor(None, run)
        finally:
            self.board.cpu_seconds += time.process_time() - cpu_before
            self.board.task = None
        if item is not None:
            now_ms = int(time.time() * 1000)
            self.journal.add(item, now_ms, checked.task.job_id, checked.task.price)
            if self._prices.note(now_ms, checked.task.price):
                self._bond_due = True  # a higher price: perhaps a higher target
            self.stats.computed += 1
            self.board.computed = self.stats.computed
            log.info("computed %s in %d ms", item.task_id, item.elapsed_ms)
        self._publish()
        return item

    async def _lease(self, client: Client) -> list[protocol.LeaseGrant] | None:
        # An idle worker still audits on time: the long-poll ends no later than the next audit is due.
        until_audit_ms = int((self._next_audit - time.monotonic()) * 1000)
        wait_ms = max(0, min(self.config.poll_ms, until_audit_ms))
        req = protocol.LeaseRequest(max_tasks=1 if self.config.once else self.config.batch,
                                    wait_ms=wait_ms, kernels=tuple(self.kernel_keys),
                                    owner=self.config.owner, min_price=self.config.min_price or None)
        request = asyncio.ensure_future(client.post_signed(
            "/v1/lease", self.key, "lease-request", req.to_payload(), read_timeout_s=self.config.poll_ms / 1000 + 15))
        stopping = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({request, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if request not in done:
            request.cancel()  # leases granted in flight expire on the coordinator
            return None
        stopping.cancel()
        answer = request.result()
        if not isinstance(answer, dict) or not isinstance(answer.get("leases"), list):
            raise PeerProtocolError("lease answer must be a map with a leases list")
        return [protocol.LeaseGrant.from_payload(g, i) for i, g in enumerate(answer["leases"])]

    async def _release(self, client: Client, lease_ids: list[str]) -> None:
        if lease_ids:
            await client.post_signed("/v1/release", self.key, "release",
                                     protocol.ReleaseRequest(tuple(lease_ids)).to_payload())
            log.info("gave back %d leases", len(lease_ids))

    async def _flush(self, client: Client, final: bool = False) -> None:
        """Send journaled results until the journal is empty; each ack is checked before anything is forgotten."""
        limit = protocol.MAX_BATCH
        while True:
            items = self.journal.pending(limit, max_bytes=FLUSH_MAX_BYTES)
            if not items:
                return
            try:
                ack = await self._send(client, items)
            except ConnectionFailed:
                if final:
                    log.warning("coordinator unreachable; %d results stay in the journal for next start", len(items))
                    return
                raise
            except BadRequest as exc:
                # The batch was refused whole as malformed (our bug; nothing was recorded). Find the bad result by
                # sending one at a time, and set it aside so it cannot block the journal forever.
                if len(items) > 1:
                    limit = 1
                    continue
                self.journal.set_aside(items[0].lease_id, str(exc), int(time.time() * 1000))
                log.error("coordinator refused the result for lease %s as malformed (%s); kept in the journal's"
                          " refused table", items[0].lease_id, exc)
                continue
            done, story = [], []
            for a in ack.acks:
                if a.status == "rejected":
                    self.stats.rejected += 1
                    log.warning("result for lease %s rejected: %s", a.lease_id, a.reason)
                else:
                    self.stats.accepted += 1
                    self._bond_due = True  # a result accepted: its reward may be in
                done.append(a.lease_id)
                story.append((a.status, a.reason))
            self.journal.remove(done, story, int(time.time() * 1000))
            self.board.accepted, self.board.rejected = self.stats.accepted, self.stats.rejected
            self._publish()

    async def _send(self, client: Client, items: list[protocol.ResultItem]) -> protocol.ResultsAck:
        assert self.coordinator is not None
        payload = {**protocol.ResultsRequest(tuple(items)).to_payload(), **fresh()}
        answer = await client.post("/v1/results", self.key.seal("results", payload))
        signer, body = open_envelope("results-ack", answer)
        if signer != self.coordinator:
            raise VerificationError("results acknowledgement signed by someone other than the pinned coordinator")
        ack = protocol.ResultsAck.from_payload(body)
        if ack.worker_id != self.key.id or ack.request_nonce != payload["nonce"]:
            raise VerificationError("results acknowledgement is for another request")
        sent = {i.lease_id for i in items}
        if {a.lease_id for a in ack.acks} != sent:
            raise VerificationError("results acknowledgement does not cover exactly the results sent")
        return ack
