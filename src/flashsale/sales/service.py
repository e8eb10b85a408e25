"""Sale rules: creation with stock pre-warmed in redis, status from the server clock,
admission through one Lua call."""

import logging
import re
import uuid

from flask import current_app
from limits import parse_many
from sqlalchemy import func
from sqlalchemy import select

from flashsale.catalog.models import Product
from flashsale.catalog.service import MAX_ID as MAX_PRODUCT_ID
from flashsale.extensions import db
from flashsale.orders.models import Order
from flashsale.orders.outbox import nudge_drain
from flashsale.orders.state import PENDING
from flashsale.orders.state import order_state
from flashsale.orders.state import public_status
from flashsale.sales import stock
from flashsale.sales.models import Sale
from spillway import request_id
from spillway.clock import epoch_ms
from spillway.clock import iso
from spillway.clock import now_ms
from spillway.clock import utcnow
from spillway.errors import ApiError

log = logging.getLogger(__name__)
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,64}$")
REFUSALS = {
    "sold_out": "has no stock left",
    "limit_exceeded": "allows no more units for you",
    "sale_not_active": "is not on now",
}


def parse_sale_id(raw: str) -> int:
    """:raise ApiError: 404 when ``raw`` cannot name a sale."""
    # isascii: "²" and "١" are digits to str.isdigit, and "²" is no number to int().
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) == 0:
        raise ApiError(404, f"Sale {raw[:40]} does not exist.")
    return int(raw)


def create_sale(fields: dict) -> dict:
    """Create a sale, its stock in redis first as a draft that opens once the row commits.

    :raise ApiError: 400 when the product does not exist; 503 when redis holds another
        sale under the new id (redis and the database have parted ways).
    """
    product_id = int(fields["product_id"])
    # Beyond the database's integer range no product can exist (and SQLite would overflow).
    if product_id > MAX_PRODUCT_ID or db.session.get(Product, product_id) is None:
        raise ApiError(400, f"product_id: product {fields['product_id']} does not exist.")
    starts_at = fields["starts_at"] or utcnow()
    if fields["ends_at"] <= starts_at:
        raise ApiError(400, "ends_at: must be after starts_at.")
    sale = Sale(
        product_id=product_id,
        stock=fields["stock"],
        per_user_limit=fields["per_user_limit"],
        starts_at=starts_at,
        ends_at=fields["ends_at"],
        payment_timeout_s=fields["payment_timeout_s"],
        requires_purchase_token=fields.get("requires_purchase_token", False),
    )
    db.session.add(sale)
    db.session.flush()
    definition = definition_of(sale, fields.get("shards") or current_app.config["STOCK_SHARDS"])
    # A draft first: a visible sale without stock would refuse its first buyers, and a
    # draft whose commit fails admits nobody (reserve.lua answers not_found for it).
    try:
        stock.prewarm(definition, current_app.config["REDIS_RETENTION_S"])
    except stock.StaleSale as exc:
        db.session.rollback()
        log.error("sale creation refused: %s", exc)
        raise ApiError(
            503,
            "The sale could not be created: redis and the database disagree; "
            "the operator must run `spillway ledger status`.",
        ) from None
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        _discard(definition)
        raise
    _open(definition)
    return describe(sale)


def definition_of(sale: Sale, shards: int) -> stock.SaleDefinition:
    """What redis keeps of a sale."""
    return stock.SaleDefinition(
        sale_id=sale.id,
        product_id=sale.product_id,
        stock=sale.stock,
        per_user_limit=sale.per_user_limit,
        starts_ms=epoch_ms(sale.starts_at),
        ends_ms=epoch_ms(sale.ends_at),
        payment_timeout_s=sale.payment_timeout_s,
        requires_purchase_token=sale.requires_purchase_token,
        shards=shards,
    )


def _discard(definition: stock.SaleDefinition) -> None:
    try:
        stock.discard_draft(definition.sale_id, definition.shards)
    except Exception as exc:  # the draft admits nobody; the next prewarm replaces it
        log.warning("could not discard the draft of sale %s: %s", definition.sale_id, exc)


def _open(definition: stock.SaleDefinition) -> None:
    try:
        stock.open_sale(definition.sale_id, definition.shards)
    except Exception as exc:  # committed: describe() opens it when redis is back
        log.warning("sale %s committed, not yet open in redis: %s", definition.sale_id, exc)


def status_of(sale: Sale, remaining: int, at_ms: int) -> str:
    """ended › scheduled › sold_out › active, from the server's clock."""
    return status_at(epoch_ms(sale.starts_at), epoch_ms(sale.ends_at), remaining, at_ms)


