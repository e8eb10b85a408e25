"""`spillway up`: prepare the run directory, migrate, run supervisord, report when ready."""

import dataclasses
import errno
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from spillway import request_id
from spillway.deploy import nginx_answers
from spillway.deploy import replication
from spillway.deploy import supervisor_rpc
from spillway.deploy.boundary import Owners
from spillway.deploy.boundary import claim
from spillway.deploy.boundary import root_file_modes
from spillway.deploy.files import read_regular
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import StackError
from spillway.deploy.layout import find_system_binaries
from spillway.deploy.layout import free_loopback_port
from spillway.deploy.layout import load_or_create_secrets
from spillway.deploy.layout import process_environment
from spillway.deploy.layout import render_configs
from spillway.deploy.layout import supervisor_environment
from spillway.deploy.layout import tls_file_settings
from spillway.deploy.readable import Runtime
from spillway.deploy.readable import app_runtime
from spillway.deploy.readable import run_directory
from spillway.deploy.reload import Reloader
from spillway.deploy.run_dir import RunDir
from spillway.deploy.service_user import ServiceUser
from spillway.deploy.service_user import resolve_service_user
from spillway.deploy.tls import tls_listener
from spillway.loader import app_spec
from spillway.settings import MAX_BODY_BYTES
from spillway.settings import SettingsError
from spillway.settings import log_format
from spillway.settings import log_rotation
from spillway.settings import nginx_rate_limits
from spillway.settings import redis_maxmemory

# SIGHUP is not passed on (supervisord would restart every program): it reloads
# (spillway/deploy/reload.py).
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Loopback-only listeners: used when free and not chosen (SPILLWAY_METRICS_PORT,
# SPILLWAY_FLOWER_PORT), else any free port; the banner says which.
DEFAULT_METRICS_PORT = 9181
DEFAULT_FLOWER_PORT = 5555
# Flower's basic-auth user; the password is the admin token.
FLOWER_USER = "admin"
# supervisord's own user on its socket; the password is made anew at each start.
SUPERVISOR_USER = "spillway-up"
# What root runs, and what it runs as the service user, starts here: a directory only root
# can write, so neither a cwd on sys.path nor a relative path can reach a planted file.
NEUTRAL_CWD = "/"
START_CHECKS_NOT_YET = 3  # `spillway start-checks`: they cannot decide yet


@dataclass(frozen=True)
class StackOptions:
    """What the operator chose on the command line."""

    run_dir: str
    host: str
    port: int
    web_workers: int
    log_level: str
    ready_timeout: float
    seed_demo: bool = False
    # --run-dir or SPILLWAY_RUN_DIR given: it stays where it is, whoever can reach it.
    run_dir_chosen: bool = False
    metrics_port: int = 0
    flower_port: int = 0
    worker_connections: int = 10000
    # --tls: off, self-signed or files (SPILLWAY_TLS_CERT, SPILLWAY_TLS_KEY); when on,
    # nginx serves HTTPS on tls_port and the plain port redirects there.
    tls: str = "off"
    tls_port: int = 8443
    # --redis: single, sentinel, or "" for what the run directory runs (replication.py).
    redis: str = ""


def run_stack(options: StackOptions) -> int:
    """Run the stack in the foreground until a signal stops it; return the exit status."""
    try:
        options = dataclasses.replace(
            options,
            metrics_port=loopback_port(
                options.metrics_port, DEFAULT_METRICS_PORT, "SPILLWAY_METRICS_PORT"
            ),
            flower_port=loopback_port(
                options.flower_port, DEFAULT_FLOWER_PORT, "SPILLWAY_FLOWER_PORT"
            ),
        )
        refuse_taken_public_port(options.host, options.port, "SPILLWAY_PORT", "--port")
        if options.tls != "off":
            refuse_same_ports(options)
            refuse_taken_public_port(
                options.host, options.tls_port, "SPILLWAY_TLS_PORT", "--tls-port"
            )
        password = secrets.token_urlsafe(24)  # supervisord's, kept by every reload
        run_dir, supervisord_cmd, runtime, app = prepare(options, password)
    except (StackError, SettingsError) as exc:
        click.echo(f"spillway up: {exc}", err=True)
        return 2
    run_dir.urls_file.unlink(missing_ok=True)  # an earlier run's, until this one is ready
    click.echo(f"spillway up: starting supervisord ({run_dir.supervisord_conf})")
    supervisord = subprocess.Popen(supervisord_cmd, cwd=NEUTRAL_CWD)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, lambda sig, _frame: supervisord.send_signal(sig))
    reloader = Reloader(
        run_dir,
        lambda: reconfigure(options, run_dir, password),
        lambda: wait_until_ready(options, run_dir, supervisord),
    )
    signal.signal(signal.SIGHUP, lambda _sig, _frame: reloader.request())
    write_atomically(run_dir.up_pid, f"{os.getpid()}\n", 0o644)
    try:
        return supervise(options, run_dir, runtime, app, supervisord, reloader)
    finally:
        run_dir.up_pid.unlink(missing_ok=True)


