"""The ``spillway`` command: the stack's own commands (``up``, ``serve``, ``worker``,
``check``), Flask's (``routes``, ``shell``), and the app's (``db`` from Flask-Migrate, and
whatever its factory adds to ``app.cli``).

The app is the one ``--app`` or ``SPILLWAY_APP`` names (spillway.loader). Run through
``spillway.__main__``, which patches for gevent before this module is imported.
"""

import errno
import json
import logging
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource
from flask.cli import FlaskGroup
from flask.cli import ScriptInfo
from flask.cli import routes_command
from flask.cli import shell_command
from flask.cli import with_appcontext

from spillway.loader import AppNotFound
from spillway.settings import CONFIG_NAMES
from spillway.settings import SettingsError

# Where a command finds the stack's dependencies (set by use_stack_addresses when unset).
STACK_ADDRESSES = (
    "DATABASE_URL",
    "SPILLWAY_REDIS_URL",
    "SPILLWAY_BROKER_URL",
    "SPILLWAY_MEMCACHED_SERVERS",
)
# `spillway start-checks`: a check could not decide yet (a dependency is starting or down).
START_CHECKS_NOT_YET = 3


def _chosen_app() -> str | None:
    """``--app`` (Flask's option, kept by its ScriptInfo), else None: SPILLWAY_APP."""
    info = click.get_current_context().find_object(ScriptInfo)
    return info.app_import_path if info is not None else None


