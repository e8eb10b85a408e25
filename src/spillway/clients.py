"""The redis and memcached clients the runtime gives every app, bound in its extension.

Both are pure Python, so they are cooperative under gevent (pylibmc and other C clients
would block every greenlet of a worker on each call). An app reaches them as
``spillway.clients.redis_store`` and ``spillway.clients.memcache`` (or through
``app.extensions["redis"]``, ``app.extensions["memcache"]``), bound from
``SPILLWAY_REDIS_URL`` (a redis URL, or Sentinels: spillway.redis_location) and
``SPILLWAY_MEMCACHED_SERVERS``.
"""

from flask import Flask
from flask import current_app
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient

from spillway.redis_location import connect


class _AppBound:
    """An extension whose client lives in ``app.extensions[name]``; attributes go to it."""

    name = ""

    def init_app(self, app: Flask) -> None:
        previous = app.extensions.get(self.name)
        app.extensions[self.name] = self.connect(app.config)
        if previous is not None:  # rebinding (new settings): release the old sockets
            previous.close()

    def connect(self, config):
        raise NotImplementedError

    @property
    def client(self):
        return current_app.extensions[self.name]

    def __getattr__(self, attr):
        return getattr(self.client, attr)


class RedisStore(_AppBound):
    """redis-py client with a connection pool; pure Python, so cooperative under gevent."""

    name = "redis"

    # redis-py 6+ caps its default pool at 100 connections and raises past that: 256
    # concurrent purchases on two workers answered 503s (spillway bench). A blocking pool
    # makes a greenlet wait (up to the socket timeout) for a free connection instead.
    MAX_CONNECTIONS = 512

    def connect(self, config):
        return connect(
            config["REDIS_URL"],
            self.MAX_CONNECTIONS,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            health_check_interval=30,
        )


class Memcache(_AppBound):
    """pymemcache pooled client: pure Python and green-safe, unlike pylibmc (a C client)."""

    name = "memcache"

    def connect(self, config):
        # No serde: values must be bytes or str, so nothing is ever pickled.
        # No pool cap: pymemcache raises, rather than waits, when its pool is full, which
        # under a burst of greenlets would turn hits into misses. Idle connections are
        # closed after a minute, so a burst's extra connections do not linger.
        options = {"connect_timeout": 0.5, "timeout": 0.5, "pool_idle_timeout": 60}
        servers = config["MEMCACHED_SERVERS"]
        if len(servers) == 1:
            # One server needs no hashing (a pure-Python murmur3 on every call).
            return PooledClient(servers[0], **options)
        return HashClient(
            servers, use_pooling=True, retry_attempts=1, retry_timeout=1, dead_timeout=5, **options
        )


redis_store = RedisStore()
memcache = Memcache()


def init_app(app: Flask) -> None:
    """Bind both clients to ``app`` (again, with new settings, releasing the old sockets)."""
    redis_store.init_app(app)
    memcache.init_app(app)
