"""The runtime's request pipeline around any app, declared in one place.

Outermost first, each seeing what the next one answers:

0. ``RequestIdMiddleware`` — the request's id (nginx's, else a new one) for its log lines
   and tasks, and on every answer (spillway.request_id);
1. ``ProxyFix`` — the client's address is the one nginx appended (``SPILLWAY_PROXY_HOPS``
   trusted hops), for every layer inside, the rate limits included;
2. ``SecurityHeaders`` — nosniff, frame and referrer policies, CSP on every answer;
3. ``RequestMetricsMiddleware`` — one latency observation per request, by route
   (``SPILLWAY_METRICS=off`` drops it);
4. ``DeadlineMiddleware`` — the request's greenlet ends at ``SPILLWAY_REQUEST_TIMEOUT_S``
   with a 503 (a view may set its own; only in a process patched by gevent);
5. ``RuntimeEndpoints`` — ``/healthz``, ``/readyz``, ``/metrics``;
6. the app's own WSGI layers (its fast paths, installed by its factory), then Flask, where
   the rate limit per address runs on every route and the matched rule is recorded for
   the metrics.

:func:`install` runs once per app, from ``Spillway.init_app``.
"""

from flask import Flask
from flask import current_app
from flask import g
from flask import request
from werkzeug.middleware.proxy_fix import ProxyFix

from spillway import request_id
from spillway.guards import deadline
from spillway.health.endpoints import RuntimeEndpoints
from spillway.metrics import celery_signals
from spillway.metrics.middleware import RequestMetricsMiddleware
from spillway.metrics.middleware import remember_route
from spillway.security import ratelimits
from spillway.security.headers import SecurityHeaders


def install(app: Flask) -> None:
    """Put the runtime's layers around everything ``app`` has installed so far."""
    if app.extensions.get("spillway.pipeline"):
        return
    app.extensions["spillway.pipeline"] = True
    ratelimits.init_app(app)
    # Before every other hook: the route a request matched, for the metrics' label.
    app.before_request_funcs.setdefault(None, []).insert(0, remember_route)
    app.before_request_funcs[None].insert(0, _remember_request_id)
    celery_signals.connect()
    request_id.connect_celery()
    wsgi = RuntimeEndpoints(app, app.wsgi_app)
    if deadline.applies():
        # Once routed, a view's own deadline replaces the default (spillway.guards.deadline).
        app.before_request_funcs[None].insert(1, _apply_view_deadline)
        wsgi = deadline.DeadlineMiddleware(wsgi, app.config["REQUEST_TIMEOUT_S"])
    if app.config["METRICS_ENABLED"]:
        wsgi = RequestMetricsMiddleware(wsgi)
    wsgi = SecurityHeaders(wsgi)
    hops = app.config["PROXY_HOPS"]
    if hops > 0:
        # A client may send its own X-Forwarded-For; with one trusted hop only the address
        # nginx appended (the real peer) is believed.
        wsgi = ProxyFix(wsgi, x_for=hops, x_proto=hops)
    app.wsgi_app = request_id.RequestIdMiddleware(wsgi)


def _remember_request_id() -> None:
    g.request_id = request.environ.get(request_id.CHOSEN_KEY) or request_id.choose(None)


def _apply_view_deadline() -> None:
    deadline.apply_view_deadline(request.environ, current_app.view_functions.get(request.endpoint))
