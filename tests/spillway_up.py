"""`spillway up` as a user starts it, for the end-to-end tests and the bench: in its own
session on a free port, ready once it prints its banner; the secrets it keeps in its run
directory; supervisorctl on its programs."""

import os
import signal
import subprocess
import sys
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import requests
from dotenv import dotenv_values

from spillway.deploy import replication
from spillway.deploy.layout import GENERATED_SECRETS
from spillway.deploy.layout import PASSED_THROUGH
from spillway.deploy.layout import PASSED_THROUGH_PREFIX
from spillway.deploy.layout import process_environment
from spillway.deploy.run_dir import RunDir
from spillway.deploy.up import replicated_redis
from spillway.loader import app_spec
from tests.audit import SaleAudit
from tests.servers import Server
from tests.servers import free_port
from tests.servers import http_ok
from tests.waiting import wait_until

BANNER = "Spillway is up"
READY_TIMEOUT = 150  # migrations, the demo seed and every program's start, on a busy machine
DEFAULT_ARGS = ("--web-workers", "2", "--seed-demo")


def read_secrets(run_dir: RunDir) -> dict[str, str]:
    """What the stack keeps in secrets.env (its secret key and admin token), read and never
    written: spillway.deploy.layout.load_or_create_secrets owns the file (root's, 0600; the
    suite and the bench run as root)."""
    return {
        name: value
        for name, value in dotenv_values(run_dir.secrets_file).items()
        if value is not None
    }


class SpillwayUp(Server):
    """A running `spillway up` in ``run_dir``; its output goes to ``log_dir``.

    Rate limits are off unless ``env`` turns them on (tests and the bench come from one
    address); the secret key, the admin token and the ledger are the stack's own unless
    ``env`` names them.
    """

    def __init__(self, run_dir: Path, log_dir: Path, *args: str, env: dict | None = None):
        port = free_port()
        self.run_dir = run_dir
        self.paths = RunDir(run_dir)
        self.extra_env = {"SPILLWAY_RATE_LIMITS": "off", **(env or {})}
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in (*GENERATED_SECRETS, "DATABASE_URL")
        }
        super().__init__(
            "spillway-up",
            [
                sys.executable,
                "-m",
                "spillway",
                "up",
                "--run-dir",
                str(run_dir),
                "--port",
                str(port),
                *(args or DEFAULT_ARGS),
            ],
            port,
            log_dir,
            ready=self.banner_printed,
            env={**environment, **self.extra_env},
        )
        self.base_url = self.url

    def banner_printed(self) -> bool:
        return BANNER in self.log()

    def start(self, timeout: float = READY_TIMEOUT) -> "SpillwayUp":
        super().start(timeout)
        return self

    def stop(self, timeout: float = 90.0) -> int | None:
        """SIGTERM to `spillway up` alone, as an operator or an init system sends it (it
        stops supervisord and every program); SIGKILL to its group as a last resort."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(
                f"spillway up ignored SIGTERM for {timeout:g}s: killing its process group",
                file=sys.stderr,
            )
            super().kill(signal.SIGKILL)
            return self.process.returncode

    def secrets(self) -> dict[str, str]:
        return read_secrets(self.paths)

    def admin_headers(self) -> dict:
        """The admin token `spillway up` generated for this run."""
        return {"Authorization": f"Bearer {self.secrets()['SPILLWAY_ADMIN_TOKEN']}"}

    def new_sale(
        self,
        stock: int,
        per_user_limit: int = 1,
        starts_in_s: float = 0,
        product_id: str | None = None,
    ) -> dict:
        """A sale through the admin API, ending in an hour, on ``product_id`` or the catalogue's
        first product; it starts now or ``starts_in_s`` seconds from now."""
        if product_id is None:
            products = requests.get(f"{self.base_url}/api/v1/products", timeout=10)
            product_id = products.json()["items"][0]["id"]
        now = datetime.now(timezone.utc)
        body = {
            "product_id": product_id,
            "stock": stock,
            "per_user_limit": per_user_limit,
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        }
        if starts_in_s:
            body["starts_at"] = (now + timedelta(seconds=starts_in_s)).isoformat()
        answer = requests.post(
            f"{self.base_url}/api/v1/sales", json=body, headers=self.admin_headers(), timeout=10
        )
        assert answer.status_code == 201, answer.text
        return answer.json()

    def environment(self, log_level: str = "WARNING") -> dict[str, str]:
        """The environment the stack's app processes run with (prd, its sockets, its
        secrets), for a process of one's own beside them: a baseline server, the reconciler."""
        passed = {
            name: value
            for name, value in self.extra_env.items()
            if name.startswith(PASSED_THROUGH_PREFIX) or name in PASSED_THROUGH
        }
        redis = replicated_redis(replication.load(self.paths))  # --redis sentinel's
        environment = process_environment(self.paths, log_level, self.secrets(), app_spec(), redis)
        return {**environment, **passed}

    def sale_audit(self) -> SaleAudit:
        """The invariants' audit of this stack's sales (its SQLite ledger, read-only)."""
        environment = self.environment()
        return SaleAudit(
            self.base_url,
            self.admin_headers(),
            f"sqlite:///file:{self.paths.database}?mode=ro&uri=true",
            environment["SPILLWAY_REDIS_URL"],
            environment,
        )

    def signup(self, count: int, prefix: str = "buyer") -> list[dict]:
        """``count`` new buyers: ``{"user_id", "token"}`` each."""
        with requests.Session() as session:
            return [
                session.post(
                    f"{self.base_url}/api/v1/users", json={"name": f"{prefix}{n}"}, timeout=10
                ).json()
                for n in range(count)
            ]

    def supervisorctl(self, *args: str) -> str:
        """supervisorctl on the stack's supervisord; its output."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor.supervisorctl",
                "-c",
                str(self.paths.supervisord_conf),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return result.stdout

    def program_pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program).strip())

    def program_pids(self) -> dict[str, int]:
        """Every running program's pid, from one supervisorctl status."""
        found = {}
        for line in self.supervisorctl("status").splitlines():
            name, state, *rest = line.split()
            if state == "RUNNING" and rest[:1] == ["pid"]:
                found[name] = int(rest[1].rstrip(","))
        return found

    def wait_for_app(self, timeout: float = 30) -> None:
        """Wait until the app answers through nginx (after a restart of gunicorn); a
        booting worker may keep the first requests waiting a while on a loaded machine."""
        wait_until(
            http_ok(f"{self.base_url}/healthz"),
            timeout,
            0.3,
            what="the app answering through nginx again",
        )


# What the suite sets that would point a command at the suite's own servers.
SUITES_OWN = ("SPILLWAY_", "DATABASE_URL")


def operator(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess:
    """A `spillway` command in a shell with no Spillway setting but ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SUITES_OWN)}
    return subprocess.run(
        [sys.executable, "-m", "spillway", *args],
        cwd=cwd,
        env={**env, **settings},
        capture_output=True,
        text=True,
        timeout=120,
    )


def beside(stack: SpillwayUp, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """An operator's command beside ``stack``, in ``cwd`` (where no ./run names another)."""
    return operator(*args, cwd=cwd, SPILLWAY_RUN_DIR=str(stack.run_dir))
