"""Bearer-token checks shared by every protected endpoint."""

import functools
import hmac

from flask import current_app
from flask import request

from spillway.errors import ApiError


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


def require_admin(view):
    """Let the view run only for the admin token: 401 otherwise."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        bearer_token()
        if not is_admin():
            raise ApiError(401, "The token is not valid.")
        return view(*args, **kwargs)

    return wrapper
