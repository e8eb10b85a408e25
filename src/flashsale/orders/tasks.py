"""The queue behind admission: persist the outbox in batches, re-drive what no worker
finished, settle orders at their payment deadline."""

import contextlib
import logging
import time

from celery import shared_task
from flask import current_app
from redis.exceptions import LockError

from flashsale.extensions import db
from flashsale.keys import DEADLINES
from flashsale.keys import EXPIRY_LOCK
from flashsale.orders import ledger
from flashsale.orders import payment
from flashsale.orders.outbox import outbox
from flashsale.orders.service import resolve_abandoned
from flashsale.orders.state import CANCELLED
from flashsale.orders.state import order_state
from flashsale.orders.state import settle
from spillway import counters
from spillway.clients import redis_store
from spillway.clock import now_ms

log = logging.getLogger(__name__)

BATCH = 1000
DRAIN_BUDGET_SECONDS = 20.0
# One expiry tick stops taking new orders after this long (gateway calls can be slow).
EXPIRY_BUDGET_SECONDS = 20.0


@shared_task(name="flashsale.orders.tasks.drain_outbox")
def drain_outbox() -> int:
    """Persist new outbox entries in batches until it is empty or the budget is spent."""
    outbox.ensure_group()
    consumer = outbox.consumer()
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    return _retry_own_batches(consumer, deadline) + _drain_new(consumer, deadline)


def _retry_own_batches(consumer: str, deadline: float) -> int:
    """Persist again what this process took and could not persist (the database was
    locked or down when it committed): on the next tick, not after OUTBOX_STUCK_MS."""
    persisted = 0
    try:
        while time.monotonic() < deadline:
            entries = outbox.read_mine(consumer)
            if not entries:
                break
            persisted += ledger.persist(entries)
    except Exception as exc:  # a batch that keeps failing must not hold up new entries
        db.session.rollback()
        log.warning("drain: retrying this worker's unacknowledged batch failed: %s", exc)
    return persisted


def _drain_new(consumer: str, deadline: float) -> int:
    persisted = 0
    while time.monotonic() < deadline:
        entries = outbox.read_new(consumer)
        if not entries:
            break
        persisted += ledger.persist(entries)
    return persisted


@shared_task(name="flashsale.orders.tasks.sweep_outbox")
def sweep_outbox() -> int:
    """Take over entries a worker took and never acknowledged (it died, or lost redis,
    mid-batch), and persist them."""
    outbox.ensure_group()
    taken = 0
    for entries in outbox.claim_stuck(current_app.config["OUTBOX_STUCK_MS"]):
        log.warning("sweeper: re-driving %d outbox entries no worker finished", len(entries))
        taken += ledger.persist(entries)
    return taken


@shared_task(name="flashsale.orders.tasks.expire_payments")
def expire_payments() -> int:
    """Settle the orders whose payment deadline passed: cancel the unpaid ones (their stock
    returns to the sale once); resolve with the gateway a payment still under way once
    the grace after the deadline has passed. Returns how many orders this tick settled.

    Every due order is looked at, page by page: orders left due (a payment in its grace,
    a gateway that did not answer) must not hide those behind them. After one gateway
    failure the tick asks it nothing more; the next tick tries again. A tick that finds
    another running returns 0 at once.
    """
    # One tick at a time: beat sends one a second, and ticks waiting on a slow gateway
    # must not pile up in every worker process while the outbox waits to be drained.
    hold = EXPIRY_BUDGET_SECONDS + current_app.config["GATEWAY_TIMEOUT_S"] + 5
    lock = redis_store.lock(EXPIRY_LOCK, timeout=hold, blocking=False)
    if not lock.acquire():
        return 0
    try:
        return _expire_due(now_ms(), time.monotonic() + EXPIRY_BUDGET_SECONDS)
    finally:
        with contextlib.suppress(LockError):  # held past its timeout: another tick has it
            lock.release()


def _expire_due(now: int, stop_at: float) -> int:
    settled = left_due = 0
    ask_gateway = True
    while time.monotonic() < stop_at:
        due = redis_store.zrangebyscore(DEADLINES, "-inf", now, start=left_due, num=BATCH)
        if not due:
            break
        for order_id in due:
            outcome = settle_expired(order_id.decode(), now, ask_gateway)
            ask_gateway = ask_gateway and outcome != "unresolved"
            settled += outcome in ("cancelled", "paid")
            left_due += outcome in ("waiting", "unresolved", "kept")
            if time.monotonic() >= stop_at:
                break
    return settled


def cancel_if_unpaid(order_id: str, now: int) -> bool:
    """Cancel one order if its deadline passed unpaid; True when this call cancelled it.

    settle.lua makes the cancel and the stock's return one atomic step that only the
    first caller can take, so a repeated or concurrent call returns nothing twice.
    """
    return settle_expired(order_id, now) == "cancelled"


def settle_expired(order_id: str, now: int, ask_gateway: bool = True) -> str:
    """Settle one order whose deadline passed, as ``expire_payments`` does.

    A 'paying' order is never cancelled on the clock alone: its charge may have gone
    through. Once the grace (PAYING_GRACE_MS, longer than a gateway call) has passed,
    the gateway is asked, and only its "voided" cancels the order.

    :return: "cancelled" or "paid" (settled by this call); "waiting" (a payment in its
        grace, or the gateway not to be asked now), "unresolved" (the gateway did not
        answer), "kept" (nothing to do here) or "gone" (no longer due: redis knows no
        such order, or another caller settled it).
    """
    state = order_state(order_id)
    if state is None:
        redis_store.zrem(DEADLINES, order_id)
        return "gone"
    status = state["status"]
    if status in ("pending", "confirmed"):
        outcome, status = settle(
            order_id,
            state["sale_id"],
            "cancelled",
            now,
            ("pending", "confirmed"),
            when="deadline",
            user_id=state["user_id"],
        )
        if outcome == "changed":
            ledger.set_status(order_id, CANCELLED)
            return CANCELLED
        if outcome == "unchanged":  # cancelled meanwhile by another tick
            return "gone"
    if status != "paying":
        return "kept"
    grace_ends = int(state["deadline_ms"]) + current_app.config["PAYING_GRACE_MS"]
    if now < grace_ends or not ask_gateway:
        return "waiting"
    try:
        return resolve_abandoned(order_id, state) or "gone"
    except payment.GatewayError as exc:
        counters.incr("payments.unresolved")
        log.warning(
            "payment of %s is past its grace and still unresolved (the gateway "
            "will be asked again): %s",
            order_id,
            exc,
        )
        return "unresolved"
