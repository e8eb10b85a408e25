"""Who is calling: the admin (a token from the environment) or a buyer (a signed token)."""

import functools
import hmac

from flask import current_app
from flask import g
from flask import request
from flask.sessions import SecureCookieSessionInterface

from flashsale.users import tokens
from spillway.errors import ApiError


class NoCookieSessions(SecureCookieSessionInterface):
    """Callers identify with bearer tokens, never cookies: no session is opened or saved,
    which spares every request the signing serializer Flask would build for it."""

    def open_session(self, app, request):
        return None  # Flask substitutes a NullSession, which refuses writes

    def save_session(self, app, session, response):
        pass


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def is_admin(authorization: str | None = None) -> bool:
    """Whether an Authorization header (by default the request's) carries the admin token."""
    if authorization is None:
        authorization = request.headers.get("Authorization", "")
    token, expected = _bearer(authorization), current_app.config["ADMIN_TOKEN"]
    return bool(token and expected) and hmac.compare_digest(token.encode(), expected.encode())


def caller_of(authorization: str) -> tuple[str, str | None]:
    """("admin", None) or ("buyer", user_id) for an Authorization header's value.

    :raise ApiError: 401 for a missing, malformed, expired or forged token.
    """
    token = _bearer(authorization)
    if token is None:
        raise ApiError(401, "Send Authorization: Bearer <token>.")
    if is_admin(authorization):
        return "admin", None
    user_id = tokens.user_id_of(token)
    if user_id is None:
        raise ApiError(401, "The token is not valid.")
    return "buyer", user_id


def current_caller() -> tuple[str, str | None]:
    """The request's caller; see :func:`caller_of`."""
    return caller_of(request.headers.get("Authorization", ""))


def _require(role: str, refusal: str):
    """A decorator that lets a view run only for ``role`` (buyer's id in ``g.user_id``):
    401 without a valid token, 403 with someone else's."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            caller, user_id = current_caller()
            if caller != role:
                raise ApiError(403, refusal)
            g.user_id = user_id
            return view(*args, **kwargs)

        return wrapper

    return decorator


require_admin = _require("admin", "This needs the admin token.")
require_buyer = _require("buyer", "This needs a buyer's token.")
