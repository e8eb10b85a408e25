"""The run directory: where `spillway up` puts configs, sockets, data, secrets and logs."""

import os
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment
from jinja2 import FileSystemLoader
from jinja2 import StrictUndefined

from spillway.settings import MAX_BODY_BYTES

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parents[1] / "web" / "static"
SYSTEM_BINARIES = {"nginx": "nginx", "redis_server": "redis-server", "memcached": "memcached"}
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
# Settings the operator may set for `spillway up` that the processes should see as-is.
PASSED_THROUGH = ("DATABASE_URL", "SPILLWAY_RATE_LIMITS", "SPILLWAY_HEARTBEAT_SECONDS",
                  "SPILLWAY_CELERY_VISIBILITY_TIMEOUT", "SPILLWAY_PAYMENT_URL",
                  "SPILLWAY_OUTBOX_STUCK_MS", "SPILLWAY_METRICS",
                  "SPILLWAY_STOCK_SHARDS", "SPILLWAY_DB_POOL_SIZE",
                  "SPILLWAY_DB_MAX_OVERFLOW", "SPILLWAY_DB_POOL_TIMEOUT",
                  "SPILLWAY_RATE_LIMIT_PER_IP",
                  "SPILLWAY_RATE_LIMIT_PER_BUYER", "SPILLWAY_PURCHASE_TOKEN_TTL",
                  "SPILLWAY_PROXY_HOPS", "SPILLWAY_REDIS_BATCHING")


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisord_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.env"

    @property
    def metrics(self) -> Path:
        """prometheus_client's multiprocess directory, shared by gunicorn and Celery."""
        return self.root / "metrics"

    def reset_metrics(self) -> None:
        """Empty the metrics directory: a previous run's files would be summed into this
        run's /metrics (and their pids may belong to live processes by now)."""
        shutil.rmtree(self.metrics, ignore_errors=True)
        self.metrics.mkdir()

    def create(self) -> None:
        for path in (self.root, self.logs, self.root / "redis", self.root / "nginx"):
            path.mkdir(parents=True, exist_ok=True)


def find_system_binaries() -> dict[str, str]:
    """Locate nginx, redis-server and memcached.

    :raise StackError: one is missing; names the package to install.
    """
    found = {key: shutil.which(name, path=SEARCH_PATH) for key, name in SYSTEM_BINARIES.items()}
    missing = [SYSTEM_BINARIES[key] for key, path in found.items() if not path]
    if missing:
        raise StackError(
            f"not installed: {', '.join(missing)}. `make run` installs them "
            f"(or: apt-get install redis-server memcached nginx)")
    return found


def load_or_create_secrets(run_dir: RunDir) -> dict[str, str]:
    """Secret key and admin token: from the environment, else generated once and kept."""
    stored = {}
    if run_dir.secrets_file.exists():
        for line in run_dir.secrets_file.read_text().splitlines():
            name, _, value = line.partition("=")
            stored[name.strip()] = value.strip()
    values = {}
    for name in ("SPILLWAY_SECRET_KEY", "SPILLWAY_ADMIN_TOKEN"):
        values[name] = os.environ.get(name) or stored.get(name) or secrets.token_urlsafe(32)
    generated = {k: v for k, v in values.items() if not os.environ.get(k)}
    if generated != {k: stored.get(k) for k in generated}:
        run_dir.secrets_file.touch(mode=0o600)
        run_dir.secrets_file.write_text("".join(f"{k}={v}\n" for k, v in generated.items()))
    return values


def free_loopback_port(preferred: int = 0) -> int:
    """A TCP port nothing listens on now: ``preferred`` if it is free, else any."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_environment(run_dir: RunDir, log_level: str, stack_secrets: dict,
                        payment_url: str) -> dict[str, str]:
    """The environment every app process of the stack runs with."""
    root = run_dir.root
    environment = {
        "PATH": SEARCH_PATH,
        "LANG": "C.UTF-8",
        "HOME": str(root),
        "SPILLWAY_ENV": "prd",
        "SPILLWAY_RUN_DIR": str(root),
        "SPILLWAY_LOG_LEVEL": log_level,
        "SPILLWAY_REDIS_URL": f"unix://{root}/redis.sock?db=0",
        "SPILLWAY_BROKER_URL": f"redis+socket://{root}/redis.sock?virtual_host=1",
        "SPILLWAY_MEMCACHED_SERVERS": f"{root}/memcached.sock",
        "DATABASE_URL": f"sqlite:///{root}/spillway.db",
        "SPILLWAY_PAYMENT_URL": payment_url,
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir.metrics),
        **stack_secrets,
    }
    environment.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    return environment


def render_configs(run_dir: RunDir, context: dict) -> None:
    """Write nginx.conf, redis.conf and supervisord.conf into the run directory."""
    jinja = Environment(loader=FileSystemLoader(TEMPLATES_DIR), undefined=StrictUndefined,
                        keep_trailing_newline=True, autoescape=False)
    full = {
        "run_dir": run_dir.root,
        "log_dir": run_dir.logs,
        "static_dir": STATIC_DIR,
        "python": sys.executable,
        "max_body_bytes": MAX_BODY_BYTES,
        **context,
    }
    for name in ("nginx.conf", "redis.conf", "supervisord.conf"):
        target = run_dir.root / name
        target.touch(mode=0o600)
        target.write_text(jinja.get_template(name).render(full))


def supervisor_environment(environment: dict[str, str]) -> str:
    """Format an ``environment=`` value for supervisord (``%`` is its escape character)."""
    return ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in sorted(environment.items()))
