"""The memcached page tier and the redis data tier, against real servers."""

import logging
import time
from contextlib import suppress

from flashsale.catalog import cache
from flashsale.catalog import service
from spillway import counters
from spillway.caching import MemcachedStore
from spillway.caching import ReadThrough
from spillway.clients import memcache
from spillway.clients import redis_store
from tests.factories import admin_headers
from tests.factories import make_product
from tests.servers import start_memcached
from tests.waiting import NotYet
from tests.waiting import wait_until


def db_reads() -> int:
    return counters.read().get("catalog.db_reads", 0)


def test_second_read_is_served_from_memcached(client, app):
    """The first GET fills memcached with the exact body; the second reads no database."""
    product = make_product()
    first = client.get(f"/api/v1/products/{product.id}")
    reads = db_reads()
    second = client.get(f"/api/v1/products/{product.id}")
    assert second.data == first.data
    assert db_reads() == reads
    assert memcache.get(cache.product_key(product.id)) == first.data


def test_no_stale_read_after_patch(client, app):
    """After a PATCH returns, the product and every listing show the change."""
    product = make_product()
    client.get(f"/api/v1/products/{product.id}")
    client.get("/api/v1/products")
    client.get("/api/v1/products?page=1&per_page=5")
    response = client.patch(
        f"/api/v1/products/{product.id}", json={"name": "Renamed"}, headers=admin_headers()
    )
    assert response.status_code == 200
    assert client.get(f"/api/v1/products/{product.id}").get_json()["name"] == "Renamed"
    for query in ("", "?page=1&per_page=5"):
        items = client.get(f"/api/v1/products{query}").get_json()["items"]
        assert items[0]["name"] == "Renamed"


def test_create_updates_listing_total(client, app):
    """The redis-cached total and the cached listing follow a new product at once."""
    make_product()
    assert client.get("/api/v1/products").get_json()["total"] == 1
    make_product(name="Second")
    assert client.get("/api/v1/products").get_json()["total"] == 2
    assert service.product_total() == 2


def test_fill_that_raced_a_write_is_dropped(app):
    """A reader that loaded old data while a write committed does not leave it cached."""
    product = make_product()
    key = cache.product_key(product.id)

    def load_then_lose_the_race():
        old = service.encode(product.to_dict())
        service.update_product(product.id, {"name": "Newer"})  # the write lands mid-read
        return old

    stale = cache.pages.get_or_load(key, load_then_lose_the_race)
    assert b"Lantern" in stale  # the racing reader itself may answer what it read…
    assert memcache.get(key) is None  # …but the cache does not keep it
    assert b"Newer" in service.product_body(product.id)


def test_fills_expire_after_their_ttl(app):
    """Entries carry a TTL (with jitter), so a lost invalidation heals by itself."""
    short = ReadThrough("ttl-test", MemcachedStore(), ttl=1, jitter=0.0)
    short.get_or_load("spillway:ttl-test:k", lambda: b"value")
    assert memcache.get("spillway:ttl-test:k") == b"value"
    time.sleep(2.2)
    assert memcache.get("spillway:ttl-test:k") is None


def test_memcached_down_serves_from_database_then_recovers(app, client, server_logs, caplog):
    """Killing memcached costs no error, logs a warning and counts; restarting it is used."""
    own = start_memcached(server_logs)
    app.config["MEMCACHED_SERVERS"] = [f"127.0.0.1:{own.port}"]
    memcache.init_app(app)
    product = make_product()
    assert client.get(f"/api/v1/products/{product.id}").status_code == 200
    own.kill()
    with caplog.at_level(logging.WARNING, logger="spillway.caching"):
        for _ in range(3):
            response = client.get(f"/api/v1/products/{product.id}")
            assert response.status_code == 200
            assert response.get_json()["name"] == "Lantern"
    assert any("unavailable" in record.message for record in caplog.records)
    assert counters.read().get("cache.catalog-pages.errors", 0) > 0
    restarted = start_memcached(server_logs, port=own.port)
    try:

        def refilled() -> bool:
            client.get(f"/api/v1/products/{product.id}")
            try:
                return memcache.get(cache.product_key(product.id)) is not None
            except Exception:
                return False

        with suppress(NotYet):
            wait_until(refilled, 15, 0.5)
        assert memcache.get(cache.product_key(product.id)) is not None
    finally:
        restarted.stop()


def test_redis_down_still_serves_reads(app, client):
    """Without redis (generation, counters) reads are still answered from the database."""
    product = make_product()
    from tests.servers import free_port

    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    redis_store.init_app(app)
    response = client.get(f"/api/v1/products/{product.id}")
    assert response.status_code == 200
