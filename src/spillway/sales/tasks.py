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
from spillway.extensions import db
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


def outbox_backlog() -> int:
    """Outbox entries not yet persisted: those no worker has taken, and those taken and
    not acknowledged. Not XLEN, which also counts entries acknowledged but not yet
    deleted."""
    try:
        groups = {g["name"].decode(): g for g in redis_store.xinfo_groups(stock.OUTBOX)}
    except Exception as exc:  # no stream yet
        if "no such key" not in str(exc):
            raise
        return 0
    if GROUP not in groups:
        return redis_store.xlen(stock.OUTBOX)
    last = groups[GROUP]["last-delivered-id"].decode()
    untaken = len(redis_store.xrange(stock.OUTBOX, f"({last}", "+", count=BATCH))
    return untaken + groups[GROUP]["pending"]


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
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    return _retry_own_batches(consumer, deadline) + _drain_new(consumer, deadline)


def _retry_own_batches(consumer: str, deadline: float) -> int:
    """Persist again what this process took and could not persist (the database was
    locked or down when it committed): on the next tick, not after OUTBOX_STUCK_MS."""
    persisted = 0
    try:
        while time.monotonic() < deadline:
            reply = redis_store.xreadgroup(GROUP, consumer, {stock.OUTBOX: "0"}, count=BATCH)
            entries = [entry for entry in (reply[0][1] if reply else []) if entry[1]]
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
