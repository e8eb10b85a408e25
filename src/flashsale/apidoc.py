"""Every status an operation can answer, declared in the OpenAPI document with the JSON
error shape, so that answers can be checked against the document (tests/integration/
security/test_schemathesis.py) and clients know what to handle.

flask-smorest's catch-all ``default`` response is switched off (spillway.api.Api):
with it, any status at all would conform.
"""

from spillway.errors import ErrorSchema

DESCRIPTIONS = {
    400: "invalid_request: malformed JSON, a wrong type, an out-of-range value or an unknown "
    "field; the message names the field.",
    401: "unauthorized: a missing, malformed, expired or forged bearer token.",
    403: "forbidden: a valid token without the right (a buyer calling an admin endpoint, an "
    "admin calling a buyer's); on purchase also purchase_token_required and "
    "purchase_token_invalid.",
    404: "not_found: no such resource (another buyer's order is not found either).",
    409: "A business rule refused the request and nothing changed: sold_out, limit_exceeded, "
    "sale_not_active, order_not_payable.",
    413: "payload_too_large: the body is over 64 KiB.",
    414: "uri_too_long: the request line is over 8 KiB (nginx's limit).",
    415: "unsupported_media_type: the body is not application/json.",
    429: "rate_limited: too many requests from this address or buyer; see Retry-After.",
    503: "unavailable: a service the request needs is down; nothing was half-done; see "
    "Retry-After.",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
# Any request can meet a rate limit or a dependency that is down, or send too long a URI.
ALWAYS = (414, 429, 503)
# What every operation with a JSON body can answer about the body itself.
WITH_BODY = (400, 413, 415)
ADMIN = (401, 403)
BUYER = (401, 403)


def errors(bp, *statuses: int):
    """A view decorator documenting these error statuses (plus 429 and 503) on ``bp``."""

    def decorator(view):
        for status in sorted(set(statuses) | set(ALWAYS), reverse=True):
            view = bp.alt_response(
                status,
                schema=ErrorSchema,
                description=DESCRIPTIONS[status],
                headers=RETRY_AFTER if status in (429, 503) else None,
            )(view)
        return view

    return decorator
