"""Test data, created through the service layer the API uses."""

from datetime import datetime
from datetime import timedelta
from datetime import timezone

from flashsale.catalog import service
from tests.environment import ADMIN_TOKEN


def admin_headers() -> dict:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_product(**overrides):
    """A committed product (caches invalidated like any admin write)."""
    fields = {
        "name": "Lantern",
        "description": "A paper lantern.",
        "price_cents": 1299,
        "image_url": "/static/lantern.png",
        **overrides,
    }
    return service.create_product(fields)


def signup(client, name: str = "buyer") -> dict:
    """A new buyer's auth headers (through the API, as a client would)."""
    response = client.post("/api/v1/users", json={"name": name})
    assert response.status_code == 201, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def make_sale(client, **overrides) -> dict:
    """An active sale of a new product, created through the admin API."""
    product = make_product()
    body = {
        "product_id": str(product.id),
        "stock": 10,
        "per_user_limit": 2,
        "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
        **overrides,
    }
    response = client.post("/api/v1/sales", json=body, headers=admin_headers())
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def buy(client, sale: dict, headers: dict, quantity: int = 1, key: str | None = None):
    """POST a purchase; returns the response."""
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        json={"quantity": quantity},
        headers={**headers, **extra},
    )