def status_at(starts_ms: int, ends_ms: int, remaining: int, at_ms: int) -> str:
    """A sale's status at ``at_ms``, from its times and remaining stock (see docs/api.md)."""
    if at_ms >= ends_ms:
        return "ended"
    if at_ms < starts_ms:
        return "scheduled"
    return "sold_out" if remaining <= 0 else "active"


def describe(sale: Sale) -> dict:
    """The API's sale document, with live remaining stock from redis."""
    live = stock.sale_state(sale.id) or {}
    if live.get("open") == 0:  # committed, but its draft was never opened: open it now
        stock.open_sale(sale.id, live.get("shards", 1))
    return document(sale, live.get("remaining", sale.stock), now_ms())


def document(sale: Sale, remaining: int, at_ms: int) -> dict:
    """The API's sale document, given its live remaining stock (the listing reads the
    stock of a page of sales in one round trip: sales/listing.py)."""
    return {
        "id": str(sale.id),
        "product_id": str(sale.product_id),
        "stock": sale.stock,
        "remaining": remaining,
        "per_user_limit": sale.per_user_limit,
        "starts_at": iso(sale.starts_at),
        "ends_at": iso(sale.ends_at),
        "payment_timeout_s": sale.payment_timeout_s,
        "status": status_of(sale, remaining, at_ms),
        "requires_purchase_token": sale.requires_purchase_token,
    }


def get_sale(sale_id: int) -> Sale:
    """:raise ApiError: 404 when there is no such sale."""
    sale = db.session.get(Sale, sale_id)
    if sale is None:
        raise ApiError(404, f"Sale {sale_id} does not exist.")
    return sale


def stats(sale: Sale) -> dict:
    live = stock.sale_state(sale.id) or {}
    persisted = db.session.scalar(select(func.count(Order.id)).where(Order.sale_id == sale.id))
    return {
        "stock": sale.stock,
        "remaining": live.get("remaining", sale.stock),
        "reserved": sale.stock - live.get("remaining", sale.stock),
        "orders_persisted": persisted,
        "orders_paid": live.get("orders_paid", 0),
        "orders_cancelled": live.get("orders_cancelled", 0),
        "shards": live.get("shards", 1),
        "rejected": {
            name: live.get(f"rejected_{name}", 0)
            for name in ("sold_out", "limit_exceeded", "sale_not_active", "rate_limited")
        },
    }


def purchase(sale_id: int, user_id: str, quantity: int, idempotency: str) -> tuple[int, dict]:
    """Admit a purchase: (202, new order), (200, the key's earlier order), or a refusal.

    :raise ApiError: 400 bad Idempotency-Key, 404 unknown sale, 409 refused, 429 the buyer's
        rate limit.
    """
    if idempotency and not IDEMPOTENCY_KEY.match(idempotency):
        raise ApiError(400, "Idempotency-Key: 1 to 64 printable ASCII characters.")
    admission = stock.reserve(
        sale_id,
        user_id,
        quantity,
        idempotency,
        now_ms(),
        str(uuid.uuid4()),
        buyer_limits(),
        request_id.current(),
    )
    if admission.outcome == "rate_limited":  # counted in the sale's stats by the script
        raise ApiError(
            429, "Too many purchase attempts; slow down.", retry_after=admission.retry_after
        )
    if admission.outcome == "not_found":
        raise ApiError(404, f"Sale {sale_id} does not exist.")
    if admission.outcome in REFUSALS:
        raise ApiError(409, f"Sale {sale_id} {REFUSALS[admission.outcome]}.", admission.outcome)
    if admission.outcome == "duplicate":
        return 200, {"order_id": admission.order_id, "status": _status_of(admission.order_id)}
    if admission.wake_drainer:
        nudge_drain()
    return 202, {"order_id": admission.order_id, "status": PENDING}


def buyer_limits() -> tuple[tuple[int, int], ...]:
    """(most hits, window seconds) of each per-buyer purchase limit
    (SPILLWAY_RATE_LIMIT_PER_BUYER), counted by reserve.lua itself; none while rate limits
    are off. Parsed once per app."""
    if not current_app.config["RATE_LIMITS_ENABLED"]:
        return ()
    limits = current_app.extensions.get("buyer_limits")
    if limits is None:
        limits = current_app.extensions["buyer_limits"] = tuple(
            (item.amount, item.get_expiry())
            for item in parse_many(current_app.config["RATELIMIT_PER_BUYER"])
        )
    return limits


def _status_of(order_id: str) -> str:
    """A known order's public status: from redis, or from the ledger once redis let a final
    order's record go (SPILLWAY_REDIS_RETENTION_S)."""
    state = order_state(order_id)
    if state is not None:
        return public_status(state["status"])
    order = db.session.get(Order, order_id)
    return order.status if order is not None else PENDING
