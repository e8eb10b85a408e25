"""The run directory: where `spillway up` puts configs, sockets, data, secrets and logs."""

import os
import re
import secrets
import shutil
import socket
import sys
from pathlib import Path

from jinja2 import Environment
from jinja2 import FileSystemLoader
from jinja2 import StrictUndefined

from spillway.deploy.files import read_regular
from spillway.deploy.files import write_atomically
from spillway.deploy.run_dir import RunDir
from spillway.settings import MAX_BODY_BYTES

TEMPLATES_DIR = Path(__file__).parent / "templates"
SYSTEM_BINARIES = {"nginx": "nginx", "redis_server": "redis-server", "memcached": "memcached"}
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
# What the operator sets for `spillway up` that the processes see as-is: every SPILLWAY_
# setting (the runtime's and the app's), the ledger's URL, and PYTHONPATH (an app of the
# operator's, importable by every process: never the cwd, they run with `python -P` in /).
PASSED_THROUGH_PREFIX = "SPILLWAY_"
PASSED_THROUGH = ("DATABASE_URL", "PYTHONPATH")
GENERATED_SECRETS = ("SPILLWAY_SECRET_KEY", "SPILLWAY_ADMIN_TOKEN")
# What secrets.token_urlsafe makes; anything else in secrets.env was not written by us
# (an older layout let the service user edit it) and is generated again.
GENERATED_SECRET = re.compile(r"[A-Za-z0-9_-]{32,128}")
# `spillway up --tls`: off, a self-signed certificate kept in the run directory, or the
# operator's certificate and key files, named by these settings.
TLS_MODES = ("off", "self-signed", "files")
TLS_CERT_SETTING = "SPILLWAY_TLS_CERT"
TLS_KEY_SETTING = "SPILLWAY_TLS_KEY"


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do."""


def find_system_binaries() -> dict[str, str]:
    """Locate nginx, redis-server and memcached.

    :raise StackError: one is missing; names the package to install.
    """
    found = {key: shutil.which(name, path=SEARCH_PATH) for key, name in SYSTEM_BINARIES.items()}
    missing = [SYSTEM_BINARIES[key] for key, path in found.items() if not path]
    if missing:
        raise StackError(
            f"not installed: {', '.join(missing)}. `make run` installs them "
            f"(or: apt-get install redis-server memcached nginx)"
        )
    return found


def default_tls_mode() -> str:
    """SPILLWAY_TLS, else `files` when a certificate or a key is named, else off."""
    if chosen := os.environ.get("SPILLWAY_TLS"):
        return chosen
    named = os.environ.get(TLS_CERT_SETTING) or os.environ.get(TLS_KEY_SETTING)
    return "files" if named else "off"


def tls_file_settings() -> dict[str, str]:
    """The operator's certificate and key paths, by setting ("" where unset)."""
    return {name: os.environ.get(name, "") for name in (TLS_CERT_SETTING, TLS_KEY_SETTING)}


def load_or_create_secrets(run_dir: RunDir) -> dict[str, str]:
    """Secret key and admin token: from the environment, else generated once and kept
    (root's, 0600, read without following a link)."""
    stored = {}
    for line in (read_regular(run_dir.secrets_file) or "").splitlines():
        name, _, value = line.partition("=")
        if name.strip() in GENERATED_SECRETS and GENERATED_SECRET.fullmatch(value.strip()):
            stored[name.strip()] = value.strip()
    values = {}
    for name in GENERATED_SECRETS:
        values[name] = os.environ.get(name) or stored.get(name) or secrets.token_urlsafe(32)
    generated = {k: v for k, v in values.items() if not os.environ.get(k)}
    if generated != {k: stored.get(k) for k in generated}:
        write_atomically(
            run_dir.secrets_file, "".join(f"{k}={v}\n" for k, v in generated.items()), 0o600
        )
    return values


def free_loopback_port(preferred: int = 0) -> int:
    """A TCP port nothing listens on now: ``preferred`` if it is free, else any. Bound as
    the servers bind theirs (SO_REUSEADDR): connections a stopped server left in TIME_WAIT
    do not make its port taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_addresses(run_dir: RunDir) -> dict[str, str]:
    """Where the stack of ``run_dir`` listens and keeps its ledger (the operator's
    DATABASE_URL wins, as for `spillway up`)."""
    return {
        "SPILLWAY_RUN_DIR": str(run_dir.root),
        "SPILLWAY_REDIS_URL": f"unix://{run_dir.redis_socket}?db=0",
        "SPILLWAY_BROKER_URL": f"redis+socket://{run_dir.redis_socket}?virtual_host=1",
        "SPILLWAY_MEMCACHED_SERVERS": str(run_dir.memcached_socket),
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{run_dir.database}",
    }


def process_environment(
    run_dir: RunDir, log_level: str, stack_secrets: dict, app: str, redis: dict | None = None
) -> dict[str, str]:
    """The environment every app process of the stack runs with: the operator's settings,
    then the stack's own (its addresses win: the processes use the stack's redis; with
    --redis sentinel, ``redis`` names its Sentinels instead of its socket)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(PASSED_THROUGH_PREFIX) or name in PASSED_THROUGH
    }
    environment.update(
        {
            "PATH": SEARCH_PATH,
            "LANG": "C.UTF-8",
            # root's: nothing the processes read from $HOME can be planted there.
            "HOME": str(run_dir.root),
            "SPILLWAY_APP": app,
            "SPILLWAY_ENV": "prd",
            "SPILLWAY_LOG_LEVEL": log_level,
            **stack_addresses(run_dir),
            **(redis or {}),
            "PROMETHEUS_MULTIPROC_DIR": str(run_dir.metrics),
            **stack_secrets,
        }
    )
    return environment


def render_configs(run_dir: RunDir, context: dict, modes: dict[Path, int]) -> None:
    """Write nginx.conf, redis.conf and supervisord.conf into the run directory, each a new
    file renamed into place (never written through whatever was there), with ``modes``."""
    jinja = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    full = {
        "paths": run_dir,
        "log_dir": run_dir.logs,
        "python": sys.executable,
        "max_body_bytes": MAX_BODY_BYTES,
        **context,
    }
    primary = {"node_socket": run_dir.redis_socket, "node_dir": run_dir.redis_data}
    targets = [
        ("nginx.conf", run_dir.nginx_conf, {}),
        ("redis.conf", run_dir.redis_conf, primary),
        ("supervisord.conf", run_dir.supervisord_conf, {}),
    ]
    if context.get("replication"):  # the second node: no socket, a directory of its own
        replica = {"node_socket": "", "node_dir": run_dir.replica_data}
        targets.append(("redis.conf", run_dir.replica_conf, replica))
    for name, target, own in targets:
        text = jinja.get_template(name).render({**full, **own})
        write_atomically(target, text, modes[target])


def supervisor_environment(environment: dict[str, str]) -> str:
    """Format an ``environment=`` value for supervisord (``%`` is its escape character)."""
    return ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in sorted(environment.items()))
