"""The live stock stream over real HTTP: the app under `spillway serve` and under gunicorn's
gevent worker on a free port, on the suite's real redis, read by a real HTTP client."""

import http.client
import json
import os
import sys
import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest

from flashsale.orders import state as order_states
from flashsale.sales import binding
from spillway.clients import redis_store
from tests.factories import make_sale
from tests.factories import signup
from tests.servers import Server
from tests.servers import free_port
from tests.servers import http_ok
from tests.servers import port_open
from tests.servers import serve_argv
from tests.waiting import wait_until

HEARTBEAT_S = 0.3


class EventReader:
    """One open `text/event-stream` response, read line by line."""

    def __init__(self, port: int, path: str, timeout: float = 10.0, headers=None):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.connection.request(
            "GET", path, headers={"Accept": "text/event-stream", **(headers or {})}
        )
        self.response = self.connection.getresponse()

    def next_event(self) -> dict:
        """The next `data:` event (comments and `retry:` lines are skipped)."""
        while True:
            line = self.response.readline()
            assert line, "the stream ended"
            if line.startswith(b"data: "):
                return json.loads(line[len(b"data: ") :])

    def next_line(self) -> bytes:
        return self.response.readline()

    def close(self) -> None:
        self.connection.close()


def server_argv(kind: str, port: int) -> list[str]:
    if kind == "serve":
        return serve_argv(port, "--env", "test", "--no-access-log")
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "spillway.wsgi:app",
        "--worker-class",
        "gevent",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
    ]


@pytest.fixture
def stream_settings() -> dict:
    """Extra environment for the server; a test parametrizes it to change a setting."""
    return {}


@pytest.fixture(params=["serve", "gunicorn"])
def stream_server(request, app, service_env, tmp_path, stream_settings):
    """The app on a real gevent server (this test's redis and database); its port.

    Redis is this test's, emptied and bound to its database, and the test begins once the
    server answers /healthz, its start checks passed (both listen before they check, so
    that a taken port is one line): a sale created while a check ran once made it refuse.
    A server that exits during the test fails it with its log."""
    binding.verify()
    port = free_port()
    env = {
        **os.environ,
        **service_env,
        "SPILLWAY_ENV": "test",
        "SPILLWAY_STREAM_HEARTBEAT_S": str(HEARTBEAT_S),
        **stream_settings,
    }
    argv = server_argv(request.param, port)
    ready = http_ok(f"http://127.0.0.1:{port}/healthz")
    server = Server(request.param, argv, port, tmp_path, env=env, ready=ready)
    try:
        server.start(60)
        yield port
        if not port_open(port)():  # it closed its port, so it is on its way out: say why
            wait_until(lambda: not server.running(), 10, what=f"{request.param} exiting")
            code = server.process.returncode
            pytest.fail(f"{request.param} exited with {code} in the test:\n{server.log_tail()}")
    finally:
        server.stop(30)


def post_purchase(port: int, sale: dict, headers: dict, key: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST",
        f"/api/v1/sales/{sale['id']}/orders",
        body=json.dumps({"quantity": 1}),
        headers={**headers, "Content-Type": "application/json", "Idempotency-Key": key},
    )
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 202, body
    return body


def test_events_follow_purchases_and_returns(app, client, stream_server):
    """The first event is the state now; a purchase elsewhere and a cancel each send one."""
    sale = make_sale(client, stock=3)
    buyer = signup(client)
    reader = EventReader(stream_server, f"/api/v1/sales/{sale['id']}/stream")
    try:
        assert reader.response.status == 200
        assert reader.response.getheader("Content-Type").startswith("text/event-stream")
        assert reader.response.getheader("Cache-Control") == "no-cache"
        assert reader.response.getheader("X-Accel-Buffering") == "no"
        assert reader.next_event() == {"remaining": 3, "status": "active"}
        order = post_purchase(stream_server, sale, buyer, "one")
        assert reader.next_event() == {"remaining": 2, "status": "active"}
        outcome, _ = order_states.settle(
            order["order_id"],
            sale["id"],
            "cancelled",
            int(time.time() * 1000),
            ("pending", "confirmed"),
        )
        assert outcome == "changed"
        assert reader.next_event() == {"remaining": 3, "status": "active"}
    finally:
        reader.close()


