"""Five hosts on one machine (tests/netns.py): a data host (redis, memcached,
PostgreSQL), two app hosts (gunicorn, gevent), two worker hosts (Celery; beat on the
first), and nginx balancing the app hosts, on 127.0.0.1 for the test. Every server is
configured as DEPLOYMENT.md says for several hosts: only addresses and environment
variables differ from `spillway up`. Used by tests/e2e/test_multihost.py and
bench/multihost.py.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from spillway.deploy.service_user import resolve_service_user
from tests.environment import service_environment
from tests.netns import Network
from tests.postgres import PostgresCluster
from tests.servers import Server
from tests.servers import binary
from tests.servers import exited
from tests.servers import free_port
from tests.servers import port_open
from tests.waiting import wait_until

ADMIN = "multihost-admin-token-0123456789abcdef"  # prd wants 32+ characters
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


@dataclass
class Deployment:
    """The running hosts: the balancer's URL, the hosts' environment, each host by name."""

    url: str
    env: dict
    hosts: dict
    work: Path


@contextmanager
def several_hosts(shards: int = 2):
    """The five hosts and the balancer, up; everything removed afterwards, however it ends.

    :param shards: SPILLWAY_STOCK_SHARDS on the app hosts.
    """
    work = Path(tempfile.mkdtemp(prefix="spillway-multihost-"))
    user = resolve_service_user()
    os.chown(work, user.uid, user.gid)
    network = Network(work)
    balancer = cluster = None
    try:
        network.up()
        data, app1, app2, worker1, worker2 = (
            network.add_host(name) for name in ("data", "app1", "app2", "worker1", "worker2")
        )
        cluster = start_data_host(network, data, work, (user.uid, user.gid))
        env = {**host_environment(data.address, work), "SPILLWAY_STOCK_SHARDS": str(shards)}
        migrated = subprocess.run(
            [sys.executable, "-m", "spillway", "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"migration failed: {migrated.stderr}")
        for app in (app1, app2):
            process = network.spawn(
                app,
                "gunicorn",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "spillway.wsgi:app",
                    "--worker-class",
                    "gevent",
                    "--workers",
                    "1",
                    "--worker-connections",
                    "1000",
                    "--bind",
                    f"{app.address}:{APP_PORT}",
                    "--no-control-socket",
                    "--graceful-timeout",
                    "5",
                ],
                env,
                (user.uid, user.gid),
            )
            wait_for_listener(app, APP_PORT, process)
        for worker in (worker1, worker2):
            beat = (
                ["--beat", "--schedule", str(work / "beat-schedule")] if worker is worker1 else []
            )
            network.spawn(
                worker,
                "celery",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "spillway.celery_entry",
                    "worker",
                    "--concurrency",
                    "1",
                    "--without-mingle",
                    "--without-gossip",
                    "-O",
                    "fair",
                    "--hostname",
                    f"{worker.name}@{worker.address}",
                    *beat,
                ],
                env,
                (user.uid, user.gid),
            )
        port = free_port()
        (work / "balancer.conf").write_text(
            BALANCER.format(
                work=work, app1=app1.address, app2=app2.address, app_port=APP_PORT, port=port
            )
        )
        balancer = Server(
            "balancer",
            [
                binary("nginx"),
                "-c",
                str(work / "balancer.conf"),
                "-e",
                str(work / "balancer-error.log"),
            ],
            port,
            work,
        ).start()
        yield Deployment(
            f"http://127.0.0.1:{port}", env, {host.name: host for host in network.hosts}, work
        )
    finally:
        if balancer:
            balancer.stop()
        network.cleanup()
        if cluster:
            shutil.rmtree(cluster.root, ignore_errors=True)
        artifacts = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))
        shutil.copytree(
            work,
            artifacts / work.name,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("pg", "redis"),
        )
        shutil.rmtree(work, ignore_errors=True)


def start_data_host(network: Network, data, work: Path, user: tuple[int, int]) -> PostgresCluster:
    """redis (no persistence: a test), memcached and PostgreSQL, on the data host's address."""
    (work / "redis").mkdir()
    os.chown(work / "redis", *user)
    redis = network.spawn(
        data,
        "redis",
        [
            binary("redis-server"),
            "--port",
            str(REDIS_PORT),
            "--bind",
            data.address,
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work / "redis"),
            "--maxclients",
            "10000",
        ],
        {},
        user,
    )
    memcached = network.spawn(
        data,
        "memcached",
        [binary("memcached"), "-l", data.address, "-p", str(MEMCACHED_PORT), "-U", "0", "-m", "64"],
        {},
        user,
    )
    cluster = PostgresCluster(work)
    cluster.port = 5432
    cluster.initdb(trusted_network=str(network.subnet))
    postgres = network.spawn(data, "postgres", cluster.argv(listen=data.address), {}, user)
    for port, process in ((REDIS_PORT, redis), (MEMCACHED_PORT, memcached), (5432, postgres)):
        wait_for_listener(data, port, process)
    cluster.wait_ready(host=data.address)
    with psycopg.connect(
        cluster.url("postgres", "postgresql", data.address), autocommit=True
    ) as conn:
        conn.execute("CREATE DATABASE spillway")
    return cluster


def wait_for_listener(host, port: int, process) -> None:
    """Until the server ``process`` started on ``host`` accepts on ``port``."""
    wait_until(
        port_open(port, host.address), 60, 0.05, what=f"{host.name}:{port}", fail_if=exited(process)
    )


def host_environment(data_address: str, work: Path) -> dict:
    """What every app and worker host is given: the data host's addresses and the secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(work),
        "SPILLWAY_ENV": "prd",
        "SPILLWAY_SECRET_KEY": "multihost-secret-key-0123456789",
        "SPILLWAY_LOG_LEVEL": "INFO",
        **service_environment(
            f"{data_address}:{REDIS_PORT}",
            f"{data_address}:{MEMCACHED_PORT}",
            f"postgresql+psycopg://spillway@{data_address}:5432/spillway",
            work,
            admin_token=ADMIN,
        ),
        "SPILLWAY_OUTBOX_STUCK_MS": "2000",
    }
