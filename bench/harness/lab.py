"""The servers of one run, started on first use on free loopback ports, stopped together.

- the stack: ``spillway up --seed-demo --web-workers 2`` (nginx → gunicorn gevent ×2),
  with SPILLWAY_RATE_LIMITS=off (all load comes from one address);
- the peer: FastAPI on uvicorn (bench/peer/app.py), 2 worker processes like gunicorn's,
  uvloop + httptools (``uvicorn[standard]``, what its docs recommend), no access log (our
  gunicorn writes none either), on a unix socket behind an nginx proxying like ours;
- baselines: the seed's ``app.run()`` (bench/naive_seed_app.py), gunicorn sync ×2 running
  the same app, the naive row-lock purchase (bench/naive_purchase_app.py) behind nginx.

``session()`` is the life of a standalone bench: a work directory, a lab, everything it
started stopped by process group however the run ends.
"""

import logging
import os
import pwd
import re
import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import requests

from harness.shop import Shop
from tests.audit import wait_drained
from tests.servers import Server
from tests.servers import binary
from tests.servers import free_port
from tests.servers import gunicorn_server
from tests.servers import unix_socket_accepts
from tests.spillway_up import SpillwayUp

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO_ROOT / "bench"
PYTHON = sys.executable
HOST = "127.0.0.1"
WEB_WORKERS = 2
STACK_ARGS = ("--web-workers", str(WEB_WORKERS), "--seed-demo")

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


