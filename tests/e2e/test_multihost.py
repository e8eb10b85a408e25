"""Five hosts on one machine (network namespaces on a private bridge): a data host
(redis, memcached, PostgreSQL), two app hosts (gunicorn, gevent), two worker hosts
(Celery; beat on the first), and nginx balancing the app hosts. A burst of purchases runs
through nginx while the second worker host dies (SIGKILL of all it runs); afterwards
API.md's invariants hold: every 202 is exactly one order in PostgreSQL, no oversell, no
buyer over the limit, and the books reconcile.

Every server is configured as DEPLOYMENT.md says for several hosts: only addresses and
environment variables differ from `spillway up`.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import psycopg
import pytest
import requests

from spillway.app import create_app
from spillway.deploy.service_user import resolve_service_user
from spillway.extensions import db
from spillway.sales.reconcile import reconcile
from tests.factories import eventually
from tests.integration.sales.test_queue import accepted_orders
from tests.integration.sales.test_queue import check_invariants
from tests.integration.sales.test_queue import persisted
from tests.netns import Network
from tests.postgres import PostgresCluster
from tests.servers import Server
from tests.servers import binary
from tests.servers import free_port
from tests.servers import wait_for_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="network namespaces need root (CI runs as root)")

ADMIN = "multihost-admin-token"
REDIS_PORT, MEMCACHED_PORT, APP_PORT = 6379, 11211, 8000
BALANCER = """
daemon off;
worker_processes 1;
pid {work}/balancer.pid;
error_log {work}/balancer-error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream app_hosts {{ server {app1}:{app_port}; server {app2}:{app_port}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app_hosts;
            proxy_set_header Host $host;
            # Which app host answered: the test checks that both took traffic.
            add_header X-App-Host $upstream_addr always;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def hosts():
    """The five hosts and the balancer, up; everything removed afterwards, however it ends."""
    work = Path(tempfile.mkdtemp(prefix="spillway-multihost-"))
    user = resolve_service_user()
    os.chown(work, user.uid, user.gid)
    network = Network(work)
    balancer = cluster = None
    try:
        network.up()
        data, app1, app2, worker1, worker2 = (network.add_host(name) for name in
                                              ("data", "app1", "app2", "worker1", "worker2"))
        cluster = start_data_host(network, data, work, (user.uid, user.gid))
        env = host_environment(data.address, work)
        migrated = subprocess.run([sys.executable, "-m", "spillway", "db", "upgrade"], env=env,
                                  capture_output=True, text=True, timeout=120, cwd="/")
        assert migrated.returncode == 0, migrated.stderr
        for app in (app1, app2):
            process = network.spawn(app, "gunicorn", [
                sys.executable, "-m", "gunicorn", "spillway.wsgi:app", "--worker-class", "gevent",
                "--workers", "1", "--worker-connections", "1000", "--bind",
                f"{app.address}:{APP_PORT}", "--no-control-socket", "--graceful-timeout", "5"],
                env, (user.uid, user.gid))
            wait_for_port(APP_PORT, 60, process, host=app.address)
        for worker in (worker1, worker2):
            beat = ["--beat", "--schedule", str(work / "beat-schedule")] if worker is worker1 else []
            network.spawn(worker, "celery", [
                sys.executable, "-m", "celery", "-A", "spillway.make_celery", "worker",
                "--concurrency", "1", "--without-mingle", "--without-gossip", "-O", "fair",
                "--hostname", f"{worker.name}@{worker.address}", *beat], env, (user.uid, user.gid))
        port = free_port()
        (work / "balancer.conf").write_text(BALANCER.format(
            work=work, app1=app1.address, app2=app2.address, app_port=APP_PORT, port=port))
        balancer = Server("balancer", [binary("nginx"), "-c", str(work / "balancer.conf"),
                                       "-e", str(work / "balancer-error.log")], port, work).start()
        yield {"network": network, "url": f"http://127.0.0.1:{port}", "env": env,
               "worker2": worker2, "work": work}
    finally:
        if balancer:
            balancer.stop()
        network.cleanup()
        if cluster:
            shutil.rmtree(cluster.root, ignore_errors=True)
        artifacts = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))
        shutil.copytree(work, artifacts / work.name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("pg", "redis"))
        shutil.rmtree(work, ignore_errors=True)


