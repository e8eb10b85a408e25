"""`spillway up` end to end: nginx → gunicorn (gevent) → redis, memcached, Celery, SQLite."""

import os
import time
from contextlib import suppress
from pathlib import Path

import redis
import requests

from flashsale.keys import WORKER_HEARTBEAT
from tests.e2e.promises import assert_fast_while_slow
from tests.e2e.promises import assert_not_root
from tests.e2e.promises import children_of
from tests.waiting import NotYet
from tests.waiting import wait_until


def test_ready_through_nginx(stack):
    """Every dependency is reachable from the app, as seen through nginx."""
    response = requests.get(f"{stack.base_url}/readyz", timeout=5)
    assert response.status_code == 200
    assert set(response.json()["checks"].values()) == {"ok"}
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).json() == {"status": "ok"}


def test_index_is_fast_while_slow_requests_are_in_flight(stack):
    """/demo/index answers well under a second while 200 /demo/slow?seconds=5 sleep."""
    assert_fast_while_slow(
        stack.base_url, "/demo/slow?seconds=5", "/demo/index", "Hello World!", "Beijing"
    )


def test_gunicorn_and_celery_do_not_run_as_root(stack):
    """The app's processes, masters and children, run unprivileged."""
    assert_not_root(stack, ("gunicorn", "celery-worker", "celery-beat"))
    if os.geteuid() == 0:
        assert len(children_of(stack.program_pid("gunicorn"))) == 2


def test_beat_schedules_and_worker_runs_tasks(stack):
    """Celery beat's heartbeat reaches the worker, which records it in redis."""
    client = redis.Redis(unix_socket_path=str(stack.paths.redis_socket))
    with suppress(NotYet):
        wait_until(lambda: client.get(WORKER_HEARTBEAT) is not None, 30, 0.5)
    assert client.get(WORKER_HEARTBEAT) is not None
    client.close()


def test_static_files_come_from_disk_with_cache_headers(stack):
    """nginx serves /static/ itself, with a long cache lifetime."""
    response = requests.get(f"{stack.base_url}/static/site.css", timeout=5)
    assert response.status_code == 200
    assert "max-age=2592000" in response.headers["Cache-Control"]
    assert "Expires" in response.headers
    page = requests.get(f"{stack.base_url}/", timeout=5)
    assert page.status_code == 200 and "<title>Spillway</title>" in page.text


def test_nginx_errors_are_json(stack):
    """nginx's own 404 and 413 answer the API's JSON shape; /metrics is not public."""
    for path in ("/static/missing.css", "/metrics"):
        response = requests.get(f"{stack.base_url}{path}", timeout=5)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    too_big = requests.post(
        f"{stack.base_url}/healthz",
        data=b"x" * (70 * 1024),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    app_404 = requests.get(f"{stack.base_url}/no/such/thing", timeout=5)
    assert app_404.status_code == 404 and app_404.json()["error"]["code"] == "not_found"


def test_app_down_is_json_503_and_recovers(stack):
    """With gunicorn stopped nginx answers 503 JSON with Retry-After; it recovers on start."""
    stack.supervisorctl("stop", "gunicorn")
    try:
        response = requests.get(f"{stack.base_url}/healthz", timeout=5)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "unavailable"
    finally:
        stack.supervisorctl("start", "gunicorn")
    stack.wait_for_app()


def test_sigterm_stops_everything(stack):
    """SIGTERM to `spillway up` stops every program; nothing is left running."""
    pids = [
        stack.program_pid(p)
        for p in ("nginx", "gunicorn", "celery-worker", "celery-beat", "redis", "memcached")
    ]
    pids += [child for pid in pids for child in children_of(pid)]
    supervisord_pid = int(stack.paths.supervisord_pid.read_text())
    assert stack.stop() == 0
    time.sleep(0.5)
    alive = [pid for pid in [supervisord_pid, *pids] if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"still running: {alive}"
    assert "Spillway is up" in stack.log_path.read_text()
