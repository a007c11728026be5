"""The CLI's commands: each builds its config from the parsed flags and the environment, then does one thing."""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from depin import config, kernels
from depin.cli import market_cmd, output
from depin.client import Client
from depin.crypto import SigningKey, load_key, load_or_create_key
from depin.errors import UserError

TERMINAL = ("done", "failed", "cancelled")


def _client_config(args: argparse.Namespace) -> config.ClientConfig:
    env = config.environment()
    return config.ClientConfig(
        coordinator=config.coordinator_url(getattr(args, "coordinator", None), env),
        home=config.home_dir(getattr(args, "home", None), env),
        json=bool(getattr(args, "json", False)),
    )


def _quoted(job_id: str) -> str:
    # A job id is one path segment, whatever the user typed ("../info" must not become another endpoint).
    return urllib.parse.quote(job_id, safe="")


def parse_param_flags(flags: list[str]) -> dict[str, str]:
    """`-p key=value` flags as a map; a malformed or repeated flag is a UserError."""
    params: dict[str, str] = {}
    for flag in flags:
        key, sep, value = flag.partition("=")
        if not sep or not key:
            raise UserError(f"-p {flag!r}: expected KEY=VALUE")
        if key in params:
            raise UserError(f"-p {key} given twice")
        params[key] = value
    return params


# ---- job commands ------------------------------------------------------------------------------------------


