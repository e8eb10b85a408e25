"""Rate limits on real redis: per client address on Flask routes, per buyer on purchase in
both the WSGI fast path and the Flask view (one set of counters), 429 in the JSON shape."""

import io

import pytest

from flashsale.sales import stock
from spillway.clients import redis_store
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup


@pytest.fixture
def service_env(service_env):
    """This module's app has its limits on, and tight."""
    return {
        **service_env,
        "SPILLWAY_RATE_LIMITS": "on",
        "SPILLWAY_RATE_LIMIT_PER_IP": "5 per minute",
        "SPILLWAY_RATE_LIMIT_PER_BUYER": "3 per minute",
        "SPILLWAY_SIGNUP_LIMIT_PER_IP": "3 per minute",
    }


def assert_rate_limited(response):
    assert response.status_code == 429, response.get_json()
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def from_address(address: str) -> dict:
    return {"X-Forwarded-For": address}


def test_per_ip_limit_on_flask_routes(client, app):
    """The sixth request a minute from one address is a 429 with Retry-After; another
    address, and the health probes, are not limited."""
    for _ in range(5):
        assert client.get("/api/v1/sales", headers=from_address("10.0.0.1")).status_code == 200
    assert_rate_limited(client.get("/api/v1/sales", headers=from_address("10.0.0.1")))
    assert client.get("/api/v1/sales", headers=from_address("10.0.0.2")).status_code == 200
    for _ in range(10):
        assert client.get("/healthz", headers=from_address("10.0.0.1")).status_code == 200


def sign_up_from(client, address: str):
    return client.post("/api/v1/users", json={"name": "minted"}, headers=from_address(address))


def test_signups_have_a_limit_of_their_own_per_address(client, app):
    """Three sign-ups a minute per address (SPILLWAY_SIGNUP_LIMIT_PER_IP, here): minting
    buyers to dodge the per-buyer limit stops at the fourth; another address still signs
    up. The per-address limit every route has (5 a minute here, counted per route) still
    applies on top: with a looser sign-up limit, the sixth sign-up is refused by it."""
    for _ in range(3):
        assert sign_up_from(client, "10.0.0.5").status_code == 201
    assert_rate_limited(sign_up_from(client, "10.0.0.5"))
    assert sign_up_from(client, "10.0.0.6").status_code == 201
    app.config["RATELIMIT_SIGNUP"] = "100 per minute"
    for _ in range(5):
        assert sign_up_from(client, "10.0.0.7").status_code == 201
    assert_rate_limited(sign_up_from(client, "10.0.0.7"))


def test_an_ipv6_client_is_limited_per_64(client, app):
    """Every address of one IPv6 /64 (what one subscriber is given) shares one count, so a
    host cannot take a fresh address per request; the next /64 has its own. An IPv4-mapped
    address counts as its IPv4 address."""
    for host in range(1, 6):
        headers = from_address(f"2001:db8:1:2::{host:x}")
        assert client.get("/api/v1/sales", headers=headers).status_code == 200
    assert_rate_limited(client.get("/api/v1/sales", headers=from_address("2001:db8:1:2:ff::9")))
    assert client.get("/api/v1/sales", headers=from_address("2001:db8:1:3::1")).status_code == 200
    for _ in range(4):
        assert client.get("/api/v1/sales", headers=from_address("10.0.0.8")).status_code == 200
    assert client.get("/api/v1/sales", headers=from_address("::ffff:10.0.0.8")).status_code == 200
    assert_rate_limited(client.get("/api/v1/sales", headers=from_address("10.0.0.8")))


def test_only_the_address_nginx_appended_is_trusted(client, app):
    """ProxyFix with one hop: a client cannot pick its address by sending X-Forwarded-For
    itself; nginx appends the real one, and only that last entry counts."""
    for spoofed in range(5):
        headers = from_address(f"192.0.2.{spoofed}, 10.0.0.9")
        assert client.get("/api/v1/sales", headers=headers).status_code == 200
    assert_rate_limited(client.get("/api/v1/sales", headers=from_address("192.0.2.99, 10.0.0.9")))


