"""The shop's shared singletons, created unbound and bound to an app only in the factory
(redis and memcached are the runtime's: spillway.clients)."""

from datetime import datetime

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger
from sqlalchemy import Integer
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import registry

from spillway.api import Api
from spillway.celery_app import FlaskCelery
from spillway.clock import UtcDateTime

# A 64-bit id (PostgreSQL's integer is 32 bits); SQLite's own INTEGER PRIMARY KEY is 64
# bits already and must stay spelled so to remain the rowid.
ID_COLUMN = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    """Base of every model: SQLAlchemy 2 typed declarative mapping; every datetime column
    stores UTC (spillway.clock.UtcDateTime)."""

    registry = registry(type_annotation_map={datetime: UtcDateTime})


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
api = Api()
celery = FlaskCelery()
