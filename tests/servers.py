"""Real servers for tests and the bench: started on free loopback ports, each ready once
its probe says so, stopped by process group afterwards."""

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import redis
import requests

from tests.waiting import wait_until

Probe = Callable[[], bool]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def binary(name: str) -> str:
    """Path of a system binary; the suite's set-up (make test) installs them."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        raise RuntimeError(f"{name} is not installed: run the tests with `make test`")
    return path


# ---------------------------------------------------------------------- readiness probes


def port_open(port: int, host: str = "127.0.0.1") -> Probe:
    """Something accepts TCP connections on host:port."""

    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


def unix_socket_accepts(path: Path) -> Probe:
    """Something accepts connections on the unix socket at ``path``."""

    def probe() -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(path))
                return True
            except OSError:
                return False

    return probe


def http_ok(url: str) -> Probe:
    """``url`` answers 200 (a port opens before a web worker has imported its app)."""

    def probe() -> bool:
        try:
            return requests.get(url, timeout=10).status_code == 200
        except requests.RequestException:
            return False

    return probe


def exited(process: subprocess.Popen) -> Callable[[], str | None]:
    """For ``wait_until(fail_if=…)``: why waiting on ``process`` is pointless, if it is."""

    def reason() -> str | None:
        code = process.poll()
        return None if code is None else f"{Path(str(process.args[0])).name} exited with {code}"

    return reason


class Server:
    """One server process in its own process group, with its log in a file.

    ``ready`` says when it serves: by default its port accepting on 127.0.0.1, nothing
    to wait for when it has no port (a Celery worker).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        log_dir: Path,
        *,
        ready: Probe | None = None,
        **popen,
    ):
        self.name = name
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.log_path = log_dir / f"{name}.log"
        self.ready = ready or (port_open(port) if port else None)
        self.popen = popen
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "Server":
        """Start it (again, with the same command line, after a kill) and wait until ready.

        :raise NotYet: it exited, or was not ready within ``timeout``; with its log's tail.
        """
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.popen,
            )
        if self.ready:
            try:
                wait_until(
                    self.ready,
                    timeout,
                    0.05,
                    what=f"{self.name} ready",
                    fail_if=exited(self.process),
                )
            except AssertionError as exc:
                raise type(exc)(f"{exc}\n{self.log_tail()}") from None
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Signal the whole process group (a fault injection, or the end of a test); if it
        is still there after ``timeout`` seconds, SIGKILL it."""
        if not self.running():
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM to the group); kill after ``timeout`` seconds."""
        self.kill(signal.SIGTERM, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it holds ``text``.

        :raise NotYet: not there within ``timeout``; with the log's tail.
        """
        return wait_until(
            self.log, timeout, 0.05, until=lambda log: text in log, what=f"{text!r} in the log"
        )

    def exit_code(self, timeout: float = 60.0) -> int:
        """Its exit status, once it exits by itself within ``timeout`` seconds."""
        return self.process.wait(timeout=timeout)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def memory_only_redis_argv(port: int, data: Path, *options: str) -> list[str]:
    """redis-server on loopback ``port`` persisting nothing (``data`` holds what a replica
    receives), with ``options`` after."""
    data.mkdir()
    return [
        binary("redis-server"),
        *("--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--dir", str(data)),
        *options,
    ]


def start_redis(log_dir: Path) -> Server:
    port = free_port()
    argv = memory_only_redis_argv(port, log_dir / f"redis-{port}")
    return Server("redis", argv, port, log_dir).start()


def start_replica(log_dir: Path, primary: Server) -> Server:
    """A redis-server replicating ``primary`` (no persistence of its own), started once its
    link to the primary is up."""
    port = free_port()
    argv = memory_only_redis_argv(
        port, log_dir / f"redis-replica-{port}", "--replicaof", "127.0.0.1", str(primary.port)
    )

    def linked() -> bool:
        try:
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
        except redis.exceptions.ConnectionError:
            return False
        return info.get("master_link_status") == "up"

    return Server(f"redis-replica-{port}", argv, port, log_dir, ready=linked).start()


def start_sentinels(
    log_dir: Path,
    primary: Server,
    master: str = "spillway",
    count: int = 3,
    down_after_ms=2000,
    password: str = "",
) -> list[Server]:
    """``count`` redis Sentinels watching ``primary`` as ``master`` (a quorum of a majority),
    quick to act: down after ``down_after_ms`` of silence. Each rewrites its own config
    file as it learns the replicas, the other Sentinels and, after a failover, the new
    primary. With ``password``: the primary's, and each Sentinel's own."""
    auth = (
        f"requirepass {password}\nsentinel sentinel-pass {password}\n"
        f"sentinel auth-pass {master} {password}\n"
        if password
        else ""
    )
    sentinels = []
    for _ in range(count):
        port = free_port()
        config = log_dir / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {log_dir}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary.port} {count // 2 + 1}\n"
            f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
            f"sentinel failover-timeout {master} 10000\n"
            f"sentinel parallel-syncs {master} 1\n" + auth
        )
        argv = [binary("redis-server"), str(config), "--sentinel"]
        sentinels.append(Server(f"sentinel-{port}", argv, port, log_dir).start())
    return sentinels


def aof_redis(
    log_dir: Path, data_dir: Path, appendfsync: str = "everysec", port: int | None = None
) -> Server:
    """redis-server persisting like deploy/templates/redis.conf: AOF, no RDB snapshots,
    no eviction. Started again with the same ``port`` and ``data_dir`` it replays the AOF."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary("redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
    ]
    return Server(f"redis-{appendfsync}-{port}", argv, port, log_dir)


