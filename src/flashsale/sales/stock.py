"""A sale's live stock in redis: creation (a draft, opened once its row commits),
admission and borrowing between shards, and its counters. Every change of stock goes
through a Lua script (lua/reserve.lua, lua/borrow.lua, and orders/lua/settle.lua for
what returns), so each is atomic and one round trip. The keys are named in keys.py.

A buyer's home shard takes its purchases in one round trip; a home shard that runs short
borrows from the fullest other shards (lua/borrow.lua) and the purchase is tried once
more; see DEPLOYMENT.md for what that costs.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from flashsale.keys import DEADLINES
from flashsale.keys import DRAIN_NUDGED
from flashsale.keys import OUTBOX
from flashsale.keys import REGISTRY
from flashsale.keys import Shard
from flashsale.keys import all_shards
from flashsale.keys import buyer_limit_key
from flashsale.keys import buyer_orders_key
from flashsale.keys import home_shard
from flashsale.keys import order_key
from flashsale.keys import sale_key
from flashsale.keys import shard
from flashsale.keys import shard_count
from flashsale.sales import metrics
from spillway import redis_scripts
from spillway.clients import redis_store
from spillway.guards.deadline import shielded

LUA_DIR = Path(__file__).parent / "lua"
# Fields of a sale hash that add up over its shards (the rest is the sale's definition).
SUMMED = (
    "remaining",
    "lent",
    "borrowed",
    "orders_paid",
    "orders_cancelled",
    "rejected_sold_out",
    "rejected_limit_exceeded",
    "rejected_sale_not_active",
    "rejected_rate_limited",
)
# What the live stock of a hash is: what is left, plus what is in flight between shards.
LIVE_FIELDS = ("remaining", "lent", "borrowed")
BORROW_ATTEMPTS = 3


@dataclass(frozen=True)
class SaleDefinition:
    """What redis must know of a sale to admit purchases for it; fixed at creation."""

    sale_id: int
    product_id: int
    stock: int
    per_user_limit: int
    starts_ms: int
    ends_ms: int
    payment_timeout_s: int
    requires_purchase_token: bool = False
    shards: int = 1

    def archive_ms(self, retention_s: int) -> int:
        """When the sale's per-buyer keys may leave redis (sales/archive.py): every order
        is final by the last payment deadline, and the ledger holds them by then."""
        return self.ends_ms + (self.payment_timeout_s + retention_s) * 1000


class StaleSale(RuntimeError):
    """Redis already holds an open sale under a new sale's id: it and the database have
    parted ways (spillway ledger status)."""


def encode_definition(sale: SaleDefinition) -> str:
    return json.dumps(dataclasses.asdict(sale))


def registered_sales() -> dict[int, SaleDefinition]:
    """Every sale redis holds, by id (the registry the ledger binding checks)."""
    return {
        int(sale_id): SaleDefinition(**json.loads(raw))
        for sale_id, raw in redis_store.hgetall(REGISTRY).items()
    }


def prewarm(
    sale: SaleDefinition,
    retention_s: int,
    remaining: int | None = None,
    holdings: dict[str, int] | None = None,
    is_open: bool = False,
) -> None:
    """Write a sale's stock into redis as a draft: known, but refused as not found until
    :func:`open_sale` (after the database commit), so a sale whose commit fails is never
    purchasable. Split evenly over its shards, each with the sale's rules.

    ``remaining`` and ``holdings`` (units per buyer id) rebuild a sale from the ledger
    (spillway ledger clear); a new sale has all its stock and no holdings.

    :raise StaleSale: redis holds an open sale under this id already.
    """
    previous = redis_store.hget(REGISTRY, sale.sale_id)
    if previous is not None and redis_store.hget(sale_key(sale.sale_id), "open") != b"0":
        raise StaleSale(
            f"redis already holds an open sale {sale.sale_id} this database "
            "does not have: run `spillway ledger status`"
        )
    rules = {
        "per_user_limit": sale.per_user_limit,
        "starts_ms": sale.starts_ms,
        "ends_ms": sale.ends_ms,
        "payment_timeout_s": sale.payment_timeout_s,
        "open": int(is_open),
        "archive_ms": sale.archive_ms(retention_s),
    }
    counters = dict.fromkeys(SUMMED, 0)
    shares = _shares(sale, remaining, holdings or {})
    parts = [shard(sale.sale_id, index, sale.shards) for index in range(sale.shards)]
    # One MULTI: a draft is written whole, with its registry entry, or not at all.
    pipe = redis_store.pipeline(transaction=True)
    pipe.delete(
        sale_key(sale.sale_id),
        *[key for part in parts for key in (part.sale, part.units, part.idempotency)],
    )
    for part, (share, left, held) in zip(parts, shares):
        pipe.hset(part.sale, mapping={**counters, **rules, "stock": share, "remaining": left})
        if held:
            pipe.hset(part.units, mapping=held)
    if sale.shards > 1:
        pipe.hset(
            sale_key(sale.sale_id),
            mapping={**counters, **rules, "stock": sale.stock, "shards": sale.shards},
        )
    pipe.hset(REGISTRY, sale.sale_id, encode_definition(sale))
    pipe.execute()
    current_app.extensions.setdefault("stock_shards", {})[sale.sale_id] = sale.shards


def _shares(sale: SaleDefinition, remaining: int | None, holdings: dict[str, int]):
    """(stock, remaining, holdings) of each shard: the stock evenly split; rebuilt from the
    ledger, each shard holds its buyers' units and an even part of what is left."""
    count = sale.shards
    left = sale.stock if remaining is None else remaining
    held = [{} for _ in range(count)]
    for user_id, units in holdings.items():
        if units:
            held[home_shard(user_id, count)][user_id] = units
    lefts = [left // count + (index < left % count) for index in range(count)]
    return [(lefts[i] + sum(held[i].values()), lefts[i], held[i]) for i in range(count)]


def open_sale(sale_id: int, shards: int) -> None:
    """Let a committed sale's draft admit purchases."""
    pipe = redis_store.pipeline(transaction=False)
    for index in range(shards):
        pipe.hset(shard(sale_id, index, shards).sale, "open", 1)
    if shards > 1:
        pipe.hset(sale_key(sale_id), "open", 1)
    pipe.execute()


def discard_draft(sale_id: int, shards: int) -> None:
    """Forget a draft whose database commit failed (it never admitted anything)."""
    parts = [shard(sale_id, index, shards) for index in range(shards)]
    pipe = redis_store.pipeline(transaction=True)
    pipe.delete(
        sale_key(sale_id),
        *[key for part in parts for key in (part.sale, part.units, part.idempotency)],
    )
    pipe.hdel(REGISTRY, sale_id)
    pipe.execute()


@dataclass(frozen=True)
class Admission:
    """What reserve.lua decided: "reserved", "duplicate", or the refusal's code."""

    outcome: str
    order_id: str | None = None
    remaining: int | None = None
    wake_drainer: bool = False
    retry_after: int | None = None  # seconds, for "rate_limited"


def reserve_call(
    sale_id: int,
    user_id: str,
    quantity: int,
    idempotency: str,
    now_ms: int,
    order_id: str,
    home: "Shard | None" = None,
    deposit: int = 0,
    final: bool = True,
    retry: bool = False,
    buyer_limits: tuple[tuple[int, int], ...] = (),
    request_id: str = "",
) -> tuple[list, list]:
    """The KEYS and ARGV of reserve.lua for one purchase on ``home`` (an unsharded sale's
    keys by default; also used by the benchmark's FastAPI peer, which runs the same script
    on the same redis).

    :param buyer_limits: (most hits, window seconds) of each per-buyer rate limit, counted
        in the same round trip before anything else (outcome "rate_limited").
    :param request_id: the request's id, kept in the outbox entry (the drain logs it).
    """
    home = home or shard(sale_id, 0, 1)
    keys = [
        home.sale,
        home.units,
        home.idempotency,
        order_key(order_id),
        OUTBOX,
        DEADLINES,
        buyer_orders_key(user_id),
        DRAIN_NUDGED,
    ]
    args = [
        sale_id,
        user_id,
        quantity,
        idempotency,
        now_ms,
        order_id,
        deposit,
        int(final),
        int(retry),
        len(buyer_limits),
    ]
    for most, window_s in buyer_limits:
        keys.append(buyer_limit_key(user_id, window_s))
        args += [most, window_s]
    if request_id:
        args.append(request_id)
    return keys, args


def reserve(
    sale_id: int,
    user_id: str,
    quantity: int,
    idempotency: str,
    now_ms: int,
    order_id: str,
    buyer_limits: tuple[tuple[int, int], ...] = (),
    request_id: str = "",
) -> Admission:
    """Admit one purchase: one round trip on the buyer's home shard. When that shard is
    short, one more reads the other shards' levels: all empty, the answer is 'sold_out'
    (two round trips); otherwise borrow from the fullest and try again. So 'sold_out' is
    never answered while another shard had the units, bar units in flight between two
    shards at that instant.

    :param buyer_limits: see :func:`reserve_call` (counted in the first round trip only).
    :param request_id: see :func:`reserve_call`.
    """
    # A sale redis does not know is judged by the script too (answer "not_found"), so the
    # buyer's rate limits count the attempt like any other.
    shards = shard_count(sale_id) or 1
    home = shard(sale_id, home_shard(user_id, shards), shards)
    admission = _reserve_at(
        home,
        sale_id,
        user_id,
        quantity,
        idempotency,
        now_ms,
        order_id,
        deposit=0,
        final=shards == 1,
        buyer_limits=buyer_limits,
        request_id=request_id,
    )
    for attempt in range(1, BORROW_ATTEMPTS + 1):
        if admission.outcome != "short":
            break
        borrowed = borrow(sale_id, home, shards, quantity - admission.remaining)
        if borrowed == 0:  # already counted as a sold-out refusal by the 'short' answer
            metrics.reservation("sold_out")
            return Admission("sold_out")
        admission = _reserve_at(
            home,
            sale_id,
            user_id,
            quantity,
            idempotency,
            now_ms,
            order_id,
            deposit=borrowed,
            final=attempt == BORROW_ATTEMPTS,
            retry=True,
            request_id=request_id,
        )
    return admission


def borrow(sale_id, home: Shard, shards: int, wanted: int) -> int:
    """Take at least ``wanted`` units from the other shards, fullest first; returns how
    many were taken (they must then be deposited on ``home``)."""
    others = [shard(sale_id, index, shards) for index in range(shards)]
    others = [other for other in others if other != home]
    pipe = redis_store.pipeline(transaction=False)
    for other in others:
        pipe.hget(other.sale, "remaining")
    levels = [int(level or 0) for level in pipe.execute()]
    taken = 0
    for level, other in sorted(zip(levels, others), key=lambda pair: -pair[0]):
        if taken >= wanted or level <= 0:
            break
        taken += int(
            redis_scripts.script(LUA_DIR / "borrow.lua")(
                keys=[other.sale], args=[wanted - taken], client=redis_store.client
            )
        )
    return taken


def _reserve_at(
    home: Shard,
    sale_id,
    user_id,
    quantity,
    idempotency,
    now_ms,
    order_id,
    deposit: int,
    final: bool,
    retry: bool = False,
    buyer_limits: tuple[tuple[int, int], ...] = (),
    request_id: str = "",
) -> Admission:
    keys, args = reserve_call(
        sale_id,
        user_id,
        quantity,
        idempotency,
        now_ms,
        order_id,
        home,
        deposit,
        final,
        retry,
        buyer_limits,
        request_id,
    )
    # A request's deadline never lands while the EVALSHA is queued or awaited: the batcher
    # would still send it, and a reservation would be taken that nobody is told of.
    with shielded():
        reply = redis_scripts.run(
            redis_scripts.script(LUA_DIR / "reserve.lua"), keys, args, durable=True
        )
    outcome = reply[0].decode()
    if outcome == "short":
        return Admission(outcome, remaining=int(reply[1]))
    metrics.reservation(outcome)
    if outcome == "rate_limited":
        return Admission(outcome, retry_after=int(reply[1]))
    if outcome == "reserved":
        return Admission(outcome, reply[1].decode(), int(reply[2]), bool(reply[3]))
    if outcome == "duplicate":
        return Admission(outcome, reply[1].decode())
    return Admission(outcome)


def sale_state(sale_id) -> dict[str, int] | None:
    """A sale's live counters, or None when redis does not know it.

    Sharded, the counters are summed over the shards, and ``remaining`` counts the units
    in flight between two shards (lent, not yet deposited) as still for sale; they are
    also reported alone as ``in_transit``.
    """
    shards = shard_count(sale_id)
    if shards is None:
        return None
    keys = [sale_key(sale_id)] + (
        [shard(sale_id, i, shards).sale for i in range(shards)] if shards > 1 else []
    )
    pipe = redis_store.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    hashes = [{k.decode(): int(v) for k, v in raw.items()} for raw in pipe.execute()]
    state = hashes[0]
    if not state:
        return None
    for name in SUMMED:
        state[name] = sum(part.get(name, 0) for part in hashes)
    state["in_transit"] = state["lent"] - state["borrowed"]
    state["remaining"] += state["in_transit"]
    return state


def units_held(sale_id) -> int:
    """Units held by buyers (live orders), over all shards."""
    pipe = redis_store.pipeline(transaction=False)
    for each in all_shards(sale_id):
        pipe.hvals(each.units)
    return sum(int(v) for values in pipe.execute() for v in values)


def remaining_many(sale_ids: list[int], client=None) -> dict[int, int]:
    """The live remaining stock of each sale redis knows, sharded or not, in one pipelined
    round trip (a second one for the sharded sales): for a page of sales, or every sale
    somebody watches (the streams' poller, outside any app context, brings its client)."""
    if not sale_ids:
        return {}
    client = client or redis_store.client
    pipe = client.pipeline(transaction=False)
    for sale_id in sale_ids:
        pipe.hmget(sale_key(sale_id), *LIVE_FIELDS, "shards")
    remaining, sharded = {}, {}
    for sale_id, (*live, shards) in zip(sale_ids, pipe.execute()):
        if live[0] is not None:
            remaining[sale_id] = _units(live)
        if shards is not None and int(shards) > 1:
            sharded[sale_id] = int(shards)
    if sharded:
        pipe = client.pipeline(transaction=False)
        for sale_id, shards in sharded.items():
            for index in range(shards):
                pipe.hmget(shard(sale_id, index, shards).sale, *LIVE_FIELDS)
        parts = iter(pipe.execute())
        for sale_id, shards in sharded.items():
            remaining[sale_id] = remaining.get(sale_id, 0) + sum(
                _units(next(parts)) for _ in range(shards)
            )
    return remaining


def _units(live: list) -> int:
    left, lent, borrowed = (int(value or 0) for value in live)
    return left + lent - borrowed


def count_rejection(sale_id, reason: str) -> None:
    """Add one to a known sale's ``rejected_<reason>`` counter (its stats)."""
    if str(sale_id).isdigit():
        redis_scripts.script(LUA_DIR / "count_rejection.lua")(
            keys=[sale_key(sale_id)], args=[f"rejected_{reason}"], client=redis_store.client
        )
