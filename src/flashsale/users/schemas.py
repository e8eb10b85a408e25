"""Request and response shapes of signup."""

from marshmallow import Schema
from marshmallow import fields
from marshmallow import validate

from spillway.fields import Text


class SignupIn(Schema):
    """A new buyer."""

    name = Text(required=True, validate=validate.Length(1, 200), metadata={"example": "alice"})


class SignupOut(Schema):
    """The buyer's id and token (send it as ``Authorization: Bearer <token>``)."""

    user_id = fields.String(required=True)
    token = fields.String(required=True)
