"""The issue's own scenario (#19): a SQLite ledger with sales sold, then a new, empty
PostgreSQL database in the same run directory. `spillway up` refuses in one line; the
operator clears redis for the new ledger; then a burst keeps every invariant — no ghost
orders from the old ledger's redis state."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import requests

from tests.e2e.conftest import running_stack
from tests.e2e.conftest import sale_burst
from tests.postgres import start_postgres
from tests.servers import free_port
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    cluster = start_postgres(tmp_path_factory.mktemp("postgres-logs"))
    yield cluster
    cluster.stop()


def spillway(run_dir: Path, env: dict, *args: str, timeout: float = 180):
    """A `spillway` command in the checkout of ``run_dir``, as the operator types it."""
    return subprocess.run(
        [sys.executable, "-m", "spillway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env={**os.environ, "SPILLWAY_RUN_DIR": str(run_dir), **env},
    )


def test_a_new_postgresql_ledger_beside_an_old_redis(pg):
    """Refused at start (exit 2, one line, no traceback), cleared by `spillway ledger clear
    --yes`, then 600 new buyers on 137 units: exactly 137 orders, every one in the new
    ledger, no replay of an old order."""
    run_dir = Path(tempfile.mkdtemp(prefix="spillway-e2e-switch-"))
    with running_stack({}, run_dir=run_dir) as stack:
        sale, _, answers = sale_burst(
            stack, stock=20, buyers=30, workers=10, prefix="old", idempotency_key="k"
        )
        assert sum(a.status_code == 202 for a in answers) == 20
        stats = f"{stack.base_url}/api/v1/sales/{sale['id']}/stats"
        wait_until(
            lambda: (
                requests.get(stats, headers=stack.admin_headers(), timeout=5).json()[
                    "orders_persisted"
                ]
                == 20
            )
        )

    database = pg.create_database()
    new_ledger = {"DATABASE_URL": pg.url(database)}
    refused = spillway(
        run_dir,
        {**new_ledger, "SPILLWAY_RATE_LIMITS": "off"},
        "up",
        "--run-dir",
        str(run_dir),
        "--port",
        str(free_port()),
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("spillway up:")]
    assert len(errors) == 1 and "ledger" in errors[0], refused.stderr

    status = spillway(run_dir, new_ledger, "ledger", "status")
    assert status.returncode == 0 and "problem:" in status.stdout, status.stderr
    cleared = spillway(run_dir, new_ledger, "ledger", "clear", "--yes")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr

    with running_stack(new_ledger, run_dir=run_dir) as stack:
        sale, buyers, answers = sale_burst(
            stack, stock=137, buyers=600, workers=40, prefix="new", idempotency_key="k"
        )
        statuses = [a.status_code for a in answers]
        assert statuses.count(202) == 137 and statuses.count(409) == 463, set(statuses)
        promised = {a.json()["order_id"] for a in answers if a.status_code == 202}
        dsn = pg.url(database, driver="postgresql")

        def ledger() -> set[str]:
            with psycopg.connect(dsn) as conn:
                return {
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM orders WHERE sale_id = %s", (int(sale["id"]),)
                    )
                }

        wait_until(lambda: ledger() == promised, timeout=60)
        reconcile = spillway(run_dir, new_ledger, "reconcile", sale["id"])
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