def _load(spec: str | None = None):
    """The app, or one line saying why not (never a traceback)."""
    from spillway.loader import load_app

    try:
        return load_app(spec or _chosen_app())
    except (AppNotFound, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None


def _app_for_commands():
    from spillway.deploy.local_stack import use_stack_addresses

    use_stack_addresses()  # in a checkout with a stack: its sockets and database
    return _load()


class SpillwayGroup(FlaskGroup):
    """Flask's command group, where a dependency's failure (the database, redis, the broker,
    memcached) ends in one line naming its setting and the cause, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from spillway.deploy.local_stack import dependency_line

            line = dependency_line(exc, _config_of_loaded_app(ctx))
            if line is None:
                raise
            raise click.ClickException(line) from None


def _config_of_loaded_app(ctx: click.Context) -> dict:
    """The config of the app the command made (the values behind its settings), or {}."""
    info = ctx.find_object(ScriptInfo)
    try:
        return info.load_app().config if info is not None else {}
    except Exception:  # it could not be made: the failure's own line says enough
        return {}


# Flask's own `run` is left out on purpose: `serve` is the one development server.
@click.group(
    cls=SpillwayGroup,
    create_app=_app_for_commands,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
def cli():
    """Spillway: run your Flask app on the whole stack, migrate and operate it.

    The app is --app MODULE:FACTORY (or SPILLWAY_APP; the flash sale by default),
    spelled as for gunicorn: `pkg:create_app`, `pkg:create_app("prd")`. The config
    (dev, test, prd) comes from SPILLWAY_ENV, every setting from the environment
    (see the README). `spillway up` runs everything under supervisord.
    """


cli.add_command(routes_command)
cli.add_command(shell_command)


@cli.command("check")
@with_appcontext
def check_command():
    """Check every dependency (the app's own, redis, memcached, the broker); exit 1 if any
    is down."""
    from spillway.deploy.local_stack import stack_here
    from spillway.health.checks import run_checks

    here = stack_here(*STACK_ADDRESSES)
    hint = here.hint
    if here.run_dir is None and hint:  # no stack here and no addresses: nothing to check
        raise click.ClickException(hint)
    # Each result is printed below: readiness's own warning of it would say it twice.
    logging.getLogger("spillway.health.checks").setLevel(logging.ERROR)
    results = run_checks()
    for name, result in results.items():
        click.echo(f"{name:10} {result}")
    if any(result != "ok" for result in results.values()):
        if hint:
            click.echo(hint, err=True)
        raise SystemExit(1)


@cli.command("status")
@with_appcontext
def status_command():
    """The running stack: each program's state, pid and uptime, the Celery queues' depth,
    the outbox backlog, the URLs. Exit 1 if a program is not running or a figure could
    not be read, or there is no stack running here."""
    from flask import current_app

    from spillway.deploy.local_stack import stack_here
    from spillway.deploy.status import status_of
    from spillway.deploy.supervisor_rpc import SupervisorUnreachable

    here = stack_here()
    if here.run_dir is None or not here.running:
        raise click.ClickException(here.hint)
    run_dir = here.run_dir
    try:
        status = status_of(run_dir, current_app)
    except SupervisorUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"stack      {run_dir.root}")
    click.echo("\n".join(status.lines))
    if not status.healthy:
        raise SystemExit(1)


def _running_run_dir():
    """The run directory of the checkout's stack, or the one line saying there is none."""
    from spillway.deploy.local_stack import stack_here

    here = stack_here()
    if here.run_dir is None:
        raise click.ClickException(here.hint)
    return here.run_dir


@cli.command("backup", with_appcontext=False)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def backup_command(directory: Path):
    """Back up the running stack (of this checkout, or SPILLWAY_RUN_DIR) into DIRECTORY,
    new or empty: its database (SQLite's online backup, or pg_dump), redis's data (a
    snapshot) and its secrets, with a manifest. The Celery worker pauses while the two
    copies are taken so that they fit together; purchases are still accepted.
    DEPLOYMENT.md, "Backups and durability"."""
    from spillway.deploy.backup import take_backup
    from spillway.deploy.layout import StackError
    from spillway.deploy.local_stack import use_stack_addresses
    from spillway.deploy.supervisor_rpc import SupervisorUnreachable

    run_dir = _running_run_dir()
    use_stack_addresses()
    try:
        manifest = take_backup(run_dir, directory, os.environ["DATABASE_URL"])
    except (StackError, SupervisorUnreachable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backed up {run_dir.root} into {directory}: {', '.join(sorted(manifest.files))}")


@cli.command("restore", with_appcontext=False)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=lambda: os.environ.get("SPILLWAY_RUN_DIR", "run"),
    help="The fresh run directory to restore into [default: SPILLWAY_RUN_DIR or ./run].",
)
def restore_command(directory: Path, run_dir: str):
    """Restore the backup in DIRECTORY into a fresh run directory (and DATABASE_URL's
    database, empty, if the backup's ledger is PostgreSQL). Refused, nothing changed, if
    DIRECTORY is not a backup, the stack there is running, or it already holds data.
    Then `spillway up`, and `spillway reconcile`."""
    from spillway.deploy.backup_manifest import NotABackup
    from spillway.deploy.layout import StackError
    from spillway.deploy.layout import stack_addresses
    from spillway.deploy.restore import restore_backup
    from spillway.deploy.run_dir import RunDir

    chosen = (
        click.get_current_context().get_parameter_source("run_dir") is not ParameterSource.DEFAULT
        or "SPILLWAY_RUN_DIR" in os.environ
    )
    database_url = stack_addresses(RunDir(Path(run_dir).resolve()))["DATABASE_URL"]
    try:
        manifest, place = restore_backup(directory, Path(run_dir), chosen, database_url)
    except (NotABackup, StackError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"restored the backup of {manifest.source} taken {manifest.created_at} into "
        f"{place.root}: start it with `spillway up`, then run `spillway reconcile`"
    )


RELOAD_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the reload to finish.",
)


@cli.command("reload", with_appcontext=False)
@RELOAD_TIMEOUT
def reload_command(timeout):
    """Put new code and configs live without a refused or failed request.

    `spillway up` (sent SIGHUP, which is what this does) renders its configs again,
    migrates and runs the start checks; only if all pass, gunicorn's master starts new
    workers on the new code while the old ones finish their requests, nginx reloads
    if its config or certificate changed, and the Celery worker (warm shutdown), beat and Flower
    restart. DEPLOYMENT.md, §13.
    """
    from spillway.deploy.reload import ReloadFailed
    from spillway.deploy.reload import request_reload

    try:
        click.echo(request_reload(_running_run_dir(), timeout))
    except ReloadFailed as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("deploy", with_appcontext=False, context_settings={"ignore_unknown_options": True})
@RELOAD_TIMEOUT
@click.argument("pip_args", nargs=-1, type=click.UNPROCESSED)
def deploy_command(timeout, pip_args):
    """Install a new release into the stack's venv, migrate, reload.

    PIP_ARGS go to `pip install` (a path, a package, a requirements file with -r);
    none: this checkout again (--editable). A failed install or migration reloads
    nothing. Migrations that are not backward compatible are yours to stage: the old
    code serves until the reload (DEPLOYMENT.md, §13).
    """
    from spillway.deploy.release import deploy
    from spillway.deploy.reload import ReloadFailed

    try:
        for line in deploy(_running_run_dir(), list(pip_args), timeout):
            click.echo(line)
    except ReloadFailed as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("start-checks", with_appcontext=False)
def start_checks_command():
    """Run the app's start checks: exit 0 when it may serve, 1 (and why, in one line) when
    it must not, 3 when they cannot decide yet (spillway up runs this once redis answers)."""
    from spillway.extension import NotCheckableYet
    from spillway.extension import StartRefused
    from spillway.health.start import run_start_checks

    try:
        run_start_checks(_app_for_commands())
    except StartRefused as exc:
        raise click.ClickException(str(exc)) from None
    except NotCheckableYet as exc:
        error = click.ClickException(f"the start checks cannot run yet: {exc}")
        error.exit_code = START_CHECKS_NOT_YET
        raise error from None
    click.echo("start checks: passed")


@cli.command("init", with_appcontext=False)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--name",
    default=None,
    help="The package's name [default: the directory's name, if it can be one].",
)
def init_command(directory: Path, name: str | None):
    """Start your own app on Spillway in DIRECTORY: a package with an app factory and a
    blueprint (a slow endpoint and a fast one); docs/your-app.md grows it from there."""
    from spillway.scaffold import ScaffoldError
    from spillway.scaffold import scaffold

    name = name or directory.resolve().name.replace("-", "_")
    try:
        made = scaffold(directory, name)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"made {made}\nrun it:  cd {directory} && "
        f"SPILLWAY_APP={name}:create_app PYTHONPATH=$PWD spillway up"
    )


