"""Nothing half-done: a request deadline that falls while a purchase's admission waits on
redis (frozen by SIGSTOP) never leaves a reservation nobody was told of. Each purchase is
either reserved and answered 202, or not reserved."""

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.integration.guards import processes

BUYERS = 16
STOCK = 100
DEADLINE_S = 0.4
FROZEN_S = 1.0  # past the deadline, inside redis-py's 2 s socket timeout


@pytest.fixture
def shop(app, service_env, tmp_path):
    """The flash sale in one gunicorn gevent worker whose requests have 0.4 s."""
    served = processes.gunicorn(
        {
            **processes.app_env(service_env),
            "SPILLWAY_APP": "flashsale:create_app",
            "SPILLWAY_REQUEST_TIMEOUT_S": str(DEADLINE_S),
        },
        tmp_path / "gunicorn.log",
    )
    yield served
    served.stop()


def test_a_deadline_during_admission_leaves_nothing_half_done(client, shop, redis_server):
    """With redis frozen for 1 s and a 0.4 s deadline, every purchase in flight outlives its
    deadline inside admission; the units reserved are exactly those answered 202."""
    sale = make_sale(client, stock=STOCK, per_user_limit=5)
    buyers = [signup(client, f"buyer{index}") for index in range(BUYERS)]
    url = f"{shop.url}/api/v1/sales/{sale['id']}/orders"

    def purchase(headers) -> int:
        return requests.post(
            url,
            json={"quantity": 1},
            timeout=30,
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        ).status_code

    with ThreadPoolExecutor(max_workers=BUYERS) as pool:
        # Each buyer once, unfrozen: its token is verified and remembered by the worker, so
        # below the first thing a purchase waits on is its admission.
        assert set(pool.map(purchase, buyers)) == {202}
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            answers = [pool.submit(purchase, headers) for headers in buyers]
            time.sleep(FROZEN_S)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        statuses = [answer.result() for answer in answers]
        elapsed = time.monotonic() - started
    assert elapsed > FROZEN_S > DEADLINE_S  # every one of them was in flight past its deadline
    assert set(statuses) <= {202, 503}, statuses
    remaining = client.get(f"/api/v1/sales/{sale['id']}").get_json()["remaining"]
    reserved_now = STOCK - BUYERS - remaining
    assert reserved_now == statuses.count(202), (statuses, remaining)
    assert statuses.count(202) == BUYERS, statuses  # the deferred deadline let each answer
    assert buy(client, sale, buyers[0]).status_code == 202  # and the shop goes on
