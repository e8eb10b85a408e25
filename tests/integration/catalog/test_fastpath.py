"""The WSGI fast path answers cached catalog pages before Flask, and only those."""

import pytest

from flashsale.catalog import cache
from flashsale.catalog.fastpath import CachedPageFastPath
from spillway.clients import memcache
from tests.factories import admin_headers
from tests.factories import make_product


def test_hit_is_answered_before_flask(app, client):
    """A cached product is answered from memcached with the view's exact bytes and headers."""
    product = make_product()
    through_flask = client.get(f"/api/v1/products/{product.id}")
    memcache.set(cache.product_key(product.id), b'{"marker":true}')
    hit = client.get(f"/api/v1/products/{product.id}")
    assert hit.data == b'{"marker":true}'
    assert hit.headers["Content-Type"] == through_flask.headers["Content-Type"]
    assert hit.headers["Cache-Control"] == "no-cache"
    assert client.head(f"/api/v1/products/{product.id}").data == b""


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", cache.listing_key(1, 20)),
        ("page=2&per_page=5", cache.listing_key(2, 5)),
        ("per_page=5&page=2", cache.listing_key(2, 5)),
        ("page=2&colour=red", None),
        ("page=2&page=3", None),
        ("page=-1", None),
    ],
)
def test_listing_keys(query, expected):
    """Only listing queries the view would answer from its cache map to a key."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/products", "QUERY_STRING": query}
    found = CachedPageFastPath(None, None).match(environ)
    assert (found[0] if found else None) == expected


def test_writes_and_admin_no_cache_reads_go_to_flask(app, client):
    """POST/PATCH never come from the cache; an admin's no-cache read reaches the database."""
    product = make_product()
    memcache.set(cache.product_key(product.id), b'{"stale":true}')
    fresh = client.get(
        f"/api/v1/products/{product.id}", headers={**admin_headers(), "Cache-Control": "no-cache"}
    )
    assert fresh.get_json()["name"] == "Lantern"
    patched = client.patch(
        f"/api/v1/products/{product.id}", json={"name": "New"}, headers=admin_headers()
    )
    assert patched.get_json()["name"] == "New"
    assert client.get(f"/api/v1/products/{product.id}").get_json()["name"] == "New"
