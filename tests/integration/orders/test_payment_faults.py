"""Payment served as deployed, by gunicorn's gevent workers, against a stand-in gateway that
is too slow, trickles its answers, or outlives the web process that called it; Celery's
sweeper resolves what is left. Whatever happens, an order ends exactly one of paid or
cancelled, a buyer told "paid" holds a paid order, stock returns only for cancelled
orders, and no cancelled order was ever charged."""

import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders.models import Order
from flashsale.sales import stock
from flashsale.sales.reconcile import reconcile
from spillway.clients import redis_store
from tests.factories import buy
from tests.factories import make_sale
from tests.integration.orders.orders import confirmed_order
from tests.integration.orders.orders import ledger_status
from tests.integration.orders.orders import live_status
from tests.waiting import wait_until

# A web process's gateway call may last 3 s here: time enough to kill it mid-call.
SLOW_CALLS = {"SPILLWAY_GATEWAY_TIMEOUT_S": "3", "SPILLWAY_PAYING_GRACE_MS": "4000"}


def pay_until_told(web, order_id: str, buyer: dict, give_up_s: float = 30) -> list[tuple]:
    """Pay as docs/api.md asks a client to: retry a 503 after its Retry-After, until paid or
    refused. Returns every (status, error code or body) the buyer was told."""
    told = []
    stop_at = time.monotonic() + give_up_s
    while time.monotonic() < stop_at:
        response = requests.post(
            f"{web.url}/api/v1/orders/{order_id}/pay", headers=buyer, timeout=30
        )
        body = response.json()
        told.append((response.status_code, body.get("error", {}).get("code", body)))
        if response.status_code != 503:
            break
        time.sleep(int(response.headers["Retry-After"]))
    return told


def audit(sale: dict, orders: dict[str, dict], told: dict[str, list], gateway) -> None:
    """Every order settled exactly one way, in redis and the ledger alike; what buyers were
    told, the gateway's captures, the stock, the holdings and the books all agree with it.

    :param orders: order id → its buyer's headers and id, for every order of the sale
        (one unit each).
    :param told: order id → what its buyer was told when paying.
    """
    final = {order_id: live_status(order_id) for order_id in orders}
    db.session.rollback()
    rows = {
        row.id: {"user_id": row.user_id, "quantity": row.quantity, "status": row.status}
        for row in db.session.scalars(select(Order).where(Order.sale_id == int(sale["id"])))
    }
    for order_id, status in final.items():
        assert status in ("paid", "cancelled"), (order_id, status)
        assert rows[order_id]["status"] == status, f"ledger and redis disagree on {order_id}"
        captures = gateway.charges(order_id).get("captures", 0)
        assert captures == (1 if status == "paid" else 0), (
            f"{order_id} ended {status} with {captures} captures"
        )
        if any(answer[0] == 200 for answer in told.get(order_id, [])):
            assert status == "paid", f"the buyer of {order_id} was told paid; it is {status}"
    # The books, with units sold again after a cancel (tests/audit.py's check_books counts
    # every 202 against the stock once): each order in the ledger with its buyer; the stock
    # is what remains plus what live orders hold; each buyer holds in redis exactly the
    # units of their live orders, so one told "paid" still holds theirs.
    assert set(rows) == set(orders)
    live = Counter()
    for order_id, row in rows.items():
        assert str(row["user_id"]) == orders[order_id]["user_id"]
        live[str(row["user_id"])] += row["quantity"] if row["status"] != "cancelled" else 0
    assert sale["stock"] == stock.sale_state(sale["id"])["remaining"] + sum(live.values())
    units = keys.units_key(sale["id"])
    for user_id, held in live.items():
        assert int(redis_store.hget(units, user_id) or 0) == held <= sale["per_user_limit"]
    assert reconcile(int(sale["id"])).ok


def buyer_with_id(client, name: str) -> dict:
    """A new buyer: auth headers and id."""
    created = client.post("/api/v1/users", json={"name": name}).get_json()
    return {
        "headers": {"Authorization": f"Bearer {created['token']}"},
        "user_id": created["user_id"],
    }


def in_flight(gateway, order_id: str) -> bool:
    return gateway.charges(order_id)["status"] == "in_flight"


@pytest.mark.parametrize("gateway_knobs", [["--latency", "8"]])
def test_a_gateway_slower_than_deadline_and_grace(client, start_worker, gateway, web):
    """The audit's case: each charge takes longer than deadline + grace. Buyers get 503s
    (outcome unknown) within the gateway deadline, never "paid"; past the grace the
    sweeper's void wins over each charge still in flight, which is then declined; the
    orders end cancelled, never charged, and their units are sold again (and, unpaid,
    return once more)."""
    start_worker(ready=True)
    sale = make_sale(client, stock=3, per_user_limit=1, payment_timeout_s=3)
    first = [buyer_with_id(client, f"first-{i}") for i in range(3)]
    orders = {confirmed_order(client, sale, b["headers"]): b for b in first}
    started = time.monotonic()
    with ThreadPoolExecutor(len(orders)) as pool:
        told = dict(
            zip(
                orders,
                pool.map(
                    lambda item: pay_until_told(web, item[0], item[1]["headers"]), orders.items()
                ),
            )
        )
    for answers in told.values():
        assert answers[-1] == (409, "order_not_payable")
        assert all(status in (503, 409) for status, _ in answers), answers
    wait_until(lambda: all(live_status(order_id) == "cancelled" for order_id in orders))
    again = [buyer_with_id(client, f"again-{i}") for i in range(3)]
    for b in again:
        response = buy(client, sale, b["headers"])
        assert response.status_code == 202, response.get_json()
        orders[response.get_json()["order_id"]] = b
    assert stock.sale_state(sale["id"])["remaining"] == 0
    time.sleep(max(0.0, started + 8.5 - time.monotonic()))  # the charges' flights are over
    wait_until(lambda: all(live_status(order_id) == "cancelled" for order_id in orders))
    wait_until(lambda: all(ledger_status(order_id) == "cancelled" for order_id in orders))
    audit(sale, orders, told, gateway)
    assert stock.sale_state(sale["id"])["remaining"] == 3


