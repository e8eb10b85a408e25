"""Request and response shapes of sales and purchases."""

from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates_schema

from flashsale.catalog.schemas import PageArgs
from spillway.clock import to_utc
from spillway.fields import Text

STATUSES = ("scheduled", "active", "sold_out", "ended")
MAX_QUANTITY = 100  # units in one purchase
SALES_PER_PAGE = 100  # the listing's default page: clients from before pages see every sale


class StrictBoolean(fields.Boolean):
    """Only JSON true and false: "true", 1 or null is a wrong type (400), not a guess."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class UtcInstant(fields.AwareDateTime):
    """An instant with an offset (any offset), taken in as UTC: ``10:00+02:00`` is 08:00Z.

    The UTC instant must fall within years 1…9999: ``9999-12-31T23:00-05:00`` is in year
    10000 in UTC, which no database column (nor Python) can hold.
    """

    default_error_messages = {"out_of_range": "Not an instant between years 1 and 9999 in UTC."}

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return to_utc(moment)
        except OverflowError:
            raise self.make_error("out_of_range") from None


class SaleIn(Schema):
    """A new flash sale (admin)."""

    product_id = Text(
        required=True,
        validate=validate.Regexp(r"^[1-9][0-9]{0,18}$", error="Not the id of a product."),
    )
    stock = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10_000_000))
    per_user_limit = fields.Integer(load_default=1, strict=True, validate=validate.Range(1, 100))
    starts_at = UtcInstant(load_default=None)
    # JSON Schema cannot compare two fields: said here, refused with a 400 naming ends_at.
    ends_at = UtcInstant(
        required=True,
        metadata={
            "description": "Must be after starts_at (after now, when starts_at is omitted); "
            "a 400 naming ends_at otherwise."
        },
    )
    payment_timeout_s = fields.Integer(
        load_default=900, strict=True, validate=validate.Range(1, 86_400)
    )
    # Stock shards for this sale; SPILLWAY_STOCK_SHARDS when absent (DEPLOYMENT.md).
    shards = fields.Integer(load_default=None, strict=True, validate=validate.Range(1, 64))
    requires_purchase_token = StrictBoolean(load_default=False)

    @validates_schema
    def ends_after_start(self, data, **_):
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            raise ValidationError("ends_at must be after starts_at.", "ends_at")


class SaleOut(Schema):
    """A sale, with its live remaining stock and status."""

    id = fields.String(required=True)
    product_id = fields.String(required=True)
    stock = fields.Integer(required=True)
    remaining = fields.Integer(required=True)
    per_user_limit = fields.Integer(required=True)
    starts_at = fields.String(required=True)
    ends_at = fields.String(required=True)
    payment_timeout_s = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    requires_purchase_token = fields.Boolean(required=True)


class SaleListArgs(PageArgs):
    """Which sales: those with any of the statuses given (repeat ``status``; every sale
    when none is), a page at a time, in the order they were created."""

    status = fields.List(
        Text(validate=validate.OneOf(STATUSES)),
        metadata={"description": "Repeat for several: status=active&status=scheduled."},
    )
    per_page = fields.Integer(
        load_default=SALES_PER_PAGE,
        validate=validate.Range(1, 100),
        metadata={"description": f"Sales a page; {SALES_PER_PAGE} by default."},
    )


class SaleList(Schema):
    """One page of sales, in the order they were created; ``total`` counts every page's."""

    items = fields.List(fields.Nested(SaleOut), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)


class RejectedOut(Schema):
    sold_out = fields.Integer()
    limit_exceeded = fields.Integer()
    sale_not_active = fields.Integer()
    rate_limited = fields.Integer()


class SaleStats(Schema):
    stock = fields.Integer()
    remaining = fields.Integer()
    reserved = fields.Integer()
    orders_persisted = fields.Integer()
    orders_paid = fields.Integer()
    orders_cancelled = fields.Integer()
    shards = fields.Integer()
    rejected = fields.Nested(RejectedOut)


class PurchaseIn(Schema):
    """How many units (send an Idempotency-Key header too)."""

    quantity = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(1, MAX_QUANTITY),
        metadata={"example": 1},
    )


class PurchaseOut(Schema):
    order_id = fields.String(required=True)
    status = fields.String(required=True)


class PurchaseTokenOut(Schema):
    """A purchase token for one buyer and one sale; send it as X-Purchase-Token."""

    token = fields.String(required=True)
    sale_id = fields.String(required=True)
    expires_at = fields.String(required=True)
