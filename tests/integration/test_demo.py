"""The seed's demo under hostile use: /demo/slow holds a connection for up to a minute, so
a process sleeps only so many at once, and one address only so many while limits are on."""

import threading

import pytest

from tests.waiting import wait_until


def slow_requests(app, count: int, address: str, seconds: float = 2.0) -> list:
    """Start ``count`` /demo/slow requests from ``address`` in threads; their statuses
    land in the list returned, each when it is answered."""
    statuses = []

    def call():
        response = app.test_client().get(
            f"/demo/slow?seconds={seconds}", headers={"X-Forwarded-For": address}
        )
        statuses.append(response.status_code)

    for _ in range(count):
        threading.Thread(target=call, daemon=True).start()
    return statuses


def asleep(app) -> int:
    """How many /demo/slow this process holds now (its cap's own count)."""
    cap = app.extensions.get("cap:DEMO_SLOW")
    return cap.open if cap else 0


def assert_refused(response, status: int, code: str):
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("limits", ["on", "off"])
def test_a_process_sleeps_at_most_its_cap(app, limits):
    """SPILLWAY_DEMO_SLOW_PER_WORKER (3 here) sleeping at once; the next is a 503 JSON with
    Retry-After, limits on or off; /demo/index still answers; a place frees as one ends."""
    app.config.update(
        DEMO_SLOW_PER_WORKER=3, DEMO_SLOW_PER_ADDRESS=100, RATE_LIMITS_ENABLED=limits == "on"
    )
    statuses = slow_requests(app, 3, "10.0.0.1", seconds=1.5)
    wait_until(lambda: asleep(app) == 3, timeout=10, interval=0.02)
    client = app.test_client()
    assert_refused(
        client.get("/demo/slow?seconds=0", headers={"X-Forwarded-For": "10.0.0.2"}),
        503,
        "unavailable",
    )
    assert client.get("/demo/index").status_code == 200
    wait_until(lambda: sorted(statuses) == [200, 200, 200], timeout=20)
    assert asleep(app) == 0
    assert client.get("/demo/slow?seconds=0").status_code == 200


def test_an_address_sleeps_at_most_its_cap_while_limits_are_on(app):
    """SPILLWAY_DEMO_SLOW_PER_ADDRESS (2 here) from one address while rate limits are on:
    the third is a 429 JSON; another address still gets in."""
    app.config.update(DEMO_SLOW_PER_WORKER=100, DEMO_SLOW_PER_ADDRESS=2, RATE_LIMITS_ENABLED=True)
    statuses = slow_requests(app, 2, "10.0.0.1", seconds=1.5)
    wait_until(lambda: asleep(app) == 2, timeout=10, interval=0.02)
    client = app.test_client()
    assert_refused(
        client.get("/demo/slow?seconds=0", headers={"X-Forwarded-For": "10.0.0.1"}),
        429,
        "rate_limited",
    )
    assert (
        client.get("/demo/slow?seconds=0", headers={"X-Forwarded-For": "10.0.0.2"}).status_code
        == 200
    )
    wait_until(lambda: sorted(statuses) == [200, 200], timeout=20)
    assert asleep(app) == 0