@cli.command("describe-app", with_appcontext=False)
def describe_app_command():
    """Print what the app declares to the runtime, as JSON (what `spillway up` renders its
    configs from: its pages, cached routes, sidecars, whether it has Celery, migrations)."""
    from spillway.extension import Spillway

    click.echo(json.dumps(Spillway.of(_load()).describe()))


@cli.command("serve", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0 picks a free one).",
)
@click.option(
    "--env",
    "config_name",
    type=click.Choice(CONFIG_NAMES),
    default=lambda: os.environ.get("SPILLWAY_ENV", "dev"),
    help="Config to build the app with [default: SPILLWAY_ENV or dev].",
)
@click.option(
    "--debug/--no-debug",
    default=None,
    help="Werkzeug's interactive debugger; refused in prd [default: the config's].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level [default: SPILLWAY_LOG_LEVEL or INFO].",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log one line per request.",
)
def serve_command(host, port, config_name, debug, log_level, access_log):
    """Serve the app on gevent's WSGI server: the seed's `runserver`, done right.

    One process, thousands of concurrent requests: a slow request sleeps
    cooperatively and never stalls the others. For production use `spillway up`.
    """
    from spillway.serve import serve

    if debug is not None:
        os.environ["SPILLWAY_DEBUG"] = "1" if debug else "0"
    if log_level:
        os.environ["SPILLWAY_LOG_LEVEL"] = log_level.upper()
    os.environ["SPILLWAY_ENV"] = config_name
    app = _load()
    try:
        serve(app, host, port, access_log=access_log)
    except OSError as exc:  # the port taken, the host not this machine's
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise click.ClickException(
            f"--port {port} --host {host}: cannot listen there: {exc.strerror}"
        ) from None