class Lab:
    """Everything one run starts, lazily; ``stop_all`` stops it, newest first."""

    def __init__(self, work: Path, stack_args: tuple = STACK_ARGS, stack_env: dict | None = None):
        # The sign-ups' shared session would warn on every connection its pool cannot keep.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.stack_args = stack_args
        self.stack_env = stack_env or {}
        self._started: list = []
        self._stack: SpillwayUp | None = None
        self._shop: Shop | None = None
        self._urls: dict[str, str] = {}
        self._tokens: list[str] = []

    # ------------------------------------------------------------------ the stack

    @property
    def stack(self) -> SpillwayUp:
        if self._stack is None:
            run_dir = self.work / "run"
            run_dir.mkdir(exist_ok=True)
            run_dir.chmod(0o755)  # the spillway user must reach the sockets inside
            stack = SpillwayUp(run_dir, self.logs, *self.stack_args, env=self.stack_env)
            self._started.append(stack)
            self._stack = stack.start()
        return self._stack

    @property
    def url(self) -> str:
        return self.stack.base_url

    @property
    def admin(self) -> dict:
        return self.stack.admin_headers()

    @property
    def shop(self) -> Shop:
        if self._shop is None:
            self._shop = Shop(self.url, self.admin)
        return self._shop

    def buyers(self, count: int) -> list[str]:
        """Tokens of ``count`` signed-up buyers (user ids 1…count on a fresh stack)."""
        if len(self._tokens) < count:
            self._tokens += self.shop.signup(count - len(self._tokens), start=len(self._tokens))
        return self._tokens[:count]

    def new_sale(self, stock: int, per_user_limit: int, **fields) -> dict:
        return self.shop.new_sale(stock, per_user_limit, **fields)

    def supervisorctl(self, *args: str) -> str:
        return self.stack.supervisorctl(*args)

    def wait_drained(self, timeout: float = 120) -> None:
        """Until the workers have emptied the outbox: no run pays for the one before it."""
        wait_drained(self.stack.environment()["SPILLWAY_REDIS_URL"], timeout)

    # ------------------------------------------------------------------ the others

    def start(self, server: Server, timeout: float = 60) -> Server:
        """Start a server of one's own (or take one started already, start_redis's);
        stopped with the others."""
        self._started.append(server)
        return server if server.running() else server.start(timeout)

    def _once(self, name: str, start) -> str:
        if name not in self._urls:
            self._urls[name] = start()
        return self._urls[name]

    def _nginx(self, name: str, config: str) -> str:
        """An nginx of its own, from ``config`` with %(work)s and %(port)d filled in."""
        own = self.work / name
        own.mkdir()
        port = free_port()
        (own / "nginx.conf").write_text(
            config.replace("%(work)s", str(own)).replace("%(port)d", str(port))
        )
        server = self.start(
            Server(
                name,
                [binary("nginx"), "-c", str(own / "nginx.conf"), "-e", str(own / "error.log")],
                port,
                self.logs,
            )
        )
        return server.url

    def _front_nginx(self, name: str, upstream: str, keepalive: int = 0) -> str:
        """An nginx proxying to ``upstream`` the way the stack's nginx proxies to gunicorn
        (with ``keepalive``: pooling that many idle upstream connections per worker)."""
        return self._nginx(
            name,
            FRONT_NGINX.replace("%(upstream)s", upstream).replace(
                "%(keepalive)s", f"keepalive {keepalive}; " if keepalive else ""
            ),
        )

    @property
    def peer_url(self) -> str:
        def start() -> str:
            socket_path = self.work / "peer.sock"
            paths = self.stack.paths
            env = {
                **os.environ,
                "PEER_REDIS_SOCKET": str(paths.redis_socket),
                "PEER_MEMCACHED_SOCKET": str(paths.memcached_socket),
                "PEER_DATABASE": str(paths.database),
                "SPILLWAY_SECRET_KEY": self.stack.secrets()["SPILLWAY_SECRET_KEY"],
                "PYTHONPATH": str(BENCH_DIR),
            }
            argv = [
                PYTHON,
                "-m",
                "uvicorn",
                "peer.app:app",
                "--workers",
                str(WEB_WORKERS),
                "--uds",
                str(socket_path),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--backlog",
                "4096",
                "--log-level",
                "warning",
            ]
            self.start(
                Server(
                    "peer-uvicorn",
                    argv,
                    0,
                    self.logs,
                    env=env,
                    cwd=BENCH_DIR,
                    ready=unix_socket_accepts(socket_path),
                )
            )
            return self._front_nginx("peer-nginx", f"unix:{socket_path}")

        return self._once("peer", start)

    @property
    def peer_keepalive_url(self) -> str:
        """The same peer behind an nginx that pools upstream connections (``keepalive
        64``): how a uvicorn user would proxy it, and uvicorn's fastest configuration."""
        return self._once(
            "peer-keepalive",
            lambda: (
                self._front_nginx(
                    "peer-nginx-keepalive", f"unix:{self.work / 'peer.sock'}", keepalive=64
                )
                if self.peer_url
                else ""
            ),
        )

    @property
    def keepalive_url(self) -> str:
        """Our gunicorn behind a second nginx, the stack's config plus ``keepalive 64``:
        what pooled upstream connections would give (the stack ships without, for its tail)."""
        return self.pooled_url()

    def pooled_url(self, pool: str = "keepalive 64;", per_socket: bool = False) -> str:
        """An nginx with the stack's config and ``pool`` (balancing and keep-alive lines) in
        its upstream block, in front of the stack's gunicorn, or ``per_socket``: in front of
        the per-socket gunicorns, one ``server`` line each."""
        name = f"{'per-socket' if per_socket else 'one socket'}: {pool}"

        def start() -> str:
            servers = (
                [f"unix:{path}" for path in self.per_socket_gunicorns()] if per_socket else None
            )
            config = keepalive_variant(self.stack.paths.nginx_conf.read_text(), servers, pool)
            return self._nginx(f"nginx-pooled-{len(self._urls)}", config)

        return self._once(name, start)

    def per_socket_gunicorns(self) -> list[Path]:
        """The stack's own gunicorn program (its rendered supervisord.conf: command, user,
        directory) run ``WEB_WORKERS`` times with one worker each, each on a unix socket of
        its own beside the stack's, in the stack's environment: a pooled connection then
        stays with the process nginx chose for it, not with whichever worker won the accept
        on one shared socket."""
        paths = self.stack.paths
        sockets = [paths.gunicorn_socket.with_name(f"bench-{n}.sock") for n in range(WEB_WORKERS)]

        def start() -> str:
            conf = paths.supervisord_conf.read_text()
            level = self.stack_env.get("SPILLWAY_LOG_LEVEL", "INFO")  # as `spillway up`'s
            for n, socket_path in enumerate(sockets):
                argv, account = single_worker_program(conf, socket_path)
                self.start(
                    Server(
                        f"gunicorn-socket-{n}",
                        argv,
                        0,
                        self.logs,
                        env=self.stack.environment(level),
                        cwd="/",
                        user=account.pw_uid,
                        group=account.pw_gid,
                        extra_groups=os.getgrouplist(account.pw_name, account.pw_gid),
                        ready=unix_socket_accepts(socket_path),
                    )
                )
            return "started"

        self._once("per-socket-gunicorns", start)
        return sockets

    def nginx_pid(self, url: str) -> int | None:
        """The master of the nginx answering on ``url``: the stack's, or one this lab
        started."""
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        if self._stack is not None and port == self._stack.port:
            return self.pid_of("nginx")
        found = [s.process.pid for s in self._started if s.port == port and s.process]
        return found[-1] if found else None

    @property
    def naive_seed_url(self) -> str:
        def start() -> str:
            port = free_port()
            return self.start(
                Server(
                    "naive-seed",
                    [PYTHON, str(BENCH_DIR / "naive_seed_app.py"), str(port)],
                    port,
                    self.logs,
                )
            ).url

        return self._once("naive-seed", start)

    def stop_naive_seed(self) -> None:
        """Its threads keep sleeping after a slow flood: stop it before measuring more."""
        self._stop_named("naive-seed")

    @property
    def sync_url(self) -> str:
        """The same app on gunicorn's sync workers, directly (the textbook deployment)."""
        return self._once(
            "gunicorn-sync",
            lambda: (
                self.start(
                    gunicorn_server(
                        self.logs,
                        self.stack.environment(),
                        "--backlog",
                        "4096",
                        "--timeout",
                        "120",
                        workers=WEB_WORKERS,
                        worker_class="sync",
                        name="gunicorn-sync",
                        cwd=self.stack.run_dir,
                    )
                ).url
            ),
        )

    def stop_sync(self) -> None:
        self._stop_named("gunicorn-sync")

    @property
    def naive_purchase_url(self) -> str:
        def start() -> str:
            port = free_port()
            database = self.work / "naive-purchase.db"
            self.start(
                Server(
                    "naive-purchase",
                    [
                        PYTHON,
                        "-m",
                        "gunicorn",
                        f"naive_purchase_app:make_app('{database}')",
                        "-k",
                        "gevent",
                        "-w",
                        str(WEB_WORKERS),
                        "--worker-connections",
                        "4096",
                        "--backlog",
                        "4096",
                        "-b",
                        f"{HOST}:{port}",
                        "--no-control-socket",
                        "--chdir",
                        str(BENCH_DIR),
                    ],
                    port,
                    self.logs,
                )
            )
            return self._front_nginx("naive-purchase-nginx", f"{HOST}:{port}")

        return self._once("naive-purchase", start)

    def pid_of(self, server: str) -> int | None:
        """The root process of a server whose CPU per request is measured: "gunicorn" and
        "nginx" are the stack's, anything else a server this lab started, by name."""
        if server == "nginx":
            return int(self.stack.paths.nginx_pid.read_text())
        if server == "gunicorn":
            pid = self.stack.supervisorctl("pid", "gunicorn").strip()
            return int(pid) if pid.isdigit() else None
        found = [s.process.pid for s in self._started if s.name == server and s.process]
        return found[-1] if found else None

    def _stop_named(self, name: str) -> None:
        for server in self._started:
            if server.name == name:
                server.stop()
        self._urls.pop(name, None)

    def stop_all(self) -> None:
        """Stop every server this lab started, newest first; one failure must not stop the
        rest."""
        for server in reversed(self._started):
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001  (report, and go on stopping the others)
                print(f"warning: could not stop {server.name}: {exc}", file=sys.stderr)
        self._started.clear()
        self._urls.clear()
        self._stack = self._shop = None