def test_stream_speaks_when_a_sale_starts_sells_out_and_ends(app, client, stream_server):
    """Status changes reach the stream: active once starts_at passes, sold_out at zero,
    ended once ends_at passes — the clock's changes as well as the stock's."""
    starts_at = datetime.now(timezone.utc) + timedelta(seconds=5)
    scheduled = make_sale(
        client,
        stock=1,
        starts_at=starts_at.isoformat(),
        ends_at=(starts_at + timedelta(seconds=6)).isoformat(),
    )
    reader = EventReader(stream_server, f"/api/v1/sales/{scheduled['id']}/stream", timeout=20)
    try:
        assert reader.next_event() == {"remaining": 1, "status": "scheduled"}
        assert reader.next_event() == {"remaining": 1, "status": "active"}
        post_purchase(stream_server, scheduled, signup(client), "only")
        assert reader.next_event() == {"remaining": 0, "status": "sold_out"}
        assert reader.next_event() == {"remaining": 0, "status": "ended"}
    finally:
        reader.close()


def test_the_stream_reads_instants_with_any_offset_as_the_same_instant(app, client, stream_server):
    """+02:00 started an hour ago is active; -05:00 starting in an hour is scheduled (SQLite
    once stored the local time as UTC, and the stream said scheduled for two hours)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    east, west = timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))
    cases = [
        (now - timedelta(hours=1), east, "active"),
        (now + timedelta(hours=1), west, "scheduled"),
    ]
    for starts, zone, status in cases:
        sale = make_sale(
            client,
            stock=2,
            starts_at=starts.astimezone(zone).isoformat(),
            ends_at=(starts + timedelta(hours=3)).astimezone(zone).isoformat(),
        )
        reader = EventReader(stream_server, f"/api/v1/sales/{sale['id']}/stream")
        try:
            assert reader.next_event() == {"remaining": 2, "status": status}, zone
        finally:
            reader.close()


def test_unknown_sale_is_a_json_404(stream_server):
    """An unknown or malformed sale id answers the JSON error shape, not a stream."""
    for sale_id in ("999999", "nope"):
        connection = http.client.HTTPConnection("127.0.0.1", stream_server, timeout=10)
        connection.request("GET", f"/api/v1/sales/{sale_id}/stream")
        response = connection.getresponse()
        assert response.status == 404
        assert response.getheader("Content-Type").startswith("application/json")
        assert json.loads(response.read())["error"]["code"] == "not_found"
        connection.close()


def test_idle_stream_sends_heartbeats(app, client, stream_server):
    """With nothing to say, a stream still sends a comment line now and then."""
    sale = make_sale(client)
    reader = EventReader(stream_server, f"/api/v1/sales/{sale['id']}/stream")
    try:
        reader.next_event()
        lines = [reader.next_line() for _ in range(4)]
        assert b": ping\n" in lines
    finally:
        reader.close()


def server_connections(port: int) -> int:
    """Server-side TCP sockets on ``port`` still open (established or half-closed)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, _, state = row.split()[1:4]
                if int(local.rsplit(":", 1)[1], 16) == port and state in ("01", "08"):
                    count += 1
    return count


