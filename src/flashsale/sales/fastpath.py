"""Purchase admission before Flask's request machinery: the flash sale's hot path.

Profiling a loaded gunicorn worker showed Flask's dispatch around the purchase view
(request context, routing, hooks, flask-smorest's wrappers) costing more than the view's
own work. This WSGI middleware runs the same rules — bearer token, the one-field body,
one EVALSHA, the same JSON answers and errors (errors.response_for) — inside an app
context only. A body it should not read itself (over the size limit, or chunked with no
length) goes to Flask, whose view (spillway.sales.views.purchase) stays the documented
definition of the endpoint.
"""

import json
import re

from flask import Flask

from spillway.auth import caller_of
from spillway.errors import ApiError
from spillway.errors import parse_json_object
from spillway.errors import response_for
from spillway.sales import purchase_tokens
from spillway.sales import service
from spillway.sales.schemas import MAX_QUANTITY
from spillway.sales.views import PURCHASE_SCHEMA

PURCHASE_PATH = re.compile(r"^/api/v1/sales/([0-9]{1,18})/orders$")
STATUS_LINES = {200: "200 OK", 202: "202 ACCEPTED"}


class PurchaseMiddleware:
    """Wraps ``app.wsgi_app``; answers POST /api/v1/sales/{id}/orders itself."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        match = PURCHASE_PATH.match(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH", "")
        # No length (a chunked body) or too long a body: Flask knows how to read or refuse it.
        if (environ["REQUEST_METHOD"] != "POST" or match is None or not length.isdigit()
                or int(length) > self.app.config["MAX_CONTENT_LENGTH"]):
            return self.wsgi_app(environ, start_response)
        with self.app.app_context():
            try:
                status, answer = self._admit(environ, int(match.group(1)), int(length))
            except Exception as exc:  # the same answers Flask's error handlers give
                return response_for(exc)(environ, start_response)
        body = json.dumps(answer).encode()
        start_response(STATUS_LINES[status], [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(body)))])
        return [body]

    def _admit(self, environ, sale_id: int, length: int) -> tuple[int, dict]:
        """(202 or 200, the answer); refusals and failures raise."""
        role, user_id = caller_of(environ.get("HTTP_AUTHORIZATION", ""))
        if role != "buyer":
            raise ApiError(403, "This needs a buyer's token.")
        purchase_tokens.check(sale_id, user_id, environ.get(purchase_tokens.ENVIRON_KEY))
        quantity = quantity_of(environ.get("CONTENT_TYPE", ""),
                               environ["wsgi.input"].read(length))
        return service.purchase(sale_id, user_id, quantity,
                                environ.get("HTTP_IDEMPOTENCY_KEY", ""))


def quantity_of(content_type: str, raw: bytes) -> int:
    """The body's quantity. The usual body, exactly ``{"quantity": n}`` with n in range, is
    checked here by hand (marshmallow's load cost as much as the rest of the body handling);
    anything else goes through the schema, which gives the refusal its message.

    :raise ApiError: 415 or 400, as :func:`spillway.errors.parse_json_object`.
    """
    if content_type == "application/json":
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
        if type(data) is dict and len(data) == 1:
            quantity = data.get("quantity")
            # type() is int, not isinstance: True is an int too, and the schema refuses it.
            if type(quantity) is int and 1 <= quantity <= MAX_QUANTITY:
                return quantity
    return parse_json_object(content_type, raw, PURCHASE_SCHEMA)["quantity"]


def init_app(app: Flask) -> None:
    """Put the middleware in front of the app."""
    app.wsgi_app = PurchaseMiddleware(app, app.wsgi_app)
