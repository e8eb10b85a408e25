"""The database side of orders: batched, idempotent inserts and status changes."""

import logging
from datetime import datetime
from datetime import timezone
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy import tuple_
from sqlalchemy import update

from flashsale.extensions import db
from flashsale.keys import DEAD_LETTERS
from flashsale.keys import buyer_orders_key
from flashsale.keys import order_key
from flashsale.orders import batch_insert
from flashsale.orders.models import LedgerIdentity
from flashsale.orders.models import Order
from flashsale.orders.outbox import outbox
from flashsale.orders.state import CANCELLED
from flashsale.orders.state import CONFIRMED
from flashsale.orders.state import PENDING
from flashsale.orders.state import settle_many
from spillway import counters
from spillway import redis_scripts
from spillway.clients import redis_store
from spillway.clock import now_ms

log = logging.getLogger(__name__)
RECORDS = Path(__file__).parent / "lua" / "records.lua"
# What _row reads of an order's live record.
RECORD_FIELDS = ("sale_id", "user_id", "quantity", "status", "created_ms", "key")
# Outbox entries whose order can never be persisted (its sale is not in this ledger, its
# record is gone or malformed) are kept in DEAD_LETTERS with the reason, for the operator,
# so that one such entry never holds back the batch it came in (spillway ledger status).
# A row the database refuses for what it is, not because the database is down.
ROW_ERRORS = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.DataError)


def persist(entries: list) -> int:
    """Make a batch of outbox entries durable orders, then acknowledge them.

    Safe to repeat: the order id is the primary key, so an entry delivered twice inserts
    once. Redis is told 'confirmed' only after the commit. An entry that can never become
    an order is set aside as a dead letter, and the rest of its batch goes on.
    """
    order_ids = [fields.get(b"order", b"").decode() for _, fields in entries]
    rows, dead = [], []
    for (entry_id, _), order_id, state in zip(entries, order_ids, _records(order_ids)):
        try:
            rows.append(_row(order_id, state))
        except (KeyError, ValueError) as exc:
            dead.append(
                (
                    entry_id,
                    order_id,
                    f"its record in redis is missing or malformed ({type(exc).__name__}: {exc})",
                )
            )
    # The mark moves even when every entry was set aside: the ledger has seen them.
    rows, refused = _insert(rows, max(entry_id for entry_id, _ in entries))
    by_order = {order_id: entry_id for (entry_id, _), order_id in zip(entries, order_ids)}
    dead += [(by_order[row["id"]], row["id"], reason) for row, reason in refused]
    confirm(rows)
    _set_aside(dead)
    # In the ledger now: a buyer's set in redis only names orders not yet in it.
    outbox.acknowledge(
        [entry_id for entry_id, _ in entries],
        forget=[(buyer_orders_key(row["user_id"]), row["id"]) for row in rows],
    )
    counters.incr("orders.persisted", len(rows))  # the operator page's drain rate
    _log_persisted(entries, order_ids, rows)
    return len(rows)


def _log_persisted(entries: list, order_ids: list[str], rows: list[dict]) -> None:
    """One line a batch: the orders it stored, each with the id of the request that
    admitted it (reserve.lua keeps it in the outbox entry), so a request's trail reaches
    its order in the ledger."""
    stored = {row["id"] for row in rows}
    requests = {
        order_id: fields.get(b"request", b"").decode()
        for (_, fields), order_id in zip(entries, order_ids)
        if order_id in stored
    }
    if requests:
        log.info("drain: persisted %d orders", len(requests), extra={"orders": requests})


def _records(order_ids: list[str]) -> list[dict[str, str]]:
    """The live records of a batch's orders (the fields ``_row`` reads), in one round trip;
    a missing record is an empty dict."""
    values = redis_scripts.script(RECORDS)(
        keys=[order_key(order_id) for order_id in order_ids],
        args=RECORD_FIELDS,
        client=redis_store.client,
    )
    return [
        {field: value.decode() for field, value in zip(RECORD_FIELDS, found) if value is not None}
        for found in values
    ]


def _row(order_id: str, state: dict) -> dict:
    """The ledger row of an order's redis record.

    :raise KeyError, ValueError: the record is missing or malformed.
    """
    return {
        "id": order_id,
        "sale_id": int(state["sale_id"]),
        "user_id": int(state["user_id"]),
        "quantity": int(state["quantity"]),
        "status": CANCELLED if state["status"] == CANCELLED else CONFIRMED,
        "created_at": datetime.fromtimestamp(int(state["created_ms"]) / 1000, timezone.utc),
        "updated_at": datetime.now(timezone.utc),
        "idempotency_key": state.get("key") or None,
    }


def _insert(rows: list[dict], newest_entry: bytes) -> tuple[list[dict], list[tuple]]:
    """Insert the rows in one transaction that also moves the ledger's outbox mark; when
    the database refuses the batch for a row's sake, insert row by row (a transaction each:
    a rare path, and SAVEPOINTs are unreliable on pysqlite) and return the rows it refuses
    with why. A database that is down raises (the batch is retried whole)."""
    try:
        batch_insert.insert_new(db.session.connection(), rows)
        _move_mark(newest_entry)
        db.session.commit()
        return rows, []
    except ROW_ERRORS:
        db.session.rollback()
    kept, refused = [], []
    one_row = batch_insert.statement(db.engine.dialect.name)
    for row in rows:
        try:
            db.session.execute(one_row, [row])
            db.session.commit()
            kept.append(row)
        except ROW_ERRORS as exc:
            db.session.rollback()
            refused.append((row, f"the ledger refuses it: {str(exc.orig).splitlines()[0]}"))
    _move_mark(newest_entry)
    db.session.commit()
    return kept, refused


def _move_mark(entry_id: bytes) -> None:
    """Record, with the inserts, the newest outbox entry this ledger now holds."""
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    mark = (int(ms), int(seq or 0))
    db.session.execute(
        update(LedgerIdentity)
        .where(tuple_(LedgerIdentity.outbox_mark_ms, LedgerIdentity.outbox_mark_seq) < mark)
        .values(outbox_mark_ms=mark[0], outbox_mark_seq=mark[1])
    )


def _set_aside(dead: list[tuple]) -> None:
    """Keep each dead letter with its reason; say so loudly (this is an order lost to
    the ledger, though its 202 was answered: spillway ledger status shows them)."""
    if not dead:
        return
    pipe = redis_store.pipeline(transaction=False)
    for entry_id, order_id, reason in dead:
        log.error(
            "outbox entry %s (order %s) set aside, never persisted: %s", entry_id, order_id, reason
        )
        pipe.xadd(DEAD_LETTERS, {"entry": entry_id, "order": order_id, "reason": reason[:500]})
    pipe.execute()
    counters.incr("orders.dead_letters", len(dead))


def confirm(rows: list[dict]) -> None:
    """pending → confirmed in redis; an order cancelled meanwhile is cancelled here too."""
    changes = [
        (row["id"], row["sale_id"], row["user_id"]) for row in rows if row["status"] == CONFIRMED
    ]
    if not changes:
        return
    results = settle_many(changes, CONFIRMED, now_ms(), (PENDING,))
    for (order_id, *_), (outcome, before) in zip(changes, results):
        if outcome == "refused" and before == CANCELLED:
            set_status(order_id, CANCELLED)


def set_status(order_id: str, status: str) -> None:
    """Record a settled status in the ledger (no row yet: the persist will copy it)."""
    db.session.execute(
        update(Order)
        .where(Order.id == order_id)
        .values(status=status, updated_at=datetime.now(timezone.utc))
    )
    db.session.commit()
