"""The database unavailable mid-burst.

SQLite has no server to stop. What makes it unavailable in life is another process
holding its write lock longer than the busy timeout (a long migration, a bulk import, a
stuck maintenance shell): every writer then fails with "database is locked", exactly as
all of them would against a database server that is down. In WAL mode (the app's) readers
never wait for a writer, so reads keep answering from the database: that is SQLite's real
behaviour, not a gap in the test. (Making the file unreadable does not model it: the
tests run as root, and open connections keep working on an unlinked or chmod-ed file.)
"""

import subprocess
import sys
import threading
import time

import pytest
import requests
import sqlalchemy

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders import tasks
from flashsale.orders.models import Order
from flashsale.orders.outbox import outbox
from spillway.clients import redis_store
from tests.audit import check_answers
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.faults.burst import Burst
from tests.faults.burst import exchange
from tests.faults.burst import plan

LOCK_SECONDS = 8.0  # longer than the busy timeout of every process
LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
connection.execute("BEGIN IMMEDIATE")  # the write lock, held
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


def hold_write_lock(database_url: str, seconds: float) -> subprocess.Popen:
    """Another process takes the database's write lock and keeps it for ``seconds``."""
    path = database_url.removeprefix("sqlite:///")
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, path, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert locker.stdout.readline().strip() == "locked"
    return locker


def test_database_locked_mid_burst(stack, record_figures):
    """Purchases get 202 (the outbox holds them); writes that need the database get a
    clean 503 with Retry-After; the drain retries and catches up; nothing is lost."""
    sale = stack.new_sale(stock=250, per_user_limit=2)
    buyers = stack.signup(200)
    reads = (f"/api/v1/sales/{sale['id']}", f"/api/v1/products/{sale['product_id']}")
    burst = Burst(stack.base_url, sale, plan(buyers, replays=40), reads=reads).start()
    burst.wait_progress(0.2)
    locker = hold_write_lock(stack.database_url, LOCK_SECONDS)
    locked_at = time.monotonic()
    signups = []

    def sign_up_during_the_outage():
        with requests.Session() as session:
            while locker.poll() is None:
                signups.append(
                    exchange(
                        session, f"{stack.base_url}/api/v1/users", "POST", body={"name": "late"}
                    )
                )
                time.sleep(0.2)

    side = threading.Thread(target=sign_up_during_the_outage)
    side.start()
    locker.wait(timeout=LOCK_SECONDS + 30)
    locker.stdout.close()
    lock_seconds = time.monotonic() - locked_at
    side.join(timeout=60)
    answers = burst.join()
    figures = stack.audit.audit(sale, burst.purchase_answers())
    assert not figures.server_errors, "admission does not touch the database"
    during = [a for a in burst.purchase_answers() if a.status == 202]
    assert during, "purchases were accepted"
    side_figures = check_answers(signups + [a for a in answers if a.method == "GET"])
    assert signups and {a.status for a in signups} <= {201, 503}
    refused = [a for a in signups if a.status == 503]
    assert refused, "signups needed the locked database"
    # A web process gives up after a short busy wait: a long one is a C sleep that would
    # freeze every greenlet of its worker, purchases included.
    assert max(a.seconds for a in refused) < 3.0, [a.seconds for a in refused]
    record_figures(
        figures,
        lock_seconds=round(lock_seconds, 1),
        side_requests=side_figures.requests,
        side_server_errors=dict(side_figures.server_errors),
        signups=[(a.status, round(a.seconds, 2)) for a in signups],
    )


def test_a_batch_that_could_not_commit_is_retried_on_the_next_drain(client, app):
    """The drain that took entries while the database was locked persists them on its next
    run, without waiting OUTBOX_STUCK_MS for the sweeper."""
    sale = make_sale(client, stock=5)
    order_id = buy(client, sale, signup(client)).get_json()["order_id"]
    # Longer than this (unpatched) process's 5 s busy timeout.
    locker = hold_write_lock(app.config["SQLALCHEMY_DATABASE_URI"], 7)
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError):
            tasks.drain_outbox()
        assert redis_store.xpending(keys.OUTBOX, keys.OUTBOX_GROUP)["pending"] == 1
    finally:
        locker.wait(timeout=60)
        locker.stdout.close()
    db.session.rollback()
    assert tasks.drain_outbox() == 1
    assert db.session.get(Order, order_id).quantity == 1
    assert outbox.backlog() == 0
