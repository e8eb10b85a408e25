"""A real Celery worker process on real redis: JSON tasks run, pickle is refused."""

import os
import time

import pytest

from flashsale.keys import SMOKE_PREFIX
from spillway.clients import redis_store
from tests.waiting import NotYet
from tests.waiting import wait_until

NOBODY = 65534


def wait_for_key(key: str, timeout: float = 30.0):
    """The key's value once a task has set it; None if none did in time (the assertion
    then shows the worker's log)."""
    try:
        return wait_until(lambda: redis_store.get(key), timeout, 0.1)
    except NotYet:
        return None


@pytest.fixture
def worker(app, start_worker):
    """A worker as nobody when the suite runs as root (this test needs no database)."""
    process = start_worker(beat=False, user=NOBODY if os.geteuid() == 0 else None)
    return process.process, process.log_path


def test_worker_runs_json_tasks_in_app_context(app, worker):
    """A JSON task published here runs in the worker, with the app's redis bound."""
    app.extensions["celery"].send_task(
        "flashsale.ops.tasks.mark", args=[f"{SMOKE_PREFIX}marked", "json"]
    )
    assert wait_for_key(f"{SMOKE_PREFIX}marked") == b"json", worker[1].read_text()


def test_worker_refuses_pickle(app, worker):
    """A pickle-serialized message is refused and never executed."""
    celery_app = app.extensions["celery"]
    celery_app.send_task(
        "flashsale.ops.tasks.mark", args=[f"{SMOKE_PREFIX}pickled", "yes"], serializer="pickle"
    )
    celery_app.send_task("flashsale.ops.tasks.mark", args=[f"{SMOKE_PREFIX}after-pickle", "json"])
    assert wait_for_key(f"{SMOKE_PREFIX}after-pickle") == b"json", worker[1].read_text()
    assert redis_store.get(f"{SMOKE_PREFIX}pickled") is None
    log = worker[1].read_text()
    assert "pickle" in log and ("ContentDisallowed" in log or "untrusted" in log), log


def test_mark_sets_only_smoke_keys(app, worker):
    """`mark` refuses any key outside spillway:smoke: (a sale's stock, say): nothing is
    written, and the worker logs the refusal in one line, no traceback."""
    redis_store.set("spillway:sale:1:stock", "10")
    celery_app = app.extensions["celery"]
    celery_app.send_task("flashsale.ops.tasks.mark", args=["spillway:sale:1:stock", "0"])
    celery_app.send_task("flashsale.ops.tasks.mark", args=[f"{SMOKE_PREFIX}after", "ok"])
    assert wait_for_key(f"{SMOKE_PREFIX}after") == b"ok", worker[1].read_text()
    assert redis_store.get("spillway:sale:1:stock") == b"10"
    log = worker[1].read_text()
    assert f"mark sets only {SMOKE_PREFIX}* keys" in log and "Traceback" not in log, log


def test_worker_does_not_run_as_root(worker):
    """The worker process in this suite runs unprivileged."""
    process, log_path = worker
    time.sleep(1)
    with open(f"/proc/{process.pid}/status") as status:
        uid_line = next(line for line in status if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) != 0
