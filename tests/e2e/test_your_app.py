"""The tutorial's app (examples/bookshelf, docs/your-app.md) on the whole stack, as a user
runs their own: ``SPILLWAY_APP=bookshelf:create_app`` with ``PYTHONPATH=examples``."""

from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import running_stack
from tests.e2e.promises import assert_fast_while_slow
from tests.e2e.promises import assert_not_root
from tests.waiting import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def stack():
    with running_stack(
        {"SPILLWAY_APP": "bookshelf:create_app", "PYTHONPATH": str(EXAMPLES)}
    ) as running:
        yield running


def add_book(stack, title: str, text: str) -> dict:
    answer = requests.post(
        f"{stack.base_url}/books", json={"title": title, "text": text}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_the_runtime_answers_health_and_readiness(stack):
    """/healthz and /readyz come from the runtime: the app declared none, and its Celery
    app is found (the broker is checked)."""
    ready = requests.get(f"{stack.base_url}/readyz", timeout=10).json()
    assert ready == {"status": "ok", "checks": {"redis": "ok", "memcached": "ok", "broker": "ok"}}
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).json() == {"status": "ok"}


def test_slow_requests_never_stall_a_fast_one(stack):
    """200 slow requests in flight, and /fast still answers at once."""
    assert_fast_while_slow(stack.base_url, "/slow?seconds=5", "/fast", "slept\n", "fast\n")


def test_the_migration_ran_and_the_task_runs_in_the_celery_worker(stack):
    """`spillway up` ran the app's migration (the table is there); the count is done by a
    Celery worker (its hostname on the record), not by the request."""
    book = add_book(stack, "Walden", "I went to the woods because I wished to live")
    counted = requests.post(f"{stack.base_url}/books/{book['id']}/count", timeout=10)
    assert counted.status_code == 202
    done = wait_until(
        lambda: requests.get(f"{stack.base_url}/books/{book['id']}", timeout=5).json().get("words")
    )
    assert done == 10
    again = requests.get(f"{stack.base_url}/books/{book['id']}", timeout=5).json()
    assert again["counted_by"].startswith("worker@")


def test_the_cached_read_is_a_memcached_hit_the_second_time(stack):
    """The first read fills memcached; the second is answered by nginx from memcached,
    with no Python (the app declared the route: Spillway(app, cached_routes=...))."""
    book = add_book(stack, "Cached", "one two three")
    url = f"{stack.base_url}/books/{book['id']}"
    first = requests.get(url, timeout=5)
    assert first.status_code == 200 and "X-Served-By" not in first.headers
    second = requests.get(url, timeout=5)
    assert second.headers.get("X-Served-By") == "nginx-memcached"
    assert second.json() == first.json()


def test_the_apps_processes_are_not_root(stack):
    """gunicorn's master and workers, Celery's worker and beat-less stack: never root."""
    assert_not_root(stack, ("gunicorn", "celery-worker"))
    assert "celery-beat" not in stack.supervisorctl("status")  # no schedule declared
