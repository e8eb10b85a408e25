"""The queue behind admission, with real Celery worker processes: every 202 becomes exactly
one order in the database, whatever dies in between."""

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders import state as order_states
from flashsale.orders.models import Order
from flashsale.sales import stock
from flashsale.sales.reconcile import reconcile
from spillway.clients import redis_store
from tests.audit import check_books
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.servers import Gateway
from tests.servers import free_port
from tests.waiting import wait_until


def persisted(order_ids) -> dict[str, Order]:
    db.session.rollback()  # a fresh snapshot: the worker writes from another process
    rows = db.session.scalars(select(Order).where(Order.id.in_(list(order_ids))))
    return {row.id: row for row in rows}


def check_invariants(sale: dict, accepted: dict[str, int]) -> None:
    """docs/api.md's invariants for one sale, once the queue has drained (tests/audit.py)."""
    db.session.rollback()  # a fresh snapshot: the worker writes from another process
    rows = {
        row.id: {"user_id": row.user_id, "quantity": row.quantity, "status": row.status}
        for row in db.session.scalars(select(Order).where(Order.sale_id == int(sale["id"])))
    }
    check_books(
        sale,
        {order_id: (None, quantity) for order_id, quantity in accepted.items()},
        rows,
        stock.sale_state(sale["id"])["remaining"],
    )


def burst(app, sale, buyers, attempts: int) -> dict[str, int]:
    """Many concurrent purchases, with a replay of every key; returns the accepted orders."""

    def attempt(n):
        with app.test_client() as client:
            headers, key = buyers[n % len(buyers)], f"key-{n % (attempts // 2)}"
            response = buy(client, sale, headers, quantity=1 + n % 2, key=key)
            assert response.status_code in (200, 202, 409), response.get_json()
            body = response.get_json()
            return (response.status_code, body.get("order_id"), 1 + n % 2)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return accepted_orders(pool.map(attempt, range(attempts)))


def accepted_orders(results) -> dict[str, int]:
    """{order id: quantity} of the 202s among (status, order id, quantity) results."""
    accepted = {}
    for status, order_id, quantity in results:
        if status == 202:
            assert order_id not in accepted, "a repeated key never creates a second order"
            accepted[order_id] = quantity
    return accepted


def test_orders_are_persisted_and_confirmed(client, app, start_worker):
    """A 202's order reaches the database and turns confirmed."""
    start_worker()
    sale = make_sale(client)
    buyer = signup(client)
    order_id = buy(client, sale, buyer).get_json()["order_id"]
    wait_until(
        lambda: (
            client.get(f"/api/v1/orders/{order_id}", headers=buyer).get_json()["status"]
            == "confirmed"
        )
    )
    assert persisted([order_id])[order_id].status == "confirmed"


def test_far_more_buyers_than_stock(client, app, start_worker):
    """300 concurrent attempts by 60 buyers on 40 units: invariants hold after the drain."""
    start_worker()
    sale = make_sale(client, stock=40, per_user_limit=3)
    buyers = [signup(client, f"b{i}") for i in range(60)]
    accepted = burst(app, sale, buyers, 300)
    assert sum(accepted.values()) == 40
    wait_until(lambda: len(persisted(accepted)) == len(accepted))
    check_invariants(sale, accepted)
    wait_until(lambda: reconcile(int(sale["id"])).ok)


def test_reconcile_reports_drift_loudly(client, app, start_worker, caplog):
    """A unit that appears from nowhere is drift: an error in the log, exit status 1."""
    start_worker()
    sale = make_sale(client, stock=5)
    buy(client, sale, signup(client))
    wait_until(lambda: reconcile(int(sale["id"])).ok)
    redis_store.hincrby(keys.sale_key(sale["id"]), "remaining", 1)  # the drift
    report = reconcile(int(sale["id"]))
    assert not report.ok and not report.redis_balanced
    assert any("DRIFT" in record.getMessage() for record in caplog.records)
    result = app.test_cli_runner().invoke(args=["reconcile", sale["id"]])
    assert result.exit_code == 1 and "DRIFT" in result.output