@cli.command("up", with_appcontext=False)
@click.option(
    "--app",
    "app_spec",
    metavar="MODULE:FACTORY",
    default=None,
    help="The Flask app to run, as for gunicorn: `pkg:create_app`, "
    '`pkg:create_app("prd")` [default: SPILLWAY_APP, else the flash sale].',
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=lambda: os.environ.get("SPILLWAY_RUN_DIR", "run"),
    help="Where configs, sockets, data and logs go [default: ./run].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=lambda: int(os.environ.get("SPILLWAY_PORT", "8080")),
    help="nginx's public port [default: SPILLWAY_PORT or 8080].",
)
@click.option(
    "--host",
    default=lambda: os.environ.get("SPILLWAY_HOST", "127.0.0.1"),
    help="nginx's public address [default: SPILLWAY_HOST or 127.0.0.1].",
)
@click.option(
    "--web-workers",
    type=click.IntRange(1, 64),
    default=lambda: int(os.environ.get("SPILLWAY_WEB_WORKERS", os.cpu_count() or 2)),
    help="gunicorn gevent workers [default: SPILLWAY_WEB_WORKERS or one per core].",
)
@click.option(
    "--worker-connections",
    type=click.IntRange(64, 100_000),
    default=lambda: int(os.environ.get("SPILLWAY_WORKER_CONNECTIONS", "10000")),
    help="Connections each gunicorn worker holds at once, live-stock streams "
    "included [default: SPILLWAY_WORKER_CONNECTIONS or 10000].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=lambda: os.environ.get("SPILLWAY_LOG_LEVEL", "INFO"),
    help="Log level of the app, gunicorn and Celery [default: INFO].",
)
@click.option(
    "--ready-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for /readyz before reporting what failed.",
)
@click.option(
    "--seed-demo",
    is_flag=True,
    help="Add the demo catalog once ready, if the store is empty (make run does).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=lambda: int(os.environ.get("SPILLWAY_METRICS_PORT", "0")),
    help="Loopback port of /metrics [default: SPILLWAY_METRICS_PORT, else 9181 "
    "if free, else any free port].",
)
@click.option(
    "--flower-port",
    type=click.IntRange(0, 65535),
    default=lambda: int(os.environ.get("SPILLWAY_FLOWER_PORT", "0")),
    help="Loopback port of Flower [default: SPILLWAY_FLOWER_PORT, else 5555 if "
    "free, else any free port].",
)
@click.option(
    "--tls",
    type=click.Choice(["off", "self-signed", "files"]),
    default=lambda: _tls_default(),
    help="HTTPS at nginx: self-signed (made once into RUN_DIR/tls, for local use) or "
    "files (SPILLWAY_TLS_CERT, SPILLWAY_TLS_KEY); the plain port then redirects to it, "
    "but for /healthz and /readyz [default: SPILLWAY_TLS, else files when "
    "SPILLWAY_TLS_CERT is set, else off].",
)
@click.option(
    "--tls-port",
    type=click.IntRange(1, 65535),
    default=lambda: int(os.environ.get("SPILLWAY_TLS_PORT", "8443")),
    help="nginx's HTTPS port, with --tls [default: SPILLWAY_TLS_PORT or 8443].",
)
@click.option(
    "--redis",
    "redis_topology",
    type=click.Choice(["single", "sentinel"]),
    # Unset: SPILLWAY_REDIS_TOPOLOGY is read, and refused naming itself, where the run
    # directory's topology is decided (spillway/deploy/replication.py).
    default=None,
    help="single: one redis on a socket. sentinel: a primary, a replica and three "
    "Sentinels on loopback ports, with a password, purchases waiting for the replica "
    "(to try a failover; kept by the run directory once chosen) [default: "
    "SPILLWAY_REDIS_TOPOLOGY, else what RUN_DIR runs, else single].",
)
def up_command(
    app_spec,
    run_dir,
    port,
    host,
    web_workers,
    worker_connections,
    log_level,
    ready_timeout,
    seed_demo,
    metrics_port,
    flower_port,
    tls,
    tls_port,
    redis_topology,
):
    """Run the whole stack for the app under supervisord, in the foreground.

    nginx, gunicorn (gevent workers), the app's Celery worker and beat (if it has
    Celery), redis and memcached: configured from templates into RUN_DIR, started
    in order, stopped together by Ctrl-C or SIGTERM. The app is --app (here or before
    the command: `spillway --app pkg:create_app up`) or SPILLWAY_APP. App processes
    never run as root: started as root, they run as the SPILLWAY_USER system user
    (default `spillway`, created when missing).
    """
    from spillway.deploy.up import StackOptions
    from spillway.deploy.up import run_stack

    chosen_app = app_spec or _chosen_app()
    if chosen_app:
        os.environ["SPILLWAY_APP"] = chosen_app
    chosen = (
        click.get_current_context().get_parameter_source("run_dir") is not ParameterSource.DEFAULT
        or "SPILLWAY_RUN_DIR" in os.environ
    )
    options = StackOptions(
        run_dir=run_dir,
        run_dir_chosen=chosen,
        host=host,
        port=port,
        web_workers=web_workers,
        log_level=log_level.upper(),
        ready_timeout=ready_timeout,
        seed_demo=seed_demo,
        metrics_port=metrics_port,
        flower_port=flower_port,
        worker_connections=worker_connections,
        tls=tls,
        tls_port=tls_port,
        redis=redis_topology or "",
    )
    sys.exit(run_stack(options))


