"""Paying an order against a real stand-in gateway that misbehaves on demand, with real
Celery workers persisting orders and running the deadline sweeper: a buyer is told "paid"
only for an order that is paid, charged once whatever the retries, and an order whose
charge may have gone through is settled by the gateway's word, never by the clock."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from flashsale import keys
from flashsale.orders import state as order_states
from flashsale.orders import tasks
from flashsale.sales import stock
from spillway import counters
from spillway.clients import redis_store
from tests.factories import make_sale
from tests.factories import signup
from tests.integration.orders.orders import confirmed_order
from tests.integration.orders.orders import ledger_status
from tests.integration.orders.orders import live_status
from tests.integration.orders.orders import resolution_due_ms
from tests.waiting import wait_until


def pay(client, order_id: str, buyer: dict):
    return client.post(f"/api/v1/orders/{order_id}/pay", headers=buyer)


@pytest.mark.parametrize("gateway_knobs", [["--latency", "0", "--lose-answers", "1"]])
def test_a_retry_after_a_lost_answer_charges_once(client, start_worker, gateway):
    """The gateway charges, then the connection is cut before its answer: 503 (outcome
    unknown), the order stays payable; the retry is answered paid from the same charge."""
    start_worker(ready=True)
    sale = make_sale(client)
    buyer = signup(client)
    order_id = confirmed_order(client, sale, buyer)
    lost = pay(client, order_id, buyer)
    assert lost.status_code == 503 and lost.headers["Retry-After"]
    assert "not known" in lost.get_json()["error"]["message"]
    assert gateway.charges(order_id)["captures"] == 1
    assert live_status(order_id) == "paying"
    retried = pay(client, order_id, buyer)
    assert retried.status_code == 200 and retried.get_json() == {"status": "paid"}
    assert gateway.charges(order_id) | {"charge_id": None} == {
        "status": "captured",
        "charge_id": None,
        "requests": 2,
        "captures": 1,
    }
    assert (live_status(order_id), ledger_status(order_id)) == ("paid", "paid")


@pytest.mark.parametrize("gateway_knobs", [["--latency", "0.5"]])
def test_two_pays_at_once_charge_once(app, client, start_worker, gateway):
    """Two concurrent pays of one order are both answered paid, from one charge."""
    start_worker(ready=True)
    sale = make_sale(client)
    buyer = signup(client)
    order_id = confirmed_order(client, sale, buyer)

    def pay_once(_):
        with app.test_client() as own:
            response = pay(own, order_id, buyer)
            return response.status_code, response.get_json()

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(pay_once, range(2)))
    assert answers == [(200, {"status": "paid"})] * 2
    assert gateway.charges(order_id)["captures"] == 1
    assert stock.sale_state(sale["id"])["orders_paid"] == 1


@pytest.mark.parametrize("gateway_knobs", [["--latency", "0", "--omit-charge-id"]])
def test_an_approval_without_charge_id_is_no_500_and_resolves(client, start_worker, gateway):
    """A 200 without charge_id is a 503 (outcome unknown), not a 500; the order is not
    left paying: past its grace the sweeper's void finds the charge captured → paid."""
    start_worker(ready=True)
    sale = make_sale(client, stock=3, payment_timeout_s=3)
    buyer = signup(client)
    order_id = confirmed_order(client, sale, buyer)
    broken = pay(client, order_id, buyer)
    assert broken.status_code == 503 and broken.get_json()["error"]["code"] == "unavailable"
    assert live_status(order_id) == "paying"
    wait_until(lambda: live_status(order_id) == "paid", timeout=30)
    assert pay(client, order_id, buyer).get_json() == {"status": "paid"}
    assert ledger_status(order_id) == "paid"
    assert gateway.charges(order_id)["captures"] == 1
    assert stock.sale_state(sale["id"])["remaining"] == 2  # not returned: it was paid