@pytest.mark.parametrize("gateway_knobs", [["--latency", "0", "--trickle", "0.05"]])
def test_a_trickling_gateway_is_cut_at_the_total_deadline(client, start_worker, gateway, web):
    """The gateway captures at once, then sends its answer a byte every 50 ms (about 9 s,
    no read ever waits 1 s): the pay ends at its 1 s total deadline with a 503, not after
    the whole trickle. The order is never cancelled while its outcome is unknown: the
    sweeper's void (trickled too) finds the charge captured and marks it paid."""
    start_worker(ready=True)
    sale = make_sale(client, stock=2, payment_timeout_s=3)
    buyer = buyer_with_id(client, "trickled")
    order_id = confirmed_order(client, sale, buyer["headers"])
    started = time.monotonic()
    response = requests.post(
        f"{web.url}/api/v1/orders/{order_id}/pay", headers=buyer["headers"], timeout=30
    )
    seconds = time.monotonic() - started
    assert response.status_code == 503 and "not known" in response.json()["error"]["message"]
    assert seconds < 4, f"the pay took {seconds:.1f} s: a per-read timeout, not a total one"
    seen = set()
    while live_status(order_id) != "paid" and time.monotonic() < started + 60:
        seen.add(live_status(order_id))
        time.sleep(0.1)
    assert seen <= {"paying"} and live_status(order_id) == "paid"
    told = {order_id: pay_until_told(web, order_id, buyer["headers"])}
    assert told[order_id] == [(200, {"status": "paid"})]
    audit(sale, {order_id: buyer}, told, gateway)
    assert stock.sale_state(sale["id"])["remaining"] == 1


def pay_and_kill_the_web(web, gateway, order_id: str, buyer: dict) -> None:
    """Pay, and SIGKILL gunicorn (master and workers) while the charge is in flight: the
    order is left 'paying' with nobody to finish it."""
    answers = []

    def pay():
        try:
            answers.append(
                requests.post(
                    f"{web.url}/api/v1/orders/{order_id}/pay", headers=buyer["headers"], timeout=30
                ).status_code
            )
        except requests.ConnectionError:
            answers.append(None)

    payer = threading.Thread(target=pay)
    payer.start()
    wait_until(lambda: in_flight(gateway, order_id), interval=0.02)
    web.kill(signal.SIGKILL)
    payer.join()
    assert answers == [None], "the web process must die before answering"
    assert live_status(order_id) == "paying"


@pytest.mark.parametrize("payment_settings", [SLOW_CALLS])
@pytest.mark.parametrize("gateway_knobs", [["--latency", "12"]])
def test_web_killed_mid_payment_never_charged_is_cancelled(client, start_worker, gateway, web):
    """The web process dies while the charge is in flight, and the charge has not been
    captured when the grace ends: the sweeper voids it, cancels the order and returns the
    unit; the charge, when its flight ends, is declined."""
    start_worker(ready=True)
    sale = make_sale(client, stock=1, payment_timeout_s=3)
    buyer = buyer_with_id(client, "killed")
    order_id = confirmed_order(client, sale, buyer["headers"])
    started = time.monotonic()
    pay_and_kill_the_web(web, gateway, order_id, buyer)
    wait_until(lambda: live_status(order_id) != "paying", timeout=30)
    assert live_status(order_id) == "cancelled"
    wait_until(lambda: ledger_status(order_id) == "cancelled")
    time.sleep(max(0.0, started + 12.5 - time.monotonic()))  # the charge's flight is over
    assert gateway.charges(order_id)["status"] == "voided"
    audit(sale, {order_id: buyer}, {}, gateway)
    assert stock.sale_state(sale["id"])["remaining"] == 1


@pytest.mark.parametrize("payment_settings", [SLOW_CALLS])
@pytest.mark.parametrize("gateway_knobs", [["--latency", "1.5"]])
def test_web_killed_mid_payment_after_the_capture_is_paid(client, start_worker, gateway, web):
    """The web process dies while the charge is in flight, and the gateway captures it
    afterwards: the sweeper's void finds it captured and marks the order paid (not
    cancelled); the buyer keeps the unit and a retry of pay answers paid."""
    start_worker(ready=True)
    sale = make_sale(client, stock=2, payment_timeout_s=3)
    buyer = buyer_with_id(client, "charged")
    order_id = confirmed_order(client, sale, buyer["headers"])
    pay_and_kill_the_web(web, gateway, order_id, buyer)
    wait_until(lambda: gateway.charges(order_id)["status"] == "captured")
    assert live_status(order_id) == "paying"  # charged, and nobody knows yet
    wait_until(lambda: live_status(order_id) != "paying", timeout=30)
    assert live_status(order_id) == "paid"
    wait_until(lambda: ledger_status(order_id) == "paid")
    retried = client.post(f"/api/v1/orders/{order_id}/pay", headers=buyer["headers"])
    assert retried.get_json() == {"status": "paid"}
    audit(sale, {order_id: buyer}, {order_id: [(200, retried.get_json())]}, gateway)
    assert stock.sale_state(sale["id"])["remaining"] == 1
