"""``/healthz``, ``/readyz`` and ``/metrics``, answered by the runtime for any app, before
the app's own routes (so an app's URL map never meets them, and no rate limit applies).

- ``/healthz``: ``200 {"status": "ok"}`` while the process serves; touches no dependency.
- ``/readyz``: ``200``/``503 {"status", "checks": {name: "ok" | "unavailable"}}``, every
  check of spillway.health.checks; why one is down is told to the admin token only (and
  to the log and `spillway check`); a flood costs one run of the checks a second.
- ``/metrics``: Prometheus text. nginx serves it only on its loopback metrics listener;
  its public server answers 404 itself and marks what it forwards with
  ``X-Spillway-Public``, which this refuses too, should a spelling slip past nginx.
"""

import hmac
import json

from flask import Flask
from prometheus_client import CONTENT_TYPE_LATEST

from spillway.errors import RETRY_AFTER_SECONDS
from spillway.health.checks import cached_checks
from spillway.health.checks import public_view
from spillway.metrics.exposition import exposition
from spillway.metrics.middleware import ROUTE_KEY

PUBLIC_MARK = "HTTP_X_SPILLWAY_PUBLIC"
JSON = [("Content-Type", "application/json")]
NOT_FOUND = b'{"error": {"code": "not_found", "message": "No such resource."}}'
NOT_ALLOWED = (
    b'{"error": {"code": "method_not_allowed", "message": "Only GET and HEAD are answered here."}}'
)


class RuntimeEndpoints:
    """Wraps the app's WSGI pipeline; answers the three paths, passes on everything else."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.paths = {"/healthz": self.healthz, "/readyz": self.readyz, "/metrics": self.metrics}

    def __call__(self, environ, start_response):
        answer = self.paths.get(environ.get("PATH_INFO", ""))
        if answer is None:
            return self.wsgi_app(environ, start_response)
        environ[ROUTE_KEY] = environ["PATH_INFO"]
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            status, headers, body = answer(environ)
        else:
            status, headers, body = (
                "405 METHOD NOT ALLOWED",
                [*JSON, ("Allow", "GET, HEAD")],
                NOT_ALLOWED,
            )
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]

    def healthz(self, environ):
        return "200 OK", JSON, b'{"status": "ok"}'

    def readyz(self, environ):
        with self.app.app_context():
            checks = cached_checks(self.app)
        ready = all(result == "ok" for result in checks.values())
        shown = checks if self._is_admin(environ) else public_view(checks)
        body = json.dumps({"status": "ok" if ready else "unavailable", "checks": shown})
        if ready:
            return "200 OK", JSON, body.encode()
        return (
            "503 SERVICE UNAVAILABLE",
            [*JSON, ("Retry-After", str(RETRY_AFTER_SECONDS))],
            body.encode(),
        )

    def metrics(self, environ):
        if environ.get(PUBLIC_MARK):
            return "404 NOT FOUND", JSON, NOT_FOUND
        with self.app.app_context():
            body = exposition(self.app)
        return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST)], body

    def _is_admin(self, environ) -> bool:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        expected = self.app.config.get("ADMIN_TOKEN") or ""
        return (
            scheme.lower() == "bearer"
            and bool(expected)
            and hmac.compare_digest(token.strip().encode(), expected.encode())
        )
