"""The flash-sale invariants (shared/API.md, "Invariants"), checked after every burst.

Once the outbox has drained, for one sale:
1. units in 202 answers ≤ stock; remaining ≥ 0;
2. every 202 order id is in the database exactly once, with the quantity promised (1);
3. stock == remaining + units in orders that are not cancelled (and the reconciler,
   sales/reconcile.py as ``spillway reconcile SALE`` runs it, finds no drift);
4. no buyer holds more than per_user_limit units;
5. a repeated Idempotency-Key never made a second order: every order of the sale is the
   one order its key maps to in redis, and no key maps to two orders;
6. no 5xx answer during the burst.
Plus a sample of the 202 ids read back through the API (GET /api/v1/orders/{id}).
"""

import random
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field

import redis

from flashsale.extensions import db
from flashsale.keys import OUTBOX
from flashsale.keys import idempotency_key
from flashsale.keys import sale_key
from flashsale.sales.reconcile import reconcile

API_SAMPLE = 50
DRAIN_TIMEOUT_S = 180
QUIET_S = 1.0


@dataclass
class Audit:
    """The verdict on one burst: ``ok`` unless a check failed (each failure says which)."""

    burst: str
    sale_id: str
    accepted: int = 0
    persisted: int = 0
    drain_wait_s: float = 0.0
    unanswered: int = 0
    failures: list[str] = field(default_factory=list)
    reconcile: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, condition: bool, failure: str) -> None:
        if not condition:
            self.failures.append(failure)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def wait_drained(lab, sale_id: str, expected: int) -> float:
    """Seconds until the outbox is empty, the sale has ``expected`` orders, and its books
    have stood still for a second (bounded): requests wrk had sent when it stopped can still
    be admitted after it exits, and an audit taken before they land would see them only in
    redis."""
    started = time.monotonic()
    client = redis.Redis(unix_socket_path=str(lab.stack.paths.redis_socket))
    last, still_since = None, started
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        books = (client.hget(sale_key(sale_id), "remaining"), count_orders(lab, sale_id))
        if books != last:
            last, still_since = books, time.monotonic()
        if (client.xlen(OUTBOX) == 0 and books[1] >= expected
                and time.monotonic() - still_since >= QUIET_S):
            break
        time.sleep(0.2)
    return time.monotonic() - started


def database(lab):
    """The stack's SQLite ledger, read-only, closed after the ``with`` block."""
    path = lab.stack.paths.database
    return closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30))


def count_orders(lab, sale_id: str) -> int:
    with database(lab) as ledger:
        return ledger.execute("SELECT COUNT(*) FROM orders WHERE sale_id = ?",
                          (int(sale_id),)).fetchone()[0]


def audit_burst(lab, burst: str, sale: dict, accepted: list[str], replayed: list[str],
                statuses: dict) -> Audit:
    """Check every invariant for one sale after its burst; never raises on a violation."""
    sale_id = sale["id"]
    result = Audit(burst, sale_id, accepted=len(accepted))
    distinct = set(accepted)
    result.drain_wait_s = wait_drained(lab, sale_id, len(distinct))
    with database(lab) as ledger:
        rows = ledger.execute("SELECT id, user_id, quantity, status FROM orders WHERE sale_id = ?",
                          (int(sale_id),)).fetchall()
    result.persisted = len(rows)
    orders = {order_id: (user_id, quantity, status) for order_id, user_id, quantity, status
              in rows}
    live = {order_id: row for order_id, row in orders.items() if row[2] != "cancelled"}
    stats = lab.api()("GET", f"/api/v1/sales/{sale_id}/stats", headers=lab.admin)
    stock, per_user = sale["stock"], sale["per_user_limit"]

    server_errors = sum(n for status, n in statuses.items() if int(status) >= 500)
    result.check(server_errors == 0, f"{server_errors} answers were 5xx")
    result.check(len(distinct) == len(accepted),
                 f"{len(accepted) - len(distinct)} order ids were answered 202 twice")
    result.check(len(accepted) <= stock, f"202 answers for {len(accepted)} units > stock {stock}")
    result.check(stats["remaining"] >= 0, f"remaining is {stats['remaining']}")
    missing = distinct - orders.keys()
    result.check(not missing, f"{len(missing)} order ids answered 202 are not in the database"
                              f" (e.g. {sorted(missing)[:3]})")
    # Orders whose answer wrk never read (in flight when it stopped, or timed out) are
    # not a violation: the buyer got a 202 nobody recorded. Counted, not failed.
    result.unanswered = len(orders.keys() - distinct - set(replayed))
    wrong = [order_id for order_id in distinct & orders.keys() if orders[order_id][1] != 1]
    result.check(not wrong, f"{len(wrong)} orders have another quantity than promised")
    units = sum(row[1] for row in live.values())
    result.check(stock == stats["remaining"] + units,
                 f"stock {stock} != remaining {stats['remaining']} + live units {units}")
    held: dict = {}
    for user_id, quantity, _ in live.values():
        held[user_id] = held.get(user_id, 0) + quantity
    over = {user: n for user, n in held.items() if n > per_user}
    result.check(not over, f"{len(over)} buyers hold more than {per_user} units")
    check_idempotency(lab, result, sale_id, set(orders))
    check_through_api(lab, result, distinct)
    with lab.app().app_context():  # what `spillway reconcile SALE` runs
        books = reconcile(int(sale_id))
        db.session.remove()
    result.reconcile = books.describe()
    result.check(books.ok, f"the reconciler found drift: {result.reconcile}")
    return result


def check_idempotency(lab, result: Audit, sale_id: str, persisted: set[str]) -> None:
    """Every request carried a key: the orders are exactly the keys' orders, one each."""
    client = redis.Redis(unix_socket_path=str(lab.stack.paths.redis_socket))
    mapped = [value.decode() for value in client.hvals(idempotency_key(sale_id))]
    result.check(len(mapped) == len(set(mapped)), "one order id is mapped from two keys")
    result.check(set(mapped) == persisted,
                 f"orders without their key's mapping: {len(persisted - set(mapped))}, "
                 f"keys mapping to no order: {len(set(mapped) - persisted)}")


def check_through_api(lab, result: Audit, accepted: set[str]) -> None:
    call = lab.api()
    for order_id in random.sample(sorted(accepted), min(API_SAMPLE, len(accepted))):
        order = call("GET", f"/api/v1/orders/{order_id}", headers=lab.admin)
        if (order["quantity"] != 1 or order["sale_id"] != result.sale_id
                or order["status"] not in ("confirmed", "paid")):
            result.failures.append(f"GET /api/v1/orders/{order_id} answered {order}")
            return
