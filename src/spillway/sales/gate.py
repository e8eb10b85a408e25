"""The checks every purchase passes after its bearer token and before admission, shared by
the Flask view and the WSGI fast path so that neither can be the way around them."""

from spillway.sales import purchase_tokens
from spillway.security import ratelimits


def check_purchase(sale_id: int, user_id: str, purchase_token: str | None) -> None:
    """Per-buyer rate limit (429), then the sale's purchase token if it requires one (403)."""
    ratelimits.check_buyer(sale_id, user_id)
    purchase_tokens.check(sale_id, user_id, purchase_token)
