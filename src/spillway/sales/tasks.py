"""The queue behind admission: persist the outbox in batches, re-drive what no worker
finished, cancel unpaid orders at their deadline."""

import logging
import os
import socket
import time

from celery import shared_task
from flask import current_app

from spillway.orders import ledger
from spillway.sales import service
from spillway.sales import stock
from spillway.extensions import redis_store

log = logging.getLogger(__name__)

GROUP = "persisters"
BATCH = 1000
DRAIN_BUDGET_SECONDS = 20.0
# A payment that started but never finished (the web process died mid-call) stops
# protecting its order this long after the deadline.
PAYING_GRACE_MS = 60_000


def ensure_group() -> None:
    try:
        redis_store.xgroup_create(stock.OUTBOX, GROUP, id="0", mkstream=True)
    except Exception as exc:  # BUSYGROUP: it exists already
        if "BUSYGROUP" not in str(exc):
            raise


def nudge_drain() -> None:
    """Ask a worker to drain now (the outbox was idle). Losing this message loses nothing:
    beat schedules a drain every second anyway."""
    try:
        drain_outbox.apply_async(expires=30)
    except Exception as exc:
        log.warning("could not nudge the drainer (beat will): %s", exc)


@shared_task(name="spillway.sales.tasks.drain_outbox")
def drain_outbox() -> int:
    """Persist new outbox entries in batches until it is empty or the budget is spent."""
    ensure_group()
    # One consumer name per process: what a dead process held stays pending under its
    # name until the sweeper claims it.
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    persisted = 0
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    while time.monotonic() < deadline:
        reply = redis_store.xreadgroup(GROUP, consumer, {stock.OUTBOX: ">"}, count=BATCH)
        entries = reply[0][1] if reply else []
        if not entries:
            break
        persisted += ledger.persist(entries)
    return persisted


@shared_task(name="spillway.sales.tasks.sweep_outbox")
def sweep_outbox() -> int:
    """Take over entries a worker took and never acknowledged (it died, or lost redis,
    mid-batch), and persist them."""
    ensure_group()
    taken = 0
    cursor = "0-0"
    while True:
        cursor, entries, *_ = redis_store.xautoclaim(
            stock.OUTBOX, GROUP, "sweeper", min_idle_time=current_app.config["OUTBOX_STUCK_MS"],
            start_id=cursor,
            count=BATCH)
        entries = [entry for entry in entries if entry[1]]  # deleted entries come back empty
        if entries:
            log.warning("sweeper: re-driving %d outbox entries no worker finished", len(entries))
            taken += ledger.persist(entries)
        if cursor in (b"0-0", "0-0"):
            return taken


@shared_task(name="spillway.sales.tasks.expire_payments")
def expire_payments() -> int:
    """Cancel orders whose payment deadline passed; their stock returns to the sale once."""
    now = service.now_ms()
    due = redis_store.zrangebyscore(stock.DEADLINES, "-inf", now, start=0, num=BATCH)
    return sum(cancel_if_unpaid(order_id.decode(), now) for order_id in due)


def cancel_if_unpaid(order_id: str, now: int) -> bool:
    """Cancel one order if its deadline passed unpaid; True when this call cancelled it.

    settle.lua makes the cancel and the stock's return one atomic step that only the
    first caller can take, so a repeated or concurrent call returns nothing twice.
    """
    state = stock.order_state(order_id)
    if state is None:
        redis_store.zrem(stock.DEADLINES, order_id)
        return False
    sale_id = state["sale_id"]
    outcome, _ = stock.settle(order_id, sale_id, "cancelled", now, ("pending", "confirmed"),
                              when="deadline", user_id=state["user_id"])
    if outcome != "changed" and state["status"] == "paying":
        outcome, _ = stock.settle(order_id, sale_id, "cancelled", now - PAYING_GRACE_MS,
                                  ("paying",), when="deadline", user_id=state["user_id"])
    if outcome != "changed":
        return False
    ledger.set_status(order_id, "cancelled")
    return True


@shared_task(name="spillway.sales.tasks.reconcile_sales")
def reconcile_sales() -> int:
    """Check every sale's books; drift is logged as an error. Returns the sales drifted."""
    from spillway.sales.reconcile import reconcile_all

    return sum(not report.ok for report in reconcile_all())
