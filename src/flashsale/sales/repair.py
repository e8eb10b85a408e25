"""The ways out of a ledger mismatch (flashsale.sales.binding): never silent, never automatic.

- **survey**: what each side holds that the other lacks, for the operator to judge.
- **adopt** — redis is the newer truth (the database was restored from an older backup, or
  is new and should take over redis's state): sales and buyers only redis knows are written
  into the ledger, every order only redis knows is re-driven through the outbox and
  persisted, then the books are reconciled. Nothing in redis is dropped.
- **clear** — the database is the truth (a new database beside an old redis, another
  deployment's redis, a redis older than the database): everything Spillway keeps in redis
  is deleted, and redis is rebuilt from the ledger (stock, holdings, idempotency keys, the
  orders still awaiting payment). What only redis knew is gone; the survey said what.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update

from flashsale import keys
from flashsale.catalog.models import Product
from flashsale.extensions import db
from flashsale.orders import tasks
from flashsale.orders.models import LedgerIdentity
from flashsale.orders.models import Order
from flashsale.orders.outbox import outbox
from flashsale.sales import binding
from flashsale.sales import service
from flashsale.sales import stock
from flashsale.sales.models import Sale
from flashsale.users.models import User
from spillway.clients import redis_store
from spillway.clock import epoch_ms

log = logging.getLogger(__name__)
CHUNK = 1000
LIVE = ("confirmed", "paying")  # statuses whose record redis needs: payment, deadline


@dataclass
class Survey:
    """What the two sides hold that the other lacks."""

    found: binding.Examination
    orders_only_in_redis: dict[str, dict[str, str]]
    units_held_only_in_redis: int
    outbox_depth: int
    dead_letters: int

    def lines(self) -> list[str]:
        found = self.found
        lines = [
            f"database: ledger {found.ledger_id}, orders up to outbox entry "
            f"{found.mark[0]}-{found.mark[1]}, {len(found.db_sales)} sale(s)",
            f"redis:    {_bound(found)}, {len(found.redis_sales)} sale(s) registered, "
            f"newest outbox entry {found.last_made[0]}-{found.last_made[1]}",
        ]
        lines += [f"problem:  {problem}" for problem in found.problems] or ["agreed:   yes"]
        lines.append(
            f"only in redis: {len(found.redis_only)} sale(s), "
            f"{len(self.orders_only_in_redis)} order(s) holding "
            f"{self.units_held_only_in_redis} unit(s), outbox {self.outbox_depth} "
            f"entr(ies) waiting"
        )
        lines.append(f"only in the database: {len(found.db_only)} sale(s)")
        if found.drafts:
            lines.append(f"failed creations (drafts, harmless): {len(found.drafts)}")
        if self.dead_letters:
            lines.append(
                f"dead letters (accepted, never persisted; see {keys.DEAD_LETTERS}):"
                f" {self.dead_letters}"
            )
        return lines


def survey() -> Survey:
    """Look at both sides (scans redis's orders: an operator's command, not a request)."""
    found = binding.examine()
    orders = _orders_only_in_redis()
    return Survey(
        found,
        orders,
        sum(int(o.get("quantity", 0)) for o in orders.values() if o.get("status") != "cancelled"),
        outbox.backlog(),
        redis_store.xlen(keys.DEAD_LETTERS),
    )


def adopt() -> list[str]:
    """Take redis's state into this ledger; returns what was done, line by line.

    :raise binding.LedgerMismatch: a sale redis holds cannot be written into the ledger.
    """
    found = binding.examine()
    done = []
    if found.unregistered:
        raise binding.LedgerMismatch(
            "redis's sales predate ledger binding and record no product: adopt cannot write "
            "them into this ledger; use `spillway ledger clear`"
        )
    for sale_id in sorted(found.redis_only):
        done.append(_write_sale(found.redis_sales[sale_id]))
    orders = _orders_only_in_redis()
    done += _write_missing_buyers({o["user_id"] for o in orders.values() if "user_id" in o})
    db.session.commit()
    for sale_id in sorted(found.db_only):
        done.append(_rebuild_sale(db.session.get(Sale, sale_id), shards=1))
    pipe = redis_store.pipeline(transaction=False)
    for order_id in orders:
        pipe.xadd(keys.OUTBOX, {"order": order_id})
    pipe.execute()
    done.append(f"re-driven through the outbox: {len(orders)} order(s) only redis knew")
    # Whatever redis persisted and let go is this ledger's now (re-driven above if missing).
    _set_mark(max(found.mark, found.last_deleted or (0, 0)))
    binding.bind(found.ledger_id)
    done.append(f"redis bound to ledger {found.ledger_id}")
    persisted = _drain()
    done.append(f"persisted from the outbox: {persisted} order(s)")
    return done


def clear() -> list[str]:
    """Delete what Spillway keeps in redis and rebuild it from this ledger."""
    found = binding.examine()
    deleted = 0
    batch = []
    for key in redis_store.scan_iter(match=keys.EVERY_KEY, count=CHUNK):
        batch.append(key)
        if len(batch) >= CHUNK:
            deleted += redis_store.unlink(*batch)
            batch = []
    if batch:
        deleted += redis_store.unlink(*batch)
    current_app.extensions.pop("stock_shards", None)
    done = [f"deleted from redis: {deleted} key(s)"]
    for sale in db.session.scalars(select(Sale).order_by(Sale.id)):
        known = found.redis_sales.get(sale.id) if not found.foreign else None
        done.append(_rebuild_sale(sale, shards=known.shards if known else 1))
    outbox.ensure_group()
    mark = f"{found.mark[0]}-{found.mark[1]}"
    # New entries must sort after every one this ledger holds (binding's outbox mark).
    redis_store.execute_command("XSETID", keys.OUTBOX, mark, "MAXDELETEDID", mark)
    binding.bind(found.ledger_id)
    done.append(f"redis bound to ledger {found.ledger_id}")
    return done


def _rebuild_sale(sale: Sale, shards: int) -> str:
    """Write one sale's redis state from its orders in the ledger."""
    orders = list(db.session.scalars(select(Order).where(Order.sale_id == sale.id)))
    holdings = defaultdict(int)
    for order in orders:
        if order.status != "cancelled":
            holdings[str(order.user_id)] += order.quantity
    definition = service.definition_of(sale, shards)
    retention = current_app.config["REDIS_RETENTION_S"]
    stock.prewarm(
        definition,
        retention,
        remaining=sale.stock - sum(holdings.values()),
        holdings=holdings,
        is_open=True,
    )
    pipe = redis_store.pipeline(transaction=False)
    pipe.hset(
        keys.sale_key(sale.id),
        mapping={
            "orders_paid": sum(o.status == "paid" for o in orders),
            "orders_cancelled": sum(o.status == "cancelled" for o in orders),
        },
    )
    for order in orders:
        home = keys.shard(sale.id, keys.home_shard(str(order.user_id), shards), shards)
        if order.idempotency_key:
            pipe.hset(home.idempotency, f"{order.user_id}:{order.idempotency_key}", order.id)
        if order.status in LIVE:
            created = epoch_ms(order.created_at)
            deadline = created + sale.payment_timeout_s * 1000
            pipe.hset(
                keys.order_key(order.id),
                mapping={
                    "sale_id": sale.id,
                    "user_id": order.user_id,
                    "quantity": order.quantity,
                    "status": order.status,
                    "created_ms": created,
                    "deadline_ms": deadline,
                    "key": order.idempotency_key or "",
                },
            )
            pipe.zadd(keys.DEADLINES, {order.id: deadline})
    pipe.execute()
    return (
        f"sale {sale.id}: rebuilt from {len(orders)} order(s), "
        f"{sale.stock - sum(holdings.values())} of {sale.stock} unit(s) remaining"
    )


