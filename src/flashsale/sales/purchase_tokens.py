"""Purchase tokens, the anti-bot path: a short-lived HMAC bound to one buyer and one sale.

A sale created with ``requires_purchase_token`` admits a purchase only with a token the
buyer fetched from ``POST /api/v1/sales/{id}/purchase-token`` once the sale had opened, so
a bot cannot fire purchases prepared in advance, and a token copied from another buyer or
sale is useless. Checking one costs an HMAC and no redis round trip: the secret is the app's
SECRET_KEY, and whether a sale requires a token is read from the database once per process
(sales are immutable once created).

Token: ``<expiry, unix seconds>.<base64url HMAC-SHA256 of "sale:user:expiry">``.
Refusals: 403 ``purchase_token_required`` (none sent), 403 ``purchase_token_invalid``
(malformed, forged, expired, or for another buyer or sale).
"""

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone

from flask import current_app

from flashsale.extensions import db
from spillway.clock import epoch_ms
from spillway.errors import ApiError

HEADER = "X-Purchase-Token"
ENVIRON_KEY = "HTTP_X_PURCHASE_TOKEN"
KEY_PURPOSE = b"spillway.purchase-token.v1"


@dataclass(frozen=True)
class SaleRules:
    """What a purchase check needs of a sale; none of it changes after creation."""

    requires_purchase_token: bool
    starts_ms: int
    ends_ms: int


def rules_of(sale_id: int) -> SaleRules | None:
    """A sale's immutable rules, from this process's cache (the database once), or None
    for a sale that does not exist (not cached: it may be created later)."""
    cache = current_app.extensions.setdefault("sale_rules", {})
    rules = cache.get(sale_id)
    if rules is None:
        from flashsale.sales.models import Sale

        sale = db.session.get(Sale, sale_id)
        if sale is None:
            return None
        rules = SaleRules(
            sale.requires_purchase_token, epoch_ms(sale.starts_at), epoch_ms(sale.ends_at)
        )
        cache[sale_id] = rules
    return rules


def _key() -> bytes:
    # A key of its own, derived from SECRET_KEY: a purchase token MAC can never be mistaken
    # for any other signature made with the secret.
    key = current_app.extensions.get("purchase_token_key")
    if key is None:
        secret = current_app.config["SECRET_KEY"].encode()
        key = hmac.new(secret, KEY_PURPOSE, hashlib.sha256).digest()
        current_app.extensions["purchase_token_key"] = key
    return key


def _mac(sale_id: int, user_id: str, expires: int) -> str:
    digest = hmac.new(_key(), f"{sale_id}:{user_id}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def issue(sale_id: int, user_id: str) -> dict:
    """A token for this buyer and sale, valid for PURCHASE_TOKEN_TTL_S.

    :raise ApiError: 404 unknown sale, 409 ``sale_not_active`` before it opens or once it ended.
    """
    rules = rules_of(sale_id)
    if rules is None:
        raise ApiError(404, f"Sale {sale_id} does not exist.")
    now = time.time()
    if not rules.starts_ms <= now * 1000 < rules.ends_ms:
        raise ApiError(
            409, f"Sale {sale_id} is not on now; tokens are issued while it is.", "sale_not_active"
        )
    expires = int(now) + current_app.config["PURCHASE_TOKEN_TTL_S"]
    return {
        "token": f"{expires}.{_mac(sale_id, user_id, expires)}",
        "sale_id": str(sale_id),
        "expires_at": datetime.fromtimestamp(expires, timezone.utc)
        .isoformat()
        .replace("+00:00", "Z"),
    }


def check(sale_id: int, user_id: str, token: str | None) -> None:
    """Let a purchase through if its sale needs no token or ``token`` is valid for it.

    :raise ApiError: 403 ``purchase_token_required`` or ``purchase_token_invalid``.
    """
    rules = rules_of(sale_id)
    if rules is None or not rules.requires_purchase_token:
        return  # an unknown sale is reserve.lua's 404 to give
    if not token:
        raise ApiError(
            403,
            f"Sale {sale_id} needs a purchase token: POST "
            f"/api/v1/sales/{sale_id}/purchase-token, send it as {HEADER}.",
            "purchase_token_required",
        )
    expires_text, _, mac = token.partition(".")
    # isascii: "²" is a digit to str.isdigit and no number to int() (it was a 500).
    valid = (
        expires_text.isascii()
        and expires_text.isdigit()
        and len(expires_text) <= 12
        and hmac.compare_digest(mac.encode(), _mac(sale_id, user_id, int(expires_text)).encode())
    )
    if not valid or int(expires_text) <= time.time():
        raise ApiError(
            403,
            f"The {HEADER} is not valid for this sale and buyer, or has expired: fetch a new one.",
            "purchase_token_invalid",
        )