def supervise(
    options: StackOptions,
    run_dir: RunDir,
    runtime: Runtime,
    app: dict,
    supervisord: subprocess.Popen,
    reloader: Reloader,
) -> int:
    """Report when the stack is ready (or why not), reload it on SIGHUP once it is, and
    wait for supervisord to exit; the exit status."""
    refusal = start_checks_refusal(run_dir, runtime, supervisord)
    if refusal:
        # The app's processes refuse by themselves too: none of them served.
        supervisord.terminate()
        supervisord.wait()
        click.echo(f"spillway up: {refusal}", err=True)
        return 2
    if wait_until_ready(options, run_dir, supervisord):
        if options.seed_demo and "seed-demo" in app["commands"]:
            seed_demo(runtime)
        print_banner(options, run_dir, runtime.environment, app)
        reloader.start()
    elif gave_up := gave_up_starting(run_dir):
        supervisord.terminate()
        supervisord.wait()
        click.echo(f"spillway up: {gave_up}", err=True)
        return 2
    else:
        report_not_ready(options, run_dir, supervisord)
        reloader.start()  # new code may be what it takes to get ready
    status = supervisord.wait()
    click.echo(f"spillway up: stopped (supervisord exited {status})")
    return status


def loopback_port(chosen: int, default: int, setting: str) -> int:
    """The operator's port, else ``default`` if it is free, else any free loopback port.

    :raise StackError: the operator's port is taken (nginx or Flower would not start).
    """
    if not chosen:
        return free_loopback_port(default)
    if free_loopback_port(chosen) != chosen:
        raise StackError(f"{setting}={chosen}: something already listens on 127.0.0.1:{chosen}")
    return chosen


def refuse_same_ports(options: StackOptions) -> None:
    """:raise StackError: HTTPS asked for on the plain port (nginx would not start)."""
    if options.tls_port == options.port:
        raise StackError(
            f"SPILLWAY_TLS_PORT={options.tls_port} is SPILLWAY_PORT too: HTTPS needs a "
            f"port of its own (--tls-port), the plain one redirects to it"
        )


