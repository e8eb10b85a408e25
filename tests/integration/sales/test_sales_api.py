"""Sales: creation with pre-warmed stock, status from the server clock, auth, validation."""

from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
from redis.connection import AbstractConnection

from flashsale.sales import stock
from tests.factories import admin_headers
from tests.factories import buy
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


@pytest.mark.parametrize(
    "change, field",
    [
        ({"stock": 0}, "stock"),
        ({"stock": 10_000_001}, "stock"),
        ({"stock": "5"}, "stock"),
        ({"per_user_limit": 101}, "per_user_limit"),
        ({"payment_timeout_s": 0}, "payment_timeout_s"),
        ({"product_id": 1}, "product_id"),
        ({"product_id": "999999"}, "product_id"),
        ({"ends_at": "yesterday"}, "ends_at"),
        ({"ends_at": "2026-01-01T00:00:00"}, "ends_at"),
        ({"starts_at": later(hours=3), "ends_at": later(hours=2)}, "ends_at"),
        ({"colour": "red"}, "colour"),
    ],
)
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
    assert stats["rejected"] == {
        "sold_out": 0,
        "limit_exceeded": 0,
        "sale_not_active": 0,
        "rate_limited": 0,
    }


def listed(client, query: str = "") -> dict:
    response = client.get(f"/api/v1/sales{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def ids(listing: dict) -> list[str]:
    return [sale["id"] for sale in listing["items"]]


def test_the_listing_comes_in_pages_in_creation_order_with_a_total(client, app):
    """page and per_page cut the listing in the order the sales were created and total counts
    every sale; without
    them the page holds 100, so a client from before pages still sees every sale."""
    made = [make_sale(client)["id"] for _ in range(5)]
    first = listed(client)
    assert ids(first) == made and (first["page"], first["per_page"], first["total"]) == (1, 100, 5)
    assert ids(listed(client, "?per_page=2")) == made[:2]
    assert ids(listed(client, "?per_page=2&page=3")) == made[4:]
    assert listed(client, "?per_page=2&page=4") == {
        "items": [],
        "page": 4,
        "per_page": 2,
        "total": 5,
    }
    for bad in ("?per_page=0", "?per_page=101", "?page=0", "?status=nope", "?status="):
        assert client.get(f"/api/v1/sales{bad}").status_code == 400


def sales_of_every_status(client) -> dict[str, str]:
    """One sale in each status: the times decide two, the live stock the other two."""
    scheduled = make_sale(client, starts_at=later(hours=1), ends_at=later(hours=2))
    ended = make_sale(client, starts_at=later(hours=-2), ends_at=later(hours=-1))
    sold_out = make_sale(client, stock=1)
    assert buy(client, sold_out, signup(client)).status_code == 202
    active = make_sale(client)
    return {
        "scheduled": scheduled["id"],
        "ended": ended["id"],
        "sold_out": sold_out["id"],
        "active": active["id"],
    }


def test_status_filters_by_times_and_by_live_stock(client, app):
    """Each status, and several at once (status repeated), lists exactly its sales, with
    totals and pages that count only those."""
    made = sales_of_every_status(client)
    for status, sale_id in made.items():
        listing = listed(client, f"?status={status}")
        assert ids(listing) == [sale_id] and listing["total"] == 1
        assert listing["items"][0]["status"] == status
    upcoming_or_on = listed(client, "?status=scheduled&status=active&status=sold_out")
    assert ids(upcoming_or_on) == [made["scheduled"], made["sold_out"], made["active"]]
    on_now = listed(client, "?status=active&status=sold_out&per_page=1&page=2")
    assert ids(on_now) == [made["active"]] and on_now["total"] == 2
    more_active = [make_sale(client)["id"] for _ in range(2)]
    active = listed(client, "?status=active&per_page=2&page=2")
    assert ids(active) == more_active[1:] and active["total"] == 3


def test_listed_sales_are_the_sales_documents(client, app):
    """Each listed sale is exactly what GET /api/v1/sales/{id} answers, sharded ones too."""
    sales_of_every_status(client)
    sharded = make_sale(client, stock=30, shards=3)
    assert buy(client, sharded, signup(client), quantity=2).status_code == 202
    for sale in listed(client)["items"]:
        assert sale == client.get(f"/api/v1/sales/{sale['id']}").get_json()
    assert listed(client, "?status=active")["items"][-1]["remaining"] == 28


def count_round_trips(monkeypatch) -> list:
    """Count what the app sends to redis, one entry per round trip (a pipeline is one)."""
    sent = []
    original = AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send_packed_command)
    return sent


@pytest.mark.parametrize("query", ["", "?status=active", "?status=scheduled&status=ended"])
def test_a_page_of_sales_costs_one_redis_round_trip(client, app, monkeypatch, query):
    """However many sales are listed, their live stock comes in one pipelined round trip
    (it used to be one or two per sale ever made)."""
    for _ in range(12):
        make_sale(client)
    sales_of_every_status(client)
    sent = count_round_trips(monkeypatch)
    assert listed(client, query)["items"]
    assert len(sent) == 1
