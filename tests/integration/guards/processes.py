"""gunicorn and `spillway serve` processes serving the guards' test apps (apps.py)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.servers import exited
from tests.servers import free_port
from tests.servers import port_open
from tests.servers import serve_argv
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[3]
APPS = "tests.integration.guards.apps"


class Served:
    """A server process (its own process group) and its combined log."""

    def __init__(self, argv: list[str], env: dict, log_path: Path, port: int):
        self.port = port
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the log after {timeout}s:\n{self.log()[-3000:]}")

    def exit_code(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def app_env(service_env: dict, factory: str = "create_app", **settings: str) -> dict:
    """The environment of a process serving ``apps.<factory>`` on this run's servers."""
    return {
        **os.environ,
        **service_env,
        "SPILLWAY_ENV": "test",
        "PYTHONPATH": str(REPO),
        "SPILLWAY_APP": f"{APPS}:{factory}",
        **settings,
    }


def gunicorn(env: dict, log_path: Path, workers: int = 1, wait: bool = True) -> Served:
    """gunicorn's gevent workers with the stack's hooks, as supervisord runs them."""
    port = free_port()
    served = Served(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "spillway.wsgi:app",
            "--config",
            "python:spillway.metrics.gunicorn_conf",
            "--worker-class",
            "gevent",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            "--error-logfile",
            "-",
        ],
        env,
        log_path,
        port,
    )
    if wait:
        wait_until(port_open(port), 30, 0.05, what=f"port {port}", fail_if=exited(served.process))
    return served


def serve(env: dict, log_path: Path, wait: bool = True) -> Served:
    """One `spillway serve` process."""
    port = free_port()
    served = Served(serve_argv(port, "--no-debug", "--no-access-log"), env, log_path, port)
    if wait:
        wait_until(port_open(port), 30, 0.05, what=f"port {port}", fail_if=exited(served.process))
    return served
