"""A stack whose parts the fault tests can kill: its own redis (AOF on), memcached, SQLite
file, gunicorn with gevent workers on a loopback port, and Celery workers with beat —
each a real process in its own process group, stopped by PID."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import redis
import requests

from tests.audit import SaleAudit
from tests.factories import ADMIN_TOKEN
from tests.factories import admin_headers
from tests.servers import Server
from tests.servers import WorkerProcess
from tests.servers import binary
from tests.servers import free_port
from tests.servers import start_memcached

WEB_WORKERS = 2


def aof_redis(log_dir: Path, data_dir: Path, appendfsync: str = "everysec",
              port: int | None = None) -> Server:
    """redis-server persisting like deploy/templates/redis.conf: AOF, no RDB snapshots,
    no eviction. Started again with the same ``port`` and ``data_dir`` it replays the AOF."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", appendfsync,
            "--save", "", "--maxmemory-policy", "noeviction"]
    return Server(f"redis-{appendfsync}-{port}", argv, port, log_dir)


def restart(server: Server, timeout: float = 30.0) -> Server:
    """Start a killed server again with the same command line (same port, same data)."""
    return server.start(timeout)


def wait_redis_loaded(url: str, timeout: float = 30.0) -> None:
    """Block until redis answers PING: it accepts connections while it replays its AOF,
    and answers -LOADING (a 503 for the app's clients) until done."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:  # BusyLoadingError is one
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


class FaultStack:
    """The app served by gunicorn (gevent workers) over HTTP, with every dependency its own."""

    def __init__(self, work: Path):
        self.work = work
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
        self.redis = aof_redis(self.logs, work / "redis").start()
        self.servers.append(self.redis)
        self.memcached = start_memcached(self.logs)
        self.servers.append(self.memcached)
        self.database_url = f"sqlite:///{work / 'spillway.db'}"
        self.redis_url = f"redis://127.0.0.1:{self.redis.port}/0"
        self.env = {
            **os.environ, "SPILLWAY_ENV": "test", "SPILLWAY_LOG_LEVEL": "INFO",
            "SPILLWAY_REDIS_URL": self.redis_url,
            "SPILLWAY_BROKER_URL": f"redis://127.0.0.1:{self.redis.port}/1",
            "SPILLWAY_MEMCACHED_SERVERS": f"127.0.0.1:{self.memcached.port}",
            "SPILLWAY_RUN_DIR": str(work / "run"), "DATABASE_URL": self.database_url,
            "SPILLWAY_ADMIN_TOKEN": ADMIN_TOKEN, "SPILLWAY_RATE_LIMITS": "off",
            # What a killed worker held is re-driven after 2 s instead of 30 s.
            "SPILLWAY_OUTBOX_STUCK_MS": "2000",
        }
        subprocess.run([sys.executable, "-m", "spillway", "db", "upgrade"], env=self.env,
                       check=True, capture_output=True, timeout=120)
        port = free_port()
        self.web = Server("gunicorn", [
            sys.executable, "-m", "gunicorn", "spillway.wsgi:app", "--worker-class", "gevent",
            "--workers", str(WEB_WORKERS), "--worker-connections", "1000",
            "--bind", f"127.0.0.1:{port}", "--timeout", "90", "--graceful-timeout", "5",
            "--no-control-socket", "--error-logfile", "-"], port, self.logs, env=self.env)
        self.servers.append(self.web)
        self.web.start(60)
        self.base_url = f"http://127.0.0.1:{port}"
        self.wait_healthy()

    def start_worker(self, beat: bool = True) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.logs / f"worker-{len(self.workers)}.log", beat)
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process.poll() is None]

    def ensure_up(self) -> None:
        """Every part running again (a test that failed half-way may have left one down)."""
        for server in (self.redis, self.memcached):
            if server.process.poll() is not None:
                restart(server)
        wait_redis_loaded(self.redis_url)
        if not self.live_workers():
            self.start_worker()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise AssertionError(f"stack not ready:\n{self.web.log_tail()}")

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()
        for server in reversed(self.servers):
            server.stop()

    @property
    def audit(self) -> SaleAudit:
        return SaleAudit(self.base_url, admin_headers(), self.database_url, self.redis_url,
                         self.env)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)

    def new_sale(self, stock: int, per_user_limit: int) -> dict:
        """An active sale of a new product, through the admin API."""
        product = self.api("POST", "/api/v1/products", headers=admin_headers(),
                           json={"name": "Lantern", "price_cents": 1299})
        assert product.status_code == 201, product.text
        ends = datetime.now(timezone.utc) + timedelta(hours=1)
        sale = self.api("POST", "/api/v1/sales", headers=admin_headers(), json={
            "product_id": product.json()["id"], "stock": stock,
            "per_user_limit": per_user_limit, "ends_at": ends.isoformat()})
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
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)
