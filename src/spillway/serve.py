"""gevent's WSGI server, set up the way the seed's `runserver` should have been."""

import logging
import signal
import socket

import gevent
from flask import Flask
from gevent.pywsgi import WSGIServer

from spillway.guards import protect_gevent_worker
from spillway.health.start import verify_at_start

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048


def make_listener(host: str, port: int) -> socket.socket:
    """Open the listening socket with TCP_NODELAY.

    gevent's pywsgi writes headers and body in two sends; without TCP_NODELAY,
    Nagle plus delayed ACK stall every keep-alive response by 40 ms (measured:
    1,444 req/s whatever the route). Accepted sockets inherit the option.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def serve(app: Flask, host: str, port: int, access_log: bool = True) -> None:
    """Serve ``app`` until interrupted; with debug on, behind Werkzeug's debugger. The gevent
    guards once it can listen (a taken port is then its one line): the app's start checks
    and a blocking driver stop it in one line; the hub is watched."""
    listener = make_listener(host, port)
    verify_at_start(app, "spillway serve")
    protect_gevent_worker(app, "serve")
    wsgi_app = app
    if app.debug:
        from werkzeug.debug import DebuggedApplication

        wsgi_app = DebuggedApplication(app, evalex=True)
    bound_host, bound_port = listener.getsockname()[:2]
    server = WSGIServer(
        listener,
        wsgi_app,
        log=logging.getLogger("spillway.access") if access_log else None,
        error_log=logging.getLogger("spillway.serve"),
    )
    # SIGTERM (supervisord, systemd, docker stop) stops accepting and lets requests finish.
    gevent.signal_handler(signal.SIGTERM, server.stop)
    log.info(
        "serving %s config on http://%s:%d/ (debug %s)",
        app.config["ENV_NAME"],
        bound_host,
        bound_port,
        "on" if app.debug else "off",
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
