"""A sale's live state in redis: stock, holdings per buyer, idempotency keys, orders,
the outbox, payment deadlines. Every change of stock goes through a Lua script
(lua/reserve.lua, lua/settle.lua, lua/borrow.lua), so each is atomic and one round trip.

Stock shards. A sale's stock may be split over N shards (``SPILLWAY_STOCK_SHARDS`` when
it is created; 1, the default, keeps the single hash ``spillway:sale:<id>``). Shard ``s``
is the hash ``spillway:sale:{<id>:<s>}`` with its ``:units`` and ``:idempotency``; the
hash tag keeps each shard's keys on one Redis Cluster slot. Each buyer has a home shard
(crc32 of the buyer id): the buyer's limit and idempotency keys live there, purchases
take its stock in one round trip, and a cancel returns the units there. A home shard
that runs short borrows from the fullest other shards (lua/borrow.lua) and the purchase
is tried once more; see DEPLOYMENT.md for what that costs.
"""

import dataclasses
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from spillway.extensions import redis_store
from spillway.metrics import registry as metrics
from spillway.redis_batch import batcher_for

OUTBOX = "spillway:outbox"
DEADLINES = "spillway:payment-deadlines"
DRAIN_NUDGED = "spillway:outbox:nudged"
REGISTRY = "spillway:sales"
LUA_DIR = Path(__file__).parent / "lua"
_scripts: dict[str, Script] = {}


# Fields of a sale hash that add up over its shards (the rest is the sale's definition).
SUMMED = ("remaining", "lent", "borrowed", "orders_paid", "orders_cancelled",
          "rejected_sold_out", "rejected_limit_exceeded", "rejected_sale_not_active",
          "rejected_rate_limited")
BORROW_ATTEMPTS = 3


def sale_key(sale_id) -> str:
    """The sale's hash: its definition and shard count (and, unsharded, its stock)."""
    return f"spillway:sale:{sale_id}"


def units_key(sale_id) -> str:
    return f"spillway:sale:{sale_id}:units"


def idempotency_key(sale_id) -> str:
    return f"spillway:sale:{sale_id}:idempotency"


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


def order_key(order_id: str) -> str:
    return f"spillway:order:{order_id}"


def buyer_orders_key(user_id: str) -> str:
    return f"spillway:user:{user_id}:orders"


def _script(name: str, source: Callable[[], bytes] | None = None) -> Script:
    """lua/<name>.lua, or what ``source`` builds, loaded once per process.

    redis-py's Script runs EVALSHA and falls back to EVAL when the server's script cache
    was flushed (a restart, SCRIPT FLUSH): nothing to reload by hand.
    """
    if name not in _scripts:
        text = source() if source else (LUA_DIR / f"{name}.lua").read_bytes()
        _scripts[name] = Script(None, text)
    return _scripts[name]


