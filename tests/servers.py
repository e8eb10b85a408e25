"""Real servers for tests: started on free loopback ports, stopped by PID afterwards."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None,
                  host: str = "127.0.0.1"):
    """Block until something accepts on host:port (127.0.0.1 unless a test network's host).

    :raise RuntimeError: the process exited first, or the timeout passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


def binary(name: str) -> str:
    """Path of a system binary; the suite's set-up (make test) installs them."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        raise RuntimeError(f"{name} is not installed: run the tests with `make test`")
    return path


class Server:
    """One server process in its own process group, with its log in a file."""

    def __init__(self, name: str, argv: list[str], port: int, log_dir: Path, **popen):
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.popen = popen
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "Server":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, **self.popen)
        log.close()
        wait_for_port(self.port, timeout, self.process)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a fault injection, or the end of a test)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop gracefully; kill after ten seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_redis(log_dir: Path) -> Server:
    port = free_port()
    data = log_dir / f"redis-{port}"
    data.mkdir()
    return Server("redis", [binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", str(data)],
                  port, log_dir).start()


def start_memcached(log_dir: Path, port: int | None = None) -> Server:
    port = port or free_port()
    argv = [binary("memcached"), "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64",
            "-c", "4096"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    return Server("memcached", argv, port, log_dir).start()


class WorkerProcess:
    """A real `celery worker` process for the app, with embedded beat when asked."""

    def __init__(self, env: dict, log_path: Path, beat: bool, user: int | None = None):
        argv = [sys.executable, "-m", "celery", "-A", "spillway.celery_entry", "worker",
                "--concurrency", "1", "--loglevel", "INFO", "--without-mingle",
                "--without-gossip", "--hostname", f"test-{os.getpid()}-{id(self)}@localhost"]
        if beat:
            argv += ["--beat", "--schedule", str(log_path.with_suffix(".beat"))]
        ids = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd="/", start_new_session=True, **ids)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Signal the worker's process group; SIGKILL if a graceful stop takes too long."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Gateway(Server):
    """The stand-in payment gateway (flashsale.gateway), with its test knobs as arguments."""

    def __init__(self, log_dir: Path, *knobs: str, port: int | None = None):
        port = port or free_port()
        super().__init__(f"gateway-{port}", [sys.executable, "-m", "flashsale.gateway",
                                             "--port", str(port), *knobs], port, log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def charges(self, key: str) -> dict:
        """What the gateway knows of an idempotency key: status, charge_id, requests and
        captures (GET /charges/<key>)."""
        import requests

        return requests.get(f"{self.url}/charges/{key}", timeout=5).json()
