"""Order rules: who may see an order, and payment: an atomic deadline check before the
charge, and the gateway's word, never a guess, on how each charge ended."""

import logging
import re
from datetime import datetime
from datetime import timezone

from sqlalchemy import select

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders import ledger
from flashsale.orders import payment
from flashsale.orders import state as order_states
from flashsale.orders.models import Order
from flashsale.orders.state import public_status
from spillway import counters
from spillway.clients import redis_store
from spillway.clock import iso
from spillway.clock import now_ms
from spillway.errors import ApiError

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
    state = order_states.order_state(order_id)
    if state is not None:
        created = datetime.fromtimestamp(int(state["created_ms"]) / 1000, timezone.utc)
        return {
            "order_id": order_id,
            "sale_id": state["sale_id"],
            "user_id": state["user_id"],
            "quantity": int(state["quantity"]),
            "status": public_status(state["status"]),
            "created_at": iso(created),
        }
    order = db.session.get(Order, order_id)
    if order is None:
        return None
    return {
        "order_id": order.id,
        "sale_id": str(order.sale_id),
        "user_id": str(order.user_id),
        "quantity": order.quantity,
        "status": order.status,
        "created_at": iso(order.created_at),
    }


def of_buyer(user_id: str) -> list[dict]:
    """Every order of a buyer, newest first."""
    ids = [i.decode() for i in redis_store.smembers(keys.buyer_orders_key(user_id))]
    persisted = db.session.scalars(select(Order.id).where(Order.user_id == int(user_id)))
    documents = [_document(i) for i in set(ids) | set(persisted)]
    return sorted((d for d in documents if d), key=lambda d: d["created_at"], reverse=True)


def pay(order_id: str, user_id: str) -> dict:
    """Charge the buyer and mark the order paid; a payment starts before the deadline only.

    The order is first claimed for payment ('paying') by an atomic check of status and
    deadline, so the deadline sweeper leaves it alone. From then on only the gateway's word
    settles it: an approval makes it paid; while nobody knows whether a charge went
    through, it stays 'paying', and a retry asks the gateway again with the same
    idempotency key, which answers without charging twice. What nobody retries, the
    sweeper resolves (``resolve_abandoned``). Never 'paid' for an order that is not.

    :raise ApiError: 404 not the buyer's order, 409 order_not_payable, 503 the gateway is
        down or the payment's outcome is not known yet.
    """
    order = find(order_id, "buyer", user_id)
    sale_id = order["sale_id"]
    buyer = order["user_id"]
    outcome, before = order_states.settle(
        order_id, sale_id, "paying", now_ms(), ("confirmed",), when="before", user_id=buyer
    )
    if before == "paid":
        return _recorded_paid(order_id)
    if outcome not in ("changed", "unchanged"):  # unchanged: paying, a retry or a twin
        _refuse(order_id, before)
    # The order stays 'paying' whatever fails below: even a refused connection proves only
    # that this attempt sent nothing, not that no other attempt with the key (a twin, a
    # lost answer, a web process that died) is about to be captured.
    try:
        charge_id = payment.charge(order_id, order["quantity"])
    except payment.Declined as exc:
        log.warning("payment of %s declined: %s", order_id, exc)
        raise ApiError(
            409, f"Order {order_id} cannot be paid: the payment was declined.", "order_not_payable"
        ) from None
    except payment.Unreachable as exc:
        log.warning("payment of %s: the gateway is unreachable: %s", order_id, exc)
        raise ApiError(503, "The payment service is unavailable; retry.") from None
    except payment.OutcomeUnknown as exc:
        counters.incr("payments.outcome_unknown")
        log.warning("payment of %s: outcome unknown: %s", order_id, exc)
        raise ApiError(503, "The payment's outcome is not known yet; retry.") from None
    outcome, before = order_states.settle(
        order_id, sale_id, "paid", now_ms(), ("paying",), user_id=buyer
    )
    if outcome not in ("changed", "unchanged"):
        _breach(order_id, charge_id, before)
        _refuse(order_id, before)
    return _recorded_paid(order_id)


def resolve_abandoned(order_id: str, state: dict[str, str]) -> str:
    """Settle a payment whose end nobody saw, by the gateway's word: void the order's key;
    captured → paid, voided → cancelled (its stock returns to the sale once).

    For the deadline sweeper, once the grace after the deadline has passed.

    :param state: the order's live record (order_states.order_state).
    :return: "paid" or "cancelled" when this call settled it, "" when it was settled already.
    :raise payment.Unreachable, payment.OutcomeUnknown: the gateway did not say; try later.
    """
    sale_id = state["sale_id"]
    buyer = state["user_id"]
    resolution = payment.void(order_id)
    target = "paid" if resolution.status == "captured" else "cancelled"
    outcome, before = order_states.settle(
        order_id, sale_id, target, now_ms(), ("paying",), user_id=buyer
    )
    if outcome not in ("changed", "unchanged"):
        if target == "paid":
            _breach(order_id, resolution.charge_id, before)
        else:
            counters.incr("payments.invariant_breach")
            log.error("payment of %s was voided, yet the order is %s", order_id, before)
        return ""
    ledger.set_status(order_id, target)
    if outcome == "unchanged":
        return ""
    counters.incr(f"payments.resolved_{target}")
    log.info("payment of %s resolved with the gateway: %s", order_id, resolution.status)
    return target


def _recorded_paid(order_id: str) -> dict:
    # Again on a repeat: a retry heals a ledger write that failed after the settle.
    ledger.set_status(order_id, "paid")
    return {"status": "paid"}


def _breach(order_id: str, charge_id: str | None, status: str | None) -> None:
    """The gateway captured a charge for an order that cannot be paid: never by design;
    logged for an operator to refund."""
    counters.incr("payments.invariant_breach")
    log.error(
        "payment of %s was captured (charge %s) but the order is %s: refund it",
        order_id,
        charge_id,
        status,
    )


def _refuse(order_id: str, status: str | None):
    why = {
        "pending": "is not confirmed yet; retry shortly",
        "cancelled": "was cancelled (its payment deadline passed)",
        "confirmed": "can no longer be paid (its payment deadline passed)",
        "paying": "is being paid right now",
    }.get(status or "", "cannot be paid")
    raise ApiError(409, f"Order {order_id} {why}.", "order_not_payable")