def keepalive_variant(
    config: str, servers: list[str] | None = None, pool: str = "keepalive 64;"
) -> str:
    """The stack's nginx.conf on a port, pid file and logs of its own (%(port)d, %(work)s),
    with ``pool`` (by default ``keepalive 64;``) in the upstream block, after the stack's
    gunicorn socket or the ``servers`` that replace it. Every edit must apply exactly once,
    so a changed template fails here loudly instead of silently benchmarking the wrong thing."""
    upstream = (
        "\n        ".join(f"server {server} fail_timeout=0;" for server in servers)
        if servers
        else r"\1"
    )
    edits = [
        (r"listen\s+127\.0\.0\.1:\d+ backlog", f"listen {HOST}:%(port)d backlog"),
        # The loopback metrics server: its port is the stack's own nginx's.
        (r"listen\s+127\.0\.0\.1:\d+;", f"listen {HOST}:{free_port()};"),
        (r"^pid\s+\S+;", "pid %(work)s/nginx.pid;"),
        (r"^error_log\s+\S+", "error_log %(work)s/error.log"),
        (r"access_log\s+/dev/stdout", "access_log %(work)s/access.log"),
        (r"(server unix:\S+gunicorn\.sock[^;]*;)", f"{upstream}\n        {pool}"),
    ]
    for pattern, replacement in edits:
        config, count = re.subn(pattern, replacement, config, flags=re.M)
        if count != 1:
            raise RuntimeError(f"nginx.conf: expected one match for {pattern!r}, got {count}")
    return config


