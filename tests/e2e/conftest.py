"""The whole stack, started by `spillway up` on a free port, as a user would start it."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import pytest
import requests

from spillway.deploy.run_dir import RunDir
from tests.servers import free_port

READY_TIMEOUT = 120


@dataclass
class Stack:
    """A running `spillway up`: its process, run directory and public URL."""

    process: subprocess.Popen
    run_dir: Path
    base_url: str
    log_path: Path

    @property
    def paths(self) -> RunDir:
        """Every path inside the run directory (sockets, configs, logs, data)."""
        return RunDir(self.run_dir)

    def supervisorctl(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c",
             str(self.paths.supervisord_conf), *args],
            capture_output=True, text=True, timeout=60)
        return result.stdout

    def program_pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program).strip())

    def wait_for_app(self, timeout: float = 30) -> None:
        """Wait until the app answers through nginx (after a restart of gunicorn); a
        booting worker may keep the first requests waiting a while on a loaded machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise AssertionError("the app did not come back")

    def admin_headers(self) -> dict:
        """The admin token `spillway up` generated for this run."""
        secrets = dict(line.split("=", 1) for line in
                       self.paths.secrets_file.read_text().split())
        return {"Authorization": f"Bearer {secrets['SPILLWAY_ADMIN_TOKEN']}"}

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM to `spillway up`, as an operator or an init system would send it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def wait_ready(stack: Stack) -> None:
    """Wait for the banner `spillway up` prints once ready (and seeded), as a user would."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and stack.process.poll() is None:
        if "Spillway is up" in stack.log_path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"stack not ready:\n{stack.log_path.read_text()[-4000:]}")


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
def running_stack(extra_env: dict | None = None, run_dir: Path | None = None):
    """`spillway up` (its own SQLite file, unless ``extra_env`` names a DATABASE_URL), with
    rate limits off unless ``extra_env`` turns them on: tests come from one address.

    In a fresh run directory, removed afterwards; or in ``run_dir``, left in place (a test
    that starts the stack twice in one directory). `spillway up` sets its owners and modes.
    """
    owned = run_dir is None
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="spillway-e2e-"))
    port = free_port()
    log_fd, log_name = tempfile.mkstemp(prefix=f"{run_dir.name}-", suffix=".log")
    os.close(log_fd)
    log_path = Path(log_name)
    env = {**os.environ, "SPILLWAY_HEARTBEAT_SECONDS": "1", "SPILLWAY_RATE_LIMITS": "off"}
    for name in ("SPILLWAY_ADMIN_TOKEN", "SPILLWAY_SECRET_KEY", "DATABASE_URL"):
        env.pop(name, None)
    env.update(extra_env or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "spillway", "up", "--run-dir", str(run_dir),
             "--port", str(port), "--web-workers", "2", "--seed-demo"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    running = Stack(process, run_dir, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_ready(running)
        yield running
    finally:
        try:
            running.stop()
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        artifacts = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))
        shutil.copytree(RunDir(run_dir).logs, artifacts / run_dir.name, dirs_exist_ok=True)
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)


def sale_burst(stack: Stack, stock: int, buyers: int, workers: int, prefix: str,
               idempotency_key: str) -> tuple[dict, list[dict], list[requests.Response]]:
    """A one-per-buyer sale of ``stock`` units on the first product, and ``buyers`` new
    buyers racing for it from ``workers`` threads: (sale, buyers, their answers)."""
    base, admin = stack.base_url, stack.admin_headers()
    product = requests.get(f"{base}/api/v1/products", timeout=5).json()["items"][0]
    sale = requests.post(f"{base}/api/v1/sales", headers=admin, timeout=10, json={
        "product_id": product["id"], "stock": stock, "per_user_limit": 1,
        "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()}).json()
    people = [requests.post(f"{base}/api/v1/users", json={"name": f"{prefix}{i}"}, timeout=10)
              .json() for i in range(buyers)]

    def attempt(buyer):
        return requests.post(f"{base}/api/v1/sales/{sale['id']}/orders", json={"quantity": 1},
                             headers={"Authorization": f"Bearer {buyer['token']}",
                                      "Idempotency-Key": idempotency_key}, timeout=30)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sale, people, list(pool.map(attempt, people))
