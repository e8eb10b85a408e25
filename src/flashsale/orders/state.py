"""An order's states, and the moves between them, in one place.

::

    pending ──persisted──▶ confirmed ──claimed for payment──▶ paying ──charged──▶ paid
       │                      │                                 │
       └──── deadline ────────┴──────── deadline + grace, ──────┴──▶ cancelled
                                        voided at the gateway        (stock returns, once)

``pending`` is reserved in redis and not yet in the ledger; clients see ``paying`` as
``confirmed``. Every move is one atomic step of lua/settle.lua on the order's live record,
which checks the current status (and the deadline) and, on the move into ``cancelled``,
gives the units back to the buyer's home shard: the only code that returns stock. A final
order's record leaves redis after SPILLWAY_REDIS_RETENTION_S; the ledger answers for it.
"""

from pathlib import Path

from flask import current_app

from flashsale.keys import DEADLINES
from flashsale.keys import Shard
from flashsale.keys import home_shard
from flashsale.keys import order_key
from flashsale.keys import shard
from flashsale.keys import shard_count
from spillway import redis_scripts
from spillway.clients import redis_store

PENDING, CONFIRMED, PAYING, PAID, CANCELLED = (
    "pending",
    "confirmed",
    "paying",
    "paid",
    "cancelled",
)
SETTLE = Path(__file__).parent / "lua" / "settle.lua"


def public_status(status: str) -> str:
    """'paying' is internal (a payment in flight); clients see the order as confirmed."""
    return CONFIRMED if status == PAYING else status


def order_state(order_id: str) -> dict[str, str] | None:
    """An order's live record, or None."""
    raw = redis_store.hgetall(order_key(order_id))
    return {k.decode(): v.decode() for k, v in raw.items()} or None


def order_shard(order_id: str, sale_id, user_id=None) -> Shard:
    """The shard an order's units came from and return to: its buyer's home shard."""
    shards = shard_count(sale_id) or 1
    if shards > 1 and user_id is None:
        user_id = (redis_store.hget(order_key(order_id), "user_id") or b"").decode()
    return shard(sale_id, home_shard(user_id, shards), shards)


def settle(
    order_id: str,
    sale_id,
    target: str,
    now_ms: int,
    allowed: tuple[str, ...],
    when: str = "",
    user_id=None,
) -> tuple[str, str | None]:
    """Move an order to ``target`` if its status is in ``allowed``; a cancel returns stock
    (to the buyer's home shard).

    :param when: "deadline" (only once the payment deadline passed), "before" (only before
        it), or "" (whenever).
    :param user_id: the order's buyer, if known (saves a round trip on a sharded sale).
    :return: ("changed" | "unchanged" | "refused" | "not_found", the status before).
    """
    home = order_shard(order_id, sale_id, user_id)
    (reply,) = redis_scripts.script(SETTLE)(
        keys=[order_key(order_id), home.sale, home.units, DEADLINES],
        args=[target, now_ms, ",".join(allowed), when, _retention_s()],
        client=redis_store.client,
    )
    return _outcome(reply)


def settle_many(
    changes: list[tuple], target: str, now_ms: int, allowed: tuple[str, ...]
) -> list[tuple[str, str | None]]:
    """``settle`` for many (order id, sale id[, buyer id]) in one script call (settle.lua
    takes four keys an order: one reply to parse, not one per order as a pipeline's)."""
    if not changes:
        return []
    keys = []
    for change in changes:
        home = order_shard(*change)
        keys += (order_key(change[0]), home.sale, home.units, DEADLINES)
    replies = redis_scripts.script(SETTLE)(
        keys=keys,
        args=[target, now_ms, ",".join(allowed), "", _retention_s()],
        client=redis_store.client,
    )
    return [_outcome(reply) for reply in replies]


def _outcome(reply: list) -> tuple[str, str | None]:
    return reply[0].decode(), reply[1].decode() if len(reply) > 1 else None


def _retention_s() -> int:
    return current_app.config["REDIS_RETENTION_S"]
