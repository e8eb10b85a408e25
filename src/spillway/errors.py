"""One error shape for every failure: ``{"error": {"code", "message"}}``, always JSON."""

import json
import logging
import re

import redis
import sqlalchemy.exc
from flask import Flask
from flask import jsonify
from flask import request
from kombu.exceptions import OperationalError as BrokerError
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from pymemcache.exceptions import MemcacheError
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
# A dependency that is down is a 503 the client may retry, not a 500.
DEPENDENCY_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,  # every pooled database connection busy (DB_POOL_TIMEOUT)
    MemcacheError,
    ConnectionError,
    BrokerError,
)
NO_SUCH_PATH = "No such path (each is spelled one way: no doubled slashes)."
# Redis up but refusing writes for a while: out of memory under noeviction (OOM), a failed
# background save with stop-writes-on-bgsave-error (MISCONF), a read-only replica
# (READONLY), too few replicas (NOREPLICAS). The write did not happen: 503, like a redis
# that is down. (redis-py's BusyLoadingError, LOADING, is a ConnectionError already.)
REDIS_REFUSALS = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
# Codes redis-py has no class for; searched, since a pipeline prefixes its own words.
REDIS_REFUSAL_CODES = re.compile(r"\b(MISCONF|NOREPLICAS)\b")
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorDetail(Schema):
    code = fields.String(required=True, metadata={"example": "sold_out"})
    message = fields.String(required=True)


class ErrorSchema(Schema):
    """The one error shape of every 4xx and 5xx answer (for the OpenAPI document)."""

    error = fields.Nested(ErrorDetail, required=True)


class ApiError(Exception):
    """A refusal the client should see as-is: status, code and a message naming the cause."""

    def __init__(
        self, status: int, message: str, code: str | None = None, retry_after: int | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.retry_after = retry_after


def error_response(status: int, code: str, message: str, retry_after: int | None = None):
    """Build the JSON error response; 429 and 503 carry ``Retry-After`` (seconds)."""
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    if status in (429, 503):
        response.headers["Retry-After"] = str(retry_after or RETRY_AFTER_SECONDS)
    return response


def validation_message(exc: HTTPException) -> str:
    """One line naming every invalid field of a webargs validation error."""
    messages = (getattr(exc, "data", None) or {}).get("messages") or {}
    # Keyed by location (json, query, …), each holding marshmallow's field messages.
    return (
        "; ".join(fields_message(fields) for fields in messages.values())
        or "The request is not valid."
    )


def fields_message(fields) -> str:
    """marshmallow's ``{"field": ["problem", …]}`` as one line naming each field."""
    if not isinstance(fields, dict):
        return str(fields)
    parts = []
    for field, problems in fields.items():
        text = " ".join(map(str, problems)) if isinstance(problems, list) else str(problems)
        parts.append(f"{field}: {text}" if field != "_schema" else text)
    return "; ".join(parts)


def load_json_body(schema):
    """The request's JSON object, validated by a marshmallow ``schema``; see
    :func:`parse_json_object`."""
    return parse_json_object(request.mimetype, request.get_data(), schema)


def parse_json_object(content_type: str, raw: bytes, schema):
    """A JSON object body, validated by a marshmallow ``schema``.

    :raise ApiError: as :func:`decode_json_object`, and 400 invalid (naming the fields).
    """
    data = decode_json_object(content_type, raw)
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(400, fields_message(exc.messages)) from None


def decode_json_object(content_type: str, raw: bytes) -> dict:
    """The JSON object a request body holds: the one judge of every JSON body, the purchase
    paths' and every webargs body route's (spillway.api.BodyParser).

    :raise ApiError: 400 an empty body, 415 not application/json, 400 not a JSON object.
    """
    if not raw:
        raise ApiError(400, "The request needs a body: a JSON object.")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "Send the body as application/json.")
    try:
        # UTF-8 and nothing else (RFC 8259), so a byte order mark is malformed too.
        data = json.loads(raw.decode("utf-8"))
    # ValueError: malformed, not UTF-8, or an integer past Python's 4,300-digit limit;
    # RecursionError: nested too deeply to decode.
    except (ValueError, RecursionError):
        raise ApiError(400, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.")
    return data


def init_app(app: Flask) -> None:
    """Register the handlers on ``app``."""

    @app.before_request
    def refuse_oversized_body():
        # Flask enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse it up
        # front so every route answers alike, whatever it does with the body.
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"The request body exceeds {limit} bytes.")

    @app.before_request
    def refuse_routing_redirects():
        # Werkzeug answers a path spelled another way than its route (a doubled slash) with
        # its own HTML 308, whose Location it builds from the client's Host header, and
        # Flask hands routing exceptions past every error handler. Each path has one
        # spelling: any other is a 404 like any unknown path.
        if isinstance(request.routing_exception, RequestRedirect):
            request.routing_exception = NotFound(NO_SUCH_PATH)

    app.register_error_handler(ApiError, response_for)

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        status = exc.code or 500
        if status == 422 or (status == 400 and getattr(exc, "data", None)):
            # webargs/marshmallow validation: 400 naming each field, as docs/api.md says.
            return error_response(400, "invalid_request", validation_message(exc))
        code = CODES.get(status, "internal_error" if status >= 500 else "error")
        response = error_response(status, code, exc.description or exc.name)
        allow = exc.get_response().headers.get("Allow") if status == 405 else None
        if allow:
            response.headers["Allow"] = allow
        return response

    for exc_class in DEPENDENCY_ERRORS:
        app.register_error_handler(exc_class, response_for)
    app.register_error_handler(Exception, response_for)


def is_dependency_down(exc: Exception) -> bool:
    """Whether ``exc`` says a dependency is down or refuses writes for now (a 503)."""
    if isinstance(exc, DEPENDENCY_ERRORS + REDIS_REFUSALS):
        return True
    return (
        isinstance(exc, redis.exceptions.ResponseError)
        and REDIS_REFUSAL_CODES.search(str(exc)) is not None
    )


def response_for(exc: Exception):
    """The answer to an exception a view raised: its refusal, 503 for a dependency that is
    down, 500 (logged, nothing leaked) for anything else."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.retry_after)
    if is_dependency_down(exc):
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        if isinstance(exc, redis.exceptions.TimeoutError):
            # The command may have run after all (a frozen redis that resumed): only the
            # same Idempotency-Key tells the client what became of a write.
            return error_response(
                503,
                "unavailable",
                "A service this request needs did not answer in time; retry, "
                "a write with the same Idempotency-Key.",
            )
        return error_response(503, "unavailable", "A service this request needs is down; retry.")
    log.exception("unhandled error")
    return error_response(500, "internal_error", "Internal error; it has been logged.")
