"""Metrics, Flower and the operator page under `spillway up`: what is public and what is not."""

import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.e2e.browser import Browser
from tests.e2e.promises import children_of
from tests.e2e.promises import uid_of
from tests.integration.metrics.scrape import sample_names
from tests.integration.metrics.scrape import sample_sum
from tests.waiting import wait_until

TCP_TABLE = Path("/proc/net/tcp")  # state 0A: listening; addresses in hex, little-endian
# Spellings of /metrics a client might try on the public port; nginx normalizes them all.
METRICS_SPELLINGS = [
    "/metrics",
    "//metrics",
    "/%6Detrics",
    "/./metrics",
    "/x/../metrics",
    "/metrics?format=text",
    "/metrics#frag",
    "http://example.com/metrics",
]


def banner_port(stack, name: str) -> int:
    """The loopback port `spillway up` printed for ``name`` in its summary screen."""
    text = stack.log_path.read_text(errors="replace")
    match = re.search(rf"^\s+{name}\s+http://127\.0\.0\.1:(\d+)/", text, re.M)
    assert match, f"no {name} line in the banner:\n{text[-2000:]}"
    return int(match.group(1))


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A GET with the request target sent exactly as written (no client normalization)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture(scope="module")
def public_port(stack) -> int:
    return int(stack.base_url.rsplit(":", 1)[1])


@pytest.mark.parametrize("target", METRICS_SPELLINGS)
def test_metrics_are_not_public(stack, public_port, target):
    """Every spelling of /metrics on nginx's public port is a JSON 404, never the metrics."""
    status, body = raw_get(public_port, target)
    assert status == 404, body[:200]
    assert b'"not_found"' in body and b"spillway_" not in body


def test_metrics_on_the_loopback_listener(stack):
    """The metrics listener serves the whole stack's metrics, and nothing but /metrics."""
    port = banner_port(stack, "metrics")
    requests.get(f"{stack.base_url}/api/v1/products", timeout=10)

    def scraped():
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        # beat's heartbeat runs every second in these tests: a worker process has recorded.
        return "spillway_celery_task_duration_seconds_count" in text and text

    text = wait_until(scraped, 60, 0.5)
    names = sample_names(text)
    assert {
        "spillway_http_request_duration_seconds_bucket",
        "spillway_outbox_entries",
        "spillway_orders_persisted_total",
        "spillway_redis_up",
    } <= names
    assert sample_sum(text, "spillway_redis_up") == 1
    for path in ("/healthz", "/api/v1/ops/live", "/"):
        other = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"


def test_metrics_and_flower_listen_on_loopback_only(stack):
    """Neither listener is bound to a non-loopback address."""
    for name in ("metrics", "flower"):
        port = banner_port(stack, name)
        listening = [
            fields[1]
            for fields in map(str.split, TCP_TABLE.read_text().splitlines()[1:])
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port
        ]
        assert listening == ["0100007F:%04X" % port], (name, listening)


def test_flower_is_up_and_sees_the_worker(stack):
    """Flower answers on loopback, reads the broker from the same settings and lists the
    worker (to its user admin, with the admin token as password)."""
    port = banner_port(stack, "flower")
    assert requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=10).text == "OK"
    login = ("admin", stack.admin_headers()["Authorization"].removeprefix("Bearer "))

    def workers():
        answer = requests.get(f"http://127.0.0.1:{port}/workers?json=1", auth=login, timeout=10)
        return answer.status_code == 200 and answer.json().get("data")

    assert any(w["hostname"].startswith("worker@") for w in wait_until(workers, 60, 0.5))


def test_flower_is_not_public(stack, public_port):
    """Flower's pages are not reachable through nginx's public port."""
    for path in ("/flower", "/workers", "/healthcheck", "/api/workers", "/tasks", "/broker"):
        response = requests.get(f"{stack.base_url}{path}", timeout=10)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_flower_does_not_run_as_root(stack):
    """Flower runs as the Celery worker's user, never root."""
    pid = stack.program_pid("flower")
    assert uid_of(pid) == uid_of(stack.program_pid("celery-worker"))
    if os.geteuid() == 0:
        assert all(uid_of(p) != 0 for p in [pid, *children_of(pid)])


def test_operator_page_is_served_and_its_data_needs_the_token(stack):
    """/ops is a static page from nginx; the JSON it polls answers the admin only."""
    page = requests.get(f"{stack.base_url}/ops", timeout=10)
    assert page.status_code == 200 and "/static/ops.js" in page.text
    assert "<script>" not in page.text and "style=" not in page.text  # CSP-ready
    assert requests.get(f"{stack.base_url}/static/ops.js", timeout=10).status_code == 200
    assert requests.get(f"{stack.base_url}/api/v1/ops/live", timeout=10).status_code == 401
    live = requests.get(
        f"{stack.base_url}/api/v1/ops/live", headers=stack.admin_headers(), timeout=10
    )
    assert live.status_code == 200 and {"admitted", "outbox", "sales", "cache"} <= set(live.json())


def test_operator_page_charts_a_sale_in_a_browser(stack):
    """In chromium: a wrong token is refused; with the admin's, the page charts a sale as it
    sells out (admissions, refusals, stock), with no script error. Screenshot saved."""
    call = requests.Session()
    product = call.get(f"{stack.base_url}/api/v1/products", timeout=10).json()["items"][0]
    sale = call.post(
        f"{stack.base_url}/api/v1/sales",
        headers=stack.admin_headers(),
        timeout=10,
        json={
            "product_id": product["id"],
            "stock": 30,
            "per_user_limit": 1,
            "ends_at": "2999-01-01T00:00:00Z",
        },
    ).json()
    buyers = [
        call.post(f"{stack.base_url}/api/v1/users", json={"name": f"op{n}"}, timeout=10).json()[
            "token"
        ]
        for n in range(40)
    ]
    token = stack.admin_headers()["Authorization"].split()[1]
    artifacts = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))
    with Browser() as browser:
        browser.open(f"{stack.base_url}/ops")
        browser.evaluate(
            "document.getElementById('token').value = 'wrong';"
            "document.querySelector('#login button').click()"
        )
        assert "refused" in browser.wait_for(
            "!document.getElementById('login').hidden &&"
            " document.getElementById('login-error').textContent"
        )
        browser.evaluate(
            f"document.getElementById('token').value = {token!r};"
            "document.querySelector('#login button').click()"
        )
        browser.wait_for("snapshots.length >= 2")
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(
                    lambda buyer: (
                        call.post(
                            f"{stack.base_url}/api/v1/sales/{sale['id']}/orders",
                            json={"quantity": 1},
                            headers={"Authorization": f"Bearer {buyer}"},
                            timeout=30,
                        ).status_code
                    ),
                    buyers,
                )
            )
        assert sorted(answers) == [202] * 30 + [409] * 10
        browser.wait_for("document.getElementById('now-stock').textContent.startsWith('0 / 30')")
        browser.wait_for("rates((a, b) => b.admitted - a.admitted).some((v) => v > 0)")
        browser.wait_for(
            "REASONS.some((r) => rates((a, b) => rejectDelta(a, b, r)).some((v) => v > 0))"
        )
        assert browser.evaluate("document.getElementById('dashboard').hidden") is False
        assert browser.evaluate("document.getElementById('status').textContent").startswith("live")
        browser.screenshot(artifacts / "operator-page.png")
        assert browser.errors == []
