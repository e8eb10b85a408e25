"""A stand-in payment gateway: approves every charge after a configurable delay.

It plays the outside service a real store would call, with real network latency, so
that payment is measured and tested as it would run. Run it with
``python -m spillway.gateway --port 8099 --latency 0.2`` (`spillway up` does).
"""

from spillway import gevent_boot  # noqa: F401  (must precede every other import)

import argparse
import json
import signal
import time
import uuid

from spillway.serve import make_listener


def make_app(latency: float):
    """The WSGI app: POST /charge → {"status": "approved", "charge_id"} after ``latency``."""

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] != "POST" or environ["PATH_INFO"] != "/charge":
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"status": "unknown"}']
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            request = json.loads(environ["wsgi.input"].read(length) or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict) or "order_id" not in request:
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [b'{"status": "declined"}']
        time.sleep(latency)  # gevent's sleep: the gateway too serves thousands at once
        body = json.dumps({"status": "approved", "charge_id": uuid.uuid4().hex}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def main() -> None:
    import gevent
    from gevent.pywsgi import WSGIServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per charge")
    args = parser.parse_args()
    server = WSGIServer(make_listener(args.host, args.port), make_app(args.latency), log=None)
    gevent.signal_handler(signal.SIGTERM, server.stop)  # supervisord's stop: finish, exit 0
    print(f"payment gateway on http://{args.host}:{args.port}/charge "
          f"({args.latency * 1000:.0f} ms per charge)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
