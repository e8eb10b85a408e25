"""A dependency that refuses or is missing at start ends `spillway up`, and any `spillway`
command, in ONE line naming the setting and the cause, with a non-zero exit and no
traceback: a database that refuses the login, a database host down, the public port taken,
redis or memcached that will not start, a port --redis sentinel keeps taken.

Each `spillway up` here is real (its own run directory, the service user, supervisord) and
fails before it serves; the PostgreSQL cluster is the suite's throwaway one.
"""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from spillway.deploy import replication
from spillway.deploy.run_dir import RunDir
from tests.postgres import start_postgres
from tests.servers import free_port

# A failed start stops long before the stack's own ready timeout.
FAILED_START_SECONDS = 120
# A role that exists and may not log in, with a password that must never be printed.
NO_LOGIN_ROLE = "shop_readonly"
NO_LOGIN_PASSWORD = "s3cret-never-shown"


def clean_environment(**settings: str) -> dict[str, str]:
    """The suite's environment without its database and secrets, plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("DATABASE_URL", "SPILLWAY_ADMIN_TOKEN", "SPILLWAY_SECRET_KEY", "SPILLWAY_RUN_DIR")
    }
    return {**env, "SPILLWAY_RATE_LIMITS": "off", **settings}


def spillway_up(run_dir: Path, port: int, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "spillway",
            "up",
            "--run-dir",
            str(run_dir),
            "--port",
            str(port),
            "--web-workers",
            "1",
            "--ready-timeout",
            "60",
        ],
        env=clean_environment(**settings),
        capture_output=True,
        text=True,
        timeout=FAILED_START_SECONDS,
        cwd="/",
    )


def assert_one_line_failure(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero; stderr is one line holding every needle; no traceback anywhere."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    cluster = start_postgres(tmp_path_factory.mktemp("postgres-logs"))
    with psycopg.connect(cluster.url("postgres", "postgresql"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {NO_LOGIN_ROLE} NOLOGIN PASSWORD '{NO_LOGIN_PASSWORD}'")
    yield cluster
    cluster.stop()


@pytest.fixture
def run_dir():
    path = Path(tempfile.mkdtemp(prefix="spillway-failed-start-"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def refused_login_url(pg) -> str:
    return (
        f"postgresql+psycopg://{NO_LOGIN_ROLE}:{NO_LOGIN_PASSWORD}@127.0.0.1:{pg.port}/"
        f"{pg.create_database()}"
    )


@pytest.mark.timeout(FAILED_START_SECONDS + 30)
def test_a_refused_database_login_stops_up_in_one_line(pg, run_dir):
    """DATABASE_URL's role may not log in: `spillway up` exits non-zero with one line that
    names DATABASE_URL and PostgreSQL's reason, the password hidden."""
    result = spillway_up(run_dir, free_port(), DATABASE_URL=refused_login_url(pg))
    line = assert_one_line_failure(
        result, "DATABASE_URL=postgresql+psycopg://", "not permitted to log in"
    )
    assert NO_LOGIN_PASSWORD not in result.stdout + result.stderr
    assert f"{NO_LOGIN_ROLE}:***@" in line


def test_a_refused_database_login_in_a_command_is_one_line(pg, tmp_path):
    """The same refusal met by an operator's command (`spillway db upgrade`,
    `spillway reconcile`): one line naming DATABASE_URL, exit 1, no traceback."""
    url = refused_login_url(pg)
    for command in (["db", "upgrade"], ["reconcile"], ["ledger", "status"]):
        result = subprocess.run(
            [sys.executable, "-m", "spillway", *command],
            env=clean_environment(DATABASE_URL=url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert_one_line_failure(result, "DATABASE_URL=", "not permitted to log in")


@pytest.mark.timeout(FAILED_START_SECONDS + 30)
def test_a_database_host_down_stops_up_in_one_line(run_dir):
    """DATABASE_URL points at a port nothing listens on: one line naming DATABASE_URL and
    the refused connection."""
    url = f"postgresql+psycopg://shop@127.0.0.1:{free_port()}/shop"
    result = spillway_up(run_dir, free_port(), DATABASE_URL=url)
    assert_one_line_failure(result, "DATABASE_URL=postgresql+psycopg://shop@127.0.0.1", "refused")


def test_the_public_port_taken_stops_up_in_one_line(run_dir):
    """Something already listens on nginx's port: one line naming SPILLWAY_PORT, before
    anything starts."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = spillway_up(run_dir, port)
    assert_one_line_failure(result, f"SPILLWAY_PORT={port}", "already listens")
    assert not RunDir(run_dir).supervisord_conf.exists()


@pytest.mark.timeout(FAILED_START_SECONDS + 30)
def test_redis_that_will_not_start_stops_up_in_one_line(run_dir):
    """redis exits at once at each try (its AOF manifest is damaged): `spillway up` stops
    the stack and says, in one line, that redis did not start and what its log says,
    instead of waiting out the ready timeout."""
    aof = RunDir(run_dir).redis_data / "appendonlydir"
    aof.mkdir(parents=True)
    (aof / "appendonly.aof.manifest").write_text("this is not a manifest\n")
    result = spillway_up(run_dir, free_port())
    assert_one_line_failure(result, "redis did not start", "redis.log")


@pytest.mark.timeout(FAILED_START_SECONDS + 30)
def test_memcached_that_will_not_start_stops_up_in_one_line(run_dir):
    """memcached exits at once at each try (a directory stands where its socket goes): the
    same one line as for redis, naming memcached and its log."""
    (RunDir(run_dir).memcached_socket / "in-the-way").mkdir(parents=True)
    result = spillway_up(run_dir, free_port())
    assert_one_line_failure(result, "memcached did not start", "memcached.log")


@pytest.mark.timeout(FAILED_START_SECONDS + 30)
def test_a_kept_sentinel_port_taken_stops_up_in_one_line(run_dir):
    """--redis sentinel keeps its ports once chosen (the Sentinels' files name them): one
    of them taken by something else is one line before anything starts."""
    kept = replication.load_or_create(RunDir(run_dir))
    with socket.create_server(("127.0.0.1", kept.sentinels[1])):
        result = spillway_up(run_dir, free_port(), SPILLWAY_REDIS_TOPOLOGY="sentinel")
    assert_one_line_failure(result, f"127.0.0.1:{kept.sentinels[1]} is taken", "keep their ports")
    assert not RunDir(run_dir).supervisord_conf.exists()
