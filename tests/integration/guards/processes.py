"""gunicorn and `spillway serve` processes serving the guards' test apps (apps.py)."""

import os
import sys
from pathlib import Path

from tests.servers import Server
from tests.servers import free_port
from tests.servers import serve_argv

REPO = Path(__file__).resolve().parents[3]
APPS = "tests.integration.guards.apps"


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


def gunicorn(env: dict, log_path: Path, workers: int = 1, wait: bool = True) -> Server:
    """gunicorn's gevent workers with the stack's hooks, as supervisord runs them; ``wait``:
    until its port accepts (else a server that must refuse to start, and exit)."""
    port = free_port()
    argv = [
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
    ]
    return _started(argv, env, log_path, port, wait)


def serve(env: dict, log_path: Path, wait: bool = True) -> Server:
    """One `spillway serve` process."""
    port = free_port()
    return _started(serve_argv(port, "--no-debug", "--no-access-log"), env, log_path, port, wait)


def _started(argv: list[str], env: dict, log_path: Path, port: int, wait: bool) -> Server:
    server = Server(log_path.stem, argv, port, log_path.parent, env=env, cwd=REPO)
    if not wait:
        server.ready = None
    return server.start(30)