def _tls_default() -> str:
    from spillway.deploy.layout import default_tls_mode

    return default_tls_mode()


@cli.command("worker", with_appcontext=False, context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(celery_args):
    """Run a Celery worker with the project's settings (for workers on any host).

    Extra arguments go to `celery worker`, e.g. `spillway worker --concurrency 4`.
    Refuses to run as root: start it as an unprivileged user.
    """
    if os.geteuid() == 0:
        raise click.ClickException(
            "refusing to run a Celery worker as root; run it as an unprivileged user "
            "(spillway up does this for you)"
        )
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "spillway.celery_entry",
        "worker",
        "--loglevel",
        os.environ.get("SPILLWAY_LOG_LEVEL", "INFO"),
        "-O",
        "fair",
        *celery_args,
    ]
    os.execv(sys.executable, args)


@cli.command(
    "bench",
    with_appcontext=False,
    add_help_option=False,
    context_settings={"ignore_unknown_options": True},
)
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
def bench_command(bench_args):
    """Benchmark the stack beside its baselines and a FastAPI peer; audit; report.

    `spillway bench [--quick] [--only SCENARIO,…] [--out DIR]` (`--help` for more).
    Runs from a source checkout: the harness lives in bench/, outside the package.
    """
    bench_dir = Path(__file__).resolve().parents[2] / "bench"
    if not (bench_dir / "harness" / "__main__.py").exists():
        raise click.ClickException(
            f"no benchmark harness in {bench_dir}: run `spillway bench` "
            "from a source checkout (make bench)"
        )
    # A fresh interpreter: this one is patched for gevent, and the harness must not be.
    # Without FLASK_RUN_FROM_CLI, which Flask's CLI set: the seed baseline's app.run() would
    # refuse to serve.
    env = {name: value for name, value in os.environ.items() if name != "FLASK_RUN_FROM_CLI"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(bench_dir), str(bench_dir.parent), os.environ.get("PYTHONPATH", "")]
    )
    os.execve(sys.executable, [sys.executable, "-m", "harness", *bench_args], env)


def main():
    """Run the ``spillway`` command."""
    cli.main(prog_name="spillway")