def test_worker_killed_mid_burst_loses_nothing(client, app, start_worker):
    """SIGKILL of the worker while it holds a batch: the sweeper re-drives that batch."""
    sale = make_sale(client, stock=3000, per_user_limit=1)
    buyers = [signup(client, f"k{i}") for i in range(1500)]
    accepted = burst(app, sale, buyers, 3000)  # the outbox fills; no worker yet
    first = start_worker(beat=False)
    wait_until(lambda: pending_in_outbox() > 0, timeout=30, interval=0.001)
    first.kill(signal.SIGKILL)  # mid-batch: taken from the outbox, not acknowledged
    held = pending_in_outbox()
    assert held > 0, "the kill must land while the worker holds entries"
    start_worker()  # with beat: drains, and sweeps what the dead worker held
    wait_until(lambda: pending_in_outbox() == 0, timeout=60)
    wait_until(lambda: len(persisted(accepted)) == len(accepted), timeout=60)
    check_invariants(sale, accepted)
    statuses = {order_states.order_state(order_id)["status"] for order_id in accepted}
    assert statuses == {"confirmed"}, "what the dead worker held was confirmed by the sweeper"


def pending_in_outbox() -> int:
    """Entries a worker has taken from the outbox and not acknowledged."""
    try:
        return redis_store.xpending(keys.OUTBOX, keys.OUTBOX_GROUP)["pending"]
    except Exception:  # no group yet
        return 0


def test_reservation_without_a_publish_is_persisted(client, app, start_worker):
    """A web process that died right after the Lua call published nothing: beat drains it."""
    start_worker()
    sale = make_sale(client)
    buyer_id = client.post("/api/v1/users", json={"name": "gone"}).get_json()["user_id"]
    order_id = str(uuid.uuid4())
    admission = stock.reserve(int(sale["id"]), buyer_id, 1, "", int(time.time() * 1000), order_id)
    assert admission.outcome == "reserved"  # …and the process died here, before any nudge
    wait_until(lambda: order_id in persisted([order_id]))


def test_payment_timeout_returns_stock_once_for_resale(client, app, start_worker):
    """An unpaid order is cancelled at its deadline; its unit is bought again."""
    start_worker()
    sale = make_sale(client, stock=1, payment_timeout_s=1)
    alice, bob = signup(client, "alice"), signup(client, "bob")
    order_id = buy(client, sale, alice).get_json()["order_id"]
    assert buy(client, sale, bob).get_json()["error"]["code"] == "sold_out"
    wait_until(
        lambda: (
            client.get(f"/api/v1/orders/{order_id}", headers=alice).get_json()["status"]
            == "cancelled"
        )
    )
    assert stock.sale_state(sale["id"])["remaining"] == 1
    assert buy(client, sale, bob).status_code == 202
    wait_until(lambda: persisted([order_id])[order_id].status == "cancelled")
    stats = client.get(f"/api/v1/sales/{sale['id']}/stats", headers=admin_headers()).get_json()
    assert (stats["orders_cancelled"], stats["remaining"]) == (1, 0)


@pytest.fixture
def gateway(app, tmp_path):
    """The stand-in payment gateway, 50 ms per charge."""
    server = Gateway(tmp_path, "--latency", "0.05").start()
    app.config["PAYMENT_URL"] = server.url
    yield
    server.stop()


def test_pay_once_confirmed(client, app, start_worker, gateway):
    """pending → 409; confirmed → paid (twice is harmless); the ledger says paid."""
    start_worker()
    sale = make_sale(client)
    buyer = signup(client)
    order_id = buy(client, sale, buyer).get_json()["order_id"]
    early = client.post(f"/api/v1/orders/{order_id}/pay", headers=buyer)
    if early.status_code == 409:
        assert early.get_json()["error"]["code"] == "order_not_payable"
    wait_until(
        lambda: (
            client.get(f"/api/v1/orders/{order_id}", headers=buyer).get_json()["status"]
            in ("confirmed", "paid")
        )
    )
    for _ in range(2):
        paid = client.post(f"/api/v1/orders/{order_id}/pay", headers=buyer)
        assert paid.status_code == 200 and paid.get_json() == {"status": "paid"}
    assert persisted([order_id])[order_id].status == "paid"
    other = signup(client, "other")
    assert client.post(f"/api/v1/orders/{order_id}/pay", headers=other).status_code == 404


def test_gateway_down_is_503_and_changes_nothing(client, app, start_worker):
    """With the gateway unreachable, paying is a clean 503 and the order stays confirmed."""
    start_worker()
    app.config["PAYMENT_URL"] = f"http://127.0.0.1:{free_port()}"
    sale = make_sale(client)
    buyer = signup(client)
    order_id = buy(client, sale, buyer).get_json()["order_id"]
    wait_until(
        lambda: (
            client.get(f"/api/v1/orders/{order_id}", headers=buyer).get_json()["status"]
            == "confirmed"
        )
    )
    response = client.post(f"/api/v1/orders/{order_id}/pay", headers=buyer)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert (
        client.get(f"/api/v1/orders/{order_id}", headers=buyer).get_json()["status"] == "confirmed"
    )
