"""Purchase admission: the order of checks, idempotency, limits, stock — one Lua call."""

from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from flashsale.sales import stock
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup


def test_purchase_reserves_and_answers_202(client, app):
    """A buyer's purchase takes stock and answers 202 with a pending order."""
    sale = make_sale(client, stock=5)
    buyer = signup(client)
    response = buy(client, sale, buyer, quantity=2, key="k1")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending" and body["order_id"]
    assert stock.sale_state(sale["id"])["remaining"] == 3
    order = client.get(f"/api/v1/orders/{body['order_id']}", headers=buyer).get_json()
    assert (order["quantity"], order["sale_id"], order["status"]) == (2, sale["id"], "pending")


def test_replayed_key_answers_the_same_order_and_reserves_nothing(client, app):
    """The same Idempotency-Key from the same buyer returns the first order, body ignored."""
    sale = make_sale(client, stock=5, per_user_limit=5)
    buyer = signup(client)
    first = buy(client, sale, buyer, quantity=1, key="same").get_json()
    for quantity in (1, 3):
        again = buy(client, sale, buyer, quantity=quantity, key="same")
        assert again.status_code == 200
        assert again.get_json()["order_id"] == first["order_id"]
    assert stock.sale_state(sale["id"])["remaining"] == 4


def test_refused_key_can_be_retried(client, app):
    """A key whose attempt was refused reserved nothing and is judged afresh."""
    sale = make_sale(client, stock=5, per_user_limit=2)
    buyer = signup(client)
    assert buy(client, sale, buyer, quantity=3, key="k").status_code == 409
    assert buy(client, sale, buyer, quantity=2, key="k").status_code == 202


def test_per_user_limit(client, app):
    """Units beyond per_user_limit are refused with limit_exceeded; others still buy."""
    sale = make_sale(client, stock=10, per_user_limit=2)
    alice, bob = signup(client, "alice"), signup(client, "bob")
    assert buy(client, sale, alice, quantity=2).status_code == 202
    refused = buy(client, sale, alice)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "limit_exceeded"
    assert buy(client, sale, bob, quantity=2).status_code == 202


def test_sold_out(client, app):
    """When stock runs out the refusal is sold_out and the status shows it."""
    sale = make_sale(client, stock=2, per_user_limit=5)
    buyer = signup(client)
    assert buy(client, sale, buyer, quantity=2).status_code == 202
    refused = buy(client, sale, buyer)
    assert refused.get_json()["error"]["code"] == "sold_out"
    assert client.get(f"/api/v1/sales/{sale['id']}").get_json()["status"] == "sold_out"
    stats = client.get(f"/api/v1/sales/{sale['id']}/stats", headers=admin_headers()).get_json()
    assert stats["rejected"]["sold_out"] == 1 and stats["reserved"] == 2


def test_sale_not_active(client, app):
    """Before starts_at nothing is sold."""
    start = datetime.now(timezone.utc) + timedelta(hours=1)
    sale = make_sale(
        client, starts_at=start.isoformat(), ends_at=(start + timedelta(hours=1)).isoformat()
    )
    refused = buy(client, sale, signup(client))
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "sale_not_active"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"quantity": 0},
        {"quantity": 101},
        {"quantity": "1"},
        {"quantity": 1.0},
        {"quantity": 1, "coupon": "x"},
    ],
)
def test_bad_bodies_are_400_and_reserve_nothing(client, app, body):
    """Quantity must be an integer 1…100 and nothing else may be sent."""
    sale = make_sale(client, stock=5)
    response = client.post(f"/api/v1/sales/{sale['id']}/orders", json=body, headers=signup(client))
    assert response.status_code == 400
    assert stock.sale_state(sale["id"])["remaining"] == 5


@pytest.mark.parametrize("key", ["", "x" * 65, "has space", "naïve"])
def test_bad_idempotency_keys_are_400(client, app, key):
    """Idempotency-Key is 1…64 printable ASCII characters."""
    sale = make_sale(client, stock=5)
    response = client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        json={"quantity": 1},
        headers={**signup(client), "Idempotency-Key": key},
    )
    assert response.status_code == 400 if key else 202