def poller_reads() -> int:
    """The HMGETs redis has served: the poller reads its sales' stock with one each."""
    return int(redis_store.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


def redis_reads_stopped() -> bool:
    """No HMGET reaches redis for a second (only the poller sends them here)."""
    before = poller_reads()
    time.sleep(1.0)
    return poller_reads() == before


def test_disconnected_clients_are_unsubscribed(app, client, stream_server):
    """Clients that leave end their greenlets: the server closes every socket, and the
    poller, with no sale left to watch, stops reading redis."""
    sales = [make_sale(client) for _ in range(2)]
    readers = [
        EventReader(stream_server, f"/api/v1/sales/{sales[n % 2]['id']}/stream") for n in range(40)
    ]
    for reader in readers:
        reader.next_event()
    assert server_connections(stream_server) >= 40
    before = poller_reads()
    wait_until(lambda: poller_reads() > before, timeout=10)  # the poller is reading
    for reader in readers:
        reader.close()
    wait_until(lambda: server_connections(stream_server) == 0, timeout=30)
    # Once every watch is gone the poller ends: the count of reads stands still.
    wait_until(redis_reads_stopped, timeout=30)


@pytest.mark.parametrize("stream_settings", [{"SPILLWAY_STREAM_MAX_LIFETIME_S": "1.5"}])
def test_a_stream_ends_cleanly_after_its_lifetime(app, client, stream_server):
    """A stream that lived SPILLWAY_STREAM_MAX_LIFETIME_S (here 1.5 s, less a tenth at most
    so that streams opened together do not reconnect together) ends as a complete answer;
    the browser's EventSource reconnects after the `retry:` it was sent."""
    sale = make_sale(client)
    started = time.monotonic()
    reader = EventReader(stream_server, f"/api/v1/sales/{sale['id']}/stream")
    try:
        assert reader.next_line() == b"retry: 2000\n"
        lines = []
        while line := reader.next_line():  # b"" once the server ends the body cleanly
            lines.append(line)
        lived = time.monotonic() - started
        assert 1.3 <= lived < 6, lived
        assert b": ping\n" in lines and any(line.startswith(b"data: ") for line in lines)
    finally:
        reader.close()
    again = EventReader(stream_server, f"/api/v1/sales/{sale['id']}/stream")
    try:
        assert again.next_event()
    finally:
        again.close()


def open_from(port: int, sale: dict, address: str) -> EventReader:
    return EventReader(
        port, f"/api/v1/sales/{sale['id']}/stream", headers={"X-Forwarded-For": address}
    )


def assert_refused(reader: EventReader, status: int, code: str):
    assert reader.response.status == status
    assert reader.response.getheader("Content-Type").startswith("application/json")
    assert reader.response.getheader("Retry-After") == "10"
    assert json.loads(reader.response.read())["error"]["code"] == code
    reader.close()


@pytest.mark.parametrize(
    "stream_settings",
    [
        {
            "SPILLWAY_RATE_LIMITS": "on",
            "SPILLWAY_STREAMS_PER_ADDRESS": "3",
            "SPILLWAY_STREAMS_PER_WORKER": "5",
        }
    ],
)
def test_streams_are_capped_per_address_and_per_worker(app, client, stream_server):
    """With limits on, one address holds at most SPILLWAY_STREAMS_PER_ADDRESS streams (429
    beyond) and the process SPILLWAY_STREAMS_PER_WORKER (503 beyond), as JSON with
    Retry-After; a stream that ends gives its place back."""
    sale = make_sale(client)
    held = [open_from(stream_server, sale, "10.0.0.1") for _ in range(3)]
    for reader in held:
        reader.next_event()
    assert_refused(open_from(stream_server, sale, "10.0.0.1"), 429, "rate_limited")
    held += [open_from(stream_server, sale, "10.0.0.2") for _ in range(2)]
    for reader in held[3:]:
        reader.next_event()
    assert_refused(open_from(stream_server, sale, "10.0.0.3"), 503, "unavailable")
    held.pop(0).close()  # noticed at its next heartbeat, then its place is free
    reopened = wait_until(
        lambda: (
            (r := open_from(stream_server, sale, "10.0.0.1")).response.status == 200
            and r
            or r.close()
        ),
        timeout=10,
    )
    assert reopened.next_event()
    for reader in [*held, reopened]:
        reader.close()


@pytest.mark.parametrize("stream_settings", [{"SPILLWAY_STREAMS_PER_WORKER": "4"}])
def test_with_limits_off_only_the_worker_cap_holds(app, client, stream_server):
    """SPILLWAY_RATE_LIMITS=off (load tests from one address): no per-address cap, so one
    address opens as many streams as the worker's cap allows."""
    sale = make_sale(client)
    held = [open_from(stream_server, sale, "10.0.0.1") for _ in range(4)]
    for reader in held:
        reader.next_event()
    assert_refused(open_from(stream_server, sale, "10.0.0.1"), 503, "unavailable")
    for reader in held:
        reader.close()
