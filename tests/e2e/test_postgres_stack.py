"""`spillway up` with DATABASE_URL on PostgreSQL: migrations, the burst, the ledger, payment.

The cluster is the suite's throwaway one (tests/postgres.py), whatever SPILLWAY_TEST_DB says.
"""

import psycopg
import pytest
import requests

from tests.e2e.conftest import running_stack
from tests.e2e.conftest import sale_burst
from tests.postgres import start_postgres
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    cluster = start_postgres(tmp_path_factory.mktemp("postgres-logs"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def pg_stack(pg):
    database = pg.create_database()
    with running_stack({"DATABASE_URL": pg.url(database)}) as stack:
        yield stack, pg.url(database, driver="postgresql")


def test_stack_on_postgresql(pg_stack):
    """No SQLite file; 60 buyers race for 20 units; the ledger in PostgreSQL has exactly the
    20 orders; a payment lands there; each process holds its own connections."""
    stack, dsn = pg_stack
    assert not stack.paths.database.exists()
    base = stack.base_url
    assert requests.get(f"{base}/readyz", timeout=10).json()["checks"]["database"] == "ok"
    sale, buyers, answers = sale_burst(
        stack, stock=20, buyers=60, workers=30, prefix="p", idempotency_key="k"
    )
    accepted = [(b, a.json()["order_id"]) for b, a in zip(buyers, answers) if a.status_code == 202]
    assert len(accepted) == 20 and {a.status_code for a in answers} == {202, 409}

    def ledger(sql, *params):
        with psycopg.connect(dsn) as conn:
            return conn.execute(sql, params).fetchall()

    wait_until(
        lambda: (
            ledger("SELECT count(*) FROM orders WHERE sale_id = %s", int(sale["id"]))[0][0] == 20
        )
    )
    buyer, order_id = accepted[0]
    auth = {"Authorization": f"Bearer {buyer['token']}"}
    wait_until(
        lambda: (
            requests.get(f"{base}/api/v1/orders/{order_id}", headers=auth, timeout=5).json()[
                "status"
            ]
            == "confirmed"
        )
    )
    paid = requests.post(f"{base}/api/v1/orders/{order_id}/pay", headers=auth, timeout=30)
    assert paid.json() == {"status": "paid"}
    assert ledger("SELECT status FROM orders WHERE id = %s", order_id) == [("paid",)]
    # The web workers and the Celery pool hold connections of their own (no shared socket).
    pids = ledger("SELECT DISTINCT pid FROM pg_stat_activity WHERE application_name = 'spillway'")
    assert len(pids) >= 2
