"""A real Celery worker process on real redis: JSON tasks run, pickle is refused."""

import os
import signal
import subprocess
import sys
import time

import pytest

from spillway.extensions import redis_store

NOBODY = 65534


def wait_for_key(key: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = redis_store.get(key)
        if value is not None:
            return value
        time.sleep(0.1)
    return None


@pytest.fixture
def worker(app, service_env, tmp_path):
    """`celery worker` from spillway.make_celery, as nobody when the suite runs as root."""
    log_path = tmp_path / "worker.log"
    env = {**os.environ, **service_env, "SPILLWAY_ENV": "test", "SPILLWAY_LOG_LEVEL": "INFO"}
    ids = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "spillway.make_celery", "worker",
             "--concurrency", "1", "--loglevel", "INFO", "--without-mingle",
             "--without-gossip", "--hostname", f"test-{os.getpid()}@localhost"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/", start_new_session=True,
            **ids)
    yield process, log_path
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_worker_runs_json_tasks_in_app_context(app, worker):
    """A JSON task published here runs in the worker, with the app's redis bound."""
    app.extensions["celery"].send_task("spillway.ops.tasks.mark", args=["marked", "json"])
    assert wait_for_key("marked") == b"json", worker[1].read_text()


def test_worker_refuses_pickle(app, worker):
    """A pickle-serialized message is refused and never executed."""
    celery_app = app.extensions["celery"]
    celery_app.send_task("spillway.ops.tasks.mark", args=["pickled", "yes"],
                         serializer="pickle")
    celery_app.send_task("spillway.ops.tasks.mark", args=["after-pickle", "json"])
    assert wait_for_key("after-pickle") == b"json", worker[1].read_text()
    assert redis_store.get("pickled") is None
    log = worker[1].read_text()
    assert "pickle" in log and ("ContentDisallowed" in log or "untrusted" in log), log


def test_worker_does_not_run_as_root(worker):
    """The worker process in this suite runs unprivileged."""
    process, log_path = worker
    time.sleep(1)
    with open(f"/proc/{process.pid}/status") as status:
        uid_line = next(line for line in status if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) != 0
