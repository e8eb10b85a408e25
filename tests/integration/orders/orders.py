"""An order's state as the payment tests read it: through the API, in redis (where
'paying' shows) and in the ledger."""

from flask import current_app

from flashsale.extensions import db
from flashsale.orders import state as order_states
from flashsale.orders.models import Order
from tests.factories import buy
from tests.waiting import wait_until


def confirmed_order(client, sale: dict, buyer: dict) -> str:
    """A new order of one unit, once the worker has persisted it (payable)."""
    order_id = buy(client, sale, buyer).get_json()["order_id"]
    wait_until(
        lambda: (
            client.get(f"/api/v1/orders/{order_id}", headers=buyer).get_json()["status"]
            == "confirmed"
        )
    )
    return order_id


def live_status(order_id: str) -> str:
    """The order's status in redis, 'paying' included (the API shows it as confirmed)."""
    return order_states.order_state(order_id)["status"]


def ledger_status(order_id: str) -> str:
    db.session.rollback()  # a fresh snapshot: the worker writes from another process
    return db.session.get(Order, order_id).status


def resolution_due_ms(order_id: str) -> int:
    """When the sweeper may first ask the gateway about a paying order."""
    grace_ms = current_app.config["PAYING_GRACE_MS"]
    return int(order_states.order_state(order_id)["deadline_ms"]) + grace_ms
