"""memcached stopped mid-burst and started again: reads come from the database, purchases
do not notice, and the cache is used again once it is back, with no restart."""

import signal

from pymemcache.client.base import Client

from flashsale.catalog.cache import product_key
from tests.faults.burst import Burst
from tests.faults.burst import plan
from tests.waiting import wait_until


def test_memcached_down_mid_burst(stack, record_figures):
    """Every catalog read answers 200 (from the database), every purchase as usual."""
    sale = stack.new_sale(stock=250, per_user_limit=2)
    buyers = stack.signup(200)
    product_path = f"/api/v1/products/{sale['product_id']}"
    reads = (product_path, "/api/v1/products", "/api/v1/products?page=1&per_page=5")
    burst = Burst(stack.base_url, sale, plan(buyers, replays=40), reads=reads).start()
    burst.wait_progress(0.3)
    stack.memcached.kill(signal.SIGKILL)
    burst.wait_progress(0.7)
    stack.memcached.start(30)
    answers = burst.join()
    figures = stack.audit.audit(sale, burst.purchase_answers())
    assert not figures.server_errors, "purchases do not need memcached"
    read_statuses = {a.status for a in answers if a.method == "GET"}
    assert read_statuses == {200}, read_statuses
    cache = Client(("127.0.0.1", stack.memcached.port), connect_timeout=2, timeout=2)
    try:

        def cached() -> bool:
            if cache.get(product_key(int(sale["product_id"]))) is not None:
                return True
            assert stack.api("GET", product_path).status_code == 200
            return False

        wait_until(cached, 30, 0.5, what="the restarted memcached used again")
    finally:
        cache.close()
    record_figures(figures, reads=sum(a.method == "GET" for a in answers))
