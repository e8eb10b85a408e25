"""The drain's one-statement insert (orders/batch_insert.py), on SQLite and, with
SPILLWAY_TEST_DB=postgresql, on PostgreSQL: a redelivered batch, or an id twice in one
batch, stores each order once; a refused batch raises what SQLAlchemy raises, so that the
ledger's row-by-row fallback can set the culprit aside."""

import uuid
from datetime import datetime
from datetime import timezone

import pytest
import sqlalchemy.exc
from sqlalchemy import select

from flashsale.extensions import db
from flashsale.orders import batch_insert
from flashsale.orders.models import Order
from tests.factories import make_sale


def row(sale_id: int, **fields) -> dict:
    now = datetime.now(timezone.utc)
    return {
        "id": str(uuid.uuid4()),
        "sale_id": sale_id,
        "user_id": 7,
        "quantity": 1,
        "status": "confirmed",
        "created_at": now,
        "updated_at": now,
        "idempotency_key": None,
        **fields,
    }


def stored() -> dict[str, Order]:
    db.session.rollback()
    return {order.id: order for order in db.session.scalars(select(Order))}


def test_a_redelivered_batch_stores_each_order_once(client, app):
    sale_id = int(make_sale(client, stock=10)["id"])
    created = datetime(2026, 1, 2, 3, 4, 5, 678000, timezone.utc)
    rows = [row(sale_id, idempotency_key=f"k{n}", created_at=created) for n in range(3)]
    rows.append(row(sale_id))  # no Idempotency-Key
    batch_insert.insert_new(db.session.connection(), rows + rows[:1])  # an id twice
    db.session.commit()
    batch_insert.insert_new(db.session.connection(), [rows[1], row(sale_id, id=rows[2]["id"])])
    db.session.commit()
    orders = stored()
    assert set(orders) == {r["id"] for r in rows}
    first = orders[rows[0]["id"]]
    assert (first.sale_id, first.user_id, first.quantity, first.status) == (
        sale_id,
        7,
        1,
        "confirmed",
    )
    assert first.idempotency_key == "k0" and orders[rows[3]["id"]].idempotency_key is None
    assert first.created_at.replace(tzinfo=timezone.utc) == created  # stored as UTC


def test_a_refused_batch_raises_what_sqlalchemy_raises(client, app):
    sale_id = int(make_sale(client, stock=10)["id"])
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        batch_insert.insert_new(
            db.session.connection(),
            [row(sale_id), row(10**15 + 1)],  # no such sale
        )
    db.session.rollback()
    assert stored() == {}
