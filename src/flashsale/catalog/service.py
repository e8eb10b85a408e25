"""Catalog rules: reads through the caches, writes that invalidate them after commit."""

import json

from sqlalchemy import func
from sqlalchemy import select

from flashsale.catalog import cache
from flashsale.catalog.models import Product
from flashsale.extensions import db
from spillway import counters
from spillway.errors import ApiError

MAX_ID = 2**63 - 1
# Deeper pages are read from the database: caching every page a client can name would let
# anyone grow the cache (and the set of tracked keys) without bound.
MAX_CACHED_PAGE = 100


def encode(document: dict) -> bytes:
    """The JSON bytes every tier serves for a document (compact, UTF-8)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def parse_id(raw: str) -> int:
    """An id from a path.

    :raise ApiError: 404 when it cannot name a product.
    """
    # isascii: "²" and "١" are digits to str.isdigit, and "²" is no number to int().
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 0 < int(raw) <= MAX_ID:
        raise ApiError(404, f"Product {raw[:40]} does not exist.")
    return int(raw)


def product_body(product_id: int, use_cache: bool = True) -> bytes:
    """The JSON of one product.

    :raise ApiError: 404 when there is no such product.
    """

    def load() -> bytes | None:
        counters.incr("catalog.db_reads")
        product = db.session.get(Product, product_id)
        return encode(product.to_dict()) if product else None

    key = cache.product_key(product_id)
    body = cache.pages.get_or_load(key, load) if use_cache else load()
    if body is None:
        raise ApiError(404, f"Product {product_id} does not exist.")
    return body


def listing_body(page: int, per_page: int, use_cache: bool = True) -> bytes:
    """The JSON of one page of the listing, ordered by id."""

    def load() -> bytes:
        counters.incr("catalog.db_reads")
        rows = db.session.scalars(
            select(Product).order_by(Product.id).offset((page - 1) * per_page).limit(per_page)
        )
        items = [product.to_dict() for product in rows]
        return encode(
            {"items": items, "page": page, "per_page": per_page, "total": product_total(use_cache)}
        )

    if not use_cache or page > MAX_CACHED_PAGE:
        return load()
    return cache.pages.get_or_load(cache.listing_key(page, per_page), load, track=True)


def product_total(use_cache: bool = True) -> int:
    """How many products there are (a count, kept in the redis data tier)."""

    def load() -> bytes:
        counters.incr("catalog.db_counts")
        return str(db.session.scalar(select(func.count(Product.id)))).encode()

    return int(cache.totals.get_or_load(cache.TOTAL_KEY, load) if use_cache else load())


def create_product(fields: dict) -> Product:
    """Add a product; listings and the total are invalidated once it is committed."""
    product = Product(**fields)
    db.session.add(product)
    db.session.commit()
    _invalidate()
    return product


def update_product(product_id: int, changes: dict) -> Product:
    """Change a product; once this returns, every tier serves the new data.

    :raise ApiError: 404 when there is no such product.
    """
    product = db.session.get(Product, product_id)
    if product is None:
        raise ApiError(404, f"Product {product_id} does not exist.")
    for name, value in changes.items():
        setattr(product, name, value)
    db.session.commit()
    _invalidate(product_id)
    return product


def _invalidate(product_id: int | None = None) -> None:
    cache.totals.invalidate([cache.TOTAL_KEY])
    cache.pages.invalidate([cache.product_key(product_id)] if product_id else [])
