"""GET /api/v1/ops/live: admin only, cumulative counters the operator page charts."""

from datetime import datetime
from datetime import timedelta
from datetime import timezone

from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_product
from tests.factories import make_sale
from tests.factories import signup

LIVE = "/api/v1/ops/live"


def test_needs_the_admin_token(client):
    """No token: 401; a buyer's token: 403; both in the JSON error shape."""
    missing = client.get(LIVE)
    assert missing.status_code == 401
    assert missing.get_json()["error"]["code"] == "unauthorized"
    buyer = client.get(LIVE, headers=signup(client))
    assert buyer.status_code == 403
    assert buyer.get_json()["error"]["code"] == "forbidden"


def test_shape_when_nothing_happened(client):
    """An idle store: zeros, no sales, the server's clock."""
    body = client.get(LIVE, headers=admin_headers()).get_json()
    assert body["admitted"] == 0 and body["orders_persisted"] == 0
    assert body["outbox"] == {"depth": 0, "pending": 0}
    assert body["sales"] == [] and isinstance(body["cache"], list)
    now_ms = datetime.now(timezone.utc).timestamp() * 1000
    assert abs(body["at_ms"] - now_ms) < 60_000


def test_counts_admissions_refusals_and_stock(client):
    """Admissions, refusals by reason and remaining stock follow the purchases."""
    sale = make_sale(client, stock=2, per_user_limit=1)
    alice, bob, carol = (signup(client, n) for n in ("alice", "bob", "carol"))
    for buyer in (alice, alice, bob, carol):
        buy(client, sale, buyer)
    body = client.get(LIVE, headers=admin_headers()).get_json()
    assert body["admitted"] == 2
    assert body["outbox"]["depth"] == 2  # no worker here: nothing persisted
    [live] = body["sales"]
    assert live == {
        "id": sale["id"],
        "status": "sold_out",
        "stock": 2,
        "remaining": 0,
        "rejected": {"sold_out": 1, "limit_exceeded": 1, "sale_not_active": 0, "rate_limited": 0},
    }


def test_lists_only_sales_not_long_over(client):
    """A sale that ended long ago is left out; a scheduled one is shown."""
    now = datetime.now(timezone.utc)
    make_sale(
        client,
        starts_at=(now - timedelta(hours=3)).isoformat(),
        ends_at=(now - timedelta(hours=2)).isoformat(),
    )
    just_ended = make_sale(
        client,
        starts_at=(now - timedelta(hours=1)).isoformat(),
        ends_at=(now - timedelta(minutes=1)).isoformat(),
    )
    scheduled = make_sale(
        client,
        starts_at=(now + timedelta(hours=1)).isoformat(),
        ends_at=(now + timedelta(hours=2)).isoformat(),
    )
    body = client.get(LIVE, headers=admin_headers()).get_json()
    assert [(s["id"], s["status"]) for s in body["sales"]] == [
        (scheduled["id"], "scheduled"),
        (just_ended["id"], "ended"),
    ]


def test_cache_lookups_are_reported(client):
    """Cache lookups appear by tier and namespace, hits and misses."""
    product = make_product()
    client.get(f"/api/v1/products/{product.id}")
    client.get(f"/api/v1/products/{product.id}")
    body = client.get(LIVE, headers=admin_headers()).get_json()
    pages = [c for c in body["cache"] if c["namespace"] == "catalog-pages"]
    assert pages and pages[0]["tier"] == "memcached"
    assert pages[0]["hits"] >= 1 and pages[0]["misses"] >= 1


def test_documented_in_openapi(client):
    """The endpoint is in the OpenAPI document, with its response shape."""
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/ops/live"]["get"]
    assert "200" in operation["responses"]
    assert "LiveOut" in document["components"]["schemas"]