def test_checks_come_in_the_documented_order(client, app):
    """token (401) → body (400) → sale exists (404)."""
    assert client.post("/api/v1/sales/999/orders", json={}).status_code == 401
    buyer = signup(client)
    assert client.post("/api/v1/sales/999/orders", json={}, headers=buyer).status_code == 400
    assert (
        client.post("/api/v1/sales/999/orders", json={"quantity": 1}, headers=buyer).status_code
        == 404
    )


def test_tokens_are_checked(client, app):
    """A forged buyer token is 401; the admin cannot buy (403)."""
    sale = make_sale(client)
    forged = {"Authorization": "Bearer eyJ1aWQiOiIxIn0.forged.signature"}
    assert buy(client, sale, forged).status_code == 401
    assert buy(client, sale, admin_headers()).status_code == 403


def test_other_buyers_orders_are_404(client, app):
    """A buyer cannot see another buyer's order (404, existence not leaked); admin can."""
    sale = make_sale(client)
    alice, bob = signup(client, "alice"), signup(client, "bob")
    order_id = buy(client, sale, alice).get_json()["order_id"]
    assert client.get(f"/api/v1/orders/{order_id}", headers=bob).status_code == 404
    assert client.get(f"/api/v1/orders/{order_id}", headers=admin_headers()).status_code == 200
    mine = client.get("/api/v1/users/me/orders", headers=alice).get_json()["items"]
    assert [o["order_id"] for o in mine] == [order_id]
    assert client.get("/api/v1/users/me/orders", headers=bob).get_json()["items"] == []


def test_purchase_fast_path_answers_like_the_flask_view(client, app):
    """The WSGI purchase path keeps the API's shapes; an oversized body still gets Flask's 413."""
    sale = make_sale(client, stock=5)
    buyer = signup(client)
    accepted = buy(client, sale, buyer, key="fast")
    assert accepted.status_code == 202 and accepted.mimetype == "application/json"
    wrong_type = client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        data="quantity=1",
        content_type="text/plain",
        headers=buyer,
    )
    assert wrong_type.status_code == 415
    assert wrong_type.get_json()["error"]["code"] == "unsupported_media_type"
    huge = client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        data=b"x" * (65 * 1024),
        content_type="application/json",
        headers=buyer,
    )
    assert huge.status_code == 413 and huge.get_json()["error"]["code"] == "payload_too_large"
    assert client.get(f"/api/v1/sales/{sale['id']}/orders").status_code == 405
    assert stock.sale_state(sale["id"])["remaining"] == 4


def test_purchase_with_redis_down_is_503_and_reserves_nothing(client, app):
    """A purchase whose redis is unreachable answers 503 unavailable with Retry-After."""
    from spillway.clients import redis_store
    from tests.servers import free_port

    sale = make_sale(client, stock=5)
    buyer = signup(client)
    good_url = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    redis_store.init_app(app)
    response = buy(client, sale, buyer)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    app.config["REDIS_URL"] = good_url
    redis_store.init_app(app)
    assert stock.sale_state(sale["id"])["remaining"] == 5


def test_bodies_without_a_length_go_to_the_flask_view(app):
    """A chunked purchase (no Content-Length) is left to Flask, which can read it."""
    from flashsale.sales.fastpath import PurchaseFastPath

    seen = []
    middleware = PurchaseFastPath(app, lambda environ, start: seen.append(environ) or [])
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/sales/1/orders",
        "HTTP_TRANSFER_ENCODING": "chunked",
    }
    middleware(environ, lambda *args: None)
    assert seen == [environ]


def test_more_concurrent_callers_than_redis_pys_default_pool(app):
    """Past redis-py's default cap of 100 connections a caller gets a connection (the pool
    blocks when full rather than raising): 256 concurrent purchases once answered 503."""
    from spillway.clients import redis_store

    pool = redis_store.client.connection_pool
    held = [pool.get_connection() for _ in range(150)]
    try:
        assert all(connection.send_command("PING") is None for connection in held)
    finally:
        for connection in held:
            pool.release(connection)
