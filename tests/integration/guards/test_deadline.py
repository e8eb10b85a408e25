"""The request deadline in a real gunicorn gevent worker: a view that sleeps past
SPILLWAY_REQUEST_TIMEOUT_S is ended (its greenlet does nothing more) and answered 503 JSON
with Retry-After; a view's own deadline replaces the default, None exempts it, and a
streamed body is never under it."""

import time

import pytest

from spillway.clients import redis_store
from tests.integration.guards import processes


@pytest.fixture
def worker(app, service_env, tmp_path):
    """One gevent worker whose requests have one second."""
    served = processes.gunicorn(
        processes.app_env(service_env, SPILLWAY_REQUEST_TIMEOUT_S="1"), tmp_path / "gunicorn.log"
    )
    served.get("/sleep?seconds=0")  # the first request's one-time set-up, off the clock
    yield served
    served.stop()


def test_a_view_that_sleeps_past_the_deadline_is_ended_with_a_503(worker):
    """A 3 s sleep is answered 503 after about 1 s, in the API's error shape; the view's
    greenlet never wakes to finish (its redis mark stays unset); the worker serves on."""
    started = time.monotonic()
    answer = worker.get("/sleep?seconds=3&mark=late")
    elapsed = time.monotonic() - started
    assert answer.status_code == 503 and 0.9 < elapsed < 2.5, (answer.status_code, elapsed)
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "error": {
            "code": "unavailable",
            "message": ("The request did not finish within its 1 s deadline; try again."),
        }
    }
    time.sleep(2.5)  # past the moment the sleep would have ended
    assert redis_store.get("spillway:smoke:late") is None
    assert worker.get("/sleep?seconds=0.1&mark=early").text == "slept"
    assert redis_store.get("spillway:smoke:early") == b"done"
    log = worker.log()
    assert "GET /sleep passed its 1 s deadline" in log and "Traceback" not in log, log
    metrics = worker.get("/metrics").text
    assert 'spillway_request_deadlines_total{route="/sleep"} 1.0' in metrics


def test_a_view_sets_its_own_deadline_or_none(worker):
    """@deadline(0.5) ends a 1 s sleep at about 0.5 s; @deadline(None) lets 1.5 s through."""
    started = time.monotonic()
    assert worker.get("/sleep/short?seconds=1").status_code == 503
    assert time.monotonic() - started < 0.95
    assert worker.get("/sleep/exempt?seconds=1.5").text == "slept"


def test_a_streamed_body_outlives_the_deadline(worker):
    """A body streamed over 2 s arrives whole: it is iterated after the WSGI call returns,
    where no deadline applies (so are the live-stock streams)."""
    answer = worker.get("/stream?seconds=2")
    assert answer.status_code == 200 and answer.text == "tick\n" * 4
