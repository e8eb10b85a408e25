"""The stand-in gateway's protocol, which the store's payment relies on: charges are
idempotent per key, and a void closes a key in one step (flashsale/gateway.py)."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.waiting import wait_until


def charge(gateway, key: str | None, order_id: str = "o-1"):
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(
        f"{gateway.url}/charge",
        json={"order_id": order_id, "quantity": 1},
        headers=headers,
        timeout=10,
    )


def void(gateway, key: str) -> dict:
    response = requests.post(f"{gateway.url}/charges/{key}/void", timeout=10)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("gateway_knobs", [["--latency", "0.3"]])
def test_a_key_is_charged_once_whatever_the_body(gateway):
    """Requests with one key, concurrent or later, with any body, get the one charge;
    requests without a key are charges of their own."""
    with ThreadPoolExecutor(2) as pool:
        twins = list(pool.map(lambda order: charge(gateway, "k", order), ["o-1", "o-2"]))
    later = charge(gateway, "k", "something else")
    ids = {answer.json()["charge_id"] for answer in [*twins, later]}
    assert [a.status_code for a in [*twins, later]] == [200] * 3 and len(ids) == 1
    assert gateway.charges("k") == {
        "status": "captured",
        "charge_id": ids.pop(),
        "requests": 3,
        "captures": 1,
    }
    assert charge(gateway, None).json()["charge_id"] != charge(gateway, None).json()["charge_id"]


@pytest.mark.parametrize("gateway_knobs", [["--latency", "1.5"]])
def test_a_void_closes_a_key_in_flight_unseen_or_captured(gateway):
    """Void while a charge is in flight: voided, and that charge is declined when it
    completes, as is any later one; an unseen key is voided before any charge; a captured
    key's void says captured, with its charge id."""
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(charge, gateway, "flying")
        wait_until(lambda: gateway.charges("flying")["status"] == "in_flight", interval=0.02)
        assert void(gateway, "flying") == {"status": "voided"}
        assert in_flight.result().status_code == 402
    assert in_flight.result().json()["status"] == "declined"
    assert charge(gateway, "flying").status_code == 402
    assert gateway.charges("flying")["captures"] == 0

    assert void(gateway, "unseen") == {"status": "voided"}
    assert charge(gateway, "unseen").json()["status"] == "declined"

    charge_id = charge(gateway, "paid").json()["charge_id"]
    assert void(gateway, "paid") == {"status": "captured", "charge_id": charge_id}
    assert void(gateway, "paid") == {"status": "captured", "charge_id": charge_id}
