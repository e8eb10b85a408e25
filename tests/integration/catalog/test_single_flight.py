"""A cold burst of 1,000 concurrent GETs of one product costs one database read,
across two gunicorn gevent worker processes."""

import os
import subprocess
import sys

import pytest
import redis
import requests

from tests.factories import ADMIN_TOKEN
from tests.factories import admin_headers
from tests.servers import binary
from tests.servers import gunicorn_server


@pytest.fixture
def gunicorn(service_env, tmp_path):
    """The app on gunicorn with two gevent workers, as in production."""
    env = {
        **os.environ,
        **service_env,
        "SPILLWAY_ENV": "test",
        "SPILLWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "SPILLWAY_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "spillway", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    server = gunicorn_server(tmp_path, env, "--worker-connections", "2048", "--backlog", "2048")
    try:
        yield server.start(60).url
    finally:
        server.stop(30)


def test_cold_burst_costs_one_database_read(gunicorn, service_env):
    """wrk opens 1,000 connections on a cold product: exactly one database read."""
    created = requests.post(
        f"{gunicorn}/api/v1/products",
        headers=admin_headers(),
        json={"name": "Hot", "price_cents": 100},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    data = redis.Redis.from_url(service_env["SPILLWAY_REDIS_URL"])
    data.hdel("spillway:counters", "catalog.db_reads")
    url = f"{gunicorn}/api/v1/products/{created.json()['id']}"
    result = subprocess.run(
        [binary("wrk"), "-t2", "-c1000", "-d2s", "--timeout", "5s", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Requests/sec" in result.stdout, result.stdout + result.stderr
    assert "Non-2xx" not in result.stdout, result.stdout
    assert int(data.hget("spillway:counters", "catalog.db_reads") or 0) == 1
    data.close()
