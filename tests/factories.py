"""Test data, created through the service layer the API uses."""

from spillway.catalog import service

ADMIN_TOKEN = "test-admin-token"


def admin_headers() -> dict:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_product(**overrides):
    """A committed product (caches invalidated like any admin write)."""
    fields = {"name": "Lantern", "description": "A paper lantern.", "price_cents": 1299,
              "image_url": "/static/lantern.png", **overrides}
    return service.create_product(fields)