def refuse_taken_public_port(host: str, port: int, setting: str, option: str) -> None:
    """nginx's public address must be free (and this host's), or nginx would not start.

    :raise StackError: naming ``setting`` (taken) or SPILLWAY_HOST (not an address here).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds it
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StackError(
                    f"{setting}={port}: something already listens on "
                    f"{host}:{port} ({option} or {setting} chooses "
                    f"another)"
                ) from None
            raise StackError(f"SPILLWAY_HOST={host}: cannot listen there: {exc.strerror}") from None


def gave_up_starting(run_dir: RunDir) -> str | None:
    """The program supervisord gave up starting (it exited at once, each try) and the last
    line of its log, or None."""
    for info in supervisor_rpc.gave_up_on(run_dir):
        # A program with an error log of its own (nginx) says why there.
        log = run_dir.logs / f"{info['name']}-error.log"
        if not log.exists():
            log = run_dir.logs / f"{info['name']}.log"
        lines = (read_regular(log) or "").strip().splitlines()
        said = f"; its log ({log}) ends: {lines[-1].strip()}" if lines else ""
        return f"{info['name']} did not start (supervisord gave up on it){said}"
    return None


def prepare(options: StackOptions, password: str) -> tuple[RunDir, list[str], Runtime, dict]:
    """Check, configure and migrate; return the supervisord command line, how the app's
    processes run (interpreter, environment, user) and what the app declares.

    :raise StackError: something the operator must fix first.
    """
    binaries = find_system_binaries()
    user = resolve_service_user()
    run_dir = RunDir(run_directory(Path(options.run_dir), options.run_dir_chosen, user))
    # Before anything is read or written there: root's paths are root's again and nothing
    # the service user planted is followed (boundary.py). The default database moves out
    # of an older layout's run directory; one the operator named stays where it is.
    claim(run_dir, user, move_legacy_database="DATABASE_URL" not in os.environ)
    if replication.chosen_topology(run_dir, options.redis) == "sentinel":
        replication.refuse_taken_ports(replication.load_or_create(run_dir))
    runtime, app = configure(options, run_dir, binaries, user, password)
    return (
        run_dir,
        [sys.executable, "-P", "-m", "supervisor.supervisord", "-c", str(run_dir.supervisord_conf)],
        runtime,
        app,
    )


def reconfigure(options: StackOptions, run_dir: RunDir, password: str) -> None:
    """A reload's first step: configure and migrate again for the code as it now is, and
    ask its start checks (spillway/deploy/reload.py).

    :raise StackError: the new code must not go live (one line says why).
    """
    runtime, _app = configure(
        options, run_dir, find_system_binaries(), resolve_service_user(), password
    )
    result = run_cli(["start-checks"], runtime)
    if result.returncode != 0:
        raise StackError(f"the start checks refuse: {last_line(result)}")


def configure(
    options: StackOptions,
    run_dir: RunDir,
    binaries: dict[str, str],
    user: ServiceUser | None,
    password: str,
) -> tuple[Runtime, dict]:
    """Bring the copies of the code in step, render the configs from what the app declares
    and migrate; how the app's processes run and what it declares.

    :raise StackError: the app cannot be made, or its migration failed.
    """
    tls = tls_listener(options.tls, options.tls_port, run_dir, options.host)
    replicated = replication.load(run_dir)  # prepare() made it, with --redis sentinel
    runtime = app_runtime(
        user,
        process_environment(
            run_dir,
            options.log_level,
            load_or_create_secrets(run_dir),
            app_spec(),
            replicated_redis(replicated),
        ),
    )
    environment = runtime.environment
    app = describe_app(runtime)
    sidecars = place_sidecars(app["sidecars"], environment)
    render_configs(
        run_dir,
        {
            **binaries,
            "app": app,
            "python": runtime.python,
            "sidecars": sidecars,
            "user": user.name if user else "",
            "group": user.group if user else "",
            "host": options.host,
            "port": options.port,
            "tls": tls.template_context(binaries["nginx"]) if tls else None,
            "web_workers": options.web_workers,
            "worker_connections": options.worker_connections,
            "worker_concurrency": os.cpu_count() or 2,
            "nginx_workers": "auto",
            "memcached_mb": 128,
            **nginx_answers.template_context(MAX_BODY_BYTES),
            **nginx_rate_limits(),
            "redis_maxmemory": redis_maxmemory(),
            "replication": replicated,
            "replication_environment": supervisor_environment(
                replicated.node_environment() if replicated else {}
            ),
            "max_open_files": max_open_files(),
            "log_level": options.log_level,
            "log_level_lower": options.log_level.lower(),
            "environment": supervisor_environment(environment),
            "metrics_port": options.metrics_port,
            "flower_port": options.flower_port,
            "flower_environment": supervisor_environment(flower_environment(environment)),
            # Explicit: root's supervisord keeps root (it says so in a CRIT line otherwise).
            "supervisord_user": "root" if user else "",
            "supervisor_username": SUPERVISOR_USER,
            "supervisor_password": password,
            "common": program_options(user, run_dir),
            # nginx's access lines (stdout) and errors (stderr) in two logs, both rotated.
            "nginx_options": program_options(None, run_dir, "nginx-access", "nginx-error"),
            "log_format": log_format(),
            "request_id_pattern": request_id.PATTERN,
        },
        root_file_modes(run_dir, Owners.of(user)),
    )
    if app["migrations"]:
        click.echo("spillway up: migrating the database")
        result = run_cli(["db", "upgrade"], runtime)
        if result.returncode != 0:
            raise StackError(f"database migration failed: {last_line(result)}")
    return runtime, app


def redis_line(run_dir: RunDir) -> str:
    """The banner's redis: its socket, or the Sentinels and where their password is."""
    replicated = replication.load(run_dir)
    if replicated is None:
        return f"  redis         redis-cli -s {run_dir.redis_socket}"
    sentinels = ", ".join(f"127.0.0.1:{port}" for port in replicated.sentinels)
    return (
        f"  redis         primary and replica, Sentinels {sentinels} (master "
        f"{replication.MASTER}; password in {run_dir.replication_file})"
    )