def _write_sale(definition: stock.SaleDefinition) -> str:
    """A sale only redis knows, written into the ledger as it was created."""
    line = f"sale {definition.sale_id}: written into the ledger"
    if db.session.get(Product, definition.product_id) is None:
        db.session.add(
            Product(
                id=definition.product_id,
                name=f"Product {definition.product_id}",
                description="Recreated by `spillway ledger adopt`: its sale "
                "was in redis, the product was not in this ledger.",
                price_cents=0,
            )
        )
        line += f" (its product {definition.product_id} was missing: a placeholder)"
    db.session.add(
        Sale(
            id=definition.sale_id,
            product_id=definition.product_id,
            stock=definition.stock,
            per_user_limit=definition.per_user_limit,
            starts_at=_instant(definition.starts_ms),
            ends_at=_instant(definition.ends_ms),
            payment_timeout_s=definition.payment_timeout_s,
            requires_purchase_token=definition.requires_purchase_token,
        )
    )
    return line


def _write_missing_buyers(user_ids: set[str]) -> list[str]:
    """Buyers with orders in redis and no row here get one, so the id is never reused."""
    ids = {int(user_id) for user_id in user_ids if user_id.isdigit()}
    known = set(db.session.scalars(select(User.id).where(User.id.in_(ids)))) if ids else set()
    for user_id in sorted(ids - known):
        db.session.add(User(id=user_id, name="(restored buyer)"))
    return [f"buyers written into the ledger: {len(ids - known)}"] if ids - known else []


def _orders_only_in_redis() -> dict[str, dict[str, str]]:
    """Order records in redis whose order this ledger does not hold, by order id."""
    found = {}
    batch = []
    for key in redis_store.scan_iter(match=keys.EVERY_ORDER, count=CHUNK):
        batch.append(key)
        if len(batch) >= CHUNK:
            found.update(_missing(batch))
            batch = []
    if batch:
        found.update(_missing(batch))
    return found


def _missing(order_keys: list[bytes]) -> dict[str, dict[str, str]]:
    ids = [key.decode().rpartition(":")[2] for key in order_keys]
    known = set(db.session.scalars(select(Order.id).where(Order.id.in_(ids))))
    pipe = redis_store.pipeline(transaction=False)
    for key in order_keys:
        pipe.hgetall(key)
    return {
        order_id: {k.decode(): v.decode() for k, v in raw.items()}
        for order_id, raw in zip(ids, pipe.execute())
        if order_id not in known and raw
    }


def _set_mark(mark: tuple[int, int]) -> None:
    db.session.execute(
        update(LedgerIdentity).values(outbox_mark_ms=mark[0], outbox_mark_seq=mark[1])
    )
    db.session.commit()


def _drain() -> int:
    """Persist the outbox here and now (the stack is stopped while the operator repairs):
    new entries, then those a stopped worker had taken (the sweeper's job)."""
    persisted = 0
    while outbox.backlog():
        batch = tasks.drain_outbox()
        if not batch:
            break
        persisted += batch
    return persisted + tasks.sweep_outbox()


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _bound(found: binding.Examination) -> str:
    if found.bound_to is None:
        return "not bound to any ledger"
    return "bound to this ledger" if not found.foreign else f"bound to ledger {found.bound_to}"
