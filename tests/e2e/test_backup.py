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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import requests

from spillway.deploy.run_dir import RunDir
from tests.e2e.conftest import running_stack
from tests.waiting import wait_until

# What the suite sets that would point a command at the suite's own servers.
SUITES_OWN = ("SPILLWAY_", "DATABASE_URL")


def spillway(*args: str, run_dir: Path) -> subprocess.CompletedProcess:
    """A `spillway` command as the operator types it, for the stack in ``run_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SUITES_OWN)}
    return subprocess.run(
        [sys.executable, "-m", "spillway", *args],
        cwd="/",
        env={**env, "SPILLWAY_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    """A non-zero exit and one line (click's ``Error: …``) naming ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def make_sale(stack, stock: int) -> dict:
    product = requests.get(f"{stack.base_url}/api/v1/products", timeout=5).json()["items"][0]
    answer = requests.post(
        f"{stack.base_url}/api/v1/sales",
        headers=stack.admin_headers(),
        timeout=10,
        json={
            "product_id": product["id"],
            "stock": stock,
            "per_user_limit": 1,
            "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


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

    def attempt(buyer):
        answer = requests.post(
            f"{stack.base_url}/api/v1/sales/{sale['id']}/orders",
            json={"quantity": 1},
            headers={"Authorization": f"Bearer {buyer['token']}", "Idempotency-Key": "k"},
            timeout=30,
        )
        assert answer.status_code in (202, 409), answer.text
        return answer.json().get("order_id") if answer.status_code == 202 else None, (
            time.monotonic()
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [(order, at) for order, at in pool.map(attempt, buyers) if order]


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


def test_a_backup_of_a_serving_stack_restores_every_order_and_reconciles(tmp_path):
    """Sale A persisted; sale B bought during a backup with the worker running (it pauses
    and comes back); sale C bought with the worker stopped, so its orders wait in the
    outbox when the second backup is taken. Restored into a fresh run directory and
    started: every order promised before the backup is in the ledger, the outbox drains,
    `spillway reconcile` balances every sale. A restore over the running stack is refused."""
    source_dir = Path(tempfile.mkdtemp(prefix="spillway-e2e-backup-"))
    restored_dir = Path(tempfile.mkdtemp(prefix="spillway-e2e-restored-"))
    live_backup, outbox_backup = tmp_path / "live", tmp_path / "outbox"
    figures = {}
    try:
        with running_stack({}, run_dir=source_dir) as stack:
            sale_a, sale_b, sale_c = (make_sale(stack, 40) for _ in range(3))
            promised = buy(stack, sale_a, make_buyers(stack, 30, "a"))
            wait_until(lambda: persisted(stack, sale_a) == 30, timeout=60)

            # Purchases keep arriving while the backup pauses the drain.
            buyers_b = make_buyers(stack, 30, "b")
            during: list = []
            buying = threading.Thread(target=lambda: during.extend(buy(stack, sale_b, buyers_b)))
            started = time.monotonic()
            buying.start()
            backup = spillway("backup", str(live_backup), run_dir=source_dir)
            buying.join(timeout=120)
            assert backup.returncode == 0, backup.stdout + backup.stderr
            assert program_state(stack, "celery-worker") == "RUNNING"
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
            figures["orders backed up"] = len(promised)
            figures["in the outbox at the backup"] = 25

            before = snapshot_of(source_dir)
            over = spillway("restore", str(outbox_backup), "--run-dir", str(source_dir),
                            run_dir=source_dir)  # fmt: skip
            assert_refused(over, "running")
            assert snapshot_of(source_dir) == before
            assert requests.get(f"{stack.base_url}/readyz", timeout=10).status_code == 200

        manifest = json.loads((outbox_backup / "manifest.json").read_text())
        assert manifest["version"] == 1 and manifest["ledger"] == "sqlite"
        assert {"spillway.db", "redis.rdb", "secrets.env"} <= set(manifest["files"])

        restore = spillway("restore", str(outbox_backup), run_dir=restored_dir)
        assert restore.returncode == 0, restore.stdout + restore.stderr
        ids = {order for order, _ in promised}
        with running_stack({}, run_dir=restored_dir) as restored:
            wait_until(lambda: ledger_orders(restored_dir) >= ids, timeout=90)
            figures["orders after restore"] = len(ledger_orders(restored_dir))
            reconcile = spillway("reconcile", run_dir=restored_dir)
            figures["reconcile"] = reconcile.stdout.strip().splitlines()
            assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
            lines = reconcile.stdout.strip().splitlines()
            assert len(lines) == 3 and all(": ok " in line for line in lines), lines
            assert all("outbox=0" in line for line in lines), lines
            assert ledger_orders(restored_dir) == ids  # nobody else's, none twice
            # The secrets came back: the old admin token still works.
            assert restored.secrets() == stack.secrets()
        print("backup figures:", json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(source_dir, ignore_errors=True)
        shutil.rmtree(restored_dir, ignore_errors=True)


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
