"""Answer shapes of orders; they also write their OpenAPI document."""

from marshmallow import Schema
from marshmallow import fields


class OrderOut(Schema):
    order_id = fields.String(required=True)
    sale_id = fields.String(required=True)
    user_id = fields.String(required=True)
    quantity = fields.Integer(required=True)
    status = fields.String(required=True)
    created_at = fields.String(required=True)


class OrderList(Schema):
    items = fields.List(fields.Nested(OrderOut), required=True)


class PaidOut(Schema):
    status = fields.String(required=True)
