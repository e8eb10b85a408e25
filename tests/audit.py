"""The flash sale's books, audited from outside: what clients were told against what the
database, redis and the reconciler say, once the queue has drained (docs/api.md,
"Invariants").

Used by the fault tests (tests/faults/) and the bench (bench/harness/audit.py): it needs
only the answers its clients saw, the public URL with an admin token, the database URL, the
redis URL and an environment in which `spillway reconcile` reaches the same servers.
"""

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from dataclasses import field

import redis
import requests
import sqlalchemy

from flashsale.orders.outbox import outbox
from spillway.redis_location import connect
from tests.waiting import wait_until


@dataclass
class Answer:
    """One HTTP exchange as a client saw it. ``status`` is None when no answer came (a
    refused connection, or no answer within the client's timeout: a hang)."""

    method: str
    path: str
    status: int | None
    body: object = None
    content_type: str = ""
    retry_after: str | None = None
    transport_error: str | None = None
    seconds: float = 0.0
    # A purchase's intent, so the books can be checked against it.
    user_id: str | None = None
    key: str | None = None
    quantity: int = 0


def is_error_shape(body) -> bool:
    """``{"error": {"code": str, "message": str}}`` and nothing else at the top."""
    return (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"], dict)
        and isinstance(body["error"].get("code"), str)
        and isinstance(body["error"].get("message"), str)
    )


def answer_problem(answer: Answer) -> str | None:
    """Why an answer breaks the contract under faults, or None when it is clean.

    Clean: any 2xx/3xx/4xx with JSON errors, or a 503 ``unavailable`` in the error shape
    with ``Retry-After``. Not clean: no answer at all, a 500 (or any other 5xx), an HTML
    or otherwise non-JSON error.
    """
    where = f"{answer.method} {answer.path}"
    if answer.status is None:
        return f"{where}: no answer ({answer.transport_error})"
    if answer.status >= 400:
        if not answer.content_type.startswith("application/json") or not is_error_shape(
            answer.body
        ):
            return f"{where}: {answer.status} is not the JSON error shape: {answer.body!r:.200}"
    if answer.status >= 500:
        if answer.status != 503 or answer.body["error"]["code"] != "unavailable":
            return f"{where}: {answer.status} {answer.body!r:.200}"
        if not (answer.retry_after or "").isdigit():
            return f"{where}: 503 without Retry-After"
    return None


@dataclass
class Figures:
    """What a run did, for reports: requests, answers by status, units and losses."""

    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    accepted: int = 0
    accepted_units: int = 0
    orders_lost: int = 0
    oversold_units: int = 0
    server_errors: Counter = field(default_factory=Counter)  # "503 unavailable", "500 …"
    slowest_seconds: float = 0.0
    # Keys refused with 503 whose retry found an order: the 503 came from a timeout and
    # the reservation had been made (its retry with the same key answered it: not lost).
    reserved_despite_503: int = 0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "statuses": dict(self.statuses),
            "accepted": self.accepted,
            "accepted_units": self.accepted_units,
            "orders_lost": self.orders_lost,
            "oversold_units": self.oversold_units,
            "server_errors": dict(self.server_errors),
            "slowest_seconds": round(self.slowest_seconds, 2),
            "reserved_despite_503": self.reserved_despite_503,
        }


def check_answers(answers: list[Answer]) -> Figures:
    """Every answer clean (see :func:`answer_problem`); the figures of the run.

    :raise AssertionError: naming the first few answers that were not clean.
    """
    figures = Figures(requests=len(answers))
    for answer in answers:
        figures.statuses[answer.status] += 1
        figures.slowest_seconds = max(figures.slowest_seconds, answer.seconds)
        if answer.status is None or answer.status >= 500:
            code = answer.body["error"]["code"] if is_error_shape(answer.body) else "?"
            figures.server_errors[f"{answer.status} {code}"] += 1
    problems = [p for p in map(answer_problem, answers) if p]
    assert not problems, f"{len(problems)} unclean answers, e.g.:\n" + "\n".join(problems[:5])
    return figures


def promised_orders(answers: list[Answer]) -> dict[str, Answer]:
    """order id → the purchase answer that promised it (202, or 200 for a replayed key).

    :raise AssertionError: one Idempotency-Key of one buyer answered with two orders.
    """
    promised: dict[str, Answer] = {}
    by_key: dict[tuple, str] = {}
    accepted: set[str] = set()
    for answer in answers:
        if answer.method != "POST" or answer.status not in (200, 202):
            continue
        order_id = answer.body["order_id"]
        if answer.key:
            first = by_key.setdefault((answer.user_id, answer.key), order_id)
            assert first == order_id, f"key {answer.key} gave two orders: {first}, {order_id}"
        if answer.status == 202:
            assert order_id not in accepted, f"order {order_id} was accepted twice"
            accepted.add(order_id)
        promised.setdefault(order_id, answer)
    return promised


def reserved_despite_503(answers: list[Answer]) -> int:
    """Keys that were answered 503, never 202, and then 200 with an order (see Figures)."""
    seen: dict[tuple, set] = {}
    for answer in answers:
        if answer.method == "POST" and answer.key:
            seen.setdefault((answer.user_id, answer.key), set()).add(answer.status)
    return sum(1 for statuses in seen.values() if {503, 200} <= statuses and 202 not in statuses)


def wait_drained(redis_url: str, timeout: float = 90.0) -> None:
    """Block until every outbox entry has been taken by a worker and acknowledged."""
    client = connect(redis_url, socket_timeout=5)  # a redis URL, or Sentinels
    try:  # a ConnectionError: redis restarting
        wait_until(
            lambda: outbox.depths(client),
            timeout,
            0.3,
            until=lambda d: d == (0, 0),
            what="queue drained: (undelivered, pending)",
            ignoring=(redis.exceptions.ConnectionError,),
        )
    finally:
        client.close()


