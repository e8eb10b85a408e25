"""The anti-bot purchase token: issued only while a sale is on, bound to one buyer, one sale
and a short expiry, checked by HMAC in both purchase paths (no redis round trip)."""

import io
import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from flashsale.sales import purchase_tokens
from flashsale.sales import stock
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup


def fetch_token(client, sale, buyer):
    return client.post(f"/api/v1/sales/{sale['id']}/purchase-token", headers=buyer)


def buy_with(client, sale, buyer, token, chunked=False):
    headers = {**buyer, purchase_tokens.HEADER: token} if token is not None else buyer
    if chunked:  # no Content-Length: the Flask view answers instead of the fast path
        return client.post(
            f"/api/v1/sales/{sale['id']}/orders",
            input_stream=io.BytesIO(b'{"quantity": 1}'),
            headers={**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        )
    return client.post(f"/api/v1/sales/{sale['id']}/orders", json={"quantity": 1}, headers=headers)


def assert_refused(response, code):
    assert response.status_code == 403, response.get_json()
    assert response.get_json()["error"]["code"] == code


@pytest.fixture
def guarded(client, app):
    """An active sale that requires a purchase token, and two buyers."""
    sale = make_sale(client, stock=50, per_user_limit=10, requires_purchase_token=True)
    assert sale["requires_purchase_token"] is True
    return sale, signup(client, "alice"), signup(client, "bob")


@pytest.mark.parametrize("chunked", [False, True], ids=["fast-path", "flask-view"])
def test_a_sale_that_requires_a_token_admits_only_with_a_valid_one(client, guarded, chunked):
    """No token → purchase_token_required; the buyer's own fresh token → 202."""
    sale, alice, _ = guarded
    assert_refused(buy_with(client, sale, alice, None, chunked), "purchase_token_required")
    issued = fetch_token(client, sale, alice)
    assert issued.status_code == 200
    body = issued.get_json()
    assert body["sale_id"] == sale["id"] and body["expires_at"].endswith("Z")
    assert buy_with(client, sale, alice, body["token"], chunked).status_code == 202


@pytest.mark.parametrize("chunked", [False, True], ids=["fast-path", "flask-view"])
def test_another_buyers_or_sales_token_is_useless(client, guarded, chunked):
    """A token is bound to its buyer and its sale: purchase_token_invalid elsewhere."""
    sale, alice, bob = guarded
    other_sale = make_sale(client, stock=5, requires_purchase_token=True)
    alices = fetch_token(client, sale, alice).get_json()["token"]
    assert_refused(buy_with(client, sale, bob, alices, chunked), "purchase_token_invalid")
    assert_refused(buy_with(client, other_sale, alice, alices, chunked), "purchase_token_invalid")
    assert stock.sale_state(sale["id"])["remaining"] == 50


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "1.2.3",
        f"{int(time.time()) + 60}.AAAA",
        f"{int(time.time()) + 60}." + "A" * 43,
        "99999999999999999999.x",
        "-5.abc",
        "١٢٣.abc",  # non-ASCII digits
    ],
    ids=[
        "empty",
        "garbage",
        "dots",
        "short-mac",
        "zero-mac",
        "huge-expiry",
        "negative",
        "unicode-digits",
    ],
)
def test_forged_tokens_are_refused(client, guarded, token):
    sale, alice, _ = guarded
    code = "purchase_token_required" if token == "" else "purchase_token_invalid"
    assert_refused(buy_with(client, sale, alice, token), code)


def test_expired_and_foreign_secret_tokens_are_refused(client, guarded, app):
    """A correctly signed but expired token, and one signed with another secret, are refused."""
    sale, alice, _ = guarded
    from flashsale.users.tokens import user_id_of

    uid = user_id_of(alice["Authorization"].split()[1])
    past = int(time.time()) - 1
    expired = f"{past}.{purchase_tokens._mac(int(sale['id']), uid, past)}"
    assert_refused(buy_with(client, sale, alice, expired), "purchase_token_invalid")
    app.extensions["purchase_token_key"] = b"another secret entirely, 32 byte"
    future = int(time.time()) + 60
    foreign = f"{future}.{purchase_tokens._mac(int(sale['id']), uid, future)}"
    del app.extensions["purchase_token_key"]
    assert_refused(buy_with(client, sale, alice, foreign), "purchase_token_invalid")


def test_tokens_are_issued_only_while_the_sale_is_on(client, app):
    """Before the sale opens (and for an unknown sale) there is no token to be had."""
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    scheduled = make_sale(
        client,
        starts_at=later.isoformat(),
        ends_at=(later + timedelta(hours=1)).isoformat(),
        requires_purchase_token=True,
    )
    buyer = signup(client)
    refused = fetch_token(client, scheduled, buyer)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "sale_not_active"
    assert fetch_token(client, {"id": "424242"}, buyer).status_code == 404
    assert fetch_token(client, scheduled, {}).status_code == 401


def test_sales_without_the_flag_need_no_token(client, app):
    """Existing clients (docs/api.md) keep working: no flag, no token needed; one sent is
    ignored."""
    sale = make_sale(client)
    assert sale["requires_purchase_token"] is False
    buyer = signup(client)
    assert buy(client, sale, buyer).status_code == 202
    assert buy_with(client, sale, buyer, "whatever").status_code == 202


def test_the_flag_is_read_from_the_database_once_per_process(client, guarded, app):
    """The fast path keeps each sale's immutable rules in memory: no database read per
    purchase once the sale is known."""
    from sqlalchemy import event

    from flashsale.extensions import db

    sale, alice, _ = guarded
    token = fetch_token(client, sale, alice).get_json()["token"]
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        for _ in range(3):
            assert buy_with(client, sale, alice, token).status_code == 202
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert statements == []


def test_the_flag_must_be_a_json_boolean(client, app):
    from tests.factories import admin_headers
    from tests.factories import make_product

    product = make_product()
    body = {
        "product_id": str(product.id),
        "stock": 1,
        "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
    }
    for wrong in ("true", 1, None, []):
        response = client.post(
            "/api/v1/sales",
            json={**body, "requires_purchase_token": wrong},
            headers=admin_headers(),
        )
        assert response.status_code == 400, wrong
