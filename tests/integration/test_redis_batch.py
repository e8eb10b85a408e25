"""Auto-pipelining (spillway.redis_batch) on a real redis: every greenlet gets its own
reply, an error reply stays with its command, and a dead or frozen redis fails every
waiter promptly instead of leaving one hanging.

This process is not patched by gevent, so a batch's socket I/O blocks the thread; greenlets
still queue their commands before the sender runs, which is what batching needs. The
patched path (gunicorn's gevent workers) is exercised by the e2e and fault tests.
"""

import json
import signal
import subprocess
import sys

import gevent
import pytest
import redis
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import ResponseError

from flashsale.sales import stock
from spillway import redis_batch
from spillway import redis_scripts
from spillway.redis_batch import CommandBatcher
from tests.factories import make_sale
from tests.factories import signup
from tests.servers import start_redis


def client_for(port: int, socket_timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(
        connection_pool=redis.BlockingConnectionPool(
            host="127.0.0.1",
            port=port,
            max_connections=8,
            timeout=1.0,
            socket_timeout=socket_timeout,
            socket_connect_timeout=1.0,
        )
    )


def run_all(batcher: CommandBatcher, commands: list[tuple]) -> list:
    """Execute ``commands`` from one greenlet each; each outcome is a reply or an exception."""

    def one(command):
        try:
            return batcher.execute(*command)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            return exc

    greenlets = [gevent.spawn(one, command) for command in commands]
    with gevent.Timeout(20):  # nobody may be left waiting
        gevent.joinall(greenlets, raise_error=True)
    return [greenlet.value for greenlet in greenlets]


@pytest.fixture
def counted_sends(monkeypatch):
    """How many batches went out, and their sizes."""
    sizes = []
    send = CommandBatcher._send

    def counting(self, batch):
        sizes.append(len(batch))
        return send(self, batch)

    monkeypatch.setattr(CommandBatcher, "_send", counting)
    return sizes


def test_concurrent_commands_share_batches_and_each_gets_its_reply(redis_server, counted_sends):
    client = client_for(redis_server.port)
    client.delete("batch:counter")
    replies = run_all(CommandBatcher(client), [("INCR", "batch:counter")] * 300)
    assert sorted(replies) == list(range(1, 301))  # each command ran once, in some order
    assert sum(counted_sends) == 300
    assert len(counted_sends) <= 300 // redis_batch.MAX_BATCH + 1  # together, not one by one
    assert max(counted_sends) == redis_batch.MAX_BATCH


def test_batch_sizes_are_measured(redis_server):
    """spillway_redis_batch_commands: _sum ÷ _count is the commands per round trip."""

    def sample(suffix):
        return REGISTRY.get_sample_value(f"spillway_redis_batch_commands_{suffix}") or 0.0

    before = sample("sum"), sample("count")
    run_all(CommandBatcher(client_for(redis_server.port)), [("PING",)] * 10)
    assert (sample("sum") - before[0], sample("count") - before[1]) == (10, 1)


def test_an_error_reply_fails_only_its_own_command(redis_server, counted_sends):
    client = client_for(redis_server.port)
    client.delete("batch:n")
    client.hset("batch:hash", "field", "1")
    replies = run_all(
        CommandBatcher(client),
        [
            ("INCR", "batch:n"),
            ("INCR", "batch:hash"),
            ("INCR", "batch:n"),
            ("EVALSHA", "0" * 40, 0),
        ],
    )
    assert replies[0] == 1 and replies[2] == 2
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
    assert isinstance(replies[3], NoScriptError)
    assert counted_sends == [4]
    assert CommandBatcher(client).execute("GET", "batch:n") == b"2"  # the stream stayed in step


def test_redis_down_fails_every_waiter_and_recovers(tmp_path):
    server = start_redis(tmp_path)
    batcher = CommandBatcher(client_for(server.port))
    assert run_all(batcher, [("PING",)] * 5) == [b"PONG"] * 5
    server.kill()
    failures = run_all(batcher, [("SET", f"k{n}", n) for n in range(50)])
    assert all(isinstance(failure, ConnectionError) for failure in failures), failures
    restarted = start_redis(tmp_path)
    try:
        batcher = CommandBatcher(client_for(restarted.port))
        assert sorted(run_all(batcher, [("INCR", "after")] * 10)) == list(range(1, 11))
    finally:
        restarted.stop()


# Run in a fresh interpreter patched by gevent, as in a gunicorn worker: greenlets keep
# queueing while a batch waits on the socket.
PATCHED_SCENARIO = """
from spillway import gevent_boot
import json, sys, time
import gevent, redis
from spillway.redis_batch import CommandBatcher

sizes = []
send = CommandBatcher._send
CommandBatcher._send = lambda self, batch: sizes.append(len(batch)) or send(self, batch)
client = redis.Redis(connection_pool=redis.BlockingConnectionPool(
    host="127.0.0.1", port=int(sys.argv[1]), max_connections=8, timeout=1.0,
    socket_timeout=0.5))
batcher = CommandBatcher(client)

def one(n):
    try:
        return batcher.execute("INCR", "patched")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

started = time.monotonic()
first = [gevent.spawn(one, n) for n in range(int(sys.argv[2]))]
gevent.sleep(0.05)  # the first batch is on the wire
behind = [gevent.spawn(one, n) for n in range(int(sys.argv[3]))]
gevent.joinall(first + behind, timeout=20)
print(json.dumps({"first": [g.value for g in first], "behind": [g.value for g in behind],
                  "sizes": sizes, "seconds": time.monotonic() - started}))
"""


def run_patched(port: int, first: int, behind: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PATCHED_SCENARIO, str(port), str(first), str(behind)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_under_gevent_greenlets_batch_while_a_batch_is_in_flight(redis_server):
    redis.Redis(port=redis_server.port).delete("patched")
    outcome = run_patched(redis_server.port, first=200, behind=200)
    assert sorted(outcome["first"] + outcome["behind"]) == list(range(1, 401))
    assert sum(outcome["sizes"]) == 400 and len(outcome["sizes"]) < 40, outcome["sizes"]


def test_frozen_redis_times_out_the_batch_and_refuses_those_queued_behind_it(tmp_path):
    server = start_redis(tmp_path)
    server.process.send_signal(signal.SIGSTOP)
    try:
        outcome = run_patched(server.port, first=3, behind=30)
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()
    assert all(reply.startswith("TimeoutError") for reply in outcome["first"]), outcome
    # Queued behind a connection that failed: refused at once as never sent, rather than
    # each timing out in turn (one socket timeout is 0.5 s here).
    assert all(reply.startswith("ConnectionError: not sent") for reply in outcome["behind"])
    assert outcome["seconds"] < 5


def test_admission_reloads_a_script_redis_forgot(app, client, monkeypatch):
    """After SCRIPT FLUSH (a redis restart) the batched EVALSHA gets NOSCRIPT, which means it
    did not run: the script is loaded again and the purchase goes through once."""
    batcher = CommandBatcher(app.extensions["redis"])
    monkeypatch.setattr(redis_scripts, "batcher_for", lambda client, registry, durability: batcher)
    sale = make_sale(client, stock=5)
    buyer = signup(client)
    assert (
        client.post(
            f"/api/v1/sales/{sale['id']}/orders", json={"quantity": 1}, headers=buyer
        ).status_code
        == 202
    )
    app.extensions["redis"].script_flush()
    assert (
        client.post(
            f"/api/v1/sales/{sale['id']}/orders", json={"quantity": 1}, headers=buyer
        ).status_code
        == 202
    )
    assert stock.sale_state(int(sale["id"]))["remaining"] == 3


def test_batching_only_where_gevent_patched(app):
    """The test process is not patched: admission goes straight through redis-py."""
    assert redis_batch.batcher_for(app.extensions["redis"], {}) is None


def test_batching_off_sends_each_command_alone(app, client, monkeypatch):
    """SPILLWAY_REDIS_BATCHING=off: admission never touches a batcher."""

    def no_batcher(client, registry, durability):
        raise AssertionError("batching is off")

    monkeypatch.setattr(redis_scripts, "batcher_for", no_batcher)
    monkeypatch.setitem(app.config, "REDIS_BATCHING", False)
    sale = make_sale(client, stock=2)
    assert (
        client.post(
            f"/api/v1/sales/{sale['id']}/orders", json={"quantity": 1}, headers=signup(client)
        ).status_code
        == 202
    )
