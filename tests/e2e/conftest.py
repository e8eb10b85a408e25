"""The whole stack, started by `spillway up` on a free port, as a user would start it."""

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from spillway.deploy.run_dir import RunDir
from tests.spillway_up import DEFAULT_ARGS
from tests.spillway_up import SpillwayUp


@pytest.fixture(scope="module")
def stack_env() -> dict:
    """Extra environment of the module's stack; a module overrides this fixture to change
    it. Tests drive the stack from one address, so rate limits are off by default."""
    return {"SPILLWAY_RATE_LIMITS": "off"}


@pytest.fixture(scope="module")
def stack(stack_env):
    """`spillway up` in a fresh run directory; stopped (if a test has not) afterwards."""
    with running_stack(stack_env) as running:
        yield running


@contextmanager
def running_stack(
    extra_env: dict | None = None, run_dir: Path | None = None, args: tuple[str, ...] = ()
):
    """`spillway up --web-workers 2 --seed-demo` and ``args`` (its own SQLite file, unless
    ``extra_env`` names a DATABASE_URL), with rate limits off unless ``extra_env`` turns them
    on: tests come from one address. Yields it once it has printed its banner, as a user
    would wait.

    In a fresh run directory, removed afterwards; or in ``run_dir``, left in place (a test
    that starts the stack twice in one directory). `spillway up` sets its owners and modes.
    """
    owned = run_dir is None
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="spillway-e2e-"))
    # Its output outside the run directory, one file a start: the banner a test reads is
    # this start's.
    output = Path(tempfile.mkdtemp(prefix=f"{run_dir.name}-"))
    running = SpillwayUp(
        run_dir,
        output,
        *(DEFAULT_ARGS + args if args else ()),
        env={"SPILLWAY_HEARTBEAT_SECONDS": "1", **(extra_env or {})},
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()
        artifacts = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))
        shutil.copytree(RunDir(run_dir).logs, artifacts / run_dir.name, dirs_exist_ok=True)
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)


def sale_burst(
    stack: SpillwayUp, stock: int, buyers: int, workers: int, prefix: str, idempotency_key: str
) -> tuple[dict, list[dict], list[requests.Response]]:
    """A one-per-buyer sale of ``stock`` units on the first product, and ``buyers`` new
    buyers racing for it from ``workers`` threads: (sale, buyers, their answers)."""
    base = stack.base_url
    sale = stack.new_sale(stock)
    people = [
        requests.post(f"{base}/api/v1/users", json={"name": f"{prefix}{i}"}, timeout=10).json()
        for i in range(buyers)
    ]

    def attempt(buyer):
        return requests.post(
            f"{base}/api/v1/sales/{sale['id']}/orders",
            json={"quantity": 1},
            headers={
                "Authorization": f"Bearer {buyer['token']}",
                "Idempotency-Key": idempotency_key,
            },
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sale, people, list(pool.map(attempt, people))
