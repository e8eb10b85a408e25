"""Logs of the whole stack with SPILLWAY_LOG_FORMAT=json: one JSON object per line in
nginx's, the app's and the worker's logs; one request id from nginx's access line through
the app's line and the answer's header to the worker that persisted the order; every log
rotated by supervisord, nginx's included, with nginx writing on into the new file."""

import json
import secrets
import time
from pathlib import Path

import pytest
import requests

from tests.waiting import wait_until

MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def stack_env() -> dict:
    return {
        "SPILLWAY_RATE_LIMITS": "off",
        "SPILLWAY_LOG_FORMAT": "json",
        # Small enough for a test to fill; backups enough that no line it looks for is dropped.
        "SPILLWAY_LOG_MAX_BYTES": f"{MAX_BYTES // 1024}KB",
        "SPILLWAY_LOG_BACKUPS": "20",
    }


def lines_of(logs: Path, program: str) -> list[dict]:
    """Every line of a program's log and its rotated files, each parsed as JSON (a line
    that is not one object fails the test)."""
    parsed = []
    for path in sorted(logs.glob(f"{program}.log*")):
        for line in path.read_text(errors="replace").splitlines():
            if line.strip():
                try:
                    parsed.append(json.loads(line))
                except ValueError:
                    pytest.fail(f"{path.name}: not a JSON line: {line[:300]!r}")
    return parsed


def with_request_id(logs: Path, program: str, chosen: str) -> list[dict]:
    return [line for line in lines_of(logs, program) if line.get("request_id") == chosen]


def test_one_request_id_from_nginx_to_the_worker(stack):
    """A purchase named by the client's X-Request-ID: the answer carries it, and so do
    nginx's access line, the app's line (the nudge it sent the drainer), the drain task's
    lines and the worker's line of the persisted order, all JSON."""
    sale = stack.new_sale(10)
    buyer = requests.post(
        f"{stack.base_url}/api/v1/users", json={"name": "logs-buyer"}, timeout=10
    ).json()
    chosen = f"e2e-logs-{secrets.token_hex(8)}"
    time.sleep(1.2)  # past the drain nudge's once-a-second marker: this purchase sends one
    answer = requests.post(
        f"{stack.base_url}/api/v1/sales/{sale['id']}/orders",
        json={"quantity": 1},
        headers={"Authorization": f"Bearer {buyer['token']}", "X-Request-ID": chosen},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["X-Request-ID"] == chosen
    order_id = answer.json()["order_id"]
    logs = stack.paths.logs

    persisted = wait_until(
        lambda: [
            line
            for line in lines_of(logs, "celery-worker")
            if line.get("orders", {}).get(order_id) == chosen
        ],
        60,
        0.5,
        what="the worker's line of the persisted order",
    )
    assert persisted[0]["message"].startswith("drain: persisted")
    access = wait_until(
        lambda: with_request_id(logs, "nginx-access", chosen), 10, 0.3, what="nginx's line"
    )
    assert access[0]["uri"] == f"/api/v1/sales/{sale['id']}/orders"
    assert access[0]["status"] == 202
    app_lines = with_request_id(logs, "gunicorn", chosen)
    assert any(line["message"].startswith("the outbox was idle") for line in app_lines), app_lines
    nudge = next(line for line in app_lines if "task_id" in line)
    # The task the request sent ran with the request's id in its logging context.
    task_lines = wait_until(
        lambda: with_request_id(logs, "celery-worker", chosen), 30, 0.5, what="the task's lines"
    )
    sent_task = [line for line in task_lines if nudge["task_id"] in line["message"]]
    assert sent_task, task_lines
    print("nginx:", json.dumps(access[0]))
    print("app:", json.dumps(nudge))
    print("task:", json.dumps(sent_task[0]))
    print("worker:", json.dumps({**persisted[0], "orders": {order_id: chosen}}))


def test_an_invalid_client_id_is_replaced_and_every_answer_names_its_request(stack):
    """An X-Request-ID that is not 8–128 of [A-Za-z0-9._-] is replaced by nginx's own id,
    which the answer and the access line carry; nginx's own answers (a memcached hit, its
    JSON 404) carry an id too."""
    offered = "not valid; id"
    answer = requests.get(f"{stack.base_url}/healthz", headers={"X-Request-ID": offered}, timeout=5)
    chosen = answer.headers["X-Request-ID"]  # the app's answer: nginx hides the app's copy
    assert chosen != offered and len(chosen) == 32 and int(chosen, 16) >= 0
    wait_until(
        lambda: with_request_id(stack.paths.logs, "nginx-access", chosen), 10, 0.3, what="line"
    )
    assert offered not in stack.paths.logs.joinpath("nginx-access.log").read_text()
    requests.get(f"{stack.base_url}/api/v1/products", timeout=5)  # cached, if it was not
    hit = requests.get(f"{stack.base_url}/api/v1/products", timeout=5)
    assert hit.headers.get("X-Served-By") == "nginx-memcached"
    refused = requests.get(f"{stack.base_url}/metrics", timeout=5)
    assert refused.status_code == 404
    # One id each (a second header would be joined to the first with a comma).
    for served_by_nginx in (hit, refused):
        assert len(served_by_nginx.headers["X-Request-ID"]) == 32
    assert refused.headers["X-Request-ID"] != hit.headers["X-Request-ID"]


def test_nginx_log_rotates_and_nginx_writes_on_in_the_new_file(stack):
    """Past SPILLWAY_LOG_MAX_BYTES supervisord moves nginx-access.log to .1 and starts a
    new one; nginx's next lines are in the new file."""
    logs = stack.paths.logs
    rotated = logs / "nginx-access.log.1"
    session = requests.Session()
    deadline = time.monotonic() + 120
    sent = 0
    while not rotated.exists() and time.monotonic() < deadline and sent < 5000:
        session.get(f"{stack.base_url}/metrics", timeout=5)
        sent += 1
        if sent % 100 == 0:
            time.sleep(1.1)  # nginx flushes its buffer each second
    assert rotated.exists(), f"no rotation after {sent} requests"
    chosen = f"after-rotation-{secrets.token_hex(6)}"
    session.get(f"{stack.base_url}/metrics", headers={"X-Request-ID": chosen}, timeout=5)
    wait_until(
        lambda: chosen in (logs / "nginx-access.log").read_text(),
        10,
        0.3,
        what="nginx's line in the new nginx-access.log",
    )
    assert (logs / "nginx-access.log").stat().st_size <= MAX_BYTES
