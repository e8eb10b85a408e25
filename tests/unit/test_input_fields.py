"""Every text field a client sends is a spillway.fields.Text, which refuses what no database
can store."""

import pytest
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields

from flashsale.catalog.schemas import PageArgs
from flashsale.catalog.schemas import ProductIn
from flashsale.catalog.schemas import ProductPatch
from flashsale.sales.schemas import PurchaseIn
from flashsale.sales.schemas import SaleIn
from flashsale.sales.schemas import SaleListArgs
from flashsale.users.schemas import SignupIn
from spillway.fields import Text

INPUT_SCHEMAS = [ProductIn, ProductPatch, PageArgs, SaleIn, SaleListArgs, PurchaseIn, SignupIn]


@pytest.mark.parametrize("schema", INPUT_SCHEMAS, ids=lambda schema: schema.__name__)
def test_every_input_string_is_text(schema):
    """No input schema reads a string with a plain marshmallow String."""
    plain = [
        name
        for name, field in schema().fields.items()
        if isinstance(field, fields.String) and not isinstance(field, Text)
    ]
    assert plain == []


class Named(Schema):
    name = Text()


@pytest.mark.parametrize("value", ["\x00", "a\x00", "\ud800", "x\udfffy", "\udbff\udc00"])
def test_nul_and_surrogates_are_refused(value):
    """NUL and any surrogate code point (paired or not: JSON's \\ud83d\\uded2 decodes to one
    character, so surrogates reach a schema only when they are alone) are refused."""
    with pytest.raises(ValidationError) as refused:
        Named().load({"name": value})
    assert "name" in refused.value.messages


@pytest.mark.parametrize("value", ["", "ñandú", "🛒", "\x01\x1f\x7f", "\ufffd", "\U0010ffff"])
def test_other_text_is_kept(value):
    """Everything else, control characters included, is kept as sent."""
    assert Named().load({"name": value}) == {"name": value}
