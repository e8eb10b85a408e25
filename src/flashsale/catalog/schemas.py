"""Request and response shapes of the catalog; they also write its OpenAPI document."""

import re

from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

from spillway.fields import Text

MAX_PRICE_CENTS = 1_000_000_000
# An image's URL: http(s) and a host, or a path on this site; only the characters RFC 3986
# allows unescaped, less the quote (it goes into the storefront's markup). The OpenAPI
# document declares this same pattern, so generated clients send only what is accepted.
IMAGE_URL_CHARS = r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]"
IMAGE_URL = rf"(https?://{IMAGE_URL_CHARS}+|/{IMAGE_URL_CHARS}*)"


def check_image_url(value: str) -> bool:
    """:raise ValidationError: ``value`` is not an http(s) URL or a path from ``/``."""
    if not re.fullmatch(IMAGE_URL, value, re.ASCII):
        raise ValidationError("Not an http(s) URL or a path from /.")
    return True


class ProductIn(Schema):
    """A new product (admin)."""

    name = Text(required=True, validate=validate.Length(1, 200), metadata={"example": "Kettle"})
    description = Text(
        load_default="",
        validate=validate.Length(max=5000),
        metadata={"example": "Whistles when it boils."},
    )
    price_cents = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(0, MAX_PRICE_CENTS),
        metadata={"example": 4500},
    )
    image_url = Text(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(max=2048), check_image_url],
        metadata={
            "pattern": f"^{IMAGE_URL}$",
            "example": "/static/kettle.png",
            "description": "An http(s) URL, or a path from /.",
        },
    )


class ProductPatch(ProductIn):
    """Any of a product's fields (admin); the rest stay as they are (load it partial)."""


class ProductOut(Schema):
    """A product as clients see it."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    price_cents = fields.Integer(required=True)
    image_url = fields.String(allow_none=True, required=True)


class PageArgs(Schema):
    """Which page of the listing."""

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class ProductPage(Schema):
    """One page of products, ordered by id."""

    items = fields.List(fields.Nested(ProductOut), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)