def chunked_purchase(client, sale, headers):
    """A purchase with no Content-Length: the fast path leaves it to the Flask view."""
    return client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        input_stream=io.BytesIO(b'{"quantity": 1}'),
        headers={**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )


def test_per_buyer_limit_counts_fast_path_and_view_together(client, app):
    """Two purchases through the fast path and one through the Flask view exhaust a limit of
    three; the fourth is refused on either path, counted in the sale's stats, and reserved
    nothing. Another buyer still buys."""
    sale = make_sale(client, stock=100, per_user_limit=100)
    alice, bob = signup(client, "alice"), signup(client, "bob")
    assert buy(client, sale, alice, key="a1").status_code == 202
    assert buy(client, sale, alice, key="a2").status_code == 202
    assert chunked_purchase(client, sale, alice).status_code == 202
    assert_rate_limited(buy(client, sale, alice, key="a4"))
    assert_rate_limited(chunked_purchase(client, sale, alice))
    assert buy(client, sale, bob).status_code == 202
    assert stock.sale_state(sale["id"])["remaining"] == 96
    stats = client.get(f"/api/v1/sales/{sale['id']}/stats", headers=admin_headers()).get_json()
    assert stats["rejected"]["rate_limited"] == 2


def test_a_limit_on_an_unknown_sale_counts_nothing(client, app):
    """Refusing a purchase of a sale redis does not know creates no sale hash."""
    buyer = signup(client)
    for _ in range(3):
        assert buy(client, {"id": "777"}, buyer).status_code == 404
    assert_rate_limited(buy(client, {"id": "777"}, buyer))
    assert stock.sale_state(777) is None


def test_limits_off_lets_everything_through(client, app, monkeypatch):
    """SPILLWAY_RATE_LIMITS=off (load tests) turns off both limits."""
    from flashsale.app import create_app

    monkeypatch.setenv("SPILLWAY_RATE_LIMITS", "off")
    unlimited = create_app("test").test_client()
    for _ in range(8):
        assert unlimited.get("/api/v1/sales").status_code == 200
    sale = make_sale(unlimited, stock=100, per_user_limit=100)
    buyer = signup(unlimited)
    for _ in range(6):
        assert buy(unlimited, sale, buyer).status_code == 202


def test_each_app_keeps_its_own_per_address_limit(client, app, monkeypatch):
    """The per-address limit is the serving app's setting, not that of the first app built
    in the process (Flask-Limiter keeps the first app's defaults, and a prd app built by
    another test made this module's limits those of prd)."""
    from flashsale.app import create_app

    monkeypatch.setenv("SPILLWAY_RATE_LIMIT_PER_IP", "2 per minute")
    stricter = create_app("test").test_client()
    for _ in range(2):
        assert stricter.get("/api/v1/sales", headers=from_address("10.0.0.3")).status_code == 200
    assert_rate_limited(stricter.get("/api/v1/sales", headers=from_address("10.0.0.3")))


def test_per_buyer_counters_are_the_shops_own_keys(client, app):
    """The per-buyer counts kept inside the reservation's round trip live on keys of the
    shop's own (keys.buyer_limit_key), one per window, expiring with it: no library's key
    layout is reached into. Both purchase paths count there."""
    from flashsale import keys
    from flashsale.users.tokens import user_id_of

    sale = make_sale(client, stock=100, per_user_limit=100)
    buyer = signup(client)
    uid = user_id_of(buyer["Authorization"].split()[1])
    buy(client, sale, buyer)
    chunked_purchase(client, sale, buyer)
    from flashsale.sales.service import buyer_limits

    assert buyer_limits() == ((3, 60),)  # "3 per minute"
    for _, window_s in buyer_limits():
        key = keys.buyer_limit_key(uid, window_s)
        assert int(redis_store.get(key)) == 2
        assert 0 < redis_store.ttl(key) <= window_s
