"""`spillway backup` and `spillway restore` (DEPLOYMENT.md, "Backups"): a backup taken
while the stack serves, restored into a fresh run directory and started again, holds every
order promised before it, drains the outbox it caught, and reconciles. What is not a
backup, and a restore over a running stack, are refused in one line, with nothing changed.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from spillway.deploy.run_dir import RunDir
from tests.e2e.conftest import running_stack
from tests.postgres import start_postgres
from tests.servers import free_port
from tests.waiting import wait_until

# What the suite sets that would point a command at the suite's own servers.
SUITES_OWN = ("SPILLWAY_", "DATABASE_URL")


def spillway(*args: str, run_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """A `spillway` command as the operator types it, for the stack in ``run_dir``, with no
    Spillway setting but ``env``'s."""
    settings = {k: v for k, v in (env or {}).items() if k.startswith(SUITES_OWN)}
    shell = {k: v for k, v in os.environ.items() if not k.startswith(SUITES_OWN)}
    return subprocess.run(
        [sys.executable, "-m", "spillway", *args],
        cwd="/",
        env={**shell, **settings, "SPILLWAY_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def own_ports(env: dict | None = None) -> dict:
    """``env`` with free ports of its own for /metrics and Flower: their defaults (9181,
    5555 when free) race with any other stack starting on the machine at that moment."""
    return {
        "SPILLWAY_METRICS_PORT": str(free_port()),
        "SPILLWAY_FLOWER_PORT": str(free_port()),
        **(env or {}),
    }


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    """A non-zero exit and one line (click's ``Error: …``) naming ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def make_buyers(stack, count: int, prefix: str) -> list[dict]:
    return [
        requests.post(
            f"{stack.base_url}/api/v1/users", json={"name": f"{prefix}{i}"}, timeout=10
        ).json()
        for i in range(count)
    ]


def buy(stack, sale: dict, buyers: list[dict], workers: int = 8) -> list[tuple[str, float]]:
    """Each buyer buys one unit; the order ids promised (202), each with when its answer
    came (time.monotonic())."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = pool.map(lambda buyer: purchase(stack, sale, buyer, "k"), buyers)
        return [(order, at) for order, at in answers if order]


def purchase(stack, sale: dict, buyer: dict, key: str) -> tuple[str | None, float]:
    """One unit: the order id if promised (202), and when the answer came."""
    answer = requests.post(
        f"{stack.base_url}/api/v1/sales/{sale['id']}/orders",
        json={"quantity": 1},
        headers={"Authorization": f"Bearer {buyer['token']}", "Idempotency-Key": key},
        timeout=30,
    )
    assert answer.status_code in (202, 409), answer.text
    order = answer.json().get("order_id") if answer.status_code == 202 else None
    return order, time.monotonic()


def buy_until(stack, sale: dict, buyers: list[dict], stop: threading.Event) -> list:
    """One unit after another (a new key each, the buyers in turn) until ``stop`` is set."""
    found = []
    while not stop.is_set():
        buyer = buyers[len(found) % len(buyers)]
        order, at = purchase(stack, sale, buyer, f"k{len(found)}")
        assert order, "the sale sold out: give it more stock"
        found.append((order, at))
    return found


def persisted(stack, sale: dict) -> int:
    stats = requests.get(
        f"{stack.base_url}/api/v1/sales/{sale['id']}/stats",
        headers=stack.admin_headers(),
        timeout=5,
    )
    return stats.json()["orders_persisted"]


def ledger_orders(run_dir: Path) -> set[str]:
    with sqlite3.connect(RunDir(run_dir).database) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM orders")}


def program_state(stack, program: str) -> str:
    return stack.supervisorctl("status", program).split()[1]


def snapshot_of(run_dir: Path) -> dict[str, tuple]:
    """Every file under ``run_dir`` but the live ones (logs, sockets, the database's and
    redis's, which a running stack writes): name -> (size, mtime)."""
    live = ("logs", "sockets", "metrics", "data", "redis", "nginx")
    return {
        str(path.relative_to(run_dir)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in run_dir.rglob("*")
        if path.is_file() and path.relative_to(run_dir).parts[0] not in live
    }


def restore_and_reconcile(
    backup: Path,
    must_hold: set[str],
    orders_of: Callable[[Path], set[str]] = ledger_orders,
    env: dict | None = None,
):
    """``backup`` restored into a fresh run directory (and ``env``'s ledger) and started;
    once the ledger holds ``must_hold`` and the outbox the backup caught has drained: (the
    ledger's order ids, `spillway reconcile`'s lines, the restored stack's secrets)."""
    run_dir = Path(tempfile.mkdtemp(prefix="spillway-e2e-restored-"))
    try:
        restore = spillway("restore", str(backup), run_dir=run_dir, env=env)
        assert restore.returncode == 0, restore.stdout + restore.stderr
        with running_stack(own_ports(env), run_dir=run_dir) as restored:

            def orders() -> set[str]:
                return orders_of(run_dir)

            wait_until(lambda: orders() >= must_hold, timeout=90)

            def drained() -> list[str]:
                reconcile = spillway("reconcile", run_dir=run_dir, env=env)
                assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
                lines = reconcile.stdout.strip().splitlines()
                return lines if all("outbox=0" in line for line in lines) else []

            lines = wait_until(drained, timeout=60, what="the restored outbox drained")
            return orders(), lines, restored.secrets()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_backup_of_a_serving_stack_restores_every_order_and_reconciles(tmp_path):
    """Sale A persisted; sale B bought all through a backup taken with the worker running
    (it pauses for the copies and comes back); sale C bought with the worker stopped, so
    its orders wait in the outbox when a second backup is taken. Each backup, restored into
    a fresh run directory and started, holds every order promised before it was taken (and
    none nobody was promised), drains the outbox it caught, and `spillway reconcile`
    balances every sale. A restore over the running stack is refused, nothing changed."""
    source_dir = Path(tempfile.mkdtemp(prefix="spillway-e2e-backup-"))
    live_backup, outbox_backup = tmp_path / "live", tmp_path / "outbox"
    figures = {}
    try:
        with running_stack(own_ports(), run_dir=source_dir) as stack:
            sale_a, sale_c = stack.new_sale(40), stack.new_sale(40)
            sale_b = stack.new_sale(10_000, per_user_limit=100)
            promised = buy(stack, sale_a, make_buyers(stack, 30, "a"))
            wait_until(lambda: persisted(stack, sale_a) == 30, timeout=60)

            # Purchases keep arriving, one after another, while the backup pauses the drain.
            buyers_b, stop, during = make_buyers(stack, 100, "b"), threading.Event(), []
            buying = threading.Thread(
                target=lambda: during.extend(buy_until(stack, sale_b, buyers_b, stop))
            )
            buying.start()
            time.sleep(0.5)
            started = time.monotonic()
            backup = spillway("backup", str(live_backup), run_dir=source_dir)
            finished = time.monotonic()
            stop.set()
            buying.join(timeout=120)
            assert during and not buying.is_alive()  # every purchase answered 202 throughout
            assert backup.returncode == 0, backup.stdout + backup.stderr
            assert program_state(stack, "celery-worker") == "RUNNING"
            before_live = {order for order, at in promised + during if at < started}
            figures["live backup: orders promised before it"] = len(before_live)
            figures["live backup: seconds"] = round(finished - started, 1)
            figures["live backup: orders promised while it ran"] = sum(
                started <= at < finished for _, at in during
            )
            promised += during
            wait_until(lambda: persisted(stack, sale_b) == len(during), timeout=60)

            stack.supervisorctl("stop", "celery-worker")
            promised += buy(stack, sale_c, make_buyers(stack, 25, "c"))
            assert persisted(stack, sale_c) == 0  # every one of them in the outbox
            started = time.monotonic()
            backup = spillway("backup", str(outbox_backup), run_dir=source_dir)
            assert backup.returncode == 0, backup.stdout + backup.stderr
            assert program_state(stack, "celery-worker") == "STOPPED"  # left as it was
            assert all(at < started for _, at in promised)
            figures["outbox backup: orders promised before it"] = len(promised)
            figures["outbox backup: of them in the outbox"] = 25

            before = snapshot_of(source_dir)
            over = spillway(
                "restore", str(outbox_backup), "--run-dir", str(source_dir), run_dir=source_dir
            )
            assert_refused(over, "running")
            assert snapshot_of(source_dir) == before
            assert requests.get(f"{stack.base_url}/readyz", timeout=10).status_code == 200
            source_secrets = stack.secrets()

        manifest = json.loads((outbox_backup / "manifest.json").read_text())
        assert manifest["version"] == 1 and manifest["ledger"] == "sqlite"
        assert {"spillway.db", "redis.rdb", "secrets.env"} <= set(manifest["files"])

        ids = {order for order, _ in promised}
        orders, lines, restored_secrets = restore_and_reconcile(outbox_backup, ids)
        figures["outbox backup: orders after restore"] = len(orders)
        figures["outbox backup: reconcile"] = lines
        assert orders == ids  # every promised order once, nobody else's
        assert len(lines) == 3 and all(": ok " in line for line in lines), lines
        assert restored_secrets == source_secrets  # the admin token still works

        orders, lines, _ = restore_and_reconcile(live_backup, before_live)
        figures["live backup: orders after restore"] = len(orders)
        figures["live backup: reconcile"] = lines
        figures["live backup: orders promised since, not in it"] = len(ids - orders)
        assert before_live <= orders <= ids
        assert len(lines) == 3 and all(": ok " in line for line in lines), lines
        print("backup figures:", json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(source_dir, ignore_errors=True)


def test_what_is_not_a_backup_is_refused_and_nothing_changes(tmp_path):
    """No manifest, another format, another version, a damaged file: one line, exit 1,
    and the run directory is not even made. A backup of no running stack: one line."""
    run_dir = tmp_path / "fresh"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_refused(spillway("restore", str(empty), run_dir=run_dir), "manifest.json")

    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"format": "something-else"}')
    assert_refused(spillway("restore", str(other), run_dir=run_dir), "not a Spillway backup")

    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "manifest.json").write_text('{"format": "spillway-backup", "version": 99}')
    assert_refused(spillway("restore", str(newer), run_dir=run_dir), "version 99")

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "spillway.db").write_bytes(b"not what was backed up")
    (damaged / "redis.rdb").write_bytes(b"")
    files = {
        name: {"bytes": 1, "sha256": "0" * 64} for name in ("spillway.db", "redis.rdb")
    }  # fmt: skip
    (damaged / "manifest.json").write_text(
        json.dumps(
            {
                "format": "spillway-backup",
                "version": 1,
                "created_at": "2026-01-01T00:00:00+00:00",
                "source": "/elsewhere",
                "ledger": "sqlite",
                "files": files,
            }
        )
    )
    assert_refused(spillway("restore", str(damaged), run_dir=run_dir), "checksum")
    assert not run_dir.exists()

    assert_refused(spillway("backup", str(tmp_path / "b"), run_dir=run_dir), "no stack")
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    cluster = start_postgres(tmp_path_factory.mktemp("postgres-logs"))
    yield cluster
    cluster.stop()


def test_a_postgresql_ledger_comes_back_through_pg_dump_and_pg_restore(pg, tmp_path):
    """A stack on PostgreSQL, backed up (pg_dump, custom format) with orders persisted and
    orders in the outbox; restored (pg_restore) into an empty database and a fresh run
    directory: every order, reconciled. Into a database that holds tables: refused."""
    source = pg.create_database()
    source_dir = Path(tempfile.mkdtemp(prefix="spillway-e2e-pgbackup-"))
    backup_dir = tmp_path / "pg"
    try:
        with running_stack(
            own_ports({"DATABASE_URL": pg.url(source)}), run_dir=source_dir
        ) as stack:
            persisted_sale, waiting_sale = stack.new_sale(30), stack.new_sale(30)
            promised = buy(stack, persisted_sale, make_buyers(stack, 20, "p"))
            wait_until(lambda: persisted(stack, persisted_sale) == 20, timeout=60)
            stack.supervisorctl("stop", "celery-worker")
            promised += buy(stack, waiting_sale, make_buyers(stack, 10, "w"))
            backup = spillway("backup", str(backup_dir), run_dir=source_dir)
            assert backup.returncode == 0, backup.stdout + backup.stderr
    finally:
        shutil.rmtree(source_dir, ignore_errors=True)
    assert json.loads((backup_dir / "manifest.json").read_text())["ledger"] == "postgresql"

    # Not made by mkdtemp: a run directory the service user can reach once it is made.
    fresh = Path(tempfile.gettempdir()) / f"spillway-e2e-unmade-{os.getpid()}"
    into_used = spillway(
        "restore", str(backup_dir), run_dir=fresh, env={"DATABASE_URL": pg.url(source)}
    )
    assert_refused(into_used, "table")
    assert not fresh.exists()

    target = pg.create_database()

    def orders_of(_run_dir: Path) -> set[str]:
        with psycopg.connect(pg.url(target, driver="postgresql")) as connection:
            return {row[0] for row in connection.execute("SELECT id FROM orders")}

    ids = {order for order, _ in promised}
    orders, lines, _ = restore_and_reconcile(
        backup_dir, ids, orders_of, env={"DATABASE_URL": pg.url(target)}
    )
    print("postgresql backup:", len(ids), "orders backed up,", len(orders), "after", lines)
    assert orders == ids
    assert len(lines) == 2 and all(": ok " in line for line in lines), lines
