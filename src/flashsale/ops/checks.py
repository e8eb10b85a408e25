"""The shop's own readiness check, declared to the runtime (which checks redis, memcached
and the broker itself: spillway.health.checks)."""

from sqlalchemy import text

from flashsale.extensions import db


def check_database() -> None:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()
