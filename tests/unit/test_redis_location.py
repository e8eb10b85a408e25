"""SPILLWAY_REDIS_URL's Sentinel form, and how each client of the runtime's redis spells
the same Sentinels (redis-py, kombu, redbeat)."""

import pytest

from spillway.celery_app import base_config
from spillway.redis_location import SentinelAddress
from spillway.redis_location import sentinel_address
from spillway.settings import SettingsError
from spillway.settings import runtime


def test_a_plain_redis_url_names_no_sentinels():
    assert sentinel_address("redis://127.0.0.1:6379/0") is None
    assert sentinel_address("unix:///run/redis.sock?db=0") is None


def test_sentinels_master_db_and_password():
    assert sentinel_address("redis+sentinel://:s%40cret@a:26380,b/shop/2") == SentinelAddress(
        (("a", 26380), ("b", 26379)), "shop", 2, "s@cret"
    )


@pytest.mark.parametrize(
    "url, says",
    [
        ("redis+sentinel://a:26379", "master-name"),
        ("redis+sentinel://a:port/shop", "not a Sentinel port"),
        ("redis+sentinel://a/shop/zero", "not a redis database number"),
    ],
)
def test_a_malformed_sentinel_url_is_one_settings_error(monkeypatch, url, says):
    monkeypatch.setenv("SPILLWAY_REDIS_URL", url)
    with pytest.raises(SettingsError, match=says):
        runtime("dev")


def test_celery_gets_kombus_and_redbeats_spelling_of_the_same_sentinels():
    config = base_config("redis+sentinel://:pw@a:1,b:2/shop/1")
    assert config["broker_url"] == "sentinel://:pw@a:1/1;sentinel://:pw@b:2/1"
    assert config["broker_transport_options"]["master_name"] == "shop"
    assert config["broker_transport_options"]["visibility_timeout"] == 3600
    assert config["redbeat_redis_url"] == "redis-sentinel://"
    options = config["redbeat_redis_options"]
    assert (options["sentinels"], options["service_name"], options["db"]) == (
        [("a", 1), ("b", 2)],
        "shop",
        1,
    )
    assert options["password"] == "pw" and options["socket_timeout"] == 5.0
    assert options["sentinel_kwargs"] == {"password": "pw"}
    assert config["broker_transport_options"]["sentinel_kwargs"] == {"password": "pw"}


def test_the_rate_limiter_asks_the_same_sentinels_for_the_master_by_its_name(monkeypatch):
    # `limits` reads the whole path as the master's name: "shop/2" would name no master.
    monkeypatch.setenv("SPILLWAY_REDIS_URL", "redis+sentinel://:pw@a:1,b:2/shop/2")
    config = runtime("dev")
    assert config["RATELIMIT_STORAGE_URI"] == "redis+sentinel://:pw@a:1,b:2/shop"
    assert config["RATELIMIT_STORAGE_OPTIONS"]["db"] == 2


def test_the_rate_limiter_spells_a_unix_socket_its_own_way(monkeypatch):
    monkeypatch.setenv("SPILLWAY_REDIS_URL", "unix:///run/redis.sock?db=0")
    assert runtime("dev")["RATELIMIT_STORAGE_URI"] == "redis+unix:///run/redis.sock?db=0"
