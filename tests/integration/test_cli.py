"""The `spillway` command as an operator runs it, in a subprocess."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy import inspect

from tests.servers import free_port


def spillway(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spillway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_stack_commands():
    """--help explains the commands, including Flask-Migrate's `db`."""
    result = spillway("--help")
    assert result.returncode == 0, result.stderr
    for command in ("up", "serve", "worker", "db", "check", "routes", "shell"):
        assert f"  {command} " in result.stdout


def test_db_upgrade_creates_the_database(service_env):
    """`spillway db upgrade` runs the migrations against DATABASE_URL (SQLite or
    PostgreSQL, as the run's SPILLWAY_TEST_DB says)."""
    result = spillway("db", "upgrade", env={**service_env, "SPILLWAY_ENV": "test"})
    assert result.returncode == 0, result.stderr
    engine = create_engine(service_env["DATABASE_URL"])
    try:
        assert {"products", "users", "sales", "orders"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_prd_without_secrets_fails_in_one_line():
    """A prd command without its secrets says which variable is missing, no traceback."""
    result = spillway(
        "routes", env={"SPILLWAY_ENV": "prd", "SPILLWAY_SECRET_KEY": "", "SPILLWAY_ADMIN_TOKEN": ""}
    )
    assert result.returncode != 0
    assert "SPILLWAY_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal only applies to root")
def test_worker_refuses_root():
    """`spillway worker` never runs a Celery worker as root."""
    result = spillway("worker", env={"SPILLWAY_ENV": "test"})
    assert result.returncode != 0
    assert "root" in result.stderr


def test_serve_on_a_taken_port_fails_in_one_line():
    """`spillway serve` on a port something listens on already: one line naming the port
    and the cause, exit 1, no traceback."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = spillway("serve", "--port", str(port), env={"SPILLWAY_ENV": "test"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"Error: --port {port} --host 127.0.0.1: cannot listen there: Address already in use"
    ), line


def test_a_dependency_down_in_a_command_is_one_line(service_env):
    """redis down under `spillway ledger status` and memcached down under `check`: each
    a line naming the setting (its value) and the cause, never a traceback."""
    assert spillway("db", "upgrade", env={**service_env, "SPILLWAY_ENV": "test"}).returncode == 0
    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = {**service_env, "SPILLWAY_ENV": "test", "SPILLWAY_REDIS_URL": closed}
    result = spillway("ledger", "status", env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: SPILLWAY_REDIS_URL={closed}: ") and "refused" in line
    env = {
        **service_env,
        "SPILLWAY_ENV": "test",
        "SPILLWAY_MEMCACHED_SERVERS": f"127.0.0.1:{free_port()}",
    }
    check = spillway("check", env=env)
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert "memcached  error: SPILLWAY_MEMCACHED_SERVERS=127.0.0.1:" in check.stdout


def test_up_with_an_app_that_does_not_import_is_one_line():
    """`spillway up --app` names the app the way gunicorn does; one that cannot be imported
    stops `up` with one line naming it, before any program starts."""
    # Not pytest's tmp_path: its parent is root's 0700, which the service user cannot pass.
    run_dir = Path(tempfile.mkdtemp(prefix="spillway-cli-"))
    try:
        result = spillway(
            "up", "--app", "no_such_module_here:create_app", "--run-dir", str(run_dir),
            "--port", str(free_port()),
        )  # fmt: skip
        assert not (run_dir / "supervisord.conf").exists()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SPILLWAY_APP=no_such_module_here:create_app" in lines[0], lines
    assert "Could not import 'no_such_module_here'" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
