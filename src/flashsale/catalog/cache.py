"""Where catalog reads are cached, under which keys.

Page tier (memcached): the exact JSON bodies of product and listing answers, under keys
nginx can compute from the request URI, so that a hot GET is served by nginx alone.
Data tier (redis): the product count, a query that grows with the table.
"""

from spillway.caching import MemcachedStore
from spillway.caching import ReadThrough
from spillway.caching import RedisStore
from spillway.extension import CachedRoute

# Bump to orphan every cached page at once (say, when the product JSON changes shape).
KEY_VERSION = "v1"
PAGE_PREFIX = f"spillway:{KEY_VERSION}:"
PAGE_TTL_SECONDS = 300
TOTAL_TTL_SECONDS = 3600

# nginx answers these itself from memcached; the bare listing is page 1 of 20, like the app.
CACHED_ROUTE = CachedRoute(
    location=r"^/api/v1/products(/[0-9]+)?$",
    key_prefix=PAGE_PREFIX,
    aliases={"/api/v1/products": "/api/v1/products?page=1&per_page=20"},
)

pages = ReadThrough("catalog-pages", MemcachedStore(), ttl=PAGE_TTL_SECONDS)
totals = ReadThrough("catalog-totals", RedisStore(), ttl=TOTAL_TTL_SECONDS)

TOTAL_KEY = f"{PAGE_PREFIX}products:total"


def product_key(product_id: int) -> str:
    """The page key of one product: the prefix and the canonical request URI."""
    return f"{PAGE_PREFIX}/api/v1/products/{product_id}"


def listing_key(page: int, per_page: int) -> str:
    """The page key of one listing page: the prefix and the canonical request URI."""
    return f"{PAGE_PREFIX}/api/v1/products?page={page}&per_page={per_page}"
