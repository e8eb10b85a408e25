"""A flash sale through the whole stack: nginx, gunicorn, redis, Celery, SQLite, gateway."""

import requests

from tests.e2e.conftest import sale_burst
from tests.waiting import wait_until


def test_burst_then_pay_through_the_stack(stack):
    """200 buyers race for 50 units; every 202 is persisted; one order is paid."""
    base, admin = stack.base_url, stack.admin_headers()
    sale, buyers, answers = sale_burst(
        stack, stock=50, buyers=200, workers=50, prefix="u", idempotency_key="one"
    )
    assert {a.status_code for a in answers} <= {202, 409}
    accepted = [(b, a.json()["order_id"]) for b, a in zip(buyers, answers) if a.status_code == 202]
    assert len(accepted) == 50
    stats_url = f"{base}/api/v1/sales/{sale['id']}/stats"
    wait_until(
        lambda: requests.get(stats_url, headers=admin, timeout=5).json()["orders_persisted"] == 50
    )
    stats = requests.get(stats_url, headers=admin, timeout=5).json()
    assert (stats["remaining"], stats["reserved"], stats["rejected"]["sold_out"]) == (0, 50, 150)
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
    assert paid.status_code == 200 and paid.json() == {"status": "paid"}
    assert requests.get(stats_url, headers=admin, timeout=5).json()["orders_paid"] == 1
    programs = stack.supervisorctl("status")
    assert "payment-gateway" in programs and "RUNNING" in programs
