"""Let go of what redis no longer needs to keep for a sale long over.

A sale's buyers' holdings and idempotency keys grow with its buyers, and redis keeps them
in memory. Once the sale is past its archive time (its end, plus the payment timeout, plus
SPILLWAY_REDIS_RETENTION_S) and every one of its orders is final and in the ledger, the
ledger answers for them: the keys are deleted and the sale hash is marked archived
(its counters stay, for the stats). Reconciliation then checks the sale against the ledger
(stock == remaining + units of live orders in the database). A replay of an Idempotency-Key
after that is judged afresh (the sale has ended: 409 sale_not_active).
"""

import logging

from celery import shared_task
from sqlalchemy import func
from sqlalchemy import select

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders.models import Order
from flashsale.orders.outbox import outbox
from flashsale.sales import stock
from spillway.clients import redis_store
from spillway.clock import now_ms

log = logging.getLogger(__name__)
UNSETTLED = ("confirmed", "paying")


@shared_task(name="flashsale.sales.archive.archive_sales")
def archive_sales() -> int:
    """Archive every sale that is due; returns how many were archived now."""
    now = now_ms()
    due = [sale for sale in stock.registered_sales().values() if _due(sale.sale_id, now)]
    if not due or outbox.backlog():  # an order still on its way to the ledger: next time
        return 0
    archived = 0
    for sale in due:
        unsettled = db.session.scalar(
            select(func.count(Order.id)).where(
                Order.sale_id == sale.sale_id, Order.status.in_(UNSETTLED)
            )
        )
        if unsettled:
            continue
        parts = [keys.shard(sale.sale_id, i, sale.shards) for i in range(sale.shards)]
        pipe = redis_store.pipeline(transaction=True)
        pipe.delete(*[key for part in parts for key in (part.units, part.idempotency)])
        pipe.hset(keys.sale_key(sale.sale_id), "archived", 1)
        pipe.execute()
        archived += 1
        log.info("sale %s archived: its holdings and idempotency keys left redis", sale.sale_id)
    db.session.rollback()
    return archived


def _due(sale_id, now: int) -> bool:
    archived, archive_ms = redis_store.hmget(keys.sale_key(sale_id), "archived", "archive_ms")
    return archived != b"1" and archive_ms is not None and int(archive_ms) <= now
