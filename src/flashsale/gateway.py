"""A stand-in payment gateway: approves every charge after a configurable delay.

It plays the outside service a real store would call, with real network latency, so
that payment is measured and tested as it would run. Run it with
``python -m flashsale.gateway --port 8099 --latency 0.2`` (`spillway up` does).

Its protocol is a real gateway's, reduced to what the store needs:

- ``POST /charge`` with ``Idempotency-Key: <key>`` is idempotent per key: the first request
  charges (it is in flight for ``--latency`` seconds, then captured); any later one with
  that key, whatever its body, gets the same answer (the same ``charge_id``), waiting for
  the first if it is still in flight. Without the header every request is a new charge.
- ``POST /charges/<key>/void`` closes a key whose outcome the caller does not know, in one
  step: a captured charge answers ``{"status": "captured", "charge_id"}``; otherwise the key
  is voided, ``{"status": "voided"}``, and every charge with it from now on (a charge in
  flight that completes later included) is declined. Real gateways call this cancelling a
  payment intent, or voiding an authorization.
- ``GET /charges/<key>`` tells what the gateway knows of a key (for tests and operators).

Test knobs, so that the store's side of a bad gateway can be proven: ``--trickle`` sends
every answer one byte at a time (a per-read timeout never fires, the answer takes long in
total), ``--lose-answers N`` captures the first N charges and cuts the connection instead
of answering, ``--omit-charge-id`` answers approvals without their ``charge_id``.
"""

import argparse
import contextlib
import json
import re
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from dataclasses import field

from gevent.event import Event
from gevent.pywsgi import WSGIHandler

from spillway import gevent_boot  # noqa: F401  (must precede every other import)
from spillway.serve import make_listener

VOID_PATH = re.compile(r"^/charges/([^/]{1,200})/void$")
CHARGE_PATH = re.compile(r"^/charges/([^/]{1,200})$")
# Set by the app on an answer that is to be lost; read by KnobsHandler.
LOSE_ANSWER = "flashsale.gateway.lose_answer"


@dataclass
class Charge:
    """What the gateway knows of one idempotency key."""

    status: str = "in_flight"  # → "captured" or "voided"
    charge_id: str | None = None
    requests: int = 0
    captures: int = 0
    decided: Event = field(default_factory=Event)

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "charge_id": self.charge_id,
            "requests": self.requests,
            "captures": self.captures,
        }


@dataclass
class Knobs:
    """How badly the stand-in behaves (all off by default)."""

    latency: float = 0.2
    lose_answers: int = 0
    omit_charge_id: bool = False


def make_app(knobs: Knobs):
    """The WSGI app: charges by idempotency key, voids, and what it knows of a key."""
    charges: dict[str, Charge] = {}

    def charge(environ) -> tuple[str, dict]:
        key = environ.get("HTTP_IDEMPOTENCY_KEY") or uuid.uuid4().hex
        entry = charges.get(key)
        if entry is None:
            entry = charges[key] = Charge()
            entry.requests += 1
            time.sleep(knobs.latency)  # gevent's sleep: the gateway too serves thousands at once
            if entry.status == "in_flight":  # not voided meanwhile
                entry.status, entry.charge_id = "captured", uuid.uuid4().hex
                entry.captures += 1
            entry.decided.set()
            if knobs.lose_answers > 0:
                knobs.lose_answers -= 1
                environ[LOSE_ANSWER] = True
        else:
            entry.requests += 1
            entry.decided.wait()
        if entry.status != "captured":
            return "402 Payment Required", {"status": "declined", "reason": "voided"}
        if knobs.omit_charge_id:
            return "200 OK", {"status": "approved"}
        return "200 OK", {"status": "approved", "charge_id": entry.charge_id}

    def void(key: str) -> tuple[str, dict]:
        entry = charges.setdefault(key, Charge())
        if entry.status == "captured":
            return "200 OK", {"status": "captured", "charge_id": entry.charge_id}
        entry.status = "voided"  # a charge in flight sees this when it completes
        entry.decided.set()
        return "200 OK", {"status": "voided"}

    def route(environ) -> tuple[str, dict]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        if method == "POST" and path == "/charge":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                request = json.loads(environ["wsgi.input"].read(length) or b"{}")
            except ValueError:
                request = None
            if not isinstance(request, dict) or "order_id" not in request:
                return "400 Bad Request", {"status": "invalid"}
            return charge(environ)
        if method == "POST" and VOID_PATH.match(path):
            return void(VOID_PATH.match(path).group(1))
        if method == "GET" and CHARGE_PATH.match(path):
            entry = charges.get(CHARGE_PATH.match(path).group(1))
            return "200 OK", entry.as_dict() if entry else {"status": "unknown"}
        return "404 Not Found", {"status": "unknown"}

    def app(environ, start_response):
        status, document = route(environ)
        body = json.dumps(document).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


class KnobsHandler(WSGIHandler):
    """gevent's handler, with the answers the knobs ask for: trickled or lost."""

    trickle = 0.0  # seconds between two bytes of an answer

    def _sendall(self, data):
        if self.environ.get(LOSE_ANSWER):
            self.close_connection = True
            with contextlib.suppress(OSError):  # the caller may have gone already
                self.socket.shutdown(socket.SHUT_RDWR)
            return
        if not self.trickle:
            return super()._sendall(data)
        for offset in range(len(data)):
            time.sleep(self.trickle)
            super()._sendall(data[offset : offset + 1])


def main() -> None:
    import gevent
    from gevent.pywsgi import WSGIServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per charge")
    parser.add_argument(
        "--trickle",
        type=float,
        default=0.0,
        help="send answers one byte per this many seconds (a test knob)",
    )
    parser.add_argument(
        "--lose-answers",
        type=int,
        default=0,
        metavar="N",
        help="capture the first N charges, then cut instead of answering",
    )
    parser.add_argument(
        "--omit-charge-id",
        action="store_true",
        help="answer approvals without their charge_id (a broken answer)",
    )
    args = parser.parse_args()
    knobs = Knobs(args.latency, args.lose_answers, args.omit_charge_id)
    KnobsHandler.trickle = args.trickle
    server = WSGIServer(
        make_listener(args.host, args.port), make_app(knobs), log=None, handler_class=KnobsHandler
    )
    gevent.signal_handler(signal.SIGTERM, server.stop)  # supervisord's stop: finish, exit 0
    print(
        f"payment gateway on http://{args.host}:{args.port}/charge "
        f"({args.latency * 1000:.0f} ms per charge)",
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
