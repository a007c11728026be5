"""Shared fixtures of the integration suite: real coordinator and worker processes on 127.0.0.1.

Every daemon is started exactly as a user starts it (`python -m depin.cli.main coordinator|worker ...`), in its
own data dir under the test's tmp dir and in its own process session, so teardown can SIGKILL it and anything it
spawned. stdout/stderr go to log files, whose tails are printed when a test fails. All workers of the session
share one numba cache, compiled once up front, so a worker starts in about a second instead of recompiling.

Waits poll the JSON API (or a file) until a condition holds, with a generous bound; the bound only turns a hang
into a clear failure. No assertion is about how long something took.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.integration.support import SLOW_JOB, Cluster, compile_numba_cache
from tests.reference import cref as cref_module


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: spawns real coordinator/worker processes on 127.0.0.1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Remember each phase's report so fixtures can tell, at teardown, whether the test failed.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


# ---- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def numba_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One numba cache for every worker of the session, compiled once here."""
    return compile_numba_cache(tmp_path_factory.mktemp("numba-cache"))


def _cluster(root: Path, numba_cache: Path, node: Any) -> Iterator[Cluster]:
    cluster = Cluster(root, numba_cache)
    try:
        yield cluster
    finally:
        cluster.close()
        failed = any(getattr(getattr(node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))
        if failed and cluster.procs:
            print(f"\nprocess logs ({root}):\n{cluster.logs()}")


@pytest.fixture
def cluster(tmp_path: Path, numba_cache: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Processes for one test; all SIGKILLed at teardown."""
    yield from _cluster(tmp_path, numba_cache, request.node)


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory, numba_cache: Path,
                   request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Processes shared by one module's tests; all SIGKILLed when the module is done."""
    yield from _cluster(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), numba_cache,
                        request.node)


@pytest.fixture(scope="session")
def cref() -> ModuleType:
    """tests/reference/cref.py: the independent C and Python references."""
    return cref_module


@pytest.fixture(scope="session")
def reference(cref: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """The C reference image of a mandelbrot job's parameters (built once, each image computed once).

    SLOW_JOB's image takes seconds of CPU, so it starts computing in the background as soon as the C program is
    built, overlapping with whatever the suite does meanwhile.
    """
    binary = cref.build(tmp_path_factory.mktemp("cref"))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="cref")
    cache: dict[tuple[Any, ...], concurrent.futures.Future[Any]] = {}

    def start(params: dict[str, Any]) -> concurrent.futures.Future[Any]:
        key = tuple(sorted(params.items()))
        if key not in cache:
            cache[key] = pool.submit(cref.run, binary, **params)
        return cache[key]

    start(SLOW_JOB)
    yield lambda params: start(params).result(timeout=600)
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="session", autouse=True)
def _prefetch_reference(request: pytest.FixtureRequest) -> None:
    # Start SLOW_JOB's C reference at the beginning of the session if any selected test will want it.
    if any("reference" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("reference")


@pytest.fixture
def submitter(tmp_path: Path) -> Any:
    """A submitter's signing key: the one in the `cluster` fixture's DEPIN_HOME, so `depin result` and `depin cancel`
    run by the test act as this submitter (only a job's submitter may fetch its result or cancel it)."""
    from depin.crypto import load_or_create_key

    return load_or_create_key(tmp_path / "home" / "key")
