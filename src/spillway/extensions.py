"""Every shared client, created here unbound and bound to an app only in the factory."""

from datetime import datetime

import redis
from celery import Celery
from celery import Task
from flask import Flask
from flask import current_app
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from sqlalchemy import BigInteger
from sqlalchemy import Integer
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import registry

from spillway.clock import UtcDateTime
from spillway.errors import ErrorSchema


# A 64-bit id (PostgreSQL's integer is 32 bits); SQLite's own INTEGER PRIMARY KEY is 64
# bits already and must stay spelled so to remain the rowid.
ID_COLUMN = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    """Base of every model: SQLAlchemy 2 typed declarative mapping; every datetime column
    stores UTC (spillway.clock.UtcDateTime)."""

    registry = registry(type_annotation_map={datetime: UtcDateTime})


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
        return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            config["REDIS_URL"],
            max_connections=self.MAX_CONNECTIONS,
            timeout=2.0,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            health_check_interval=30,
        ))


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
        return HashClient(servers, use_pooling=True, retry_attempts=1, retry_timeout=1,
                          dead_timeout=5, **options)


class FlaskCelery:
    """A Celery app per Flask app, whose tasks run inside that app's context."""

    name = "celery"

    def init_app(self, app: Flask) -> Celery:
        class FlaskTask(Task):
            def __call__(self, *args, **kwargs):
                with app.app_context():
                    return self.run(*args, **kwargs)

        celery_app = Celery(app.import_name, task_cls=FlaskTask)
        celery_app.config_from_object(app.config["CELERY"])
        celery_app.set_default()
        app.extensions[self.name] = celery_app
        return celery_app


class SpillwayApi(Api):
    """flask-smorest's request validation and OpenAPI document, with our error shape.

    Its own HTTPException handler is not registered: spillway.errors answers every error,
    and the document describes that shape.
    """

    ERROR_SCHEMA = ErrorSchema
    # No catch-all "default" response: each view declares its statuses (spillway.apidoc).
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self):
        pass


# SQLite's busy wait is a sleep in C: in a gevent process it freezes every greenlet, so
# one request waiting for a locked database stalled every purchase on its worker for the
# whole wait (tests/faults/test_database_down.py). Web processes give up soon (the client
# gets 503 + Retry-After); Celery's prefork workers block nobody else and wait longer.
SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_BUSY_TIMEOUT_MS_GEVENT = 250


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, _record):
    """WAL lets readers run beside the one writer; busy_timeout waits instead of failing."""
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    from gevent import monkey

    green = monkey.is_module_patched("time")
    busy_ms = SQLITE_BUSY_TIMEOUT_MS_GEVENT if green else SQLITE_BUSY_TIMEOUT_MS
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    # Enforced as on PostgreSQL: an order of a sale this ledger does not have is refused
    # (and set aside: orders/ledger.py), not stored.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = SpillwayApi()
redis_store = RedisStore()
memcache = Memcache()
celery = FlaskCelery()
