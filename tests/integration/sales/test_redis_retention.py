"""Redis does not grow without bound: what the ledger holds leaves redis after a retention
(SPILLWAY_REDIS_RETENTION_S), and answers go on coming from the ledger."""

import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

from flashsale import keys
from flashsale.orders import tasks
from flashsale.sales import archive
from flashsale.sales import stock
from flashsale.sales.reconcile import reconcile
from spillway.clients import redis_store
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.waiting import wait_until


def test_a_final_orders_record_expires_and_the_ledger_answers_for_it(client, app):
    """A cancelled order's redis record gets the retention as its TTL; once gone, its
    status and a replay of its Idempotency-Key are answered from the ledger."""
    sale = make_sale(client, stock=5, payment_timeout_s=1)
    buyer = signup(client)
    order_id = buy(client, sale, buyer, key="k").get_json()["order_id"]
    assert tasks.drain_outbox() == 1
    time.sleep(1.1)
    assert tasks.expire_payments() == 1
    ttl = redis_store.ttl(keys.order_key(order_id))
    assert 0 < ttl <= app.config["REDIS_RETENTION_S"]
    redis_store.delete(keys.order_key(order_id))  # the retention has passed
    answer = client.get(f"/api/v1/orders/{order_id}", headers=buyer).get_json()
    assert answer["status"] == "cancelled"
    replay = buy(client, sale, buyer, key="k")
    assert replay.status_code == 200
    assert replay.get_json() == {"order_id": order_id, "status": "cancelled"}


def test_a_buyers_order_set_only_names_orders_not_yet_in_the_ledger(client, app):
    """Once persisted, an order leaves the buyer's set in redis; the buyer still sees it."""
    sale = make_sale(client, stock=5, per_user_limit=3)
    buyer = signup(client)
    ids = {buy(client, sale, buyer).get_json()["order_id"] for _ in range(3)}
    user_id = client.get("/api/v1/users/me/orders", headers=buyer).get_json()["items"][0]["user_id"]
    assert {i.decode() for i in redis_store.smembers(keys.buyer_orders_key(user_id))} == ids
    assert tasks.drain_outbox() == 3
    assert redis_store.scard(keys.buyer_orders_key(user_id)) == 0
    listed = client.get("/api/v1/users/me/orders", headers=buyer).get_json()["items"]
    assert {order["order_id"] for order in listed} == ids


def test_a_sale_long_over_leaves_its_per_buyer_keys_to_the_ledger(client, app):
    """Past its end, payment timeout and retention, with every order final, a sale's
    holdings and idempotency keys leave redis; its books still balance, now against the
    ledger. A sale with an order still awaiting payment keeps them."""
    app.config["REDIS_RETENTION_S"] = 1
    ends = datetime.now(timezone.utc) + timedelta(seconds=2)
    sale = make_sale(
        client, stock=5, per_user_limit=2, payment_timeout_s=1, ends_at=ends.isoformat()
    )
    open_sale = make_sale(client, stock=5)
    buyer = signup(client)
    buy(client, sale, buyer, key="a")
    buy(client, open_sale, buyer, key="b")
    assert tasks.drain_outbox() == 2
    held = keys.shard(sale["id"], 0, 1)
    assert redis_store.exists(held.units, held.idempotency) == 2
    assert archive.archive_sales() == 0  # not over yet
    wait_until(
        lambda: time.time() * 1000 > stock.registered_sales()[int(sale["id"])].archive_ms(1),
        timeout=10,
    )
    assert tasks.expire_payments() >= 1
    assert archive.archive_sales() == 1
    assert redis_store.exists(held.units, held.idempotency) == 0
    report = reconcile(int(sale["id"]))
    assert report.archived and report.ok, report.describe()
    assert redis_store.exists(keys.units_key(open_sale["id"])) == 1
