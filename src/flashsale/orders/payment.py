"""The payment gateway: an outside service reached over HTTP, with real latency.

Under gevent the call is cooperative: a slow gateway holds one greenlet, never a worker.

Every charge carries ``Idempotency-Key: <order id>``, so a retry after a lost answer is
answered by the gateway with the first attempt's result instead of a second charge; and
``void`` closes a key whose outcome nobody saw, which tells whether it was captured
(flashsale/gateway.py describes the protocol). A call's failure says how much is known:
``Unreachable`` and ``Declined`` mean no money moved; ``OutcomeUnknown`` means it may have.
"""

import contextlib
from dataclasses import dataclass

import gevent
import requests
from flask import current_app
from gevent import monkey
from urllib3.exceptions import NewConnectionError

from spillway.extension import Sidecar

_session = requests.Session()
# Without SPILLWAY_PAYMENT_URL (a real gateway), `spillway up` runs the stand-in beside the
# shop, and the shop finds it on the port this setting names (flashsale.settings).
GATEWAY_PORT_SETTING = "SPILLWAY_PAYMENT_GATEWAY_PORT"
STAND_IN = Sidecar(
    "payment-gateway",
    "flashsale.gateway",
    port_setting=GATEWAY_PORT_SETTING,
    unless_set="SPILLWAY_PAYMENT_URL",
    args=("--latency", "0.2"),
)


class GatewayError(RuntimeError):
    """The gateway did not approve the charge."""


class Unreachable(GatewayError):
    """The request never reached the gateway (connection refused, no route, connect
    timeout): this call charged nothing."""


class Declined(GatewayError):
    """The gateway answered no for this key: it is not charged, and never will be."""


class OutcomeUnknown(GatewayError):
    """The request was sent and no valid answer came back (a timeout, a reset, a broken
    answer): the charge may have been captured. A retry with the same key, or a void,
    tells."""


@dataclass(frozen=True)
class Resolution:
    """What a void found: "captured" (with its charge id) or "voided"."""

    status: str
    charge_id: str | None = None


def charge(order_id: str, quantity: int) -> str:
    """Charge for an order, idempotently per order; return the gateway's charge id.

    :raise Unreachable, Declined, OutcomeUnknown: anything but a valid approval.
    """
    status, body = _post("/charge", order_id, {"order_id": order_id, "quantity": quantity})
    if body.get("status") == "declined":
        raise Declined(f"gateway declined the charge: {body}")
    charge_id = body.get("charge_id")
    if status != 200 or body.get("status") != "approved" or not _is_id(charge_id):
        raise OutcomeUnknown(f"gateway answered {status} without an approval: {body}")
    return charge_id


def void(order_id: str) -> Resolution:
    """Close the order's key at the gateway: tell whether its charge was captured, or
    make sure it never will be.

    :raise Unreachable, OutcomeUnknown: no valid answer (try again later).
    """
    status, body = _post(f"/charges/{order_id}/void", order_id)
    if status == 200 and body.get("status") == "captured" and _is_id(body.get("charge_id")):
        return Resolution("captured", body["charge_id"])
    if status == 200 and body.get("status") == "voided":
        return Resolution("voided")
    raise OutcomeUnknown(f"gateway answered the void with {status}: {body}")


def _is_id(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _post(path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    """POST to the gateway within GATEWAY_TIMEOUT_S from start to end; (status, JSON object).

    Under gevent a gevent.Timeout bounds the whole call, however the answer trickles in.
    Elsewhere (the CLI, Celery's prefork children) requests' timeouts bound the connect
    and each read, not their sum.
    """
    seconds = current_app.config["GATEWAY_TIMEOUT_S"]
    deadline = _deadline(seconds)
    try:
        with deadline:
            response = _session.post(
                f"{current_app.config['PAYMENT_URL']}{path}",
                json=body,
                headers={"Idempotency-Key": key},
                timeout=(seconds, seconds),
            )
            document = response.json()
    except gevent.Timeout as exc:
        if exc is not deadline:  # a caller's own deadline
            raise
        raise OutcomeUnknown(f"no answer within {seconds:g} s") from None
    except (requests.ConnectTimeout, requests.ConnectionError) as exc:
        if isinstance(exc, requests.ConnectTimeout) or _refused(exc):
            raise Unreachable(str(exc)) from None
        raise OutcomeUnknown(str(exc)) from None
    except (requests.RequestException, ValueError) as exc:
        raise OutcomeUnknown(str(exc)) from None
    if not isinstance(document, dict):
        raise OutcomeUnknown(f"gateway answered {response.status_code}: {document!r:.200}")
    return response.status_code, document


def _refused(exc: requests.ConnectionError) -> bool:
    """Whether the connection failed before anything was sent (urllib3's
    NewConnectionError, wrapped in requests' error and urllib3's MaxRetryError)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _deadline(seconds: float):
    """A gevent.Timeout of ``seconds`` in a gevent-patched process; nothing elsewhere."""
    if monkey.is_module_patched("socket"):
        return gevent.Timeout(seconds)
    return contextlib.nullcontext()
