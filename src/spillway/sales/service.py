"""Sale rules: creation with stock pre-warmed in redis, status from the server clock,
admission through one Lua call."""

import re
import time
import uuid
from datetime import datetime
from datetime import timezone

from flask import current_app
from sqlalchemy import func
from sqlalchemy import select

from spillway.catalog.models import Product
from spillway.catalog.service import MAX_ID as MAX_PRODUCT_ID
from spillway.errors import ApiError
from spillway.extensions import db
from spillway.orders.models import Order
from spillway.sales import stock
from spillway.sales.models import Sale
from spillway.security import ratelimits

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,64}$")
REFUSALS = {"sold_out": "has no stock left", "limit_exceeded": "allows no more units for you",
            "sale_not_active": "is not on now"}


def now_ms() -> int:
    return int(time.time() * 1000)


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; every one stored here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return _utc(moment).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    return int(_utc(moment).timestamp() * 1000)


def parse_sale_id(raw: str) -> int:
    """:raise ApiError: 404 when ``raw`` cannot name a sale."""
    # isascii: "²" and "١" are digits to str.isdigit, and "²" is no number to int().
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) == 0:
        raise ApiError(404, f"Sale {raw[:40]} does not exist.")
    return int(raw)


def create_sale(fields: dict) -> dict:
    """Create a sale and pre-warm its stock in redis.

    :raise ApiError: 400 when the product does not exist.
    """
    product_id = int(fields["product_id"])
    # Beyond the database's integer range no product can exist (and SQLite would overflow).
    if product_id > MAX_PRODUCT_ID or db.session.get(Product, product_id) is None:
        raise ApiError(400, f"product_id: product {fields['product_id']} does not exist.")
    starts_at = fields["starts_at"] or datetime.now(timezone.utc)
    if fields["ends_at"] <= starts_at:
        raise ApiError(400, "ends_at: must be after starts_at.")
    sale = Sale(product_id=int(fields["product_id"]), stock=fields["stock"],
                per_user_limit=fields["per_user_limit"], starts_at=starts_at,
                ends_at=fields["ends_at"], payment_timeout_s=fields["payment_timeout_s"],
                requires_purchase_token=fields.get("requires_purchase_token", False))
    db.session.add(sale)
    db.session.flush()
    # Stock reaches redis before the row commits: a sale nobody can see yet is harmless,
    # a visible sale without stock would refuse its first buyers.
    stock.prewarm(sale.id, sale.stock, sale.per_user_limit, epoch_ms(starts_at),
                  epoch_ms(sale.ends_at), sale.payment_timeout_s,
                  shards=fields.get("shards") or current_app.config["STOCK_SHARDS"])
    db.session.commit()
    return describe(sale)


def status_of(sale: Sale, remaining: int, at_ms: int) -> str:
    """ended › scheduled › sold_out › active, from the server's clock."""
    return status_at(epoch_ms(sale.starts_at), epoch_ms(sale.ends_at), remaining, at_ms)


def status_at(starts_ms: int, ends_ms: int, remaining: int, at_ms: int) -> str:
    """A sale's status at ``at_ms``, from its times and remaining stock (see API.md)."""
    if at_ms >= ends_ms:
        return "ended"
    if at_ms < starts_ms:
        return "scheduled"
    return "sold_out" if remaining <= 0 else "active"


def describe(sale: Sale) -> dict:
    """The API's sale document, with live remaining stock from redis."""
    live = stock.sale_state(sale.id) or {}
    remaining = live.get("remaining", sale.stock)
    return {"id": str(sale.id), "product_id": str(sale.product_id), "stock": sale.stock,
            "remaining": remaining, "per_user_limit": sale.per_user_limit,
            "starts_at": iso(sale.starts_at), "ends_at": iso(sale.ends_at),
            "payment_timeout_s": sale.payment_timeout_s,
            "status": status_of(sale, remaining, now_ms()),
            "requires_purchase_token": sale.requires_purchase_token}


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
        "stock": sale.stock, "remaining": live.get("remaining", sale.stock),
        "reserved": sale.stock - live.get("remaining", sale.stock),
        "orders_persisted": persisted, "orders_paid": live.get("orders_paid", 0),
        "orders_cancelled": live.get("orders_cancelled", 0), "shards": live.get("shards", 1),
        "rejected": {name: live.get(f"rejected_{name}", 0) for name in
                     ("sold_out", "limit_exceeded", "sale_not_active", "rate_limited")},
    }


def purchase(sale_id: int, user_id: str, quantity: int, idempotency: str) -> tuple[int, dict]:
    """Admit a purchase: (202, new order), (200, the key's earlier order), or a refusal.

    :raise ApiError: 400 bad Idempotency-Key, 404 unknown sale, 409 refused, 429 the buyer's
        rate limit.
    """
    if idempotency and not IDEMPOTENCY_KEY.match(idempotency):
        raise ApiError(400, "Idempotency-Key: 1 to 64 printable ASCII characters.")
    admission = stock.reserve(sale_id, user_id, quantity, idempotency, now_ms(),
                              str(uuid.uuid4()), ratelimits.buyer_limits(user_id))
    if admission.outcome == "rate_limited":  # counted in the sale's stats by the script
        raise ApiError(429, "Too many purchase attempts; slow down.",
                       retry_after=admission.retry_after)
    if admission.outcome == "not_found":
        raise ApiError(404, f"Sale {sale_id} does not exist.")
    if admission.outcome in REFUSALS:
        raise ApiError(409, f"Sale {sale_id} {REFUSALS[admission.outcome]}.", admission.outcome)
    if admission.outcome == "duplicate":
        state = stock.order_state(admission.order_id) or {}
        return 200, {"order_id": admission.order_id,
                     "status": public_status(state.get("status", "pending"))}
    if admission.wake_drainer:
        from spillway.sales.tasks import nudge_drain

        nudge_drain()
    return 202, {"order_id": admission.order_id, "status": "pending"}


def public_status(status: str) -> str:
    """'paying' is internal (a payment in flight); clients see the order as confirmed."""
    return "confirmed" if status == "paying" else status
