"""Sales: creation with pre-warmed stock, status from the server clock, auth, validation."""

from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from spillway.sales import stock
from tests.factories import admin_headers
from tests.factories import make_product
from tests.factories import make_sale
from tests.factories import signup


def later(**delta) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat()


def test_created_sale_is_active_with_stock_in_redis(client, app):
    """A new sale answers 201 and its stock is already in redis."""
    sale = make_sale(client, stock=7)
    assert sale["status"] == "active" and sale["remaining"] == 7
    assert isinstance(sale["id"], str) and isinstance(sale["product_id"], str)
    assert stock.sale_state(sale["id"])["remaining"] == 7
    assert client.get(f"/api/v1/sales/{sale['id']}").get_json() == sale


def test_status_follows_the_server_clock(client, app):
    """scheduled before starts_at, ended after ends_at, active between."""
    scheduled = make_sale(client, starts_at=later(hours=1), ends_at=later(hours=2))
    assert scheduled["status"] == "scheduled"
    active = make_sale(client)
    statuses = {s["id"]: s["status"] for s in client.get("/api/v1/sales").get_json()["items"]}
    assert statuses == {scheduled["id"]: "scheduled", active["id"]: "active"}
    only_active = client.get("/api/v1/sales?status=active").get_json()["items"]
    assert [s["id"] for s in only_active] == [active["id"]]


@pytest.mark.parametrize("change, field", [
    ({"stock": 0}, "stock"), ({"stock": 10_000_001}, "stock"), ({"stock": "5"}, "stock"),
    ({"per_user_limit": 101}, "per_user_limit"), ({"payment_timeout_s": 0}, "payment_timeout_s"),
    ({"product_id": 1}, "product_id"), ({"product_id": "999999"}, "product_id"),
    ({"ends_at": "yesterday"}, "ends_at"), ({"ends_at": "2026-01-01T00:00:00"}, "ends_at"),
    ({"starts_at": later(hours=3), "ends_at": later(hours=2)}, "ends_at"),
    ({"colour": "red"}, "colour"),
])
def test_bad_sales_are_400_and_create_nothing(client, app, change, field):
    """Every invalid field is a 400 naming it; no sale is created."""
    product = make_product()
    body = {"product_id": str(product.id), "stock": 5, "ends_at": later(hours=1), **change}
    response = client.post("/api/v1/sales", json=body, headers=admin_headers())
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]["message"]
    assert client.get("/api/v1/sales").get_json()["items"] == []


def test_only_the_admin_creates_sales(client, app):
    """No token is 401, a buyer's token is 403."""
    product = make_product()
    body = {"product_id": str(product.id), "stock": 5, "ends_at": later(hours=1)}
    assert client.post("/api/v1/sales", json=body).status_code == 401
    buyer = signup(client)
    response = client.post("/api/v1/sales", json=body, headers=buyer)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_unknown_sale_is_404(client, app):
    """Unknown or malformed sale ids are 404."""
    for raw in ("999", "abc", "0"):
        assert client.get(f"/api/v1/sales/{raw}").status_code == 404


def test_stats_are_admin_only(client, app):
    """Stats need the admin token and start from the sale's stock."""
    sale = make_sale(client, stock=3)
    assert client.get(f"/api/v1/sales/{sale['id']}/stats").status_code == 401
    stats = client.get(f"/api/v1/sales/{sale['id']}/stats", headers=admin_headers()).get_json()
    assert (stats["stock"], stats["remaining"], stats["reserved"]) == (3, 3, 0)
    assert stats["rejected"] == {"sold_out": 0, "limit_exceeded": 0, "sale_not_active": 0,
                                 "rate_limited": 0}
