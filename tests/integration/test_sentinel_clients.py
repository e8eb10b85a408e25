"""Every client the runtime makes from one Sentinel URL with a password reaches the same
primary and database through real Sentinels that ask for it too: redis-py's, the rate
limiter's (``limits`` read ``…/spillway/2`` as a master named "spillway2" and, its errors
swallowed, stopped limiting) and kombu's."""

import kombu
import pytest
import redis
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from spillway.celery_app import base_config
from spillway.redis_location import connect
from spillway.settings import runtime
from tests.servers import Server
from tests.servers import free_port
from tests.servers import memory_only_redis_argv
from tests.servers import start_sentinels

PASSWORD = "sentinel-test-password"


@pytest.fixture(scope="module")
def sentinel_url(tmp_path_factory):
    logs = tmp_path_factory.mktemp("sentinel-clients")
    port = free_port()
    argv = memory_only_redis_argv(port, logs / "primary", "--requirepass", PASSWORD)
    primary = Server("primary", argv, port, logs).start()
    sentinels = start_sentinels(logs, primary, count=1, password=PASSWORD)
    try:
        yield f"redis+sentinel://:{PASSWORD}@127.0.0.1:{sentinels[0].port}/spillway/2", port
    finally:
        for server in (*sentinels, primary):
            server.stop()


def in_db(port: int, db: int) -> list[bytes]:
    return redis.Redis(port=port, password=PASSWORD, db=db).keys()


def test_the_apps_client_writes_to_the_urls_database(sentinel_url):
    url, port = sentinel_url
    client = connect(url)
    client.set("through-sentinel", "1")
    assert b"through-sentinel" in in_db(port, 2)


def test_the_rate_limiter_counts_in_the_same_redis_and_limits(sentinel_url, monkeypatch):
    url, port = sentinel_url
    monkeypatch.setenv("SPILLWAY_REDIS_URL", url)
    config = runtime("dev")
    storage = storage_from_string(
        config["RATELIMIT_STORAGE_URI"], **config["RATELIMIT_STORAGE_OPTIONS"]
    )
    limiter = FixedWindowRateLimiter(storage)
    assert [limiter.hit(parse("2/minute"), "buyer") for _ in range(3)] == [True, True, False]
    assert any(b"buyer" in key for key in in_db(port, 2))


def test_kombu_reaches_the_primary_through_the_same_sentinels(sentinel_url):
    url, _port = sentinel_url
    config = base_config(url)
    with kombu.Connection(
        config["broker_url"], transport_options=config["broker_transport_options"]
    ) as connection:
        connection.ensure_connection(max_retries=3)
        assert connection.default_channel.client.ping()