def test_a_paying_order_is_never_cancelled_while_the_gateway_is_down(client, start_worker, gateway):
    """Gateway down: pay is a 503 and the order stays payable. Past its grace the sweeper
    cannot ask the gateway, so it leaves the order (and counts it) tick after tick; once
    the gateway answers, its void (never charged) cancels it and the unit returns once."""
    start_worker(ready=True)
    # The gateway is down before the order exists (buying never asks it), and the deadline
    # leaves room for a loaded machine's drain: pay must come before the deadline to be a 503.
    gateway.stop()
    sale = make_sale(client, stock=3, payment_timeout_s=5)
    buyer = signup(client)
    order_id = confirmed_order(client, sale, buyer)
    down = pay(client, order_id, buyer)
    assert down.status_code == 503 and "unavailable" in down.get_json()["error"]["message"]
    assert (
        client.get(f"/api/v1/orders/{order_id}", headers=buyer).get_json()["status"] == "confirmed"
    )
    while time.time() * 1000 < resolution_due_ms(order_id) + 2500:  # two ticks at least
        time.sleep(0.2)
    assert live_status(order_id) == "paying"
    assert counters.read().get("payments.unresolved", 0) >= 1
    gateway.start()
    wait_until(lambda: live_status(order_id) == "cancelled", timeout=30)
    assert gateway.charges(order_id) | {"requests": 0} == {
        "status": "voided",
        "charge_id": None,
        "requests": 0,
        "captures": 0,
    }
    assert stock.sale_state(sale["id"])["remaining"] == 3
    wait_until(lambda: ledger_status(order_id) == "cancelled")
    refused = pay(client, order_id, buyer)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "order_not_payable"


def test_a_declined_charge_is_409_and_never_paid(client, start_worker, gateway):
    """A key the gateway declines (voided) answers 409 order_not_payable, not paid, and
    the order stays for the sweeper, whose void will say voided."""
    start_worker(ready=True)
    sale = make_sale(client)
    buyer = signup(client)
    order_id = confirmed_order(client, sale, buyer)
    requests.post(f"{gateway.url}/charges/{order_id}/void", timeout=5).raise_for_status()
    declined = pay(client, order_id, buyer)
    assert (
        declined.status_code == 409 and declined.get_json()["error"]["code"] == "order_not_payable"
    )
    assert "declined" in declined.get_json()["error"]["message"]
    assert live_status(order_id) == "paying"


def test_payments_in_their_grace_do_not_hide_unpaid_orders(app, client, monkeypatch):
    """A page and more of payments in their grace at the head of the deadlines (each left
    due) no longer hides the unpaid order behind them: one tick cancels it. A tick that
    starts while another holds the sweeper's lock does nothing."""
    # An hour of grace: on a loaded machine the setup alone once outlasted the default
    # minute, and payments past their grace are settled by the gateway, not left due.
    monkeypatch.setitem(app.config, "PAYING_GRACE_MS", 3_600_000)
    sale = make_sale(client, stock=tasks.BATCH + 1, per_user_limit=1, payment_timeout_s=1)
    now = int(time.time() * 1000)
    orders = [(str(uuid.uuid4()), sale["id"], f"buyer-{n}") for n in range(tasks.BATCH + 1)]
    for n, (order_id, sale_id, buyer) in enumerate(orders):
        at = now + (500 if n == tasks.BATCH else 0)  # the unpaid one's deadline comes last
        assert stock.reserve(int(sale_id), buyer, 1, "", at, order_id).outcome == "reserved"
    order_states.settle_many(orders, "confirmed", now, ("pending",))
    order_states.settle_many(orders[:-1], "paying", now, ("confirmed",))  # their pay is under way
    unpaid = orders[-1][0]
    assert redis_store.zrange(keys.DEADLINES, -1, -1) == [unpaid.encode()]
    time.sleep(max(0.0, (now + 1800) / 1000 - time.time()))  # all deadlines passed, no grace
    with redis_store.lock(keys.EXPIRY_LOCK, timeout=30):
        assert tasks.expire_payments() == 0 and live_status(unpaid) == "confirmed"
    assert tasks.expire_payments() == 1
    assert live_status(unpaid) == "cancelled"
    assert {live_status(order_id) for order_id, *_ in orders[:-1]} == {"paying"}
