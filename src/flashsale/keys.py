"""The shop's redis keyspace, in one place: every key it keeps in redis is named here (the
Lua scripts receive them as KEYS, never build them), with a sale's shard count, which
decides which keys hold its stock.

Stock shards. A sale's stock may be split over N shards (``SPILLWAY_STOCK_SHARDS`` when it
is created; 1, the default, keeps the single hash ``spillway:sale:<id>``). Shard ``s`` is
the hash ``spillway:sale:{<id>:<s>}`` with its ``:units`` and ``:idempotency``; the hash
tag keeps each shard's keys on one Redis Cluster slot. Each buyer has a home shard (crc32
of the buyer id): the buyer's limit and idempotency keys live there.
"""

import re
import zlib
from dataclasses import dataclass

from flask import current_app

from spillway.clients import redis_store

# Every sale redis holds, id → its definition (the ledger binding checks it).
REGISTRY = "spillway:sales"
# Accepted purchases waiting for the ledger (spillway.outbox; orders/tasks.py drains it).
OUTBOX = "spillway:outbox"
OUTBOX_GROUP = "persisters"
# An order whose record is set aside: it can never be persisted (orders/ledger.py).
DEAD_LETTERS = "spillway:outbox:dead"
# Set once a second at most, when a reservation found the outbox idle: wake a drainer.
DRAIN_NUDGED = "spillway:outbox:nudged"
DEADLINES = "spillway:payment-deadlines"
# Held by the one payment-expiry tick that runs at a time (orders/tasks.py).
EXPIRY_LOCK = "spillway:expire-payments:running"
# When a worker last ran a beat-scheduled task (ops/tasks.py).
WORKER_HEARTBEAT = "spillway:worker:heartbeat"
# The only keys the smoke task `mark` may set: anyone who can publish to the broker can
# call it, and a task that set any key could rewrite a sale's stock or a buyer's holdings.
SMOKE_PREFIX = "spillway:smoke:"
# Which ledger redis's state belongs to (sales/binding.py).
LEDGER_MARKER = "spillway:ledger"
# SCAN patterns: every key the shop keeps (`ledger clear`), every order record, and every
# sale hash (an unsharded sale's hash is LEGACY_SALE_KEY's whole name; registered since).
EVERY_KEY = "spillway:*"
EVERY_ORDER = "spillway:order:*"
EVERY_SALE = "spillway:sale:*"
LEGACY_SALE_KEY = re.compile(r"^spillway:sale:([0-9]+)$")


def sale_key(sale_id) -> str:
    """The sale's hash: its definition and shard count (and, unsharded, its stock)."""
    return f"spillway:sale:{sale_id}"


def units_key(sale_id) -> str:
    return f"spillway:sale:{sale_id}:units"


def idempotency_key(sale_id) -> str:
    return f"spillway:sale:{sale_id}:idempotency"


def order_key(order_id: str) -> str:
    return f"spillway:order:{order_id}"


def buyer_orders_key(user_id) -> str:
    """The buyer's orders not yet in the ledger (of_buyer reads the ledger for the rest)."""
    return f"spillway:user:{user_id}:orders"


def buyer_limit_key(user_id, window_s: int) -> str:
    """A per-buyer purchase counter, one per limit window, counted by reserve.lua's first
    block (in the purchase's own round trip)."""
    return f"spillway:limit:buyer:{user_id}:{window_s}"


@dataclass(frozen=True)
class Shard:
    """The keys of one stock shard: its hash, buyers' units, idempotency keys."""

    sale: str
    units: str
    idempotency: str


def shard(sale_id, index: int, shards: int) -> Shard:
    if shards == 1:
        return Shard(sale_key(sale_id), units_key(sale_id), idempotency_key(sale_id))
    tagged = f"spillway:sale:{{{sale_id}:{index}}}"
    return Shard(tagged, f"{tagged}:units", f"{tagged}:idempotency")


def home_shard(user_id, shards: int) -> int:
    """The buyer's shard: stable across processes and restarts (not Python's hash())."""
    return zlib.crc32(str(user_id).encode()) % shards if shards > 1 else 0


def shard_count(sale_id) -> int | None:
    """How many shards the sale was created with; None when redis does not know it.

    Fixed at creation, so each app caches it: one extra round trip per sale and process.
    """
    known = current_app.extensions.setdefault("stock_shards", {})
    if sale_id not in known:
        pipe = redis_store.pipeline(transaction=False)
        pipe.exists(sale_key(sale_id))
        pipe.hget(sale_key(sale_id), "shards")
        exists, shards = pipe.execute()
        if not exists:
            return None
        known[sale_id] = int(shards or 1)
    return known[sale_id]


def all_shards(sale_id) -> list[Shard]:
    shards = shard_count(sale_id) or 1
    return [shard(sale_id, index, shards) for index in range(shards)]
