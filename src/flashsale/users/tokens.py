"""Buyer tokens: signed with the secret key, carrying the user id, expiring."""

import time

from flask import current_app
from itsdangerous import BadSignature
from itsdangerous import SignatureExpired
from itsdangerous import URLSafeTimedSerializer

from spillway.errors import ApiError

TOKEN_SALT = "spillway.buyer"
TOKEN_MAX_AGE_SECONDS = 30 * 24 * 3600
EXPIRED = "The token has expired; sign up again."
# Verified tokens remembered per process. Checking a signature (an HMAC and three base64
# decodes) was the purchase path's largest cost of its own, and a buyer in a flash sale
# sends the same token many times a second. Only tokens that verified get in, so forged
# ones cannot fill it; at the cap it starts over (a few MB at most).
VERIFIED_CACHE_SIZE = 20_000


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
    verified = current_app.extensions.setdefault("verified_buyer_tokens", {})
    known = verified.get(token)
    if known is None:
        known = _verify(token)
        if known is None:
            return None
        if len(verified) >= VERIFIED_CACHE_SIZE:
            verified.clear()
        verified[token] = known
    user_id, signed_at = known
    # Expiry is judged on every use, cached or not, exactly as itsdangerous judges it.
    if time.time() - signed_at > TOKEN_MAX_AGE_SECONDS:
        raise ApiError(401, EXPIRED)
    return user_id


def _verify(token: str) -> tuple[str, float] | None:
    """(user id, signed at, unix seconds) of a genuine buyer token, else None.

    :raise ApiError: 401 when it is a buyer token that has expired.
    """
    try:
        payload, signed_at = _serializer().loads(
            token, max_age=TOKEN_MAX_AGE_SECONDS, return_timestamp=True
        )
    except SignatureExpired:
        raise ApiError(401, EXPIRED) from None
    except BadSignature:
        return None
    uid = payload.get("uid") if isinstance(payload, dict) else None
    if not (isinstance(uid, str) and uid.isdigit()):
        return None
    return uid, signed_at.timestamp()
