"""What the request middleware and the hooks record, in-process (one process, no files)."""

from prometheus_client import REGISTRY

from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_product
from tests.factories import make_sale
from tests.factories import signup

LATENCY_COUNT = "spillway_http_request_duration_seconds_count"


def count(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_fast_path_purchase_is_labelled_with_flasks_route(client):
    """A purchase the fast path answers is counted under the Flask rule, by status."""
    sale = make_sale(client, stock=1, per_user_limit=1)
    route = "/api/v1/sales/<sale_id>/orders"
    admitted = count(LATENCY_COUNT, method="POST", route=route, status="202")
    refused = count(LATENCY_COUNT, method="POST", route=route, status="409")
    assert buy(client, sale, signup(client, "a")).status_code == 202
    assert buy(client, sale, signup(client, "b")).status_code == 409
    assert count(LATENCY_COUNT, method="POST", route=route, status="202") == admitted + 1
    assert count(LATENCY_COUNT, method="POST", route=route, status="409") == refused + 1


def test_reservations_are_counted_by_outcome(client):
    """admitted, sold_out and limit_exceeded each count once per attempt."""
    sale = make_sale(client, stock=2, per_user_limit=1)
    before = {
        o: count("spillway_reservations_total", outcome=o)
        for o in ("admitted", "sold_out", "limit_exceeded")
    }
    alice, bob, carol = (signup(client, n) for n in ("alice", "bob", "carol"))
    assert buy(client, sale, alice).status_code == 202
    assert buy(client, sale, alice).status_code == 409  # limit
    assert buy(client, sale, bob).status_code == 202
    assert buy(client, sale, carol).status_code == 409  # sold out
    after = {o: count("spillway_reservations_total", outcome=o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {
        "admitted": 2,
        "sold_out": 1,
        "limit_exceeded": 1,
    }


def test_unknown_paths_share_one_label(client):
    """Random paths do not create series: they all count as "unmatched"."""
    before = count(LATENCY_COUNT, method="GET", route="unmatched", status="404")
    for n in range(5):
        assert client.get(f"/no/such/path/{n}").status_code == 404
    assert count(LATENCY_COUNT, method="GET", route="unmatched", status="404") == before + 5
    assert not any("/no/such" in str(s.labels) for m in REGISTRY.collect() for s in m.samples)


def test_flask_routes_use_their_template(client):
    """A Flask-routed request is labelled with its rule, not its path."""
    product = make_product()
    before = count(LATENCY_COUNT, method="GET", route="/api/v1/products/<product_id>", status="200")
    client.get(
        f"/api/v1/products/{product.id}", headers={**admin_headers(), "Cache-Control": "no-cache"}
    )
    assert (
        count(LATENCY_COUNT, method="GET", route="/api/v1/products/<product_id>", status="200")
        == before + 1
    )


def test_cache_hits_and_misses_by_tier(client):
    """A cold product read misses memcached; the next one hits (in the catalog fast path)."""
    product = make_product(name="Kite")
    labels = {"tier": "memcached", "namespace": "catalog-pages"}
    hits, misses = (
        count("spillway_cache_hits_total", **labels),
        count("spillway_cache_misses_total", **labels),
    )
    assert client.get(f"/api/v1/products/{product.id}").status_code == 200
    assert client.get(f"/api/v1/products/{product.id}").status_code == 200
    assert count("spillway_cache_misses_total", **labels) == misses + 1
    assert count("spillway_cache_hits_total", **labels) == hits + 1
    totals = {"tier": "redis", "namespace": "catalog-totals"}
    before = count("spillway_cache_misses_total", **totals) + count(
        "spillway_cache_hits_total", **totals
    )
    client.get("/api/v1/products?page=1&per_page=5")
    assert (
        count("spillway_cache_misses_total", **totals)
        + count("spillway_cache_hits_total", **totals)
        == before + 1
    )
