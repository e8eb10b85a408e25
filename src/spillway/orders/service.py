"""Order rules: who may see an order, and payment with an atomic deadline check."""

import logging
import re
from datetime import datetime
from datetime import timezone

from sqlalchemy import select

from spillway.errors import ApiError
from spillway.extensions import db
from spillway.extensions import redis_store
from spillway.orders import ledger
from spillway.orders import payment
from spillway.orders.models import Order
from spillway.sales import stock
from spillway.sales.service import iso
from spillway.sales.service import now_ms
from spillway.sales.service import public_status

log = logging.getLogger(__name__)
ORDER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def find(order_id: str, role: str, user_id: str | None) -> dict:
    """The order document, for its owner or the admin.

    :raise ApiError: 404 when it does not exist or belongs to someone else (no leak).
    """
    document = _document(order_id) if ORDER_ID.match(order_id) else None
    if document is None or (role != "admin" and document["user_id"] != user_id):
        raise ApiError(404, f"Order {order_id[:40]} does not exist.")
    return document


def _document(order_id: str) -> dict | None:
    state = stock.order_state(order_id)
    if state is not None:
        created = datetime.fromtimestamp(int(state["created_ms"]) / 1000, timezone.utc)
        return {"order_id": order_id, "sale_id": state["sale_id"], "user_id": state["user_id"],
                "quantity": int(state["quantity"]), "status": public_status(state["status"]),
                "created_at": iso(created)}
    order = db.session.get(Order, order_id)
    if order is None:
        return None
    return {"order_id": order.id, "sale_id": str(order.sale_id), "user_id": str(order.user_id),
            "quantity": order.quantity, "status": order.status, "created_at": iso(order.created_at)}


def of_buyer(user_id: str) -> list[dict]:
    """Every order of a buyer, newest first."""
    ids = [i.decode() for i in redis_store.smembers(stock.buyer_orders_key(user_id))]
    persisted = db.session.scalars(select(Order.id).where(Order.user_id == int(user_id)))
    documents = [_document(i) for i in set(ids) | set(persisted)]
    return sorted((d for d in documents if d), key=lambda d: d["created_at"], reverse=True)


def pay(order_id: str, user_id: str) -> dict:
    """Charge the buyer and mark the order paid, before its deadline only.

    The order is first claimed for payment ('paying') by an atomic check of status and
    deadline, so the timeout sweeper cannot cancel it while the gateway is charging; a
    failed charge releases the claim.

    :raise ApiError: 404 not the buyer's order, 409 order_not_payable, 503 gateway down.
    """
    order = find(order_id, "buyer", user_id)
    sale_id = order["sale_id"]
    buyer = order["user_id"]
    outcome, before = stock.settle(order_id, sale_id, "paying", now_ms(), ("confirmed",),
                                   when="before", user_id=buyer)
    if outcome == "unchanged" or before == "paid":
        return {"status": "paid"} if before == "paid" else _refuse(order_id, "paying")
    if outcome != "changed":
        return _refuse(order_id, before)
    try:
        payment.charge(order_id, order["quantity"])
    except payment.GatewayError as exc:
        stock.settle(order_id, sale_id, "confirmed", now_ms(), ("paying",), user_id=buyer)
        log.warning("payment of %s failed: %s", order_id, exc)
        raise ApiError(503, "The payment service is unavailable; retry.") from None
    stock.settle(order_id, sale_id, "paid", now_ms(), ("paying",), user_id=buyer)
    ledger.set_status(order_id, "paid")
    return {"status": "paid"}


def _refuse(order_id: str, status: str | None):
    why = {"pending": "is not confirmed yet; retry shortly",
           "cancelled": "was cancelled (its payment deadline passed)",
           "paying": "is being paid right now"}.get(status or "", "cannot be paid")
    raise ApiError(409, f"Order {order_id} {why}.", "order_not_payable")
