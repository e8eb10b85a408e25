"""A sale's stock reaches redis as a draft that admits nobody until its row commits, and an
outbox entry that can never become an order never holds back the others."""

import uuid
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders import tasks
from flashsale.orders.models import Order
from flashsale.orders.outbox import outbox
from flashsale.sales import stock
from flashsale.sales.models import Sale
from flashsale.sales.reconcile import reconcile
from spillway.clients import redis_store
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_product
from tests.factories import make_sale
from tests.factories import signup


def sale_body(product) -> dict:
    return {
        "product_id": str(product.id),
        "stock": 5,
        "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
    }


@pytest.fixture
def fail_next_commit(app):
    """Arms a fault: the next database commit fails as a database that went away would
    make it fail (the server, redis and the rest are real)."""

    def fail(session):
        raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("injected: gone away"))

    yield lambda: event.listen(db.session, "before_commit", fail, once=True)
    if event.contains(db.session, "before_commit", fail):
        event.remove(db.session, "before_commit", fail)


def test_a_sale_whose_commit_fails_leaves_nothing_in_redis(client, app, fail_next_commit):
    """The admin gets a 503 (the database is down), the sale is nowhere, and redis holds no
    stock for it: nobody can buy a sale that does not exist."""
    product = make_product()
    before = set(redis_store.hkeys(keys.REGISTRY))
    fail_next_commit()
    reply = client.post("/api/v1/sales", json=sale_body(product), headers=admin_headers())
    assert reply.status_code == 503, reply.get_json()
    assert db.session.scalar(select(func.count(Sale.id))) == 0
    assert set(redis_store.hkeys(keys.REGISTRY)) == before
    assert not list(redis_store.scan_iter(match="spillway:sale:*"))


def test_a_draft_admits_nobody_until_it_is_opened(client, app):
    """Stock written but not opened (the commit has not happened) answers 404, like no
    sale; once opened, the same purchase is admitted."""
    sale = make_sale(client, stock=3)
    redis_store.hset(keys.sale_key(sale["id"]), "open", 0)
    buyer = signup(client)
    assert buy(client, sale, buyer).status_code == 404
    stock.open_sale(int(sale["id"]), 1)
    assert buy(client, sale, buyer).status_code == 202


def test_a_committed_sale_left_closed_is_opened_when_read(client, app):
    """If redis was unreachable right after the commit, the sale's draft stays closed: the
    first read of the sale opens it (the row is the proof it committed)."""
    sale = make_sale(client, stock=3)
    redis_store.hset(keys.sale_key(sale["id"]), "open", 0)
    assert client.get(f"/api/v1/sales/{sale['id']}").status_code == 200
    assert buy(client, sale, signup(client)).status_code == 202


def test_a_new_sale_never_lands_on_an_open_sale_redis_already_holds(client, app):
    """Redis holding an open sale under the id the database hands out (the two parted
    ways) is refused with a 503 naming the way out, and the old sale's state is kept."""
    sale = make_sale(client, stock=3)
    buyer = signup(client)
    assert buy(client, sale, buyer).status_code == 202
    db.session.execute(Order.__table__.delete())
    db.session.execute(Sale.__table__.delete().where(Sale.id == int(sale["id"])))
    db.session.commit()  # the database forgot the sale: redis has not
    product = make_product()
    taken = Sale(
        id=int(sale["id"]),
        product_id=product.id,
        stock=1,
        per_user_limit=1,
        starts_at=datetime.now(timezone.utc),
        ends_at=datetime.now(timezone.utc) + timedelta(hours=1),
        payment_timeout_s=60,
    )
    with pytest.raises(stock.StaleSale):
        stock.prewarm(stock.SaleDefinition(taken.id, product.id, 1, 1, 0, 1, 60), 3600)
    assert stock.sale_state(sale["id"])["remaining"] == 2


def poison_entry(sale_id: int) -> str:
    """An accepted order of a sale this ledger does not have, written the way reserve.lua
    writes one, with its outbox entry."""
    order_id = str(uuid.uuid4())
    redis_store.hset(
        keys.order_key(order_id),
        mapping={
            "sale_id": sale_id,
            "user_id": 7,
            "quantity": 1,
            "status": "pending",
            "created_ms": 1,
            "deadline_ms": 2,
            "key": "",
        },
    )
    redis_store.xadd(keys.OUTBOX, {"order": order_id})
    return order_id


def test_a_poison_entry_never_holds_back_its_batch(client, app):
    """Entries whose order can never be persisted (its sale is not in the ledger, its record
    is gone) are set aside as dead letters; every other entry of the batch is persisted."""
    sale = make_sale(client, stock=50, per_user_limit=1)
    buyers = [signup(client, f"b{i}") for i in range(20)]
    accepted = [buy(client, sale, buyers[i]).get_json()["order_id"] for i in range(10)]
    poisoned = poison_entry(sale_id=10**15 + 12345)
    redis_store.xadd(keys.OUTBOX, {"order": str(uuid.uuid4())})  # no record at all
    accepted += [buy(client, sale, buyers[i]).get_json()["order_id"] for i in range(10, 20)]
    assert tasks.drain_outbox() == 20
    db.session.rollback()
    persisted = set(db.session.scalars(select(Order.id).where(Order.sale_id == int(sale["id"]))))
    assert persisted == set(accepted)
    assert db.session.get(Order, poisoned) is None
    dead = [fields[b"order"].decode() for _, fields in redis_store.xrange(keys.DEAD_LETTERS)]
    assert poisoned in dead and len(dead) == 2
    assert outbox.backlog() == 0
    assert reconcile(int(sale["id"])).ok