def replicated_redis(replicated: replication.Replication | None) -> dict[str, str]:
    """With Sentinels: their URLs, and purchases that wait for the replica unless the
    operator chose another SPILLWAY_REDIS_DURABILITY."""
    if replicated is None:
        return {}
    durability = os.environ.get("SPILLWAY_REDIS_DURABILITY", replication.DEFAULT_DURABILITY)
    return {**replicated.addresses(), "SPILLWAY_REDIS_DURABILITY": durability}


def describe_app(runtime: Runtime) -> dict:
    """What the app declares (`spillway describe-app`), asked of the app as its processes
    will run it: as the service user, never imported by root.

    :raise StackError: the app cannot be imported or made (one line says why).
    """
    result = run_cli(["describe-app"], runtime)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise StackError(last_line(result))
    return json.loads(lines[-1])


def place_sidecars(sidecars: list[dict], environment: dict[str, str]) -> list[dict]:
    """The app's sidecars that run here, each on a free loopback port, which every process
    finds in the sidecar's setting (added to ``environment``)."""
    placed = []
    for sidecar in sidecars:
        if sidecar["unless_set"] and os.environ.get(sidecar["unless_set"]):
            continue  # the operator points at the real service
        port = free_loopback_port()
        environment[sidecar["port_setting"]] = str(port)
        placed.append({**sidecar, "port": port})
    return placed


def last_line(result: subprocess.CompletedProcess) -> str:
    """A failed command's last line of output, without click's ``Error:``."""
    lines = (result.stderr or result.stdout).strip().splitlines() or ["it failed"]
    return lines[-1].removeprefix("Error: ")


