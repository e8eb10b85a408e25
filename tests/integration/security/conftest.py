"""A live app for tests that speak HTTP to it: `spillway serve` (gevent) on a free port, on
its own real redis and memcached and a migrated SQLite file, with an admin token, a buyer
and an active sale to aim at."""

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
import requests

from tests.environment import ADMIN_TOKEN
from tests.environment import service_environment
from tests.servers import Server
from tests.servers import serve_server
from tests.servers import start_memcached
from tests.servers import start_redis


@dataclass
class LiveApp:
    base_url: str
    admin: dict
    buyer: dict
    other_buyer: dict
    sale_id: str
    product_id: str
    server: Server


def _signup(base_url: str, name: str) -> dict:
    response = requests.post(f"{base_url}/api/v1/users", json={"name": name}, timeout=10)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module")
def live_app(server_logs, tmp_path_factory):
    """`spillway serve` with limits off (one client address), stopped after the module."""
    root = tmp_path_factory.mktemp("live-app")
    redis_server, memcached = start_redis(server_logs), start_memcached(server_logs)
    env = {
        **os.environ,
        "SPILLWAY_ENV": "test",
        "SPILLWAY_LOG_LEVEL": "WARNING",
        **service_environment(
            f"127.0.0.1:{redis_server.port}",
            f"127.0.0.1:{memcached.port}",
            f"sqlite:///{root / 'live.db'}",
            root,
        ),
        "SPILLWAY_PROXY_HOPS": "0",
    }
    subprocess.run(
        [sys.executable, "-m", "spillway", "db", "upgrade"],
        env=env,
        cwd=root,
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = serve_server(
        server_logs, env, "--env", "test", "--no-access-log", name="live-app", cwd=root
    ).start(timeout=60)
    base_url = server.url
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        product = requests.post(
            f"{base_url}/api/v1/products",
            headers=admin,
            timeout=10,
            json={"name": "Kettle", "price_cents": 4500},
        ).json()
        ends = datetime.now(timezone.utc) + timedelta(hours=2)
        sale = requests.post(
            f"{base_url}/api/v1/sales",
            headers=admin,
            timeout=10,
            json={
                "product_id": product["id"],
                "stock": 1_000_000,
                "per_user_limit": 100,
                "ends_at": ends.isoformat(),
            },
        ).json()
        yield LiveApp(
            base_url,
            admin,
            _signup(base_url, "alice"),
            _signup(base_url, "bob"),
            sale["id"],
            product["id"],
            server,
        )
    finally:
        server.stop()
        memcached.stop()
        redis_server.stop()
