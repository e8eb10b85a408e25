"""redbeat reaches the broker's redis with redis-py, which does not read kombu's
``redis+socket://`` URLs (what `spillway up` gives the broker): base_config translates."""

from spillway.celery_app import base_config
from spillway.celery_app import redis_py_url


def test_kombus_socket_url_is_redis_pys_unix_url():
    """The socket path kept, ``virtual_host`` (kombu's db) is ``db``."""
    assert (
        redis_py_url("redis+socket:///srv/run/sockets/redis.sock?virtual_host=1")
        == "unix:///srv/run/sockets/redis.sock?db=1"
    )


def test_tcp_urls_are_left_alone_and_an_explicit_url_wins():
    """``redis://`` means the same to both; an app may put beat's lock elsewhere."""
    assert (
        base_config("redis://127.0.0.1:6379/1")["redbeat_redis_url"] == "redis://127.0.0.1:6379/1"
    )
    assert (
        base_config("redis://a/1", beat_redis_url="redis://b/2")["redbeat_redis_url"]
        == "redis://b/2"
    )
