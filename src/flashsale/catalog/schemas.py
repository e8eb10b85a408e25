"""Request and response shapes of the catalog; they also write its OpenAPI document."""

from marshmallow import Schema
from marshmallow import fields
from marshmallow import validate

from spillway.fields import Text

MAX_PRICE_CENTS = 1_000_000_000


class ProductIn(Schema):
    """A new product (admin)."""

    name = Text(required=True, validate=validate.Length(1, 200))
    description = Text(load_default="", validate=validate.Length(max=5000))
    price_cents = fields.Integer(required=True, strict=True,
                                 validate=validate.Range(0, MAX_PRICE_CENTS))
    image_url = Text(load_default=None, allow_none=True,
                     validate=[validate.Length(max=2048),
                               validate.URL(relative=True, require_tld=False)])


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
