"""Reconciliation: does redis's stock agree with itself and with the ledger?

For every sale, at any moment:
  stock == remaining + units held by buyers            (redis, kept by the Lua scripts)
and once the outbox has drained:
  units held by buyers == units of live orders in the database
Any difference is drift: it is logged as an error and counted, never repaired silently.
"""

import logging
from dataclasses import dataclass

from celery import shared_task
from sqlalchemy import func
from sqlalchemy import select

from flashsale.extensions import db
from flashsale.orders.models import Order
from flashsale.orders.outbox import outbox
from flashsale.sales import stock
from flashsale.sales.models import Sale
from spillway import counters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """One sale's books."""

    sale_id: int
    stock: int
    remaining: int
    held_in_redis: int
    live_in_database: int
    outbox_depth: int
    # Lent by one shard, not yet deposited on another: normally zero between purchases; a
    # lasting value means a web process died mid-borrow (units undersold, not lost).
    in_transit: int = 0
    # Its holdings left redis (sales/archive.py): the ledger's live units stand for them.
    archived: bool = False

    @property
    def redis_balanced(self) -> bool:
        held = self.live_in_database if self.archived else self.held_in_redis
        return self.stock == self.remaining + held

    @property
    def ledger_balanced(self) -> bool:
        # While entries wait in the outbox the ledger lags; only a drained queue must agree.
        return self.archived or self.outbox_depth > 0 or self.held_in_redis == self.live_in_database

    @property
    def ok(self) -> bool:
        return self.redis_balanced and self.ledger_balanced and self.remaining >= 0

    def describe(self) -> str:
        verdict = "ok" if self.ok else "DRIFT"
        return (
            f"sale {self.sale_id}: {verdict} stock={self.stock} remaining={self.remaining} "
            f"held(redis)={self.held_in_redis} live(db)={self.live_in_database} "
            f"outbox={self.outbox_depth} in_transit={self.in_transit}"
            + (" archived" if self.archived else "")
        )


def reconcile(sale_id: int) -> Report:
    """Compare one sale's books; log and count drift."""
    sale = db.session.get(Sale, sale_id)
    live = stock.sale_state(sale_id) or {}
    held = stock.units_held(sale_id)
    in_db = db.session.scalar(
        select(func.coalesce(func.sum(Order.quantity), 0)).where(
            Order.sale_id == sale_id, Order.status != "cancelled"
        )
    )
    report = Report(
        sale_id,
        sale.stock,
        live.get("remaining", sale.stock),
        held,
        int(in_db),
        outbox.backlog(),
        live.get("in_transit", 0),
        live.get("archived") == 1,
    )
    if not report.ok:
        counters.incr("sales.reconcile.drift")
        log.error("reconcile: %s", report.describe())
    return report


def reconcile_all() -> list[Report]:
    return [reconcile(sale_id) for sale_id in db.session.scalars(select(Sale.id))]


@shared_task(name="flashsale.sales.reconcile.reconcile_sales")
def reconcile_sales() -> int:
    """Check every sale's books; drift is logged as an error. Returns the sales drifted."""
    return sum(not report.ok for report in reconcile_all())
