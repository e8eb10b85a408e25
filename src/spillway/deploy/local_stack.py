"""What a `spillway` command run beside a stack needs: the addresses of that stack.

`spillway up` gives its processes an environment that points at the run directory's
sockets and database; a command the operator types in the same checkout (`spillway check`,
`spillway ledger status`, `spillway reconcile`, `spillway status`) gets the same addresses,
and, where it can read them (root: supervisord.conf is root's, 0600), the database and the
secrets the stack's processes were given, for every setting the operator has not set, so
that it finds the stack by itself. Where it finds none, a dependency's failure says so.
"""

import configparser
import os
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from supervisor.datatypes import dict_of_key_value_pairs

from spillway import failures
from spillway.deploy import replication
from spillway.deploy.files import read_regular
from spillway.deploy.layout import GENERATED_SECRETS
from spillway.deploy.layout import StackError
from spillway.deploy.layout import find_system_binaries
from spillway.deploy.layout import stack_addresses
from spillway.deploy.run_dir import RunDir
from spillway.deploy.service_user import resolve_service_user

REDIS_START_SECONDS = 30.0
# What a command takes from the environment of the stack's processes, beside the addresses:
# the database `spillway up` was given (not the default file), the generated secrets, and
# redis's and the broker's (the Sentinels' with --redis sentinel: spillway/deploy/replication.py).
ADOPTED_SETTINGS = (
    "DATABASE_URL",
    "SPILLWAY_REDIS_URL",
    "SPILLWAY_BROKER_URL",
    *GENERATED_SECRETS,
)
# The program whose environment is the app's (every app process has the same one).
APP_PROGRAM = "program:gunicorn"


def run_dir_of_checkout() -> RunDir | None:
    """The run directory `spillway up` would use here, if a stack was ever set up in it."""
    run_dir = RunDir(Path(os.environ.get("SPILLWAY_RUN_DIR", "run")).resolve())
    return run_dir if run_dir.redis_conf.exists() else None


def is_running(run_dir: RunDir) -> bool:
    """Whether the stack's supervisord is alive (its pid file names a live process)."""
    text = read_regular(run_dir.supervisord_pid) or ""
    if not text.strip().isdigit():
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


@dataclass(frozen=True)
class StackHere:
    """What a command typed here finds: the checkout's run directory (None: no stack was
    ever set up here), whether its supervisord runs, and the one line to say when the
    command has no stack to use ("" when one runs, or the operator set the addresses)."""

    run_dir: RunDir | None
    running: bool
    hint: str


def stack_here(*settings: str) -> StackHere:
    """The checkout's stack, as a command that would use ``settings`` sees it."""
    run_dir = run_dir_of_checkout()
    if run_dir is None:
        if any(setting in os.environ for setting in settings):
            return StackHere(None, False, "")
        where = Path(os.environ.get("SPILLWAY_RUN_DIR", "run")).resolve()
        chosen = (
            f", or {settings[0]}"
            if len(settings) == 1
            else ", or the addresses"
            if settings
            else ""
        )
        hint = f"no stack in {where}: `make run` starts one; or set SPILLWAY_RUN_DIR{chosen}"
        return StackHere(None, False, hint)
    if not is_running(run_dir):
        return StackHere(
            run_dir, False, f"the stack in {run_dir.root} is not running: `make run` starts it"
        )
    return StackHere(run_dir, True, "")


def where_the_stack_is(*settings: str) -> str:
    """What a dependency's failure adds when the command found no stack up to use: ``""``
    when one is running, or when the operator set one of ``settings`` themselves."""
    hint = stack_here(*settings).hint
    return f" ({hint})" if hint else ""


def dependency_line(exc: BaseException, config=None) -> str | None:
    """A dependency's failure as the one line a command ends with: the setting, its value,
    the cause, and where the stack is if the command found none up; None if ``exc`` is no
    dependency's."""
    line = failures.describe(exc, config)
    if line is None:
        return None
    setting, _key = failures.setting_of(exc)
    return line + where_the_stack_is(setting)


def use_stack_addresses() -> RunDir | None:
    """Point this process at the checkout's stack, for each setting not set already."""
    run_dir = run_dir_of_checkout()
    if run_dir is not None:
        found = {**stack_addresses(run_dir), **processes_settings(run_dir)}
        for name, value in found.items():
            os.environ.setdefault(name, value)
    return run_dir


def processes_settings(run_dir: RunDir) -> dict[str, str]:
    """The ADOPTED_SETTINGS of the stack's app processes, from supervisord.conf; {} where
    this user cannot read it (only root can) or it has none."""
    config = configparser.RawConfigParser(strict=False)
    try:
        config.read_string(read_regular(run_dir.supervisord_conf) or "")
        raw = config.get(APP_PROGRAM, "environment", fallback="")
        environment = dict_of_key_value_pairs(raw.replace("%%", "%")) if raw else {}
    except (configparser.Error, ValueError):
        return {}
    return {name: environment[name] for name in ADOPTED_SETTINGS if environment.get(name)}


@contextmanager
def redis_of(run_dir: RunDir):
    """The run directory's redis for the length of a command: the stack's own if it is up;
    else started from its config, as the service user, and stopped afterwards (an operator
    repairing redis's state with the stack stopped). With --redis sentinel, only the
    stack's own: which node is the primary is the Sentinels' to say."""
    replicated = replication.load(run_dir)
    client = redis.Redis(
        unix_socket_path=str(run_dir.redis_socket),
        password=replicated.password if replicated else None,
        socket_timeout=2,
    )
    try:
        client.ping()
        yield
        return
    except (redis.exceptions.ConnectionError, FileNotFoundError):
        if replicated:
            raise StackError(
                f"the stack in {run_dir.root} runs redis with Sentinels: start it first "
                "(`make run`)"
            ) from None
    finally:
        client.close()
    user = resolve_service_user()
    ids = {"user": user.uid, "group": user.gid, "extra_groups": []} if user else {}
    server = subprocess.Popen(
        [find_system_binaries()["redis_server"], str(run_dir.redis_conf)],
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **ids,
    )
    try:
        _wait_for(run_dir, server)
        yield
    finally:
        server.terminate()  # redis writes its AOF and exits
        server.wait(timeout=60)


def _wait_for(run_dir: RunDir, server: subprocess.Popen) -> None:
    client = redis.Redis(unix_socket_path=str(run_dir.redis_socket), socket_timeout=2)
    deadline = time.monotonic() + REDIS_START_SECONDS
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.exceptions.ConnectionError, FileNotFoundError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise StackError(
                        f"the run directory's redis did not start ({run_dir.redis_conf})"
                    ) from None
                time.sleep(0.1)
    finally:
        client.close()