def check_books(
    sale: dict,
    promised: dict[str, tuple[str | None, int]],
    rows: dict[str, dict],
    remaining: int,
    unread_ok: bool = False,
) -> None:
    """docs/api.md's invariants 1-4 for a drained sale.

    :param promised: order id → (buyer id, or None not to check it; units promised).
    :param rows: the sale's orders in the database, by id: user_id, quantity, status.
    :param remaining: the sale's remaining stock, as redis (or the API) says.
    :param unread_ok: orders nobody was told of are no fault: a load generator stopped
        with requests in flight, and never read their answers.
    :raise AssertionError: naming the invariant that broke.
    """
    lost = sorted(set(promised) - set(rows))
    assert not lost, f"{len(lost)} promised orders are not in the database, e.g. {lost[:3]}"
    units = sum(quantity for _, quantity in promised.values())
    assert units <= sale["stock"], f"202s promised {units} units of {sale['stock']}"
    unpromised = sorted(set(rows) - set(promised))
    assert unread_ok or not unpromised, f"orders nobody was promised: {unpromised[:3]}"
    for order_id, (user_id, quantity) in promised.items():
        row = rows[order_id]
        assert row["quantity"] == quantity and user_id in (None, str(row["user_id"])), (
            f"order {order_id} is {row}, promised {quantity} to {user_id}"
        )
    live = [row for row in rows.values() if row["status"] != "cancelled"]
    assert remaining >= 0, f"remaining is {remaining}"
    assert sale["stock"] == remaining + sum(row["quantity"] for row in live), (
        f"stock {sale['stock']} != remaining {remaining} + live units"
    )
    held = Counter()
    for row in live:
        held[row["user_id"]] += row["quantity"]
    assert max(held.values(), default=0) <= sale["per_user_limit"], "per-user limit broken"


@dataclass
class SaleAudit:
    """Where to look: the public API (with an admin token), the database, redis, and the
    environment in which `python -m spillway reconcile` reaches the same servers."""

    base_url: str
    admin_headers: dict
    database_url: str
    redis_url: str
    reconcile_env: dict

    def audit(
        self,
        sale: dict,
        answers: list[Answer],
        figures: Figures | None = None,
        drain_timeout: float = 90.0,
    ) -> Figures:
        """Wait for the drain, then check docs/api.md's invariants for ``sale``.

        :param answers: every purchase answer clients saw for this sale (retries included).
        :raise AssertionError: naming the invariant that broke.
        """
        figures = figures or check_answers(answers)
        promised = promised_orders(answers)
        units = {order_id: answer.quantity for order_id, answer in promised.items()}
        figures.accepted = sum(1 for a in answers if a.method == "POST" and a.status == 202)
        figures.accepted_units = sum(units.values())
        figures.oversold_units = max(0, figures.accepted_units - sale["stock"])
        figures.reserved_despite_503 = reserved_despite_503(answers)
        wait_drained(self.redis_url, drain_timeout)
        rows = self.orders(int(sale["id"]))
        figures.orders_lost = len(set(units) - set(rows))
        check_books(
            sale,
            {order_id: (answer.user_id, answer.quantity) for order_id, answer in promised.items()},
            rows,
            self.remaining(sale),
        )
        self.check_through_api(units)
        self.reconcile(sale["id"])
        return figures

    def orders(self, sale_id: int) -> dict[str, dict]:
        """The sale's orders in the database, by id (each id once)."""
        engine = sqlalchemy.create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                result = connection.execute(
                    sqlalchemy.text(
                        "SELECT id, user_id, quantity, status FROM orders WHERE sale_id = :sale"
                    ),
                    {"sale": sale_id},
                )
                rows = [dict(row._mapping) for row in result]
        finally:
            engine.dispose()
        ids = Counter(row["id"] for row in rows)
        assert max(ids.values(), default=1) == 1, "an order id stored twice"
        return {row["id"]: row for row in rows}

    def remaining(self, sale: dict) -> int:
        """The sale's remaining stock; its public view and its stats agree on it."""
        url = f"{self.base_url}/api/v1/sales/{sale['id']}"
        public = requests.get(url, timeout=10).json()
        stats = requests.get(f"{url}/stats", headers=self.admin_headers, timeout=10).json()
        assert public["remaining"] == stats["remaining"], (public, stats)
        assert stats["reserved"] == sale["stock"] - stats["remaining"], (sale, stats)
        return public["remaining"]

    def check_through_api(self, promised: dict[str, int]) -> None:
        """Each promised order (id → units), read back by the admin, with those units."""
        with requests.Session() as session:
            for order_id, quantity in promised.items():
                reply = session.get(
                    f"{self.base_url}/api/v1/orders/{order_id}",
                    headers=self.admin_headers,
                    timeout=10,
                )
                assert reply.status_code == 200, (order_id, reply.status_code, reply.text)
                order = reply.json()
                assert order["quantity"] == quantity and order["status"] in (
                    "confirmed",
                    "paid",
                    "cancelled",
                ), order

    def reconcile(self, sale_id: str) -> None:
        """What `spillway reconcile SALE` says of the sale: its books balance."""
        result = subprocess.run(
            [sys.executable, "-m", "spillway", "reconcile", str(sale_id)],
            env={**os.environ, **self.reconcile_env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and " ok " in result.stdout, (
            f"reconcile: {result.stdout}{result.stderr[-2000:]}"
        )
