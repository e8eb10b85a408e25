"""The payment gateway: an outside service reached over HTTP, with real latency.

Under gevent the call is cooperative: a slow gateway holds one greenlet, never a worker.
"""

import requests
from flask import current_app

TIMEOUT_SECONDS = 10.0
_session = requests.Session()


class GatewayError(RuntimeError):
    """The gateway did not approve the charge (down, slow, or declined)."""


def charge(order_id: str, quantity: int) -> str:
    """Charge for an order; return the gateway's charge id.

    :raise GatewayError: anything but an approval.
    """
    try:
        response = _session.post(f"{current_app.config['PAYMENT_URL']}/charge",
                                 json={"order_id": order_id, "quantity": quantity},
                                 timeout=TIMEOUT_SECONDS)
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise GatewayError(str(exc)) from None
    if response.status_code != 200 or body.get("status") != "approved":
        raise GatewayError(f"gateway answered {response.status_code}: {body}")
    return body["charge_id"]
