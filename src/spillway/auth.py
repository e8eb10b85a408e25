"""Who is calling: the admin (a token from the environment) or a buyer (a signed token)."""

import functools
import hmac

from flask import current_app
from flask import g
from flask import request
from flask.sessions import SecureCookieSessionInterface

from spillway.errors import ApiError
from spillway.users import tokens


class NoCookieSessions(SecureCookieSessionInterface):
    """Callers identify with bearer tokens, never cookies: no session is opened or saved,
    which spares every request the signing serializer Flask would build for it."""

    def open_session(self, app, request):
        return None  # Flask substitutes a NullSession, which refuses writes

    def save_session(self, app, session, response):
        pass


def bearer_token() -> str:
    """The token of ``Authorization: Bearer <token>``.

    :raise ApiError: 401 when the header is missing or malformed.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Send Authorization: Bearer <token>.")
    return token.strip()


def is_admin() -> bool:
    """Whether the request carries the admin token (never raises)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = current_app.config["ADMIN_TOKEN"]
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode())


def current_caller() -> tuple[str, str | None]:
    """("admin", None) or ("buyer", user_id).

    :raise ApiError: 401 for a missing, malformed, expired or forged token.
    """
    if is_admin():
        return "admin", None
    user_id = tokens.user_id_of(bearer_token())
    if user_id is None:
        raise ApiError(401, "The token is not valid.")
    return "buyer", user_id


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
