"""Every gevent entry point patches first: no MonkeyPatchWarning, socket and ssl patched."""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from spillway.serve import make_listener
from tests.servers import gunicorn_server
from tests.servers import serve_server

PROBE = "from spillway.gevent_boot import is_patched; assert is_patched(), 'not patched'"


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def env(service_env):
    return {**os.environ, **service_env, "SPILLWAY_ENV": "test"}


@pytest.mark.parametrize("entry_module", ["spillway.__main__", "spillway.wsgi"])
def test_entry_point_patches_before_anything_else(env, entry_module):
    """Importing the entry point under -W error patches socket and ssl without a warning."""
    result = run_python(f"import {entry_module}; {PROBE}", env)
    assert result.returncode == 0, result.stderr
    assert "MonkeyPatchWarning" not in result.stderr


def test_cli_runs_under_warnings_as_errors(env):
    """The `spillway` command itself starts cleanly with every warning an error."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "spillway", "routes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "/demo/slow" in result.stdout
    assert "MonkeyPatchWarning" not in result.stderr


def test_gunicorn_gevent_worker_loads_app_without_warning(env, tmp_path):
    """gunicorn -k gevent imports spillway.wsgi with no MonkeyPatchWarning."""
    server = gunicorn_server(tmp_path, {**env, "PYTHONWARNINGS": "error::Warning"}, workers=1)
    try:
        server.start()
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop(30)
    assert "MonkeyPatchWarning" not in server.log()


def test_listener_sets_tcp_nodelay():
    """The serve listener has TCP_NODELAY, which accepted sockets inherit (no 40 ms stall)."""
    listener = make_listener("127.0.0.1", 0)
    try:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()


def test_serve_refuses_debug_in_prd(env):
    """`spillway serve --debug` in prd stops with one line naming the variable."""
    prd = {**env, "SPILLWAY_SECRET_KEY": "s" * 32, "SPILLWAY_ADMIN_TOKEN": "t0" * 16}
    result = subprocess.run(
        [sys.executable, "-m", "spillway", "serve", "--env", "prd", "--debug"],
        env=prd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SPILLWAY_DEBUG" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_answers_index_while_slow_requests_are_in_flight(env, tmp_path):
    """One `spillway serve` process answers /demo/index at once under 100 sleeping requests."""
    server = serve_server(tmp_path, env, "--no-debug", "--log-level", "WARNING")
    try:
        server.start()
        base = server.url
        with ThreadPoolExecutor(max_workers=100) as pool:
            slow = [
                pool.submit(requests.get, f"{base}/demo/slow?seconds=4", timeout=30)
                for _ in range(100)
            ]
            time.sleep(1.0)
            started = time.monotonic()
            index = requests.get(f"{base}/demo/index", timeout=10)
            elapsed = time.monotonic() - started
            assert index.text == "Beijing"
            assert elapsed < 1.0, f"/demo/index took {elapsed:.2f}s"
            assert not any(f.done() for f in slow), "slow requests finished too early"
            assert all(f.result().text == "Hello World!" for f in slow)
    finally:
        server.stop(30)
    assert "Traceback" not in server.log(), server.log()