def single_worker_program(
    supervisord_conf: str, socket_path: Path
) -> tuple[list[str], pwd.struct_passwd]:
    """The gunicorn program of a rendered supervisord.conf with one worker bound to
    ``socket_path``, and the account it runs as; each edit must apply exactly once (as in
    keepalive_variant)."""
    found = re.search(r"^\[program:gunicorn\]\n(.*?)(?=^\[|\Z)", supervisord_conf, re.M | re.S)
    if not found:
        raise RuntimeError("supervisord.conf: no [program:gunicorn]")
    section = found.group(1)
    command = re.search(r"^command=(.*?)\n(?=\S)", section, re.M | re.S).group(1)
    for pattern, replacement in (
        (r"--workers \d+", "--workers 1"),
        (r"--bind unix:\S+", f"--bind unix:{socket_path}"),
    ):
        command, count = re.subn(pattern, replacement, command)
        if count != 1:
            raise RuntimeError(f"gunicorn command: expected one {pattern!r}, got {count}")
    user = re.search(r"^user=(\S+)", section, re.M)
    return command.split(), pwd.getpwnam(
        user.group(1) if user else pwd.getpwuid(os.getuid()).pw_name
    )


def check_get(
    url: str, expected_status: int = 200, headers: dict | None = None, times: int = 3
) -> None:
    """A target answers what the benchmark expects (and is warm) before it is measured."""
    for _ in range(times):
        response = requests.get(url, headers=headers or {}, timeout=15)
        if response.status_code != expected_status:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]!r}")


def install_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every finally block stops what it started."""
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))


@contextmanager
def session(name: str, **lab_options):
    """A standalone bench's life: a work directory (kept, and named, if the run fails), a
    lab in it, every server it started stopped however the run ends."""
    install_sigterm()
    work = Path(tempfile.mkdtemp(prefix=f"spillway-bench-{name}-"))
    work.chmod(0o755)  # the stack's processes run as the spillway user
    lab = Lab(work, **lab_options)
    failed = True
    try:
        yield lab
        failed = False
    finally:
        lab.stop_all()
        if failed:
            print(
                f"bench {name} failed; logs kept in {work}/logs and {work}/run/logs",
                file=sys.stderr,
            )
        else:
            shutil.rmtree(work, ignore_errors=True)
