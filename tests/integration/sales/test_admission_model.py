"""A Hypothesis state machine drives reserve.lua, settle.lua and the persister on a real
redis and database, and checks docs/api.md's invariants against a model after every step."""

import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import invariant
from hypothesis.stateful import rule
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import select

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders import ledger
from flashsale.orders import tasks
from flashsale.orders.models import Order
from flashsale.orders.outbox import outbox
from flashsale.sales import service
from flashsale.sales import stock
from spillway.clients import redis_store
from spillway.clock import now_ms
from tests.factories import make_product

STOCK, LIMIT = 6, 3
BUYERS = ["1", "2", "3"]
KEYS = ["", "a", "b"]
FAR_FUTURE_MS = 10**13


class AdmissionMachine(RuleBasedStateMachine):
    """The model: which orders are live, what each buyer holds, what each key answered."""

    def __init__(self):
        super().__init__()
        product = make_product()
        sale = service.create_sale(
            {
                "product_id": str(product.id),
                "stock": STOCK,
                "per_user_limit": LIMIT,
                "starts_at": None,
                "payment_timeout_s": 900,
                "ends_at": datetime.now(timezone.utc) + timedelta(hours=1),
            }
        )
        self.sale_id = int(sale["id"])
        self.orders: dict[str, tuple[str, int]] = {}  # order → (buyer, quantity)
        self.cancelled: set[str] = set()
        self.keys: dict[tuple[str, str], str] = {}

    def held(self, buyer: str) -> int:
        return sum(q for o, (b, q) in self.orders.items() if b == buyer and o not in self.cancelled)

    def live_units(self) -> int:
        return sum(q for o, (_, q) in self.orders.items() if o not in self.cancelled)

    @rule(buyer=st.sampled_from(BUYERS), quantity=st.integers(1, 3), key=st.sampled_from(KEYS))
    def reserve(self, buyer, quantity, key):
        order_id = f"{self.sale_id}-{len(self.orders)}-{time.monotonic_ns()}"
        result = stock.reserve(self.sale_id, buyer, quantity, key, now_ms(), order_id)
        if key and (buyer, key) in self.keys:
            assert (result.outcome, result.order_id) == ("duplicate", self.keys[buyer, key])
        elif self.held(buyer) + quantity > LIMIT:
            assert result.outcome == "limit_exceeded"
        elif STOCK - self.live_units() < quantity:
            assert result.outcome == "sold_out"
        else:
            assert result.outcome == "reserved"
            self.orders[order_id] = (buyer, quantity)
            if key:
                self.keys[buyer, key] = order_id

    @rule(data=st.data())
    def payment_times_out(self, data):
        if not self.orders:
            return
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        cancelled_now = tasks.cancel_if_unpaid(order_id, FAR_FUTURE_MS)
        assert cancelled_now == (order_id not in self.cancelled), "stock returns exactly once"
        self.cancelled.add(order_id)

    @rule()
    def workers_drain(self):
        outbox.ensure_group()
        reply = redis_store.xreadgroup(keys.OUTBOX_GROUP, "model", {keys.OUTBOX: ">"}, count=100)
        if reply:
            ledger.persist(reply[0][1])

    @invariant()
    def stock_is_conserved(self):
        remaining = stock.sale_state(self.sale_id)["remaining"]
        assert remaining >= 0
        assert STOCK == remaining + self.live_units()

    @invariant()
    def limits_hold(self):
        assert all(self.held(buyer) <= LIMIT for buyer in BUYERS)

    @invariant()
    def ledger_agrees(self):
        db.session.rollback()
        rows = db.session.scalars(select(Order).where(Order.sale_id == self.sale_id)).all()
        for row in rows:
            assert row.id in self.orders
            assert (str(row.user_id), row.quantity) == self.orders[row.id]
            assert (row.status == "cancelled") == (row.id in self.cancelled)


@pytest.mark.parametrize("shards", [1, 4])
def test_admission_model(app, shards):
    """Random sequences of purchases, timeouts and drains keep every invariant, with the
    stock in one key or split over four shards (buyers borrowing across them)."""
    app.config["STOCK_SHARDS"] = shards
    run_state_machine_as_test(
        AdmissionMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
