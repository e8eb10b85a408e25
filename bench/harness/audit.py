"""The flash-sale invariants (docs/api.md, "Invariants") after every burst: the checks of
tests/audit.py, fed with what wrk saw, plus what only a load generator needs.

wrk cannot tie an answer to its request, so what it records is the order ids of the 202
and 200 answers, and the count of each status. From those, once the outbox has drained:
no 5xx; no order id answered 202 twice; tests/audit.check_books (every promised order in
the database once, with its unit; units ≤ stock; stock == remaining + live units; no
buyer over the limit); one order per Idempotency-Key (redis's key → order map is the
sale's orders); a sample read back through GET /api/v1/orders/{id}; and what
`spillway reconcile SALE` says. Orders whose 202 wrk never read (in flight when it
stopped) are counted, not failed. A violation is recorded, never raised.
"""

import random
import time
from contextlib import suppress

import redis
import sqlalchemy

from flashsale.keys import idempotency_key
from flashsale.keys import sale_key
from flashsale.orders.outbox import outbox
from tests.audit import SaleAudit
from tests.audit import check_books
from tests.waiting import NotYet
from tests.waiting import wait_until

API_SAMPLE = 50
DRAIN_TIMEOUT_S = 180
QUIET_S = 1.0


def database_url(lab) -> str:
    """The stack's ledger: the DATABASE_URL it was started with (a PostgreSQL of the
    bench's own), or its SQLite file, read-only (it belongs to the stack's processes)."""
    return lab.stack_env.get("DATABASE_URL") or (
        f"sqlite:///file:{lab.stack.paths.database}?mode=ro&uri=true"
    )


_ledgers: dict[str, sqlalchemy.Engine] = {}


def count_orders(lab, sale_id: str) -> int:
    url = database_url(lab)
    if url not in _ledgers:  # polled every 50 ms by the drain: one pool a ledger
        _ledgers[url] = sqlalchemy.create_engine(url, connect_args=_connect_args(url))
    with _ledgers[url].connect() as ledger:
        return ledger.execute(
            sqlalchemy.text("SELECT COUNT(*) FROM orders WHERE sale_id = :sale"),
            {"sale": int(sale_id)},
        ).scalar_one()


def _connect_args(url: str) -> dict:
    return {"timeout": 30} if url.startswith("sqlite") else {}


def settle(lab, sale_id: str, expected: int) -> float:
    """Seconds until the outbox is drained, the sale has ``expected`` orders, and its books
    have stood still for a second (bounded): requests wrk had sent when it stopped can still
    be admitted after it exits, and an audit taken before they land would see them only in
    redis."""
    client = redis.Redis(unix_socket_path=str(lab.stack.paths.redis_socket))
    started = time.monotonic()
    last = {"books": None, "since": started}

    def settled() -> bool:
        books = (client.hget(sale_key(sale_id), "remaining"), count_orders(lab, sale_id))
        if books != last["books"]:
            last.update(books=books, since=time.monotonic())
        return (
            outbox.depths(client) == (0, 0)
            and books[1] >= expected
            and time.monotonic() - last["since"] >= QUIET_S
        )

    with suppress(NotYet):  # what has not settled by then, the checks report
        wait_until(settled, DRAIN_TIMEOUT_S, 0.2)
    client.close()
    return time.monotonic() - started


def audit_burst(
    lab, burst: str, sale: dict, accepted: list[str], replayed: list[str], statuses: dict
) -> dict:
    """Every invariant for one sale after its burst: the verdict, ``ok`` unless a check
    failed (each failure says which)."""
    sale_id = sale["id"]
    stack = lab.stack
    environment = stack.environment()
    books = SaleAudit(
        stack.base_url, lab.admin, database_url(lab), environment["SPILLWAY_REDIS_URL"], environment
    )
    distinct = set(accepted)
    failures = []

    def check(step, *args) -> None:
        try:
            step(*args)
        except AssertionError as exc:
            failures.append(f"{step.__name__}: {exc}")

    drain_wait = settle(lab, sale_id, len(distinct))
    server_errors = sum(n for status, n in statuses.items() if int(status) >= 500)
    if server_errors:
        failures.append(f"{server_errors} answers were 5xx")
    if len(distinct) != len(accepted):
        failures.append(f"{len(accepted) - len(distinct)} order ids were answered 202 twice")
    rows = {}
    try:
        rows = books.orders(int(sale_id))
        promised = {order_id: (None, 1) for order_id in distinct | set(replayed)}
        check(check_books, sale, promised, rows, books.remaining(sale), True)
    except AssertionError as exc:
        failures.append(f"orders: {exc}")
    check(keys_map_to_orders, stack, sale_id, set(rows))
    sample = random.sample(sorted(distinct), min(API_SAMPLE, len(distinct)))
    check(books.check_through_api, dict.fromkeys(sample, 1))
    check(books.reconcile, sale_id)
    return {
        "burst": burst,
        "sale_id": sale_id,
        "accepted": len(accepted),
        "persisted": len(rows),
        "drain_wait_s": drain_wait,
        "unanswered": len(rows.keys() - distinct - set(replayed)),
        "failures": failures,
        "ok": not failures,
    }


def keys_map_to_orders(stack, sale_id: str, persisted: set[str]) -> None:
    """Every request carried a key: the orders are exactly the keys' orders, one each."""
    client = redis.Redis(unix_socket_path=str(stack.paths.redis_socket))
    mapped = [value.decode() for value in client.hvals(idempotency_key(sale_id))]
    client.close()
    assert len(mapped) == len(set(mapped)), "one order id is mapped from two keys"
    assert set(mapped) == persisted, (
        f"orders without their key's mapping: {len(persisted - set(mapped))}, "
        f"keys mapping to no order: {len(set(mapped) - persisted)}"
    )


def close_ledger(lab) -> None:
    """Close the pool ``count_orders`` keeps for the lab's ledger (before its server stops)."""
    engine = _ledgers.pop(database_url(lab), None)
    if engine is not None:
        engine.dispose()
