"""Instants with any UTC offset mean the same instant everywhere: in the database (SQLite
kept no zone and shifted them), the API, the status, the stream and purchase tokens."""

from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from flashsale.extensions import db
from flashsale.sales.models import Sale
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup

PLUS_TWO = timezone(timedelta(hours=2))
MINUS_FIVE = timezone(timedelta(hours=-5))


def z(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_a_sale_that_started_an_hour_ago_east_of_utc_is_on(client, app):
    """+02:00: started an hour ago is active in the API and admits purchases and tokens."""
    starts = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)
    ends = starts + timedelta(hours=3)
    sale = make_sale(
        client,
        starts_at=starts.astimezone(PLUS_TWO).isoformat(),
        ends_at=ends.astimezone(PLUS_TWO).isoformat(),
        requires_purchase_token=True,
    )
    assert (sale["starts_at"], sale["ends_at"], sale["status"]) == (z(starts), z(ends), "active")
    db.session.expire_all()  # as read back from the database, not the object just written
    assert client.get(f"/api/v1/sales/{sale['id']}").get_json()["status"] == "active"
    stored = db.session.get(Sale, int(sale["id"]))
    assert stored.starts_at == starts
    buyer = signup(client)
    token = client.post(f"/api/v1/sales/{sale['id']}/purchase-token", headers=buyer)
    assert token.status_code == 200, token.get_json()
    reply = buy(client, sale, {**buyer, "X-Purchase-Token": token.get_json()["token"]})
    assert reply.status_code == 202, reply.get_json()


def test_a_sale_starting_in_an_hour_west_of_utc_is_scheduled(client, app):
    """-05:00: starting in an hour is scheduled, issues no token and admits nobody."""
    starts = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    sale = make_sale(
        client,
        starts_at=starts.astimezone(MINUS_FIVE).isoformat(),
        ends_at=(starts + timedelta(hours=1)).astimezone(MINUS_FIVE).isoformat(),
    )
    db.session.expire_all()
    listed = client.get(f"/api/v1/sales/{sale['id']}").get_json()
    assert (listed["starts_at"], listed["status"]) == (z(starts), "scheduled")
    buyer = signup(client)
    token = client.post(f"/api/v1/sales/{sale['id']}/purchase-token", headers=buyer)
    assert token.status_code == 409
    refused = buy(client, sale, buyer)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "sale_not_active"


@pytest.mark.parametrize(
    "field, value",
    [
        ("ends_at", "9999-12-31T23:00:00-05:00"),  # year 10000 in UTC
        ("starts_at", "0001-01-01T01:00:00+05:00"),  # year 0 in UTC
    ],
)
def test_instants_outside_the_years_a_database_holds_are_400(client, app, field, value):
    """An instant whose UTC falls outside years 1…9999 is refused naming the field, and
    the listing keeps answering (it was a permanent 500 on PostgreSQL)."""
    from tests.factories import admin_headers
    from tests.factories import make_product

    product = make_product()
    body = {
        "product_id": str(product.id),
        "stock": 1,
        "ends_at": "2030-01-01T00:00:00Z",
        field: value,
    }
    reply = client.post("/api/v1/sales", json=body, headers=admin_headers())
    assert reply.status_code == 400
    assert reply.get_json()["error"]["message"].startswith(field)
    assert client.get("/api/v1/sales").status_code == 200
