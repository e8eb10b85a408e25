"""A sale's live state in redis: stock, holdings per buyer, idempotency keys, orders,
the outbox, payment deadlines. Every change of stock goes through one of two Lua scripts
(lua/reserve.lua, lua/settle.lua), so each is atomic and needs one round trip."""

from dataclasses import dataclass
from pathlib import Path

from redis.commands.core import Script

from spillway.extensions import redis_store

OUTBOX = "spillway:outbox"
DEADLINES = "spillway:payment-deadlines"
DRAIN_NUDGED = "spillway:outbox:nudged"
LUA_DIR = Path(__file__).parent / "lua"
_scripts: dict[str, Script] = {}


def sale_key(sale_id) -> str:
    return f"spillway:sale:{sale_id}"


def units_key(sale_id) -> str:
    return f"spillway:sale:{sale_id}:units"


def idempotency_key(sale_id) -> str:
    return f"spillway:sale:{sale_id}:idempotency"


def order_key(order_id: str) -> str:
    return f"spillway:order:{order_id}"


def buyer_orders_key(user_id: str) -> str:
    return f"spillway:user:{user_id}:orders"


def _script(name: str) -> Script:
    # redis-py's Script runs EVALSHA and falls back to EVAL when the server's script
    # cache was flushed (a restart, SCRIPT FLUSH): nothing to reload by hand.
    if name not in _scripts:
        _scripts[name] = Script(None, (LUA_DIR / f"{name}.lua").read_bytes())
    return _scripts[name]


def prewarm(sale_id: int, stock: int, per_user_limit: int, starts_ms: int, ends_ms: int,
            payment_timeout_s: int) -> None:
    """Put a new sale's stock in redis, before anyone can buy."""
    redis_store.hset(sale_key(sale_id), mapping={
        "stock": stock, "remaining": stock, "per_user_limit": per_user_limit,
        "starts_ms": starts_ms, "ends_ms": ends_ms, "payment_timeout_s": payment_timeout_s,
        "orders_paid": 0, "orders_cancelled": 0, "rejected_sold_out": 0,
        "rejected_limit_exceeded": 0, "rejected_sale_not_active": 0,
        "rejected_rate_limited": 0,
    })


@dataclass(frozen=True)
class Admission:
    """What reserve.lua decided: "reserved", "duplicate", or the refusal's code."""

    outcome: str
    order_id: str | None = None
    remaining: int | None = None
    wake_drainer: bool = False


def reserve_call(sale_id: int, user_id: str, quantity: int, idempotency: str, now_ms: int,
                 order_id: str) -> tuple[list, list]:
    """The KEYS and ARGV of reserve.lua for one purchase (also used by the benchmark's
    FastAPI peer, which runs the same script on the same redis)."""
    return ([sale_key(sale_id), units_key(sale_id), idempotency_key(sale_id),
             order_key(order_id), OUTBOX, DEADLINES, buyer_orders_key(user_id), DRAIN_NUDGED],
            [sale_id, user_id, quantity, idempotency, now_ms, order_id])


def reserve(sale_id: int, user_id: str, quantity: int, idempotency: str, now_ms: int,
            order_id: str) -> Admission:
    """Admit one purchase in one round trip."""
    keys, args = reserve_call(sale_id, user_id, quantity, idempotency, now_ms, order_id)
    reply = _script("reserve")(keys=keys, args=args, client=redis_store.client)
    outcome = reply[0].decode()
    if outcome == "reserved":
        return Admission(outcome, reply[1].decode(), int(reply[2]), bool(reply[3]))
    if outcome == "duplicate":
        return Admission(outcome, reply[1].decode())
    return Admission(outcome)


def settle(order_id: str, sale_id, target: str, now_ms: int, allowed: tuple[str, ...],
           when: str = "") -> tuple[str, str | None]:
    """Move an order to ``target`` if its status is in ``allowed``; a cancel returns stock.

    :param when: "deadline" (only once the payment deadline passed), "before" (only before
        it), or "" (whenever).
    :return: ("changed" | "unchanged" | "refused" | "not_found", the status before).
    """
    reply = _script("settle")(
        keys=[order_key(order_id), sale_key(sale_id), units_key(sale_id), DEADLINES],
        args=[target, now_ms, ",".join(allowed), when], client=redis_store.client)
    return reply[0].decode(), reply[1].decode() if len(reply) > 1 else None


def settle_many(changes: list[tuple[str, object]], target: str, now_ms: int,
                allowed: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """``settle`` for many (order id, sale id) pairs in one round trip (a pipeline)."""
    pipe = redis_store.pipeline(transaction=False)
    for order_id, sale_id in changes:
        _script("settle")(keys=[order_key(order_id), sale_key(sale_id), units_key(sale_id),
                                DEADLINES], args=[target, now_ms, ",".join(allowed), ""],
                          client=pipe)
    return [(reply[0].decode(), reply[1].decode() if len(reply) > 1 else None)
            for reply in pipe.execute()]


def order_state(order_id: str) -> dict[str, str] | None:
    """An order's live record, or None."""
    raw = redis_store.hgetall(order_key(order_id))
    return {k.decode(): v.decode() for k, v in raw.items()} or None


def sale_state(sale_id) -> dict[str, int] | None:
    """A sale's live counters, or None when redis does not know it."""
    raw = redis_store.hgetall(sale_key(sale_id))
    return {k.decode(): int(v) for k, v in raw.items()} or None