def _run(script: Script, keys: list, args: list):
    """EVALSHA ``script``, batched with this process's concurrent purchases when it serves
    under gevent (spillway.redis_batch); a script the server has forgotten (a restart,
    SCRIPT FLUSH) is loaded again and the call repeated: NOSCRIPT means it did not run."""
    client = redis_store.client
    batcher = current_app.config["REDIS_BATCHING"] and batcher_for(client, current_app.extensions)
    if not batcher:
        return script(keys=keys, args=args, client=client)
    try:
        return batcher.execute("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        script.sha = client.script_load(script.script)
        return batcher.execute("EVALSHA", script.sha, len(keys), *keys, *args)


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
    return {int(sale_id): SaleDefinition(**json.loads(raw))
            for sale_id, raw in redis_store.hgetall(REGISTRY).items()}


def prewarm(sale: SaleDefinition, retention_s: int, remaining: int | None = None,
            holdings: dict[str, int] | None = None, is_open: bool = False) -> None:
    """Write a sale's stock into redis as a draft: known, but refused as not found until
    :func:`open_sale` (after the database commit), so a sale whose commit fails is never
    purchasable. Split evenly over its shards, each with the sale's rules.

    ``remaining`` and ``holdings`` (units per buyer id) rebuild a sale from the ledger
    (spillway ledger clear); a new sale has all its stock and no holdings.

    :raise StaleSale: redis holds an open sale under this id already.
    """
    previous = redis_store.hget(REGISTRY, sale.sale_id)
    if previous is not None and redis_store.hget(sale_key(sale.sale_id), "open") != b"0":
        raise StaleSale(f"redis already holds an open sale {sale.sale_id} this database "
                        "does not have: run `spillway ledger status`")
    rules = {"per_user_limit": sale.per_user_limit, "starts_ms": sale.starts_ms,
             "ends_ms": sale.ends_ms, "payment_timeout_s": sale.payment_timeout_s,
             "open": int(is_open), "archive_ms": sale.archive_ms(retention_s)}
    counters = dict.fromkeys(SUMMED, 0)
    shares = _shares(sale, remaining, holdings or {})
    parts = [shard(sale.sale_id, index, sale.shards) for index in range(sale.shards)]
    # One MULTI: a draft is written whole, with its registry entry, or not at all.
    pipe = redis_store.pipeline(transaction=True)
    pipe.delete(sale_key(sale.sale_id), *[key for part in parts for key in
                                          (part.sale, part.units, part.idempotency)])
    for part, (share, left, held) in zip(parts, shares):
        pipe.hset(part.sale, mapping={**counters, **rules, "stock": share, "remaining": left})
        if held:
            pipe.hset(part.units, mapping=held)
    if sale.shards > 1:
        pipe.hset(sale_key(sale.sale_id), mapping={**counters, **rules, "stock": sale.stock,
                                                   "shards": sale.shards})
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
    pipe.delete(sale_key(sale_id), *[key for part in parts for key in
                                     (part.sale, part.units, part.idempotency)])
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


def reserve_call(sale_id: int, user_id: str, quantity: int, idempotency: str, now_ms: int,
                 order_id: str, home: "Shard | None" = None, deposit: int = 0,
                 final: bool = True, retry: bool = False) -> tuple[list, list]:
    """The KEYS and ARGV of reserve.lua for one purchase on ``home`` (an unsharded sale's
    keys by default; also used by the benchmark's FastAPI peer, which runs the same script
    on the same redis)."""
    home = home or shard(sale_id, 0, 1)
    return ([home.sale, home.units, home.idempotency, order_key(order_id), OUTBOX, DEADLINES,
             buyer_orders_key(user_id), DRAIN_NUDGED],
            [sale_id, user_id, quantity, idempotency, now_ms, order_id, deposit, int(final),
             int(retry)])


def reserve(sale_id: int, user_id: str, quantity: int, idempotency: str, now_ms: int,
            order_id: str, buyer_limits: list[tuple[str, int, int]] = ()) -> Admission:
    """Admit one purchase: one round trip on the buyer's home shard. When that shard is
    short, one more reads the other shards' levels: all empty, the answer is 'sold_out'
    (two round trips); otherwise borrow from the fullest and try again. So 'sold_out' is
    never answered while another shard had the units, bar units in flight between two
    shards at that instant.

    :param buyer_limits: (counter key, most hits, window seconds) of each per-buyer rate
        limit, counted in the first round trip before anything else (outcome "rate_limited").
    """
    # A sale redis does not know is judged by the script too (answer "not_found"), so the
    # buyer's rate limits count the attempt like any other.
    shards = shard_count(sale_id) or 1
    home = shard(sale_id, home_shard(user_id, shards), shards)
    admission = _reserve_at(home, sale_id, user_id, quantity, idempotency, now_ms, order_id,
                            deposit=0, final=shards == 1, buyer_limits=buyer_limits)
    for attempt in range(1, BORROW_ATTEMPTS + 1):
        if admission.outcome != "short":
            break
        borrowed = borrow(sale_id, home, shards, quantity - admission.remaining)
        if borrowed == 0:  # already counted as a sold-out refusal by the 'short' answer
            metrics.reservation("sold_out")
            return Admission("sold_out")
        admission = _reserve_at(home, sale_id, user_id, quantity, idempotency, now_ms,
                                order_id, deposit=borrowed, final=attempt == BORROW_ATTEMPTS,
                                retry=True)
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
        taken += int(_script("borrow")(keys=[other.sale], args=[wanted - taken],
                                       client=redis_store.client))
    return taken


def _reserve_at(home: Shard, sale_id, user_id, quantity, idempotency, now_ms, order_id,
                deposit: int, final: bool, retry: bool = False,
                buyer_limits: list[tuple[str, int, int]] = ()) -> Admission:
    keys, args = reserve_call(sale_id, user_id, quantity, idempotency, now_ms, order_id, home,
                              deposit, final, retry)
    script = _script("reserve")
    if buyer_limits:
        keys += [key for key, _, _ in buyer_limits]
        args += [n for _, most, seconds in buyer_limits for n in (most, seconds)]
        args.append(len(buyer_limits))
        script = _script("reserve+limits", _limited_reserve_source)
    reply = _run(script, keys, args)
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


def order_shard(order_id: str, sale_id, user_id=None) -> Shard:
    """The shard an order's units came from and return to: its buyer's home shard."""
    shards = shard_count(sale_id) or 1
    if shards > 1 and user_id is None:
        user_id = (redis_store.hget(order_key(order_id), "user_id") or b"").decode()
    return shard(sale_id, home_shard(user_id, shards), shards)


# Per-buyer rate limits, counted inside the reservation's own script: a separate round
# trip to the limiter's storage cost ~40 % of the fast path's own time (bench/
# ratelimit_cost.py, SECURITY.md). Fixed windows, like `limits`' fixed-window strategy and
# on its keys (spillway.security.ratelimits), so Flask-Limiter's storage sees the same
# counts. Its arguments are the last ones: reserve.lua's own KEYS and ARGV keep their places.
# A refusal is counted in the sale's stats here too (KEYS[1], the sale or shard hash, if
# redis knows the sale), so a bot's refused attempt costs one round trip, not two.
BUYER_LIMITS_PRELUDE = """
do
  local n = tonumber(ARGV[#ARGV])
  for i = 1, n do
    local key = KEYS[#KEYS - n + i]
    local hits = redis.call('INCR', key)
    if hits == 1 then redis.call('EXPIRE', key, ARGV[#ARGV - 2 * n + 2 * i - 1]) end
    if hits > tonumber(ARGV[#ARGV - 2 * n + 2 * i - 2]) then
      if redis.call('EXISTS', KEYS[1]) == 1 then
        redis.call('HINCRBY', KEYS[1], 'rejected_rate_limited', 1)
      end
      return {'rate_limited', redis.call('TTL', key)}
    end
  end
end
"""


def _limited_reserve_source() -> bytes:
    """reserve.lua, unchanged, with BUYER_LIMITS_PRELUDE run first (after its shebang)."""
    source = (LUA_DIR / "reserve.lua").read_text()
    shebang, _, body = source.partition("\n") if source.startswith("#!") else ("", "", source)
    return f"{shebang}\n{BUYER_LIMITS_PRELUDE}{body}".encode()


def settle(order_id: str, sale_id, target: str, now_ms: int, allowed: tuple[str, ...],
           when: str = "", user_id=None) -> tuple[str, str | None]:
    """Move an order to ``target`` if its status is in ``allowed``; a cancel returns stock
    (to the buyer's home shard).

    :param when: "deadline" (only once the payment deadline passed), "before" (only before
        it), or "" (whenever).
    :param user_id: the order's buyer, if known (saves a round trip on a sharded sale).
    :return: ("changed" | "unchanged" | "refused" | "not_found", the status before).
    """
    home = order_shard(order_id, sale_id, user_id)
    reply = _script("settle")(
        keys=[order_key(order_id), home.sale, home.units, DEADLINES],
        args=[target, now_ms, ",".join(allowed), when, _retention_s()],
        client=redis_store.client)
    return reply[0].decode(), reply[1].decode() if len(reply) > 1 else None


def settle_many(changes: list[tuple], target: str, now_ms: int,
                allowed: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """``settle`` for many (order id, sale id[, buyer id]) in one round trip (a pipeline)."""
    homes = [order_shard(*change) for change in changes]
    pipe = redis_store.pipeline(transaction=False)
    for (order_id, *_), home in zip(changes, homes):
        _script("settle")(keys=[order_key(order_id), home.sale, home.units, DEADLINES],
                          args=[target, now_ms, ",".join(allowed), "", _retention_s()],
                          client=pipe)
    return [(reply[0].decode(), reply[1].decode() if len(reply) > 1 else None)
            for reply in pipe.execute()]


def _retention_s() -> int:
    return current_app.config["REDIS_RETENTION_S"]


def order_state(order_id: str) -> dict[str, str] | None:
    """An order's live record, or None."""
    raw = redis_store.hgetall(order_key(order_id))
    return {k.decode(): v.decode() for k, v in raw.items()} or None


def sale_state(sale_id) -> dict[str, int] | None:
    """A sale's live counters, or None when redis does not know it.

    Sharded, the counters are summed over the shards, and ``remaining`` counts the units
    in flight between two shards (lent, not yet deposited) as still for sale; they are
    also reported alone as ``in_transit``.
    """
    shards = shard_count(sale_id)
    if shards is None:
        return None
    keys = [sale_key(sale_id)] + ([shard(sale_id, i, shards).sale for i in range(shards)]
                                  if shards > 1 else [])
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


def count_rejection(sale_id, reason: str) -> None:
    """Add one to a known sale's ``rejected_<reason>`` counter (its stats)."""
    if not str(sale_id).isdigit():
        return
    _script("count_rejection")(keys=[sale_key(sale_id)], args=[f"rejected_{reason}"],
                               client=redis_store.client)
