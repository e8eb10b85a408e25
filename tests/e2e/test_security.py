"""Abuse defences end to end, through nginx, on a `spillway up` stack with its rate limits
ON: nginx's per-address limit_req (429 JSON), the per-buyer purchase limit behind it,
security headers on every answer (static, the operator page, memcached, proxied, nginx's
own errors) exactly once, nginx's 413 as JSON, and the /docs page under the strict
Content-Security-Policy."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from spillway.security.headers import SECURITY_HEADERS

PER_BUYER = 3
NGINX_RATE_PER_S, NGINX_BURST = 20, 20


@pytest.fixture(scope="module")
def stack_env() -> dict:
    return {
        "SPILLWAY_RATE_LIMITS": "on",
        "SPILLWAY_NGINX_RATE_PER_IP": f"{NGINX_RATE_PER_S}r/s",
        "SPILLWAY_NGINX_BURST_PER_IP": str(NGINX_BURST),
        "SPILLWAY_RATE_LIMIT_PER_BUYER": f"{PER_BUYER} per minute",
    }


def assert_secured(response):
    """Each header once, with nginx's value (requests joins repeated headers with ', ')."""
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name) == value, (response.url, name, response.headers)


def test_security_headers_on_every_kind_of_answer(stack):
    base = stack.base_url
    product = requests.get(f"{base}/api/v1/products?page=1&per_page=1", timeout=10).json()
    product_url = f"{base}/api/v1/products/{product['items'][0]['id']}"
    requests.get(product_url, timeout=10)  # the app fills memcached; nginx answers next
    answers = [
        requests.get(f"{base}/static/site.css", timeout=10),
        requests.get(f"{base}/", timeout=10),
        requests.get(f"{base}/ops", timeout=10),  # where the admin token is typed
        requests.get(f"{base}/docs", timeout=10),
        requests.get(f"{base}/api/v1/sales", timeout=10),
        requests.get(f"{base}/static/missing.css", timeout=10),
        requests.get(f"{base}/no/such/thing", timeout=10),
        requests.post(
            f"{base}/api/v1/users",
            data=b"x" * (70 * 1024),
            timeout=10,
            headers={"Content-Type": "application/json"},
        ),
        # nginx's own JSON error pages (tests/e2e/test_nginx_answers.py has them all)
        requests.request("TRACE", f"{base}/", timeout=10),
        requests.get(f"{base}/{'a' * 10 * 1024}", timeout=10),
        requests.get(f"{base}/static/site.css", headers={"Range": "bytes=99999999-"}, timeout=10),
    ]
    assert [a.status_code for a in answers[-3:]] == [405, 414, 416]
    from_memcached = requests.get(product_url, timeout=10)
    assert from_memcached.headers.get("X-Served-By") == "nginx-memcached"
    for response in [*answers, from_memcached]:
        assert_secured(response)


def test_nginx_refuses_big_bodies_with_413_json(stack):
    """client_max_body_size, on a proxied route and on the memcached route's write path;
    the Flask side of the limit is tests/integration/security/test_hostile_input.py."""
    for path in ("/api/v1/users", "/api/v1/products", "/api/v1/sales/1/orders", "/static/x"):
        response = requests.post(
            f"{stack.base_url}{path}",
            data=b"{" + b" " * (65 * 1024) + b"}",
            headers={"Content-Type": "application/json", **stack.admin_headers()},
            timeout=10,
        )
        assert response.status_code == 413, path
        assert response.headers["Content-Type"].startswith("application/json"), (
            path,
            response.text,
        )
        assert response.json()["error"]["code"] == "payload_too_large"


def test_docs_page_works_under_the_content_security_policy(stack):
    """/docs loads its script and style from this origin, and the document it renders."""
    page = requests.get(f"{stack.base_url}/docs", timeout=10)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<script src="/static/docs.js">' in page.text and "<script>" not in page.text
    for asset in ("/static/docs.js", "/static/docs.css", "/api/v1/openapi.json"):
        assert requests.get(f"{stack.base_url}{asset}", timeout=10).status_code == 200


def test_per_buyer_purchase_limit_through_nginx(stack):
    """The fourth purchase a minute by one buyer is a 429 JSON with Retry-After, counted in
    the sale's stats."""
    # The tests before sent this address's requests in bursts: let nginx's bucket drain
    # (burst ÷ rate seconds) so that its per-address limit is not what answers here.
    time.sleep(NGINX_BURST / NGINX_RATE_PER_S + 0.5)
    base, admin = stack.base_url, stack.admin_headers()
    product = requests.post(
        f"{base}/api/v1/products",
        json={"name": "Limited", "price_cents": 1},
        headers=admin,
        timeout=10,
    ).json()
    sale = stack.new_sale(100, per_user_limit=100, product_id=product["id"])
    signed_up = requests.post(f"{base}/api/v1/users", json={"name": "eager"}, timeout=10)
    token = signed_up.json()["token"]
    buyer = {"Authorization": f"Bearer {token}"}
    answers = [
        requests.post(
            f"{base}/api/v1/sales/{sale['id']}/orders",
            json={"quantity": 1},
            headers=buyer,
            timeout=10,
        )
        for _ in range(PER_BUYER + 1)
    ]
    assert [a.status_code for a in answers] == [202] * PER_BUYER + [429]
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) >= 1
    stats = requests.get(
        f"{base}/api/v1/sales/{sale['id']}/stats", headers=admin, timeout=10
    ).json()
    assert stats["rejected"]["rate_limited"] == 1


def test_nginx_limits_a_flood_from_one_address(stack):
    """Far more than rate + burst at once from one address: the excess is refused by nginx
    itself (a static file, so no Python runs) with 429 JSON and Retry-After; the rest pass.
    Runs last in this module: it uses up the address's allowance."""
    url = f"{stack.base_url}/static/site.css"
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: requests.get(url, timeout=30), range(160)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 429} and 200 in statuses, statuses
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "nginx let a flood of 160 through"
    assert refused[0].json()["error"]["code"] == "rate_limited"
    assert refused[0].headers["Retry-After"] == "1"
    assert_secured(refused[0])
