"""A plain Flask factory written for no stack at all (examples/plain/plainapp.py), given
only as SPILLWAY_APP with PYTHONPATH, comes up behind nginx on gevent workers, non-root:
no Celery, no migrations, no readiness hook of its own."""

from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import running_stack
from tests.e2e.promises import assert_fast_while_slow
from tests.e2e.promises import assert_not_root

PLAIN = Path(__file__).resolve().parents[2] / "examples" / "plain"


@pytest.fixture(scope="module")
def stack():
    with running_stack(
        {"SPILLWAY_APP": "plainapp:create_app", "PYTHONPATH": str(PLAIN)}
    ) as running:
        yield running


def test_it_serves_behind_nginx(stack):
    """Its own routes through nginx, and the runtime's health and readiness beside them
    (redis and memcached: the stack runs them; no broker, since the app has no Celery)."""
    assert requests.get(f"{stack.base_url}/", timeout=5).text == "hello from a plain Flask app\n"
    ready = requests.get(f"{stack.base_url}/readyz", timeout=10).json()
    assert ready == {"status": "ok", "checks": {"redis": "ok", "memcached": "ok"}}


def test_a_slow_view_never_stalls_a_fast_one(stack):
    """On gunicorn's gevent workers, patched before the app was imported."""
    assert_fast_while_slow(stack.base_url, "/slow?seconds=5", "/fast", "slept\n", "fast\n")


def test_only_what_it_needs_runs_and_never_as_root(stack):
    """No Celery worker, beat or Flower for an app without Celery; gunicorn unprivileged."""
    status = stack.supervisorctl("status")
    assert "celery" not in status and "flower" not in status
    assert_not_root(stack, ("gunicorn",))