def start_data_host(network: Network, data, work: Path,
                    user: tuple[int, int]) -> PostgresCluster:
    """redis (no persistence: a test), memcached and PostgreSQL, on the data host's address."""
    (work / "redis").mkdir()
    os.chown(work / "redis", *user)
    redis = network.spawn(data, "redis", [
        binary("redis-server"), "--port", str(REDIS_PORT), "--bind", data.address,
        "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(work / "redis"),
        "--maxclients", "10000"], {}, user)
    memcached = network.spawn(data, "memcached", [
        binary("memcached"), "-l", data.address, "-p", str(MEMCACHED_PORT), "-U", "0", "-m", "64"],
        {}, user)
    cluster = PostgresCluster(work)
    cluster.port = 5432
    cluster.initdb(trusted_network=str(network.subnet))
    postgres = network.spawn(data, "postgres", cluster.argv(listen=data.address), {}, user)
    for port, process in ((REDIS_PORT, redis), (MEMCACHED_PORT, memcached), (5432, postgres)):
        wait_for_port(port, 60, process, host=data.address)
    cluster.wait_ready(host=data.address)
    with psycopg.connect(cluster.url("postgres", "postgresql", data.address),
                         autocommit=True) as conn:
        conn.execute("CREATE DATABASE spillway")
    return cluster


def host_environment(data_address: str, work: Path) -> dict:
    """What every app and worker host is given: the data host's addresses and the secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(work),
        "SPILLWAY_ENV": "prd",
        "SPILLWAY_SECRET_KEY": "multihost-secret-key-0123456789",
        "SPILLWAY_ADMIN_TOKEN": ADMIN,
        "SPILLWAY_LOG_LEVEL": "INFO",
        "SPILLWAY_RUN_DIR": str(work),
        "DATABASE_URL": f"postgresql+psycopg://spillway@{data_address}:5432/spillway",
        "SPILLWAY_REDIS_URL": f"redis://{data_address}:{REDIS_PORT}/0",
        "SPILLWAY_BROKER_URL": f"redis://{data_address}:{REDIS_PORT}/1",
        "SPILLWAY_MEMCACHED_SERVERS": f"{data_address}:{MEMCACHED_PORT}",
        "SPILLWAY_RATE_LIMITS": "off",
        "SPILLWAY_OUTBOX_STUCK_MS": "2000",
        "SPILLWAY_STOCK_SHARDS": "2",
    }


@pytest.fixture(scope="module")
def ledger(hosts):
    """An app in this process on the data host's servers: the test's view of the books."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in hosts["env"].items():
            patch.setenv(name, value)
        app = create_app("test")
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
        app.extensions["redis"].close()
        app.extensions["memcache"].close()


def test_burst_survives_a_worker_host_dying(hosts, ledger):
    """300 buyers, 600 attempts (every key sent twice) on 200 units through the balancer;
    worker host 2 is killed half-way. Both app hosts serve; every invariant holds."""
    base, admin = hosts["url"], {"Authorization": f"Bearer {ADMIN}"}
    session = requests.Session()
    product = session.post(f"{base}/api/v1/products", headers=admin, timeout=30,
                           json={"name": "Lamp", "price_cents": 900}).json()
    sale = session.post(f"{base}/api/v1/sales", headers=admin, timeout=30, json={
        "product_id": product["id"], "stock": 200, "per_user_limit": 2,
        "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()}).json()
    tokens = [session.post(f"{base}/api/v1/users", json={"name": f"m{i}"}, timeout=30)
              .json()["token"] for i in range(300)]
    attempts = 600
    served_by = set()

    def attempt(n):
        if n == attempts // 2:
            hosts["worker2"].kill()  # the whole host, mid-burst
        response = requests.post(
            f"{base}/api/v1/sales/{sale['id']}/orders", json={"quantity": 1 + n % 2},
            headers={"Authorization": f"Bearer {tokens[n % 300]}",
                     "Idempotency-Key": f"key-{n % (attempts // 2)}"}, timeout=60)
        served_by.add(response.headers.get("X-App-Host"))
        assert response.status_code in (200, 202, 409), response.text
        return response.status_code, response.json().get("order_id"), 1 + n % 2

    with ThreadPoolExecutor(max_workers=24) as pool:
        accepted = accepted_orders(pool.map(attempt, range(attempts)))
    assert 0 < sum(accepted.values()) <= 200, "never oversold"
    assert len(served_by) == 2, f"both app hosts took traffic: {served_by}"
    with ledger.app_context():
        eventually(lambda: len(persisted(accepted)) == len(accepted), timeout=120)
        check_invariants(sale, accepted)
        eventually(lambda: reconcile(int(sale["id"])).ok, timeout=60)
