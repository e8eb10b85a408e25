"""Buyer tokens: signed with the secret key, carrying the user id, expiring."""

from flask import current_app
from itsdangerous import BadSignature
from itsdangerous import SignatureExpired
from itsdangerous import URLSafeTimedSerializer

from spillway.errors import ApiError

TOKEN_SALT = "spillway.buyer"
TOKEN_MAX_AGE_SECONDS = 30 * 24 * 3600


def _serializer() -> URLSafeTimedSerializer:
    # Built once per app: it derives its signing key when constructed, and every buyer
    # request checks a token.
    serializer = current_app.extensions.get("buyer_tokens")
    if serializer is None:
        serializer = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)
        current_app.extensions["buyer_tokens"] = serializer
    return serializer


def issue(user_id: int) -> str:
    """A token for ``user_id``."""
    return _serializer().dumps({"uid": str(user_id)})


def user_id_of(token: str) -> str | None:
    """The user id a token carries, or None when it is not a buyer token.

    :raise ApiError: 401 when it is a buyer token that has expired.
    """
    try:
        payload = _serializer().loads(token, max_age=TOKEN_MAX_AGE_SECONDS)
    except SignatureExpired:
        raise ApiError(401, "The token has expired; sign up again.") from None
    except BadSignature:
        return None
    uid = payload.get("uid") if isinstance(payload, dict) else None
    return uid if isinstance(uid, str) and uid.isdigit() else None