def flower_environment(environment: dict[str, str]) -> dict[str, str]:
    """Flower's: the app's, with basic auth (user admin, the admin token), and its metrics
    kept in its own memory, out of the app's multiprocess directory.

    :raise StackError: the admin token holds a comma (Flower splits credentials on it).
    """
    token = environment["SPILLWAY_ADMIN_TOKEN"]
    if "," in token:
        raise StackError(
            "SPILLWAY_ADMIN_TOKEN must not contain a comma: it is Flower's "
            "password too, and Flower splits its credentials on commas"
        )
    flower = {k: v for k, v in environment.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return {**flower, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{token}"}


def max_open_files() -> int:
    """As many file descriptors as the hard limit allows, up to 65,536: a thousand slow
    requests hold two sockets each in nginx and one in gunicorn."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)


def program_options(
    user: ServiceUser | None,
    run_dir: RunDir,
    log: str = "%(program_name)s",
    error_log: str = "",
) -> str:
    """supervisord options shared by every program; ``user=`` drops root privileges.
    supervisord writes what the program prints to ``log`` (its stderr too, unless it has
    an ``error_log`` of its own) and rotates it (SPILLWAY_LOG_MAX_BYTES, _BACKUPS)."""
    rotation = log_rotation()
    lines = [
        f"directory={NEUTRAL_CWD}",
        "autorestart=true",
        "startsecs=1",
        "stopasgroup=true",
        "killasgroup=true",
        f"redirect_stderr={'false' if error_log else 'true'}",
        f"stdout_logfile={run_dir.logs}/{log}.log",
        f"stdout_logfile_maxbytes={rotation['max_bytes']}",
        f"stdout_logfile_backups={rotation['backups']}",
    ]
    if error_log:
        lines += [
            f"stderr_logfile={run_dir.logs}/{error_log}.log",
            f"stderr_logfile_maxbytes={rotation['max_bytes']}",
            f"stderr_logfile_backups={rotation['backups']}",
        ]
    if user:
        lines.append(f"user={user.name}")
    return "\n".join(lines)


def run_cli(args: list[str], runtime: Runtime) -> subprocess.CompletedProcess:
    """Run a `spillway` command as the stack's processes run: same interpreter, environment
    and user, from a directory it cannot write, with no directory of its choosing on
    sys.path (-P)."""
    user = runtime.user
    ids = {"user": user.uid, "group": user.gid, "extra_groups": []} if user else {}
    return subprocess.run(
        [runtime.python, "-P", "-m", "spillway", *args],
        env=runtime.environment,
        cwd=NEUTRAL_CWD,
        capture_output=True,
        text=True,
        check=False,
        **ids,
    )


def start_checks_refusal(
    run_dir: RunDir, runtime: Runtime, supervisord: subprocess.Popen, timeout: float = 30.0
) -> str | None:
    """Once redis answers, the app's start checks (`spillway start-checks`; the flash sale's:
    redis's state belongs to this database, RELIABILITY.md): None, or the one line saying
    why not and what to do."""
    deadline = time.monotonic() + timeout
    while not run_dir.redis_socket.exists():
        if supervisord.poll() is not None or time.monotonic() > deadline:
            return None  # redis did not start: the readiness report says so
        if gave_up := gave_up_starting(run_dir):
            return gave_up
        time.sleep(0.2)
    while True:
        result = run_cli(["start-checks"], runtime)
        if result.returncode == 0:
            return None
        # 3: they cannot decide yet (redis still opening its socket or replaying its AOF,
        # or gone: it left its socket file behind when it exited).
        if result.returncode != START_CHECKS_NOT_YET:
            return last_line(result)
        if gave_up := gave_up_starting(run_dir):
            return gave_up
        if time.monotonic() > deadline:
            return last_line(result)
        time.sleep(0.5)


def seed_demo(runtime: Runtime) -> None:
    """Fill an empty store with the demo catalog (once the caches are up to invalidate)."""
    result = run_cli(["seed-demo", "--if-empty"], runtime)
    click.echo(result.stdout.strip() or result.stderr.strip())


def probe_url(options: StackOptions, path: str) -> str:
    """``path`` on the plain listener (health probes are answered there with TLS on too)."""
    return f"http://{public_authority(options, options.port)}{path}"


def public_url(options: StackOptions, path: str) -> str:
    """``path`` where a browser goes: HTTPS when it is on."""
    if options.tls == "off":
        return probe_url(options, path)
    return f"https://{public_authority(options, options.tls_port)}{path}"


def public_authority(options: StackOptions, port: int) -> str:
    host = "127.0.0.1" if options.host in ("0.0.0.0", "") else options.host
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}"


def wait_until_ready(options: StackOptions, run_dir: RunDir, supervisord: subprocess.Popen) -> bool:
    """Poll /readyz through nginx until it answers 200, supervisord dies or gives up
    starting a program, or time runs out."""
    deadline = time.monotonic() + options.ready_timeout
    url = probe_url(options, "/readyz")
    while (
        time.monotonic() < deadline
        and supervisord.poll() is None
        and not supervisor_rpc.gave_up_on(run_dir)
    ):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def stack_urls(options: StackOptions, app: dict) -> dict[str, str]:
    """Where the stack answers: the app, its links, health, metrics and Flower."""
    urls = {"app": public_url(options, "/")}
    urls.update({name: public_url(options, path) for name, path in app["links"].items()})
    urls["healthz"] = probe_url(options, "/healthz")
    urls["readyz"] = probe_url(options, "/readyz")
    urls["metrics"] = f"http://127.0.0.1:{options.metrics_port}/metrics"
    if app["celery"]:
        urls["flower"] = f"http://127.0.0.1:{options.flower_port}/"
    return urls


def print_banner(
    options: StackOptions, run_dir: RunDir, environment: dict[str, str], app: dict
) -> None:
    """The one screen an operator needs: where the app is, its links, where everything
    else listens and logs, how to stop it (the URLs kept for `spillway status` too)."""
    urls = stack_urls(options, app)
    write_atomically(run_dir.urls_file, json.dumps(urls, indent=1) + "\n", 0o644)
    token_source = (
        "SPILLWAY_ADMIN_TOKEN (from your environment)"
        if os.environ.get("SPILLWAY_ADMIN_TOKEN")
        else f"{run_dir.secrets_file} (SPILLWAY_ADMIN_TOKEN, generated)"
    )
    lines = ["", f"Spillway is up — {app['name']}  {urls['app']}"]
    lines += [f"  {name:13} {urls[name]}" for name in app["links"]]
    if options.tls != "off":
        lines.append(f"  https         {tls_source(options, run_dir)}")
        lines.append(
            f"  plain http    {probe_url(options, '/')} redirects to https (308), "
            f"except the health checks"
        )
    lines += [
        f"  health        {urls['healthz']}   {urls['readyz']}",
        f"  admin token   {token_source}",
        f"  metrics       {urls['metrics']}   (loopback only)",
    ]
    if app["celery"]:
        lines.append(
            f"  flower        {urls['flower']}   (loopback only; "
            f"user {FLOWER_USER}, password: the admin token)"
        )
    lines += [
        f"  database      {make_url(environment['DATABASE_URL'])}",  # password hidden
        redis_line(run_dir),
        f"  logs          {run_dir.logs}/  (nginx-*, gunicorn, celery-*, redis, memcached)",
        f"  processes     spillway status   (or {sys.executable} -m "
        f"supervisor.supervisorctl -c {run_dir.supervisord_conf} status)",
        "  reload        spillway reload (or SIGHUP to this process): new code live, "
        "no request dropped",
        "  stop          Ctrl-C (or SIGTERM to this process): everything stops",
        "",
    ]
    click.echo("\n".join(lines))


def tls_source(options: StackOptions, run_dir: RunDir) -> str:
    """Which certificate nginx serves, for the banner."""
    if options.tls == "self-signed":
        return f"self-signed, {run_dir.tls_cert} (for local use: browsers warn)"
    return ", ".join(f"{name}={path}" for name, path in tls_file_settings().items())


def report_not_ready(options: StackOptions, run_dir: RunDir, supervisord) -> None:
    if supervisord.poll() is not None:
        click.echo(f"spillway up: supervisord exited; see {run_dir.logs}/supervisord.log", err=True)
        return
    click.echo(
        f"spillway up: not ready after {options.ready_timeout:.0f}s; "
        f"{probe_url(options, '/readyz')} says which dependency is down; "
        f"logs in {run_dir.logs}/",
        err=True,
    )
