"""The purchase fast path's body check: the usual body by hand, everything else by the
schema, with the same answers either way."""

import pytest

from flashsale.sales.fastpath import quantity_of
from spillway.errors import ApiError

JSON = "application/json"


@pytest.mark.parametrize(
    "content_type, raw, quantity",
    [
        (JSON, b'{"quantity": 1}', 1),
        (JSON, b'{"quantity": 100}', 100),
        (JSON, b' {"quantity" : 7 } ', 7),
        ("application/json; charset=utf-8", b'{"quantity": 2}', 2),  # through the schema
        ("Application/JSON", b'{"quantity": 3}', 3),
    ],
)
def test_accepted_bodies(content_type, raw, quantity):
    assert quantity_of(content_type, raw) == quantity


@pytest.mark.parametrize(
    "raw",
    [
        b'{"quantity": 0}',
        b'{"quantity": 101}',
        b'{"quantity": true}',
        b'{"quantity": 1.0}',
        b'{"quantity": "1"}',
        b'{"quantity": null}',
        b'{"quantity": 1, "extra": 1}',
        b'{"quantity": 1, "quantity": 200}',
        b"{}",
        b"[]",
        b"1",
        b"",
        b'{"quantity": 1',
        b"\xff",
        b'{"quantity": -1}',
        b'{"quantity": ' + b"9" * 4301 + b"}",  # past Python's int-string limit: ValueError
    ],
)
def test_refused_bodies_are_400(raw):
    with pytest.raises(ApiError) as refused:
        quantity_of(JSON, raw)
    assert refused.value.status == 400


def test_a_body_that_is_not_json_is_415():
    with pytest.raises(ApiError) as refused:
        quantity_of("text/plain", b'{"quantity": 1}')
    assert refused.value.status == 415
