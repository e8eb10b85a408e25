"""Every error is the API's JSON shape; a dependency that is down is a 503, not a 500."""

import io
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from spillway.clients import redis_store
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.servers import Server
from tests.servers import binary
from tests.servers import free_port
from tests.waiting import wait_until


@pytest.mark.parametrize(
    "method, path, status, code",
    [
        ("GET", "/no/such/path", 404, "not_found"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("GET", "/demo/slow?seconds=61", 400, "invalid_request"),
        ("GET", "/demo/slow?seconds=-1", 400, "invalid_request"),
        ("GET", "/demo/slow?seconds=nan", 400, "invalid_request"),
        ("GET", "/demo/slow?seconds=ten", 400, "invalid_request"),
    ],
)
def test_errors_are_json(client, method, path, status, code):
    """Unknown paths, wrong methods and bad arguments answer JSON with a code."""
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]


def test_method_not_allowed_says_what_is(client):
    """A 405 carries the Allow header."""
    response = client.post("/healthz")
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_413_json(client):
    """A body over 64 KiB is refused as JSON."""
    response = client.post(
        "/api/v1/users", data=b"x" * (64 * 1024 + 1), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_unexpected_exception_is_json_500_without_traceback(app, client, caplog):
    """A bug answers a JSON 500 that leaks nothing; the log has it, with its stack."""

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR, logger="spillway.errors"):
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "secret detail" not in response.get_data(as_text=True)
    (logged,) = [r for r in caplog.records if r.name == "spillway.errors"]
    assert logged.exc_info and "secret detail" in logged.exc_text
    assert "in boom" in logged.exc_text  # the stack reaches the view's frame


def test_redis_down_is_503_with_retry_after(app, client):
    """A request whose redis is unreachable gets 503 unavailable and Retry-After."""
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    redis_store.init_app(app)

    @app.get("/needs-redis")
    def needs_redis():
        return {"value": redis_store.get("x")}

    response = client.get("/needs-redis")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "unavailable"


def test_demo_index_and_quick_slow(client):
    """The demo answers plain text; seconds=0 returns at once."""
    assert client.get("/demo/index").get_data(as_text=True) == "Beijing"
    assert client.get("/demo/slow?seconds=0").get_data(as_text=True) == "Hello World!"


@contextmanager
def refusing_writes(how: str):
    """Make the suite's shared redis refuse writes one way, and undo it afterwards."""
    if how == "OOM":  # noeviction (the default) past maxmemory: every write is refused
        redis_store.config_set("maxmemory", "1")
    elif how == "READONLY":  # a replica of a master that never answers
        redis_store.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    elif how == "NOREPLICAS":
        redis_store.config_set("min-replicas-to-write", "1")
    try:
        yield
    finally:
        redis_store.config_set("maxmemory", "0")
        redis_store.execute_command("REPLICAOF", "NO", "ONE")
        redis_store.config_set("min-replicas-to-write", "0")


def assert_unavailable(response):
    assert response.status_code == 503, (response.status_code, response.get_data()[:300])
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"


def chunked_purchase(client, sale, headers):
    """No Content-Length: the fast path leaves the purchase to the Flask view."""
    return client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        input_stream=io.BytesIO(b'{"quantity": 1}'),
        headers={**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )


@pytest.mark.parametrize("how", ["OOM", "READONLY", "NOREPLICAS"])
def test_a_redis_that_refuses_writes_is_503(app, client, how):
    """Out of memory, a read-only replica, too few replicas: redis is up but refuses writes,
    which is a dependency that is down (503, Retry-After), not a 500. Purchases (both paths)
    and sale creation need a redis write; signup and product writes do not (a cache is
    invalidated by DEL, which redis still allows), so they go on. Writes resume after."""
    sale = make_sale(client, stock=10, per_user_limit=10)
    buyer = signup(client)
    ends_at = sale["ends_at"]
    with refusing_writes(how):
        assert_unavailable(buy(client, sale, buyer))
        assert_unavailable(chunked_purchase(client, sale, buyer))
        assert_unavailable(
            client.post(
                "/api/v1/sales",
                headers=admin_headers(),
                json={"product_id": sale["product_id"], "stock": 1, "ends_at": ends_at},
            )
        )
        assert client.post("/api/v1/users", json={"name": "x"}).status_code == 201
        assert (
            client.patch(
                "/api/v1/products/1", json={"name": "y"}, headers=admin_headers()
            ).status_code
            == 200
        )
    assert buy(client, sale, buyer).status_code == 202
    assert client.get(f"/api/v1/sales/{sale['id']}").get_json()["remaining"] == 9


@pytest.fixture
def unsavable_redis(server_logs):
    """A redis with a save point whose snapshot can never be written: its directory is
    not writable by it (run as nobody when the suite is root, which ignores modes)."""
    data = Path(tempfile.mkdtemp(prefix="spillway-unsavable-"))
    as_root = os.geteuid() == 0
    data.chmod(0o755 if as_root else 0o555)
    ids = {"user": 65534, "group": 65534, "extra_groups": []} if as_root else {}
    port = free_port()
    server = Server(
        "redis-unsavable",
        [
            binary("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "3600 1",
            "--appendonly",
            "no",
            "--dir",
            str(data),
        ],
        port,
        server_logs,
        **ids,
    ).start()
    yield server
    server.kill()  # SIGTERM would try a last snapshot, fail, and refuse to exit
    data.chmod(0o755)
    shutil.rmtree(data, ignore_errors=True)


def test_a_redis_whose_snapshot_failed_is_503(app, client, unsavable_redis):
    """MISCONF (stop-writes-on-bgsave-error after a failed snapshot), which redis-py has no
    class for, is a 503 on both purchase paths, not a 500."""
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{unsavable_redis.port}/0"
    redis_store.init_app(app)
    sale = make_sale(client)
    buyer = signup(client)
    redis_store.bgsave()
    wait_until(lambda: redis_store.info("persistence")["rdb_last_bgsave_status"] == "err")
    assert_unavailable(buy(client, sale, buyer))
    assert_unavailable(chunked_purchase(client, sale, buyer))
