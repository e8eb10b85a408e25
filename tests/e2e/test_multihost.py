"""Five hosts on one machine (network namespaces on a private bridge): a data host
(redis, memcached, PostgreSQL), two app hosts (gunicorn, gevent), two worker hosts
(Celery; beat on the first), and nginx balancing the app hosts. A burst of purchases runs
through nginx while the second worker host dies (SIGKILL of all it runs); afterwards
docs/api.md's invariants hold: every 202 is exactly one order in PostgreSQL, no oversell, no
buyer over the limit, and the books reconcile.

The hosts are tests/several_hosts.py's, configured as DEPLOYMENT.md says.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
import requests

from flashsale.app import create_app
from flashsale.extensions import db
from flashsale.sales.reconcile import reconcile
from tests.integration.sales.test_queue import accepted_orders
from tests.integration.sales.test_queue import check_invariants
from tests.integration.sales.test_queue import persisted
from tests.several_hosts import ADMIN
from tests.several_hosts import several_hosts
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="network namespaces need root (CI runs as root)"
)


@pytest.fixture(scope="module")
def hosts():
    with several_hosts() as deployment:
        yield deployment


@pytest.fixture(scope="module")
def ledger(hosts):
    """An app in this process on the data host's servers: the test's view of the books."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in hosts.env.items():
            patch.setenv(name, value)
        app = create_app("test")
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
        app.extensions["redis"].close()
        app.extensions["memcache"].close()


def test_burst_survives_a_worker_host_dying(hosts, ledger):
    """300 buyers, 600 attempts (every key sent twice) on 200 units through the balancer;
    worker host 2 is killed half-way. Both app hosts serve; every invariant holds."""
    base, admin = hosts.url, {"Authorization": f"Bearer {ADMIN}"}
    session = requests.Session()
    product = session.post(
        f"{base}/api/v1/products",
        headers=admin,
        timeout=30,
        json={"name": "Lamp", "price_cents": 900},
    ).json()
    sale = session.post(
        f"{base}/api/v1/sales",
        headers=admin,
        timeout=30,
        json={
            "product_id": product["id"],
            "stock": 200,
            "per_user_limit": 2,
            "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
        },
    ).json()
    tokens = [
        session.post(f"{base}/api/v1/users", json={"name": f"m{i}"}, timeout=30).json()["token"]
        for i in range(300)
    ]
    attempts = 600
    served_by = set()

    def attempt(n):
        if n == attempts // 2:
            hosts.hosts["worker2"].kill()  # the whole host, mid-burst
        response = requests.post(
            f"{base}/api/v1/sales/{sale['id']}/orders",
            json={"quantity": 1 + n % 2},
            headers={
                "Authorization": f"Bearer {tokens[n % 300]}",
                "Idempotency-Key": f"key-{n % (attempts // 2)}",
            },
            timeout=60,
        )
        served_by.add(response.headers.get("X-App-Host"))
        assert response.status_code in (200, 202, 409), response.text
        return response.status_code, response.json().get("order_id"), 1 + n % 2

    with ThreadPoolExecutor(max_workers=24) as pool:
        accepted = accepted_orders(pool.map(attempt, range(attempts)))
    assert 0 < sum(accepted.values()) <= 200, "never oversold"
    assert len(served_by) == 2, f"both app hosts took traffic: {served_by}"
    with ledger.app_context():
        wait_until(lambda: len(persisted(accepted)) == len(accepted), timeout=120)
        check_invariants(sale, accepted)
        wait_until(lambda: reconcile(int(sale["id"])).ok, timeout=60)
