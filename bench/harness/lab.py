"""The servers of one run, started on first use on free loopback ports, stopped together.

- the stack: ``spillway up --seed-demo --web-workers 2`` (nginx → gunicorn gevent ×2),
  with SPILLWAY_RATE_LIMITS=off (all load comes from one address);
- the peer: FastAPI on uvicorn (bench/peer/app.py), 2 worker processes like gunicorn's,
  uvloop + httptools (``uvicorn[standard]``, what its docs recommend), no access log (our
  gunicorn writes none either), on a unix socket behind an nginx proxying like ours;
- baselines: the seed's ``app.run()`` (bench/naive_seed_app.py), gunicorn sync ×2 running
  the same app, the naive row-lock purchase (bench/naive_purchase_app.py) behind nginx.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import foundation
import requests
import sale
from foundation import PYTHON
from foundation import REPO_ROOT

from spillway.deploy.layout import process_environment
from spillway.deploy.run_dir import RunDir
from tests.servers import Server
from tests.servers import binary
from tests.servers import free_port

HOST = "127.0.0.1"
WEB_WORKERS = 2  # foundation.Stack runs `spillway up --web-workers 2`

FRONT_NGINX = """
daemon off;
worker_processes auto;
pid %(work)s/nginx.pid;
error_log %(work)s/error.log warn;
events { worker_connections 16384; }
http {
    access_log %(work)s/access.log combined buffer=64k flush=1s;
    client_body_temp_path %(work)s/body;
    proxy_temp_path %(work)s/proxy;
    fastcgi_temp_path %(work)s/fastcgi;
    uwsgi_temp_path %(work)s/uwsgi;
    scgi_temp_path %(work)s/scgi;
    upstream backend { server %(upstream)s fail_timeout=0; %(keepalive)s}
    server {
        listen 127.0.0.1:%(port)d backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        location / { proxy_pass http://backend; }
    }
}
"""


class UnixSocketServer(Server):
    """A Server that listens on a unix socket: ready once the socket accepts."""

    def __init__(self, name: str, argv: list[str], path: Path, log_dir: Path, **popen):
        super().__init__(name, argv, 0, log_dir, **popen)
        self.path = path

    def start(self, timeout: float = 60.0) -> "UnixSocketServer":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, **self.popen)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.path))
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name}: nothing on {self.path} after {timeout}s")


class Lab:
    """Everything one run starts, lazily; ``stop_all`` stops it, newest first."""

    def __init__(self, work: Path):
        # The app built here (lab.app) configures logging; the sign-ups' shared session
        # would then warn on every connection its pool of 10 cannot keep.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(exist_ok=True)
        self._started: list = []
        self._stack = None
        self._urls: dict[str, str] = {}
        self._tokens: list[str] = []
        self._app = None
        self.admin: dict = {}

    # ------------------------------------------------------------------ the stack

    @property
    def stack(self) -> foundation.Stack:
        if self._stack is None:
            run_dir = self.work / "run"
            run_dir.mkdir()
            run_dir.chmod(0o755)  # the spillway user must reach the sockets inside
            os.environ["SPILLWAY_RATE_LIMITS"] = "off"  # passed through by `spillway up`
            stack = foundation.Stack(run_dir, free_port(), self.logs / "spillway-up.log",
                                     extra_args=("--seed-demo",))
            self._started.append(stack)
            stack.start()
            self._stack = stack
            self.admin = {"Authorization": f"Bearer {self.secrets['SPILLWAY_ADMIN_TOKEN']}"}
        return self._stack

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.stack.port}"

    @property
    def secrets(self) -> dict[str, str]:
        text = (self.stack.paths.secrets_file).read_text()
        return dict(line.split("=", 1) for line in text.split())

    def environment(self) -> dict[str, str]:
        """The environment the stack's app processes run with (prd, its sockets, secrets)."""
        env = process_environment(RunDir(self.stack.run_dir), "WARNING", self.secrets,
                                  "http://127.0.0.1:9")
        return {**env, "SPILLWAY_RATE_LIMITS": "off"}

    def app(self):
        """The stack's app, built in this process with the stack's environment (for the
        reconciler; this process is not patched for gevent and needs no server)."""
        if self._app is None:
            from flashsale.app import create_app

            saved = dict(os.environ)
            os.environ.update(self.environment())
            try:
                self._app = create_app("prd")
            finally:
                os.environ.clear()
                os.environ.update(saved)
        return self._app

    def supervisorctl(self, *args: str) -> None:
        sale.stack_supervisorctl(self.stack)(*args)

    def api(self):
        """``call(method, path, **kwargs)`` against the stack, raising on an error status."""
        return sale.api(self.url, self.admin)[0]

    def buyers(self, count: int) -> list[str]:
        """Tokens of ``count`` signed-up buyers (user ids 1…count on a fresh stack)."""
        if len(self._tokens) < count:
            call = self.api()
            with ThreadPoolExecutor(max_workers=16) as pool:
                self._tokens += list(pool.map(
                    lambda n: call("POST", "/api/v1/users", json={"name": f"bench{n}"})["token"],
                    range(len(self._tokens), count)))
        return self._tokens[:count]

    def new_sale(self, stock: int, per_user_limit: int) -> dict:
        call = self.api()
        sale_id = sale.create_sale(call, self.admin, stock, per_user_limit)
        return call("GET", f"/api/v1/sales/{sale_id}")

    # ------------------------------------------------------------------ the others

    def _once(self, name: str, start) -> str:
        if name not in self._urls:
            self._urls[name] = start()
        return self._urls[name]

    def _front_nginx(self, name: str, upstream: str, keepalive: int = 0) -> str:
        """An nginx proxying to ``upstream`` the way the stack's nginx proxies to gunicorn
        (with ``keepalive``: pooling that many idle upstream connections per worker)."""
        own = self.work / name
        own.mkdir()
        port = free_port()
        config = own / "nginx.conf"
        config.write_text(FRONT_NGINX % {"work": own, "upstream": upstream, "port": port,
                                         "keepalive": f"keepalive {keepalive}; " if keepalive
                                         else ""})
        server = Server(name, [binary("nginx"), "-c", str(config), "-e",
                               str(own / "error.log")], port, self.logs)
        self._started.append(server)
        server.start()
        return f"http://{HOST}:{port}"

    @property
    def peer_url(self) -> str:
        def start() -> str:
            socket_path = self.work / "peer.sock"
            env = {**os.environ, "PEER_REDIS_SOCKET": str(self.stack.paths.redis_socket),
                   "PEER_MEMCACHED_SOCKET": str(self.stack.paths.memcached_socket),
                   "PEER_DATABASE": str(self.stack.paths.database),
                   "SPILLWAY_SECRET_KEY": self.secrets["SPILLWAY_SECRET_KEY"],
                   "PYTHONPATH": str(REPO_ROOT / "bench")}
            argv = [PYTHON, "-m", "uvicorn", "peer.app:app", "--workers", str(WEB_WORKERS),
                    "--uds", str(socket_path), "--loop", "uvloop", "--http", "httptools",
                    "--no-access-log", "--backlog", "4096", "--log-level", "warning"]
            server = UnixSocketServer("peer-uvicorn", argv, socket_path, self.logs, env=env,
                                      cwd=REPO_ROOT / "bench")
            self._started.append(server)
            server.start()
            return self._front_nginx("peer-nginx", f"unix:{socket_path}")
        return self._once("peer", start)

    @property
    def peer_keepalive_url(self) -> str:
        """The same peer behind an nginx that pools upstream connections (``keepalive
        64``): how a uvicorn user would proxy it, and uvicorn's fastest configuration."""
        return self._once("peer-keepalive", lambda: self._front_nginx(
            "peer-nginx-keepalive", f"unix:{self.work / 'peer.sock'}", keepalive=64)
            if self.peer_url else "")

    @property
    def keepalive_url(self) -> str:
        """Our gunicorn behind a second nginx, the stack's config plus ``keepalive 64``:
        what pooled upstream connections would give (the stack ships without, for its tail)."""
        def start() -> str:
            own = self.work / "nginx-keepalive"
            own.mkdir()
            port = free_port()
            config = own / "nginx.conf"
            config.write_text(foundation.keepalive_variant(
                (self.stack.paths.nginx_conf).read_text(), port, own))
            server = Server("nginx-keepalive", [binary("nginx"), "-c", str(config), "-e",
                                                str(own / "error.log")], port, self.logs)
            self._started.append(server)
            server.start()
            return f"http://{HOST}:{port}"
        return self._once("keepalive", start)

    @property
    def naive_seed_url(self) -> str:
        def start() -> str:
            server = foundation.naive_server(self.logs)
            self._started.append(server)
            server.start()
            return f"http://{HOST}:{server.port}"
        return self._once("naive-seed", start)

    def stop_naive_seed(self) -> None:
        """Its threads keep sleeping after a slow flood: stop it before measuring more."""
        self._stop_named("naive-seed")

    @property
    def sync_url(self) -> str:
        """The same app on gunicorn's sync workers, directly (the textbook deployment)."""
        def start() -> str:
            port = free_port()
            argv = [PYTHON, "-m", "gunicorn", "spillway.wsgi:app", "-w", str(WEB_WORKERS),
                    "-b", f"{HOST}:{port}", "--backlog", "4096", "--no-control-socket",
                    "--timeout", "120"]
            server = Server("gunicorn-sync", argv, port, self.logs, env=self.environment(),
                            cwd=self.stack.run_dir)
            self._started.append(server)
            server.start(timeout=60)
            return f"http://{HOST}:{port}"
        return self._once("gunicorn-sync", start)

    def stop_sync(self) -> None:
        self._stop_named("gunicorn-sync")

    @property
    def naive_purchase_url(self) -> str:
        def start() -> str:
            work = self.work / "naive-purchase"
            work.mkdir()
            app = sale.naive_server(work)
            self._started.append(app)
            return self._front_nginx("naive-purchase-nginx", f"{HOST}:{app.port}")
        return self._once("naive-purchase", start)

    def pid_of(self, server: str) -> int | None:
        """The root process of a server whose CPU per request is measured: "gunicorn" and
        "nginx" are the stack's, anything else a server this lab started, by name."""
        if server == "nginx":
            return int((self.stack.paths.nginx_pid).read_text())
        if server == "gunicorn":
            done = subprocess.run([PYTHON, "-m", "supervisor.supervisorctl", "-c",
                                   str(self.stack.paths.supervisord_conf), "pid",
                                   "gunicorn"], capture_output=True, text=True, timeout=60)
            return int(done.stdout.strip()) if done.stdout.strip().isdigit() else None
        found = [s.process.pid for s in self._started
                 if getattr(s, "name", "") == server and s.process]
        return found[-1] if found else None

    def _stop_named(self, name: str) -> None:
        for server in self._started:
            if getattr(server, "name", "") == name:
                server.stop()
        self._urls.pop(name, None)

    def stop_all(self) -> None:
        foundation.stop_all(self._started)
        self._started.clear()
        self._urls.clear()
        self._stack = self._app = None


def check_get(url: str, expected_status: int = 200, headers: dict | None = None,
              times: int = 3) -> None:
    """A target answers what the benchmark expects (and is warm) before it is measured."""
    for _ in range(times):
        response = requests.get(url, headers=headers or {}, timeout=15)
        if response.status_code != expected_status:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]!r}")


def install_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every finally block stops what it started."""
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
