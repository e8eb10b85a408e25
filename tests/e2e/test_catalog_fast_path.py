"""The catalog through nginx: hot reads served from memcached by nginx alone, never stale."""

import requests
from pymemcache.client.base import Client


def memcached_hits(stack) -> int:
    client = Client(str(stack.paths.memcached_socket))
    try:
        return int(client.stats()[b"get_hits"])
    finally:
        client.close()


def test_hot_product_is_served_by_nginx_from_memcached(stack):
    """After one read through the app, nginx answers from memcached, even with the app down."""
    created = requests.post(
        f"{stack.base_url}/api/v1/products",
        headers=stack.admin_headers(),
        json={"name": "Fast", "price_cents": 500},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    url = f"{stack.base_url}/api/v1/products/{created.json()['id']}"
    first = requests.get(url, timeout=5)
    assert first.status_code == 200 and "X-Served-By" not in first.headers
    hits = memcached_hits(stack)
    second = requests.get(url, timeout=5)
    assert second.headers["X-Served-By"] == "nginx-memcached"
    assert second.headers["Content-Type"] == "application/json; charset=utf-8"
    assert second.headers["Cache-Control"] == "no-cache"
    assert second.content == first.content
    assert memcached_hits(stack) == hits + 1
    stack.supervisorctl("stop", "gunicorn")
    try:
        assert requests.get(url, timeout=5).json() == first.json()  # no app needed
    finally:
        stack.supervisorctl("start", "gunicorn")
    stack.wait_for_app()


def test_patch_is_seen_by_the_very_next_get_through_nginx(stack):
    """PATCH, then GET through nginx: the new data, never the cached old page."""
    headers = stack.admin_headers()
    product = requests.post(
        f"{stack.base_url}/api/v1/products",
        headers=headers,
        json={"name": "Before", "price_cents": 100},
        timeout=10,
    ).json()
    url = f"{stack.base_url}/api/v1/products/{product['id']}"
    listing = f"{stack.base_url}/api/v1/products?page=1&per_page=20"
    for _ in range(2):
        requests.get(url, timeout=5)
        requests.get(listing, timeout=5)
        requests.get(f"{stack.base_url}/api/v1/products", timeout=5)
    assert requests.get(url, timeout=5).headers.get("X-Served-By") == "nginx-memcached"
    for round_number in range(5):
        name = f"After {round_number}"
        patched = requests.patch(url, headers=headers, json={"name": name}, timeout=10)
        assert patched.status_code == 200
        assert requests.get(url, timeout=5).json()["name"] == name
        items = requests.get(listing, timeout=5).json()["items"]
        names = {item["id"]: item["name"] for item in items}
        assert names[product["id"]] == name
        bare = requests.get(f"{stack.base_url}/api/v1/products", timeout=5).json()
        assert {i["id"]: i["name"] for i in bare["items"]}[product["id"]] == name


def test_writes_are_never_answered_from_memcached(stack):
    """A POST to a cached path reaches the app (and its auth), never the cache."""
    response = requests.post(f"{stack.base_url}/api/v1/products", json={}, timeout=5)
    assert response.status_code == 401
    assert "X-Served-By" not in response.headers


def test_openapi_and_docs_through_nginx(stack):
    """The OpenAPI document and its page are reachable through nginx."""
    assert requests.get(f"{stack.base_url}/api/v1/openapi.json", timeout=5).json()["paths"]
    assert "openapi.json" in requests.get(f"{stack.base_url}/docs", timeout=5).text


def test_seed_demo_filled_the_store(stack):
    """`spillway up --seed-demo` (what `make run` does) leaves products to look at."""
    listing = requests.get(f"{stack.base_url}/api/v1/products", timeout=5).json()
    assert listing["total"] >= 6
    assert "Paper lantern" in {item["name"] for item in listing["items"]}
