"""A sale's stock split over several redis shards (SPILLWAY_STOCK_SHARDS, or `shards` when
the sale is created): the same promises as one key — no oversell, the per-buyer limit and
idempotency exact, nothing refused while units remain anywhere, stock returned on cancel."""

from concurrent.futures import ThreadPoolExecutor

from redis.crc import key_slot

from flashsale import keys
from flashsale.sales import stock
from flashsale.sales.reconcile import reconcile
from spillway.clients import redis_store
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.integration.sales.test_queue import burst
from tests.integration.sales.test_queue import check_invariants
from tests.integration.sales.test_queue import persisted
from tests.waiting import wait_until


def stats(client, sale) -> dict:
    return client.get(f"/api/v1/sales/{sale['id']}/stats", headers=admin_headers()).get_json()


def test_stock_is_split_evenly_and_each_shard_is_one_cluster_slot(client, app):
    """10 units over 4 shards: 3, 3, 2, 2; a shard's keys share one hash slot."""
    sale = make_sale(client, stock=10, shards=4)
    shards = keys.all_shards(sale["id"])
    assert [int(redis_store.hget(s.sale, "remaining")) for s in shards] == [3, 3, 2, 2]
    for each in shards:
        assert len({key_slot(k.encode()) for k in (each.sale, each.units, each.idempotency)}) == 1
    assert len({key_slot(s.sale.encode()) for s in shards}) == 4
    assert (stats(client, sale)["shards"], stats(client, sale)["remaining"]) == (4, 10)


def test_setting_sets_the_default(client, app):
    """SPILLWAY_STOCK_SHARDS (STOCK_SHARDS) applies to sales created without `shards`."""
    app.config["STOCK_SHARDS"] = 3
    assert stats(client, make_sale(client))["shards"] == 3


def test_burst_on_four_shards(client, app, start_worker):
    """300 concurrent attempts (every key replayed) by 60 buyers on 40 units in 4 shards:
    never more than 40 sold, every invariant holds, the books reconcile, nothing stays in
    flight, and any unit a refused buyer missed (in flight at that instant) is still sold."""
    start_worker()
    sale = make_sale(client, stock=40, per_user_limit=3, shards=4)
    buyers = [signup(client, f"s{i}") for i in range(60)]
    accepted = burst(app, sale, buyers, 300)
    assert sum(accepted.values()) <= 40
    for n in range(40 - sum(accepted.values())):  # nothing stranded on any shard
        response = buy(client, sale, signup(client, f"late{n}"))
        assert response.status_code == 202
        accepted[response.get_json()["order_id"]] = 1
    assert buy(client, sale, signup(client, "last")).get_json()["error"]["code"] == "sold_out"
    wait_until(lambda: len(persisted(accepted)) == len(accepted))
    check_invariants(sale, accepted)
    wait_until(lambda: reconcile(int(sale["id"])).ok)
    assert stock.sale_state(sale["id"])["in_transit"] == 0


def test_one_buyer_racing_itself_gets_exactly_the_limit(client, app):
    """40 concurrent purchases by one buyer, each with its own key: exactly the limit."""
    sale = make_sale(client, stock=100, per_user_limit=3, shards=4)
    buyer = signup(client)

    def attempt(n):
        with app.test_client() as each:
            return buy(each, sale, buyer, key=f"k{n}").status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(attempt, range(40)))
    assert (codes.count(202), codes.count(409)) == (3, 37)
    assert stats(client, sale)["remaining"] == 97


def test_home_shard_empty_borrows_and_the_key_still_answers_once(client, app):
    """2 units over 4 shards (1, 1, 0, 0): a buyer whose home shard is empty gets both
    units; the same key answers the same order; the next buyer is refused sold_out."""
    sale = make_sale(client, stock=2, per_user_limit=2, shards=4)
    buyers = [signup(client, f"h{i}") for i in range(8)]
    first = buy(client, sale, buyers[0], quantity=2, key="once")
    assert first.status_code == 202
    again = buy(client, sale, buyers[0], quantity=2, key="once")
    assert (again.status_code, again.get_json()["order_id"]) == (200, first.get_json()["order_id"])
    refused = [buy(client, sale, b).get_json()["error"]["code"] for b in buyers[1:]]
    assert refused == ["sold_out"] * 7
    assert stats(client, sale)["rejected"]["sold_out"] == 7  # counted once per refusal


def test_cancel_returns_stock_for_resale(client, app, start_worker):
    """An unpaid order on a sharded sale is cancelled at its deadline; its units go back
    to its buyer's home shard, and another buyer (another home) buys them."""
    start_worker()
    sale = make_sale(client, stock=2, per_user_limit=2, shards=4, payment_timeout_s=1)
    alice, bob = signup(client, "alice"), signup(client, "bob")
    order_id = buy(client, sale, alice, quantity=2).get_json()["order_id"]
    assert buy(client, sale, bob).get_json()["error"]["code"] == "sold_out"
    wait_until(
        lambda: (
            client.get(f"/api/v1/orders/{order_id}", headers=alice).get_json()["status"]
            == "cancelled"
        )
    )
    assert stats(client, sale)["remaining"] == 2
    assert buy(client, sale, bob, quantity=2).status_code == 202
    wait_until(lambda: persisted([order_id])[order_id].status == "cancelled")
    assert (stats(client, sale)["orders_cancelled"], stats(client, sale)["remaining"]) == (1, 0)
    wait_until(lambda: reconcile(int(sale["id"])).ok)
