"""A stack whose parts the fault tests can kill: its own redis (AOF on), memcached, SQLite
file, gunicorn with gevent workers on a loopback port, and Celery workers with beat —
each a real process in its own process group, stopped by PID."""

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

import redis
import requests

from tests.audit import SaleAudit
from tests.environment import service_environment
from tests.factories import admin_headers
from tests.sentinels import MASTER
from tests.servers import Server
from tests.servers import WorkerProcess
from tests.servers import aof_redis
from tests.servers import gunicorn_server
from tests.servers import start_memcached
from tests.servers import start_replica
from tests.servers import start_sentinels
from tests.waiting import NotYet
from tests.waiting import wait_until

WEB_WORKERS = 2
# redis's AOF goes to memory where the machine has it. Under everysec a background fsync that
# takes over a second (a shared CI disk) makes redis postpone its write() and still reply, so
# a SIGKILL then loses acknowledged writes: RELIABILITY.md's documented caveat of everysec,
# not a fault of the app. The kill tests judge the app and a redis process kill.
FAST_DISK = "/dev/shm" if os.path.isdir("/dev/shm") else None


def wait_redis_loaded(url: str, timeout: float = 30.0) -> None:
    """Block until redis answers PING: it accepts connections while it replays its AOF,
    and answers -LOADING (a 503 for the app's clients) until done."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:  # BusyLoadingError is a ConnectionError
        wait_until(
            client.ping,
            timeout,
            0.05,
            what="redis loaded",
            ignoring=(redis.exceptions.ConnectionError,),
        )
    finally:
        client.close()


class FaultStack:
    """The app served by gunicorn (gevent workers) over HTTP, with every dependency its own.

    ``sentinel``: redis is a primary with two replicas and three Sentinels (the app, its
    workers and the audit all find the primary through them), and a purchase waits for one
    replica before its 202 (SPILLWAY_REDIS_DURABILITY=replica)."""

    def __init__(self, work: Path, sentinel: bool = False):
        self.work = work
        self.sentinel = sentinel
        self.replicas: list[Server] = []
        self.sentinels: list[Server] = []
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.workers: list[WorkerProcess] = []
        self.servers: list[Server] = []
        try:
            self._start(work)
        except BaseException:
            self.stop()  # whatever did start
            raise

    def _start(self, work: Path) -> None:
        self.redis_dir = Path(tempfile.mkdtemp(prefix="spillway-faults-redis-", dir=FAST_DISK))
        self.redis = aof_redis(self.logs, self.redis_dir).start()
        self.servers.append(self.redis)
        if self.sentinel:
            self.replicas = [start_replica(self.logs, self.redis) for _ in range(2)]
            self.sentinels = start_sentinels(self.logs, self.redis, MASTER)
            self.servers += self.replicas + self.sentinels
        self.memcached = start_memcached(self.logs)
        self.servers.append(self.memcached)
        self.database_url = f"sqlite:///{work / 'spillway.db'}"
        self.redis_url = f"redis://127.0.0.1:{self.redis.port}/0"
        self.env = {
            **os.environ,
            "SPILLWAY_ENV": "test",
            "SPILLWAY_LOG_LEVEL": "INFO",
            **service_environment(
                f"127.0.0.1:{self.redis.port}",
                f"127.0.0.1:{self.memcached.port}",
                self.database_url,
                work / "run",
            ),
            # What a killed worker held is re-driven after 2 s instead of 30 s.
            "SPILLWAY_OUTBOX_STUCK_MS": "2000",
        }
        if self.sentinel:
            members = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
            self.redis_url = f"redis+sentinel://{members}/{MASTER}/0"
            self.env |= {
                "SPILLWAY_REDIS_URL": self.redis_url,
                "SPILLWAY_BROKER_URL": f"redis+sentinel://{members}/{MASTER}/1",
                "SPILLWAY_REDIS_DURABILITY": "replica",
            }
        subprocess.run(
            [sys.executable, "-m", "spillway", "db", "upgrade"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.web = gunicorn_server(
            self.logs,
            self.env,
            "--worker-connections",
            "1000",
            "--timeout",
            "90",
            "--graceful-timeout",
            "5",
            "--error-logfile",
            "-",
            workers=WEB_WORKERS,
            ready_path="/readyz",
        )
        self.servers.append(self.web)
        self.web.start(60)
        self.base_url = self.web.url

    def start_worker(self, beat: bool = True) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.logs / f"worker-{len(self.workers)}.log", beat)
        self.workers.append(worker)
        return worker.start()

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.running()]

    def ensure_up(self) -> None:
        """Every part running again (a test that failed half-way may have left one down)."""
        for server in (self.redis, self.memcached):
            if not server.running():
                server.start(30)
        wait_redis_loaded(self.redis_url)
        if not self.live_workers():
            self.start_worker()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        try:
            wait_until(self.web.ready, timeout, 0.3, what="the app ready")
        except NotYet as exc:
            raise NotYet(f"{exc}\n{self.web.log_tail()}") from None

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for server in reversed(self.servers):
            server.stop()
        if getattr(self, "redis_dir", None):
            shutil.rmtree(self.redis_dir, ignore_errors=True)

    @property
    def audit(self) -> SaleAudit:
        return SaleAudit(
            self.base_url, admin_headers(), self.database_url, self.redis_url, self.env
        )

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)

    def new_sale(self, stock: int, per_user_limit: int) -> dict:
        """An active sale of a new product, through the admin API."""
        product = self.api(
            "POST",
            "/api/v1/products",
            headers=admin_headers(),
            json={"name": "Lantern", "price_cents": 1299},
        )
        assert product.status_code == 201, product.text
        ends = datetime.now(timezone.utc) + timedelta(hours=1)
        sale = self.api(
            "POST",
            "/api/v1/sales",
            headers=admin_headers(),
            json={
                "product_id": product.json()["id"],
                "stock": stock,
                "per_user_limit": per_user_limit,
                "ends_at": ends.isoformat(),
            },
        )
        assert sale.status_code == 201, sale.text
        return sale.json()

    def signup(self, count: int, prefix: str = "buyer") -> list[dict]:
        """``count`` buyers: ``{"user_id", "token"}`` each."""

        def one(n):
            reply = self.api("POST", "/api/v1/users", json={"name": f"{prefix}{n}"})
            assert reply.status_code == 201, reply.text
            return reply.json()

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(one, range(count)))

    def kill_worker(self, worker: WorkerProcess) -> None:
        """SIGKILL a Celery worker's whole process group (its pool children too)."""
        worker.kill()