def start_memcached(log_dir: Path, port: int | None = None) -> Server:
    port = port or free_port()
    argv = [
        binary("memcached"),
        "-l",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "0",
        "-m",
        "64",
        "-c",
        "4096",
    ]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    return Server("memcached", argv, port, log_dir).start()


def gunicorn_server(
    log_dir: Path,
    env: dict,
    *options: str,
    workers: int = 2,
    worker_class: str = "gevent",
    name: str = "gunicorn",
    ready_path: str = "/healthz",
    **popen,
) -> Server:
    """gunicorn serving the app (spillway.wsgi:app, SPILLWAY_APP in ``env`` picks which) on
    a free loopback port, gevent workers unless told otherwise; not started. Ready once
    ``ready_path`` answers 200 (the port opens before a worker has imported the app)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "spillway.wsgi:app",
        "--worker-class",
        worker_class,
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        *options,
    ]
    return Server(
        name,
        argv,
        port,
        log_dir,
        env=env,
        ready=http_ok(f"http://127.0.0.1:{port}{ready_path}"),
        **popen,
    )


def serve_argv(port: int, *options: str) -> list[str]:
    """`spillway serve` (one gevent process, SPILLWAY_APP picks the app) on loopback
    ``port``, with ``options`` after."""
    return [sys.executable, "-m", "spillway", "serve", "--port", str(port), *options]


def serve_server(log_dir: Path, env: dict, *options: str, name: str = "serve", **popen) -> Server:
    """`spillway serve` on a free loopback port (serve_argv); not started."""
    port = free_port()
    return Server(name, serve_argv(port, *options), port, log_dir, env=env, **popen)


class WorkerProcess(Server):
    """A real `celery worker` process for the app, with embedded beat when asked."""

    def __init__(self, env: dict, log_path: Path, beat: bool, user: int | None = None):
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "spillway.celery_entry",
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            "--hostname",
            f"test-{os.getpid()}-{id(self)}@localhost",
        ]
        if beat:
            argv += ["--beat", "--schedule", str(log_path.with_suffix(".beat"))]
        ids = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
        super().__init__(log_path.stem, argv, 0, log_path.parent, env=env, cwd="/", **ids)

    def stop(self, timeout: float = 20.0) -> None:
        """A warm shutdown (SIGTERM) may finish the task in hand: give it longer."""
        super().stop(timeout)


class Gateway(Server):
    """The stand-in payment gateway (flashsale.gateway), with its test knobs as arguments."""

    def __init__(self, log_dir: Path, *knobs: str, port: int | None = None):
        port = port or free_port()
        super().__init__(
            f"gateway-{port}",
            [sys.executable, "-m", "flashsale.gateway", "--port", str(port), *knobs],
            port,
            log_dir,
        )

    def charges(self, key: str) -> dict:
        """What the gateway knows of an idempotency key: status, charge_id, requests and
        captures (GET /charges/<key>)."""
        return requests.get(f"{self.url}/charges/{key}", timeout=5).json()
