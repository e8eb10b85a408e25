"""A flash sale through the whole stack: nginx, gunicorn, redis, Celery, SQLite, gateway."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import requests


def eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("not true in time")


def test_burst_then_pay_through_the_stack(stack):
    """200 buyers race for 50 units; every 202 is persisted; one order is paid."""
    base, admin = stack.base_url, stack.admin_headers()
    product = requests.get(f"{base}/api/v1/products", timeout=5).json()["items"][0]
    sale = requests.post(f"{base}/api/v1/sales", headers=admin, timeout=10, json={
        "product_id": product["id"], "stock": 50, "per_user_limit": 1,
        "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()}).json()
    buyers = [requests.post(f"{base}/api/v1/users", json={"name": f"u{i}"}, timeout=10)
              .json() for i in range(200)]

    def attempt(buyer):
        return requests.post(f"{base}/api/v1/sales/{sale['id']}/orders", json={"quantity": 1},
                             headers={"Authorization": f"Bearer {buyer['token']}",
                                      "Idempotency-Key": "one"}, timeout=30)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(attempt, buyers))
    assert {a.status_code for a in answers} <= {202, 409}
    accepted = [(b, a.json()["order_id"]) for b, a in zip(buyers, answers) if a.status_code == 202]
    assert len(accepted) == 50
    stats_url = f"{base}/api/v1/sales/{sale['id']}/stats"
    eventually(lambda: requests.get(stats_url, headers=admin, timeout=5)
               .json()["orders_persisted"] == 50)
    stats = requests.get(stats_url, headers=admin, timeout=5).json()
    assert (stats["remaining"], stats["reserved"], stats["rejected"]["sold_out"]) == (0, 50, 150)
    buyer, order_id = accepted[0]
    auth = {"Authorization": f"Bearer {buyer['token']}"}
    eventually(lambda: requests.get(f"{base}/api/v1/orders/{order_id}", headers=auth,
                                    timeout=5).json()["status"] == "confirmed")
    paid = requests.post(f"{base}/api/v1/orders/{order_id}/pay", headers=auth, timeout=30)
    assert paid.status_code == 200 and paid.json() == {"status": "paid"}
    assert requests.get(stats_url, headers=admin, timeout=5).json()["orders_paid"] == 1
    programs = stack.supervisorctl("status")
    assert "payment-gateway" in programs and "RUNNING" in programs
