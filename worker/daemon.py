"""The worker daemon: lease, check, compute, journal, report; reconnect with backoff; stop cleanly.

One loop: flush journaled results, long-poll for a batch of leases, compute the batch in a thread (one hand-off per
batch; numba releases the GIL, so the event loop keeps answering signals), journal the batch's results in one
transaction before sending them, then report them. The batch is sized to about 100 ms of work from the measured
speed of each kernel (worker.batching), unless --batch fixes it. While a batch computes, the event loop sends what
the batch before it journaled, audits and bonds if due, and, when the batch in hand is short, leases and checks the
next one (one batch ahead at most, given back on a pause or SIGTERM), so the computing thread rarely waits on the
network. status.json is rewritten at most every 0.5 s, at once on a change of state (worker.status.Throttle).
When the coordinator is unreachable the loop backs off (exponential, jittered, capped) and retries, and the journal
keeps every finished result until a signed acknowledgement arrives. Every `audit_interval` the worker audits the
ledger (worker.witness): a coordinator caught rewriting it, or lying about a credit, stops the worker with exit
code 4 and an alarm in the journal. At the same pace, when credits came in, it locks them in its bond up to a target
(worker.bonding), unless the owner turned auto-bonding off. On SIGTERM it finishes the task in hand, gives back the
leases it has not started, reports what it finished and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from worker import batching, bonding, pinning, policy, status, tasks, witness
from worker.journal import Journal
from worker.page import OwnerPage
from worker.platform_class import platform_class
from worker.probes import Probes

log = logging.getLogger("depin.worker")

# Results per request are capped by size as well as count, well under the coordinator's 64 MiB body limit.
FLUSH_MAX_BYTES = 16 << 20
# A batch of at most this many computed tasks logs a line for each; a bigger one (tiny tasks) one line in all.
LOG_EACH = 4


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


@dataclass
class Lot:
    """A lease answer, checked in order up to the first grant refused (PROTOCOL.md 8.3)."""

    grants: list[protocol.LeaseGrant]
    checked: list[tasks.Checked]  # the grants before the first refused one, ready to run
    refused: DepinError | None = None  # why grants[len(checked)] was refused (the rest are given back with it)


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
        self.pace = batching.Pace(fixed=1 if config.once else config.batch)
        self._hold_s = batching.HOLD_S  # capped by a quarter of the coordinator's lease timeout once connected
        self.probes = probes or Probes.of_this_machine(config.probe_root)
        self.board = status.Board(worker_id=key.id, coordinator=config.coordinator)
        self.status = status.Publisher(self._status_path, self.board)
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

    def _publish(self, urgent: bool = False) -> None:
        self.status.publish(urgent)

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
        self._publish(urgent=True)  # one write per sample: the owner sees the readings behind run or pause

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
            self._publish(urgent=True)

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
            timeout_ms = info.get("lease_timeout_ms")
            if isinstance(timeout_ms, int) and timeout_ms > 0:  # what is held ahead must start well before it expires
                self._hold_s = min(batching.HOLD_S, timeout_ms / 4000)
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
        self._publish(urgent=True)  # at most once an audit interval: the owner sees a bond as soon as it is made

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
            if not (await self._compute([checked])).done:
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
        lot = None if grants is None else self._check(grants, coordinator)
        while lot is not None:
            lot = await self._batch(client, coordinator, lot)
        await self._flush(client)

    def _check(self, grants: list[protocol.LeaseGrant], coordinator: VerifyKey) -> Lot:
        """Check a lease answer's grants in order, up to the first that is refused."""
        lot = Lot(grants, [])
        for grant in grants:
            try:
                lot.checked.append(tasks.check(grant, coordinator, self.config.min_price))
            except (VerificationError, PeerProtocolError) as exc:
                lot.refused = exc
                break
        return lot

    def _may_lease(self) -> bool:
        return not self.stop.is_set() and self._allowed.is_set() and not self.config.once

    async def _batch(self, client: Client, coordinator: VerifyKey, lot: Lot) -> Lot | None:
        """Compute a checked lot's tasks (the first that fit in hand; the rest given back at once) while the event
        loop sends earlier results and perhaps leases the next lot; journal, give back what was not computed.
        The next lot, if one was leased ahead and this one ended normally."""
        keep = self.pace.keep([_size(c) for c in lot.checked], self._hold_s)
        batch, back = lot.checked[:keep], [c.lease_id for c in lot.checked[keep:]]
        if lot.refused is not None:
            # Refused: give it back with every grant after it, and back off after computing those before it (a
            # signature that does not verify: perhaps another coordinator answers at this URL; forget the
            # connection so the next cycle re-reads /v1/info, where a changed key stops the worker).
            log.error("refusing lease %s: %s", lot.grants[len(lot.checked)].lease_id, lot.refused)
            back += [g.lease_id for g in lot.grants[len(lot.checked):]]
        ahead = lot.refused is None and self._may_lease() and self.pace.ahead([_size(c) for c in batch], self._hold_s)
        computing = asyncio.ensure_future(self._compute(batch))
        meanwhile = asyncio.ensure_future(self._meanwhile(client, coordinator, back, ahead))
        try:
            outcome = await computing
        except BaseException:
            meanwhile.cancel()
            raise
        back = [c.lease_id for c in outcome.unstarted]
        if outcome.interrupted is not None:  # paused, on_pause = return: progress saved, resumes if leased again
            log.info("returning lease %s mid-task: %s", outcome.interrupted.lease_id, self.board.reason)
            self.journal.released([outcome.interrupted.lease_id])  # before the network: never resume a released lease
            back.insert(0, outcome.interrupted.lease_id)
        try:
            upcoming = await meanwhile
        except BaseException:
            with contextlib.suppress(DepinError):
                await self._release(client, back)
            raise
        if upcoming is not None and (back or lot.refused is not None or not self._may_lease()):
            back += [g.lease_id for g in upcoming.grants]  # paused or stopping: the lot leased ahead goes back too
            upcoming = None
        if back:
            await self._release(client, back)
        if lot.refused is not None:
            if isinstance(lot.refused, VerificationError):
                self.coordinator = None
            raise lot.refused
        return upcoming

    async def _meanwhile(self, client: Client, coordinator: VerifyKey, back: list[str], ahead: bool) -> Lot | None:
        """The event loop's part while a batch computes: give back what will not be computed, send what earlier
        batches journaled, audit and bond if due, then lease and check the next lot if `ahead`."""
        if back:
            await self._release(client, back)
        await self._flush(client)
        await self._audit(client)
        await self._autobond(client)
        if not (ahead and self._may_lease()):
            return None
        grants = await self._lease(client, ahead=True)
        return self._check(grants, coordinator) if grants else None

    async def _compute(self, batch: list[tasks.Checked]) -> tasks.Outcome:
        """Run checked tasks in order off the event loop, and journal their results in one transaction. It stops
        before a task on SIGTERM or a pause, and mid-task on a pause with on_pause = return (progress saved)."""
        if not batch:
            return tasks.Outcome([], None, [])
        outcome = await asyncio.get_running_loop().run_in_executor(None, self._run, batch)
        if outcome.done:
            now_ms = int(time.time() * 1000)
            self.journal.add_many([(d.item, d.checked.task.job_id, d.checked.task.price) for d in outcome.done],
                                  now_ms)
            for d in outcome.done:
                self.pace.note(_size(d.checked), d.seconds)
            if self._prices.note(now_ms, max(d.checked.task.price for d in outcome.done)):
                self._bond_due = True  # a higher price: perhaps a higher target
            self.stats.computed += len(outcome.done)
            self.board.computed = self.stats.computed
            if len(outcome.done) <= LOG_EACH:
                for d in outcome.done:
                    log.info("computed %s in %d ms", d.item.task_id, d.item.elapsed_ms)
            else:
                log.info("computed %d tasks (%s ... %s) in %d ms", len(outcome.done), outcome.done[0].item.task_id,
                         outcome.done[-1].item.task_id, sum(d.item.elapsed_ms for d in outcome.done))
        self._publish()
        return outcome

    def _run(self, batch: list[tasks.Checked]) -> tasks.Outcome:
        """In the computing thread."""
        cpu_before = time.process_time()
        try:
            return tasks.run_batch(batch, self.journal.progress, go_on=self._go_on, should_stop=self._give_back_now,
                                   on_start=self._on_start, after_chunk=self._after_chunk,
                                   threads=self.config.policy.threads)
        finally:
            self.board.cpu_seconds += time.process_time() - cpu_before
            self.board.task = None

    def _go_on(self) -> bool:
        """Asked before each task of a batch (in the computing thread): SIGTERM, a pause or --once's one task stop
        the batch, and the tasks not started are given back."""
        return not self.stop.is_set() and self._allowed.is_set() and not (self.config.once and self.stats.computed)

    def _on_start(self, checked: tasks.Checked) -> None:
        self.board.task = status.CurrentTask(
            lease_id=checked.lease_id, task_id=checked.task.task_id, job_id=checked.task.job_id,
            kernel=f"{checked.task.kernel}@{checked.task.kernel_version}", price=checked.task.price,
            started_ms=int(time.time() * 1000))

    async def _lease(self, client: Client, ahead: bool = False) -> list[protocol.LeaseGrant] | None:
        # An idle worker still audits on time: the long-poll ends no later than the next audit is due. A lease
        # ahead does not wait: the batch in hand is the worker's work meanwhile.
        until_audit_ms = int((self._next_audit - time.monotonic()) * 1000)
        wait_ms = 0 if ahead else max(0, min(self.config.poll_ms, until_audit_ms))
        req = protocol.LeaseRequest(max_tasks=self.pace.ask(), wait_ms=wait_ms, kernels=tuple(self.kernel_keys),
                                    owner=self.config.owner, min_price=self.config.min_price or None,
                                    published=self.config.published_kernels, platform=platform_class())
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


def _size(checked: tasks.Checked) -> batching.Task:
    """What the adaptive batch knows of a task: its kernel and declared work."""
    return batching.Task(f"{checked.task.kernel}@{checked.task.kernel_version}", checked.kernel.work(checked.params))
