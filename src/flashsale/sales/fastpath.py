"""Purchase admission before Flask's request machinery: the flash sale's hot path.

Profiling a loaded gunicorn worker showed Flask's dispatch around the purchase view
(request context, routing, hooks, flask-smorest's wrappers) costing more than the view's
own work. This WSGI middleware runs the same rules — bearer token, the one-field body,
one EVALSHA, the same JSON answers and errors (errors.response_for) — inside an app
context only. A body it should not read itself (over the size limit, or chunked with no
length) goes to Flask, whose view (flashsale.sales.views.purchase) stays the documented
definition of the endpoint.
"""

import json
import re

from flashsale.auth import caller_of
from flashsale.sales import purchase_tokens
from flashsale.sales import service
from flashsale.sales.schemas import MAX_QUANTITY
from flashsale.sales.views import PURCHASE_SCHEMA
from spillway.errors import ApiError
from spillway.errors import parse_json_object
from spillway.fastpath import FastPath

PURCHASE_PATH = re.compile(r"^/api/v1/sales/([0-9]{1,18})/orders$")
STATUS_LINES = {200: "200 OK", 202: "202 ACCEPTED"}


class PurchaseFastPath(FastPath):
    """Answers POST /api/v1/sales/{id}/orders itself."""

    route = "/api/v1/sales/<sale_id>/orders"

    def match(self, environ):
        match = PURCHASE_PATH.match(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH", "")
        # No length (a chunked body) or too long a body: Flask knows how to read or refuse it.
        if (
            environ["REQUEST_METHOD"] != "POST"
            or match is None
            or not length.isdigit()
            or int(length) > self.app.config["MAX_CONTENT_LENGTH"]
        ):
            return None
        return int(match.group(1)), int(length)

    def answer(self, environ, start_response, found):
        sale_id, length = found
        with self.app.app_context():
            status, answer = self._admit(environ, sale_id, length)
        body = json.dumps(answer).encode()
        start_response(
            STATUS_LINES[status],
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _admit(self, environ, sale_id: int, length: int) -> tuple[int, dict]:
        """(202 or 200, the answer); refusals and failures raise."""
        role, user_id = caller_of(environ.get("HTTP_AUTHORIZATION", ""))
        if role != "buyer":
            raise ApiError(403, "This needs a buyer's token.")
        purchase_tokens.check(sale_id, user_id, environ.get(purchase_tokens.ENVIRON_KEY))
        quantity = quantity_of(environ.get("CONTENT_TYPE", ""), environ["wsgi.input"].read(length))
        return service.purchase(sale_id, user_id, quantity, environ.get("HTTP_IDEMPOTENCY_KEY", ""))


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
