"""The database side of orders: batched, idempotent inserts and status changes."""

import logging
from datetime import datetime
from datetime import timezone

from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from spillway.extensions import db
from spillway.extensions import redis_store
from spillway.ops import counters
from spillway.orders.models import Order
from spillway.sales import stock
from spillway.sales import service

log = logging.getLogger(__name__)
INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def persist(entries: list) -> int:
    """Make a batch of outbox entries durable orders, then acknowledge them.

    Safe to repeat: the order id is the primary key, so an entry delivered twice inserts
    once. Redis is told 'confirmed' only after the commit.
    """
    order_ids = [fields[b"order"].decode() for _, fields in entries]
    pipe = redis_store.pipeline(transaction=False)
    for order_id in order_ids:
        pipe.hgetall(stock.order_key(order_id))
    states = pipe.execute()
    rows = []
    for order_id, raw in zip(order_ids, states):
        state = {k.decode(): v.decode() for k, v in raw.items()}
        if not state:
            log.error("outbox names order %s, which redis does not know", order_id)
            continue
        rows.append({
            "id": order_id, "sale_id": int(state["sale_id"]), "user_id": int(state["user_id"]),
            "quantity": int(state["quantity"]),
            "status": "cancelled" if state["status"] == "cancelled" else "confirmed",
            "created_at": datetime.fromtimestamp(int(state["created_ms"]) / 1000, timezone.utc),
            "updated_at": datetime.now(timezone.utc),
        })
    if rows:
        insert = INSERTS[db.engine.dialect.name]
        db.session.execute(insert(Order).on_conflict_do_nothing(index_elements=["id"]), rows)
        db.session.commit()
    confirm(rows)
    ids = [entry_id for entry_id, _ in entries]
    # One MULTI: redis killed between a separate XACK and XDEL left acknowledged entries
    # in the stream for good (tests/faults/test_redis_restart.py).
    done = redis_store.pipeline(transaction=True)
    done.xack(stock.OUTBOX, "persisters", *ids)
    done.xdel(stock.OUTBOX, *ids)
    done.execute()
    counters.incr("orders.persisted", len(rows))  # the operator page's drain rate
    return len(rows)


def confirm(rows: list[dict]) -> None:
    """pending → confirmed in redis; an order cancelled meanwhile is cancelled here too."""
    changes = [(row["id"], row["sale_id"], row["user_id"]) for row in rows
               if row["status"] == "confirmed"]
    if not changes:
        return
    results = stock.settle_many(changes, "confirmed", service.now_ms(), ("pending",))
    for (order_id, *_), (outcome, before) in zip(changes, results):
        if outcome == "refused" and before == "cancelled":
            set_status(order_id, "cancelled")


def set_status(order_id: str, status: str) -> None:
    """Record a settled status in the ledger (no row yet: the persist will copy it)."""
    db.session.execute(update(Order).where(Order.id == order_id).values(
        status=status, updated_at=datetime.now(timezone.utc)))
    db.session.commit()