async def _submit(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    kernel = kernels.get(args.kernel)
    params = kernel.validate(parse_param_flags(args.param))  # fail fast, before any network
    kernel.split(params, args.tasks)
    key = load_or_create_key(cfg.home / "key")
    replicas = args.replicas if args.replicas is not None else max(2, args.quorum or 0)
    payload = {"kernel": kernel.name, "params": params, "tasks": args.tasks, "replicas": replicas,
               "max_results": args.max_results, "price": args.price}
    if args.quorum is not None:
        payload["quorum"] = args.quorum
    if args.max_errors is not None:
        payload["max_errors"] = args.max_errors
    async with Client(cfg.coordinator) as c:
        answer = await c.post_signed("/v1/jobs", key, "submit", payload)
    output.emit(cfg.json, answer, answer["job_id"])
    return 0


async def _status(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    async with Client(cfg.coordinator) as c:
        job = await c.get_json(f"/v1/jobs/{_quoted(args.job)}")
    output.emit(cfg.json, job, output.job_text(job))
    return 0


async def wait_for(c: Client, job_id: str, *, show: bool, every_s: float = 0.25, wait_ms: int = 20_000
                   ) -> dict[str, Any]:
    """Follow a job until it ends, drawing a progress bar on stderr if `show`: each read waits on the coordinator
    until the job changes (PROTOCOL.md 7.7: `wait_ms`, `since`), and reads are at least `every_s` apart."""
    from tqdm import tqdm

    path = f"/v1/jobs/{_quoted(job_id)}"
    job: dict[str, Any] = await c.get_json(path)
    bar = tqdm(total=job["tasks_total"], unit="task", desc=job_id, disable=not show, file=sys.stderr,
               dynamic_ncols=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            asked = loop.time()
            bar.n = job["tasks_validated"]
            bar.set_postfix_str(job["state"], refresh=False)
            bar.refresh()
            if job["state"] in TERMINAL:
                return job
            await asyncio.sleep(max(0.0, asked + every_s - loop.time()))
            if "version" in job:  # a coordinator that has no version is polled
                job = await c.get_json(f"{path}?wait_ms={wait_ms}&since={job['version']}",
                                       read_timeout_s=wait_ms / 1000 + 30)
            else:
                job = await c.get_json(path)
    finally:
        bar.close()


async def _wait(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    async with Client(cfg.coordinator) as c:
        job = await wait_for(c, args.job, show=not cfg.json)
    output.emit(cfg.json, job, output.job_text(job))
    return 0 if job["state"] == "done" else 1


async def fetch_result(c: Client, key: SigningKey, job_id: str, path: Path) -> str:
    """Download a done job's result (signed by its submitter's key) into `path` (.npy or .png); describe it."""
    import io

    import numpy as np

    from depin import codec

    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise UserError(f"{path}: the output file must end in .npy or .png")
    answer = await c.post_signed(f"/v1/jobs/{_quoted(job_id)}/result", key, "result-request", {"job_id": job_id})
    array = codec.array_from_wire(answer["output"])
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, array)
        data = buf.getvalue()
    else:
        kernel = kernels.get(answer["kernel"], answer["kernel_version"])
        if kernel.render_png is None:
            raise UserError(f"kernel {kernel.name} has no image form; use a .npy file")
        data = kernel.render_png(answer["params"], array)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    return f"wrote {path} ({array.dtype.name}{list(array.shape)})"


async def _result(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    key = load_key(cfg.home / "key")
    async with Client(cfg.coordinator) as c:
        print(await fetch_result(c, key, args.job, Path(args.output)))
    return 0


async def _cancel(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    key = load_key(cfg.home / "key")
    async with Client(cfg.coordinator) as c:
        answer = await c.post_signed(f"/v1/jobs/{_quoted(args.job)}/cancel", key, "cancel", {"job_id": args.job})
    output.emit(cfg.json, answer, f"{answer['job_id']} {answer['state']}")
    return 0


async def _jobs(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    async with Client(cfg.coordinator) as c:
        jobs = (await c.get_json("/v1/jobs"))["jobs"]
    output.emit(cfg.json, jobs, output.jobs_table(jobs))
    return 0


async def _earnings(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    async with Client(cfg.coordinator) as c:
        workers = (await c.get_json("/v1/workers"))["workers"]
    output.emit(cfg.json, workers, output.earnings_table(workers))
    return 0


def _kernels(args: argparse.Namespace) -> int:
    rows = [k.describe() for k in kernels.all_kernels()]
    output.emit(args.json, rows, output.kernels_text(rows))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    home = config.home_dir(args.home, config.environment())
    path = home / "key"
    existed = path.exists()
    key = load_or_create_key(path)
    info = {"id": key.id, "public_key": key.public.hex(), "key_file": str(path), "created": not existed}
    text = "\n".join([f"{'existing' if existed else 'created'} key {path}",
                      f"id          {key.id}", f"public key  {key.public.hex()}"])
    output.emit(args.json, info, text)
    return 0


# ---- daemons -----------------------------------------------------------------------------------------------


def _coordinator(args: argparse.Namespace) -> int:
    from coordinator.server import serve

    cfg = config.CoordinatorConfig(
        data_dir=Path(args.data_dir), host=args.host, port=args.port,
        lease_timeout_ms=int(args.lease_timeout * 1000), rate_per_key=args.rate_per_key,
        rate_per_address=args.rate_per_address, checkpoint_every=args.checkpoint_every,
        checkpoint_interval_ms=int(args.checkpoint_interval * 1000),
    )
    output.setup_logging()

    def ready(url: str) -> None:
        print(f"coordinator listening on {url}", flush=True)

    return asyncio.run(serve(cfg, ready))


def _worker(args: argparse.Namespace) -> int:
    import os
    import signal

    env = config.environment()
    data_dir = Path(args.data_dir)
    if args.action == "status":
        return _worker_status(data_dir, args.json)
    file = config.read_toml(Path(args.config) if args.config else data_dir / "worker.toml", bool(args.config))
    flags = {k: getattr(args, k) for k in ("always", "idle_seconds", "max_other_load", "max_temperature_c",
                                            "run_on_battery", "windows", "threads", "duty_cycle", "on_pause",
                                            "watts", "auto_bond", "max_bond")}
    given = {k: v for k, v in flags.items() if v is not None}  # a flag not given leaves the environment's value
    if args.once:  # a first test, typed at the keyboard: the machine is in use by definition, so run anyway
        given["always"] = True
    overrides = {**config.settings_from_environment(env), **given}
    settings = config.policy_settings(file, overrides)
    page_port = config.page_port(args.page_port, args.no_page, env)
    cfg = config.WorkerConfig(
        coordinator=config.coordinator_url(args.coordinator, env), data_dir=data_dir,
        coordinator_key=args.coordinator_key, batch=args.batch, once=args.once, owner=args.owner,
        min_price=args.min_price, published_kernels=args.kernels == "all",
        audit_interval_ms=int(args.audit_interval * 1000), policy=settings,
        bond=config.bond_settings(file, overrides),
        page_port=page_port, probe_root=config.probe_root(env),
    )
    # numba reads its cache location from the environment when it is first imported: point it into the data dir.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cfg.data_dir / "numba-cache"))
    output.setup_logging()
    from worker.daemon import Worker

    key = load_or_create_key(cfg.data_dir / "worker.key")

    async def main() -> int:
        w = Worker(cfg, key)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.stop.set)
        return await w.run()

    return asyncio.run(main())


def _worker_status(data_dir: Path, as_json: bool) -> int:
    """`depin worker status`: the last state the worker of `data_dir` published, and whether it still runs."""
    import os

    from worker import status

    snap = status.read(data_dir / "status.json")
    if snap is None:
        raise UserError(f"no worker status in {data_dir} (has a worker run with this --data-dir?)")
    pid = snap.get("pid")
    alive = False
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
    state = snap["state"] if alive or snap["state"] in ("stopped", "alarm") else "not running"
    task = snap.get("task")
    lines = [f"worker   {snap['worker_id']} -> {snap['coordinator']}",
             f"state    {state}: {snap['reason']} (since {output.when(snap['since_ms'])})",
             f"task     {task['task_id']} of job {task['job_id']} ({task['kernel']}, {task['price']} credits)"
             if task else "task     none",
             f"results  {snap['computed']} computed, {snap['accepted']} accepted, {snap['rejected']} rejected",
             f"cpu      {snap['cpu_seconds'] / 3600:.2f} CPU hours in kernels"]
    if isinstance(snap.get("bond"), dict):  # a status.json from before auto-bonding has none
        lines.append(f"bond     {snap['bond']['summary']}")
    output.emit(as_json, {**snap, "alive": alive}, "\n".join(lines))
    return 0


# ---- dispatch ----------------------------------------------------------------------------------------------

_ASYNC: dict[str, Callable[[config.ClientConfig, argparse.Namespace], Any]] = {
    "submit": _submit, "status": _status, "wait": _wait, "result": _result, "cancel": _cancel,
    "jobs": _jobs, "earnings": _earnings, "grant": market_cmd.grant, "balance": market_cmd.balance,
    "receipts": market_cmd.receipts, "provenance": market_cmd.provenance, "bond": market_cmd.bond,
    "unbond": market_cmd.bond,
}


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command; return its exit code."""
    if args.command in _ASYNC:
        cfg = _client_config(args)
        return int(asyncio.run(_ASYNC[args.command](cfg, args)))
    if args.command == "ledger":
        from depin.cli import ledger_cmd

        return ledger_cmd.run(args)
    if args.command == "kernel":
        from depin.cli import kernel_cmd

        return kernel_cmd.check(args)
    if args.command == "demo":
        from depin.cli import demo

        return demo.run(args)
    simple = {"coordinator": _coordinator, "worker": _worker, "kernels": _kernels, "keygen": _keygen}
    return simple[args.command](args)

