"""SPILLWAY_REDIS_DURABILITY on a real primary and replica: a purchase is answered 202
only once its reservation is on the replica too; a replica that does not confirm in time
turns purchases into clean 503s, and a retry with the same key finds the same order.

The replica is frozen (SIGSTOP) rather than killed: connected but silent is the case a
timeout has to cover (a dead one is simply not counted, and fails the same way at once).
"""

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import gevent
import pytest
import redis
import requests

from spillway.redis_batch import CommandBatcher
from spillway.redis_durability import Durability
from spillway.redis_durability import NotDurable
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.servers import aof_redis
from tests.servers import gunicorn_server
from tests.servers import start_redis
from tests.servers import start_replica

REPLICA = Durability("replica", replicas=1, timeout_ms=100)


@pytest.fixture
def primary(tmp_path):
    server = start_redis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def replica(tmp_path, primary):
    server = start_replica(tmp_path, primary)
    yield server
    os.kill(server.process.pid, signal.SIGCONT)  # a test that froze it may have failed
    server.stop()


class frozen:
    """The replica stopped (SIGSTOP) for the block: connected, but acknowledging nothing."""

    def __init__(self, server):
        self.pid = server.process.pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
def service_env(service_env, primary, replica):
    """The suite's environment on this test's primary, waiting for its replica."""
    url = f"redis://127.0.0.1:{primary.port}"
    return {
        **service_env,
        "SPILLWAY_REDIS_URL": f"{url}/0",
        "SPILLWAY_BROKER_URL": f"{url}/1",
        "SPILLWAY_REDIS_DURABILITY": "replica",
        "SPILLWAY_REDIS_DURABILITY_TIMEOUT_MS": "100",
    }


def outcomes(batcher: CommandBatcher, commands: list[tuple[tuple, bool]]) -> list:
    """Each (command, durable) from its own greenlet, all in one batch: reply or exception."""

    def one(command, durable):
        try:
            return batcher.execute(*command, durable=durable)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            return exc

    greenlets = [gevent.spawn(one, command, durable) for command, durable in commands]
    with gevent.Timeout(20):
        gevent.joinall(greenlets, raise_error=True)
    return [greenlet.value for greenlet in greenlets]


def test_a_batch_of_durable_writes_waits_once_for_the_replica(primary, replica):
    client = redis.Redis(port=primary.port, socket_timeout=2)
    batcher = CommandBatcher(client, REPLICA)
    commands = [(("INCR", "n"), True)] * 20 + [(("GET", "n"), False)]
    replies = outcomes(batcher, commands)
    assert sorted(replies[:20]) == list(range(1, 21))
    assert redis.Redis(port=replica.port).get("n") == b"20"  # there before the replies


def test_a_silent_replica_fails_the_durable_writes_only(primary, replica):
    client = redis.Redis(port=primary.port, socket_timeout=2)
    client.set("plain", "before")
    batcher = CommandBatcher(client, REPLICA)
    with frozen(replica):
        replies = outcomes(batcher, [(("INCR", "n"), True), (("GET", "plain"), False)])
        assert isinstance(replies[0], NotDurable), replies[0]
        assert "0 of 1 redis replicas within 100 ms" in str(replies[0])
        assert replies[1] == b"before"  # a read waits for nothing
        assert client.get("n") == b"1"  # the write is not undone: a retry must find it
    assert outcomes(batcher, [(("INCR", "n"), True)]) == [2]  # confirmed again once it acks


def test_fsync_needs_waitaof_and_an_aof(tmp_path):
    """``fsync`` is WAITAOF: redis 7.2 or later, with appendonly on. Debian's 7.0 has no
    WAITAOF; whichever redis this is, a write never gets a reply the policy did not
    confirm: confirmed, or NotDurable naming why."""
    server = aof_redis(tmp_path, tmp_path / "aof").start()
    try:
        client = redis.Redis(port=server.port, socket_timeout=2)
        version = tuple(int(part) for part in client.info("server")["redis_version"].split("."))
        batcher = CommandBatcher(client, Durability("fsync", timeout_ms=500))
        [reply] = outcomes(batcher, [(("INCR", "n"), True)])
        if version >= (7, 2):
            assert reply == 1
        else:
            assert isinstance(reply, NotDurable) and "WAITAOF" in str(reply).upper(), reply
    finally:
        server.stop()


def test_in_process_purchase_waits_for_the_replica(app, client, replica):
    """Not patched by gevent, the app sends the script and the wait in one pipeline."""
    sale = make_sale(client, stock=5)
    buyer = signup(client)
    assert buy(client, sale, buyer, key="first").status_code == 202
    with frozen(replica):
        refused = buy(client, sale, buyer, key="second")
    assert refused.status_code == 503, refused.get_json()
    assert refused.get_json()["error"]["code"] == "unavailable"
    assert refused.headers["Retry-After"] == "1"
    again = buy(client, sale, buyer, key="second")  # the reservation survived on the primary
    assert again.status_code == 200, again.get_json()
    stats = client.get(f"/api/v1/sales/{sale['id']}", headers=admin_headers()).get_json()
    assert stats["remaining"] == 3  # two purchases, each reserved once


def test_gevent_workers_answer_202_only_what_the_replica_holds(
    app, client, service_env, replica, tmp_path
):
    """gunicorn's gevent workers batch the purchases and wait once per batch. While the
    replica is silent every purchase is a 503; retried with their keys afterwards, each
    gets one order, and the sale sold each unit once."""
    env = {**os.environ, **service_env, "SPILLWAY_ENV": "test"}
    web = gunicorn_server(tmp_path, env).start(60)
    try:
        sale = make_sale(client, stock=100, per_user_limit=100)
        buyer = signup(client)
        url = f"{web.url}/api/v1/sales/{sale['id']}/orders"

        def purchase(key: str) -> requests.Response:
            return requests.post(
                url, json={"quantity": 1}, headers={**buyer, "Idempotency-Key": key}, timeout=30
            )

        with ThreadPoolExecutor(16) as pool:
            accepted = list(pool.map(purchase, [f"up-{n}" for n in range(40)]))
            assert {answer.status_code for answer in accepted} == {202}
            with frozen(replica):
                refused = list(pool.map(purchase, [f"frozen-{n}" for n in range(40)]))
            assert {answer.status_code for answer in refused} == {503}
            assert {answer.headers["Retry-After"] for answer in refused} == {"1"}
            retried = list(pool.map(purchase, [f"frozen-{n}" for n in range(40)]))
        assert {answer.status_code for answer in retried} == {200}  # found, not made again
        orders = {answer.json()["order_id"] for answer in accepted + retried}
        assert len(orders) == 80
        stats = client.get(f"/api/v1/sales/{sale['id']}", headers=admin_headers()).get_json()
        assert stats["remaining"] == 20
    finally:
        web.stop()
