"""Hand-written hostile input: every answer is a 4xx in the JSON error shape, never a 5xx.

In process (the Flask test client, through both WSGI fast paths) and over raw HTTP to a
live `spillway serve` for what a test client cannot send (CR/LF in headers, raw bytes,
unnormalised paths)."""

import io
import json
import socket
import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import itsdangerous
import pytest
import requests

from flashsale.users import tokens
from tests.factories import ADMIN_TOKEN
from tests.factories import admin_headers
from tests.factories import buy
from tests.factories import make_product
from tests.factories import make_sale
from tests.factories import signup


def assert_error(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message"}
    if code:
        assert error["code"] == code


def an_hour_from_now() -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()


DEEP = "[" * 30_000 + "]" * 30_000  # under 64 KiB, too deep for Python's JSON decoder
MALFORMED_BODIES = [
    "{",
    "[]",
    '"text"',
    "null",
    "1",
    '{"quantity": 1',
    "{'quantity': 1}",
    '{"quantity": 1}{"quantity": 2}',
    DEEP,
    '{"name": ' + DEEP[:40_000] + "}",
    "\ufeff{}",
    "NaN",
]


@pytest.mark.parametrize("body", MALFORMED_BODIES, ids=range(len(MALFORMED_BODIES)))
def test_malformed_json_is_400_everywhere(client, app, body):
    sale = make_sale(client)
    buyer = signup(client)
    for path, headers in (
        ("/api/v1/users", {}),
        ("/api/v1/products", admin_headers()),
        ("/api/v1/sales", admin_headers()),
        (f"/api/v1/sales/{sale['id']}/orders", buyer),
        ("/api/v1/products/1", admin_headers()),
    ):
        method = client.patch if path == "/api/v1/products/1" else client.post
        response = method(
            path, data=body.encode(), content_type="application/json", headers=headers
        )
        assert_error(response, 400, "invalid_request")


def test_invalid_utf8_and_wrong_media_types(client, app):
    sale = make_sale(client)
    buyer = signup(client)
    bad_utf8 = b'{"name": "\xff\xfe"}'
    assert_error(client.post("/api/v1/users", data=bad_utf8, content_type="application/json"), 400)
    assert_error(
        client.post(
            f"/api/v1/sales/{sale['id']}/orders",
            data=b'{"quantity": \xff}',
            content_type="application/json",
            headers=buyer,
        ),
        400,
    )
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = client.post(
            f"/api/v1/sales/{sale['id']}/orders",
            data="quantity=1",
            content_type=content_type,
            headers=buyer,
        )
        assert_error(response, 415, "unsupported_media_type")
        response = client.post("/api/v1/users", data="name=x", content_type=content_type)
        assert response.status_code in (400, 415) and response.get_json()["error"]


@pytest.mark.parametrize(
    "quantity", ["1", 1.5, True, None, [], {}, 0, -1, 101, 10**30, float("inf")], ids=repr
)
def test_wrong_types_and_out_of_range_quantities(client, app, quantity):
    sale = make_sale(client)
    buyer = signup(client)
    body = json.dumps({"quantity": quantity}, allow_nan=True)
    response = client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        data=body,
        content_type="application/json",
        headers=buyer,
    )
    assert_error(response, 400, "invalid_request")
    assert "quantity" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "change",
    [
        {"stock": "10"},
        {"stock": 0},
        {"stock": 10_000_001},
        {"stock": 2**63},
        {"per_user_limit": 0},
        {"per_user_limit": 101},
        {"payment_timeout_s": 86_401},
        {"product_id": 1},  # a number where an id belongs (docs/api.md: 400)
        {"product_id": "999999"},
        {"product_id": "1; DROP TABLE sales"},
        {"product_id": "１"},
        {"product_id": "9918975881788675654"},  # beyond SQLite's integers: was a 500 (schemathesis)
        {"ends_at": "yesterday"},
        {"ends_at": "2026-11-27T10:00:00"},  # no zone
        {"ends_at": "1970-01-01T00:00:00Z"},
        {"unknown": 1},
        {"requires_purchase_token": "yes"},
    ],
    ids=repr,
)
def test_bad_sales_are_400(client, app, change):
    product = make_product()
    body = {"product_id": str(product.id), "stock": 10, "ends_at": an_hour_from_now(), **change}
    assert_error(
        client.post("/api/v1/sales", json=body, headers=admin_headers()), 400, "invalid_request"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "x" * 201},
        {"name": 5},
        {"name": None},
        {"name": ["a"]},
        {"name": "ok", "price_cents": -1},
        {"name": "ok", "price_cents": 10**20},
        {"name": "ok", "price_cents": "12"},
        {"name": "ok", "price_cents": 1.5},
        {"name": "ok", "price_cents": 1, "description": "d" * 5001},
        {"name": "ok", "price_cents": 1, "id": "7"},
    ],
    ids=repr,
)
def test_bad_products_are_400(client, app, fields):
    assert_error(client.post("/api/v1/products", json=fields, headers=admin_headers()), 400)


@pytest.mark.parametrize(
    "name",
    [
        "ñandú",
        "名前",
        "🛒" * 200,
        "עברית\u202e",
        "e\u0301",
        "\u0001\u001f\u007f",
        "' OR 1=1 --",
        "<script>alert(1)</script>",
    ],
)
def test_unicode_and_hostile_names_are_kept_verbatim(client, app, name):
    """Names are data: stored and answered as sent (JSON-escaped), never interpreted. (NUL,
    which PostgreSQL cannot store, is refused: see the test below.)"""
    response = client.post("/api/v1/users", json={"name": name})
    assert response.status_code == 201
    product = client.post(
        "/api/v1/products", json={"name": name, "price_cents": 1}, headers=admin_headers()
    )
    assert product.status_code == 201
    assert client.get(f"/api/v1/products/{product.get_json()['id']}").get_json()["name"] == name


def test_too_many_characters_is_counted_in_characters(client, app):
    assert_error(client.post("/api/v1/users", json={"name": "🛒" * 201}), 400)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users",
        "/api/v1/products",
        "/api/v1/sales",
        "/api/v1/sales/1/orders",
        "/api/v1/products/1",
    ],
)
def test_flask_refuses_bodies_over_64_kib_with_413_json(client, app, path):
    """The Flask side of the limit (nginx has its own, tests/e2e/test_security.py)."""
    body = b'{"name": "' + b"x" * (64 * 1024) + b'"}'
    method = client.patch if path == "/api/v1/products/1" else client.post
    response = method(path, data=body, content_type="application/json", headers=admin_headers())
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "raw",
    [
        "²",
        "1²",
        "١",
        "０",
        "-1",
        "+1",
        "1.0",
        "1e3",
        " 1",
        "0x10",
        "9" * 19,
        "9" * 400,
        "%00",
        "null",
        "1%2F2",
    ],
)
def test_ids_in_paths_that_are_not_ascii_numbers_are_404(client, app, raw):
    """Only ASCII digits name a sale or a product: "²" used to be a 500, "١" an alias of 1."""
    make_sale(client)  # sale 1 and product 1 exist
    for path in (f"/api/v1/sales/{raw}", f"/api/v1/products/{raw}", f"/api/v1/sales/{raw}/stats"):
        headers = admin_headers() if path.endswith("stats") else {}
        assert_error(client.get(path, headers=headers), 404, "not_found")
    assert_error(
        client.post(f"/api/v1/sales/{raw}/orders", json={"quantity": 1}, headers=signup(client)),
        404,
    )


@pytest.mark.parametrize(
    "query",
    [
        "page=%C2%B2",
        "page=1&per_page=%C2%B2",
        "page=0",
        "per_page=101",
        "page=-1",
        "page=" + "9" * 50,
        "per_page=%00",
        "status=nope",
    ],
)
def test_bad_query_strings_are_400(client, app, query):
    """Through the catalog's fast path and the Flask views alike ("²" crashed the fast path)."""
    path = "/api/v1/sales" if query.startswith("status") else "/api/v1/products"
    assert_error(client.get(f"{path}?{query}"), 400, "invalid_request")


# Python's limits and the database's: each of these was a 500 (audit, issue 20 item 2) -----

HUGE = "9" * 4301  # one digit past Python's int-string limit: json.loads raises ValueError


def chunked_purchase(client, sale, headers, body: bytes, extra: dict | None = None):
    """A purchase with no Content-Length: the fast path leaves it to the Flask view."""
    return client.post(
        f"/api/v1/sales/{sale['id']}/orders",
        input_stream=io.BytesIO(body),
        headers={
            **headers,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            **(extra or {}),
        },
    )


def body_routes(sale: dict, buyer: dict) -> list[tuple[str, str, dict]]:
    """(method, path, headers) of every operation with a JSON body, as its rightful caller
    (product 1 exists: make_sale made it)."""
    return [
        ("post", "/api/v1/users", {}),
        ("post", "/api/v1/products", admin_headers()),
        ("patch", "/api/v1/products/1", admin_headers()),
        ("post", "/api/v1/sales", admin_headers()),
        ("post", f"/api/v1/sales/{sale['id']}/orders", buyer),
    ]


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "x", "price_cents": HUGE}',
        '{"quantity": HUGE}',
        '{"name": "x", "deep": [{"n": HUGE}]}',
        "HUGE",
    ],
    ids=["field", "quantity", "nested", "bare"],
)
def test_huge_integers_in_a_body_are_400_everywhere(client, app, body):
    """A JSON integer of 4,301 digits anywhere in a body is invalid JSON (400) on every body
    route, both purchase paths included: Python refuses to convert it, which was a 500."""
    raw = body.replace("HUGE", HUGE).encode()
    sale = make_sale(client)
    buyer = signup(client)
    for method, path, headers in body_routes(sale, buyer):
        response = getattr(client, method)(
            path, data=raw, content_type="application/json", headers=headers
        )
        assert_error(response, 400, "invalid_request")
    assert_error(chunked_purchase(client, sale, buyer, raw), 400, "invalid_request")


BAD_TEXT = {"lone surrogate": "a\ud800b", "NUL": "a\u0000b"}
TEXT_FIELDS = [
    ("post", "/api/v1/users", "name", {}),
    ("post", "/api/v1/products", "name", {"price_cents": 1}),
    ("post", "/api/v1/products", "description", {"name": "x", "price_cents": 1}),
    ("post", "/api/v1/products", "image_url", {"name": "x", "price_cents": 1}),
    ("patch", "/api/v1/products/1", "name", {}),
    ("patch", "/api/v1/products/1", "description", {}),
]


@pytest.mark.parametrize("kind", BAD_TEXT)
@pytest.mark.parametrize(
    "method, path, field, rest", TEXT_FIELDS, ids=[f"{m} {p} {f}" for m, p, f, _ in TEXT_FIELDS]
)
def test_text_no_database_can_store_is_400_naming_the_field(
    client, app, kind, method, path, field, rest
):
    """A lone surrogate (SQLite's insert raised) or a NUL (PostgreSQL's did) in any text
    field a client sends is a 400 that names the field, and stores nothing."""
    make_product(name="Kept")
    value = json.dumps(f"/x{BAD_TEXT[kind]}" if field == "image_url" else BAD_TEXT[kind])
    raw = json.dumps(rest)[:-1].lstrip("{")
    body = "{" + (raw + ", " if raw else "") + f'"{field}": {value}' + "}"
    response = getattr(client, method)(
        path, data=body.encode(), content_type="application/json", headers=admin_headers()
    )
    assert_error(response, 400, "invalid_request")
    assert field in response.get_json()["error"]["message"]
    assert client.get("/api/v1/products/1").get_json()["name"] == "Kept"
    assert client.get("/api/v1/products").get_json()["total"] == 1


@pytest.mark.parametrize(
    "token",
    ["\u00b2.mac", "1\u00b2.mac", "\u00b9\u00b2\u00b3.x"],
    ids=["superscript-two", "digit-then-superscript", "three"],
)
@pytest.mark.parametrize("chunked", [False, True], ids=["fast-path", "flask-view"])
def test_non_ascii_digits_in_a_purchase_token_are_403(client, app, token, chunked):
    """ "²" is a digit to str.isdigit and no number to int(): a token that starts with one
    is purchase_token_invalid on both purchase paths, not a 500."""
    sale = make_sale(client, requires_purchase_token=True)
    buyer = signup(client)
    headers = {"X-Purchase-Token": json.loads(f'"{token}"')}
    if chunked:
        response = chunked_purchase(client, sale, buyer, b'{"quantity": 1}', headers)
    else:
        response = buy(client, sale, {**buyer, **headers})
    assert_error(response, 403, "purchase_token_invalid")


NOT_JSON = [
    ("application/x-www-form-urlencoded", b"name=Changed&quantity=1", 415),
    ("text/plain", b'{"name": "Changed", "quantity": 1}', 415),
    ("multipart/form-data; boundary=b", b"--b\r\n\r\nChanged\r\n--b--", 415),
    ("application/json", b"", 400),
    ("", b"", 400),
]


@pytest.mark.parametrize(
    "content_type, body, status",
    NOT_JSON,
    ids=["form", "text", "multipart", "empty-json", "empty-untyped"],
)
def test_every_json_body_route_refuses_other_media_and_empty_bodies(
    client, app, content_type, body, status
):
    """A body that is not application/json is a 415 and an empty one a 400, on every JSON
    body operation, in one place (apidoc.BodyParser): a PATCH with a form, text or nothing
    used to answer 200 as an empty patch. Nothing changes."""
    sale = make_sale(client)
    buyer = signup(client)
    for method, path, headers in body_routes(sale, buyer):
        response = getattr(client, method)(
            path,
            data=body,
            headers={**headers, **({"Content-Type": content_type} if content_type else {})},
        )
        assert_error(response, status)
    assert_error(
        chunked_purchase(client, sale, buyer, body, {"Content-Type": content_type}), status
    )
    assert client.get("/api/v1/products/1").get_json()["name"] == "Lantern"
    assert client.get("/api/v1/sales").get_json()["items"][0]["remaining"] == sale["remaining"]


# Tokens ---------------------------------------------------------------------------------


def foreign_buyer_token(user_id: int) -> str:
    """A well-formed buyer token signed with a secret that is not the app's."""
    return itsdangerous.URLSafeTimedSerializer(
        "another-secret-entirely", salt=tokens.TOKEN_SALT
    ).dumps({"uid": str(user_id)})


def expired_buyer_token(app, user_id: int, monkeypatch) -> str:
    signed_at = time.time() - tokens.TOKEN_MAX_AGE_SECONDS - 60
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: signed_at)
    token = itsdangerous.URLSafeTimedSerializer(
        app.config["SECRET_KEY"], salt=tokens.TOKEN_SALT
    ).dumps({"uid": str(user_id)})
    monkeypatch.undo()
    return token


def test_forged_expired_and_foreign_buyer_tokens_are_401(client, app, monkeypatch):
    sale = make_sale(client)
    genuine = signup(client)["Authorization"].split()[1]
    payload, _, signature = genuine.rpartition(".")
    for token in (
        foreign_buyer_token(1),
        expired_buyer_token(app, 1, monkeypatch),
        genuine[:-2],
        payload + ".AAAA",
        genuine + "x",
        "a.b.c",
        "." * 3,
        "x" * 4000,
        "é",
    ):
        headers = {"Authorization": f"Bearer {token}"}
        assert_error(buy(client, sale, headers), 401, "unauthorized")
        assert_error(client.get("/api/v1/users/me/orders", headers=headers), 401)


def test_a_remembered_buyer_token_still_expires(client, app, monkeypatch):
    """Verified tokens are remembered per process (users/tokens.py); expiry is still judged
    on every use."""
    sale = make_sale(client)
    buyer = signup(client)
    assert buy(client, sale, buyer).status_code == 202  # verified, now remembered
    token = buyer["Authorization"].split()[1]
    assert token in app.extensions["verified_buyer_tokens"]
    later = time.time() + tokens.TOKEN_MAX_AGE_SECONDS + 60
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    assert_error(buy(client, sale, buyer), 401, "unauthorized")
    assert_error(client.get("/api/v1/users/me/orders", headers=buyer), 401, "unauthorized")


def test_remembered_buyer_tokens_are_bounded(client, app, monkeypatch):
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    sale = make_sale(client, stock=50, per_user_limit=5)
    for _ in range(7):
        assert buy(client, sale, signup(client)).status_code == 202
        assert len(app.extensions["verified_buyer_tokens"]) <= 3


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        "Bearer",
        "Bearer ",
        f"Bearer\t{ADMIN_TOKEN}",
        f"Token {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN.upper()}",
        f"Bearer {ADMIN_TOKEN} {ADMIN_TOKEN}",
        "",
    ],
)
def test_admin_token_variants_are_refused(client, app, authorization):
    """Only the exact admin token counts (compared in constant time); 401, never admin."""
    response = client.post(
        "/api/v1/products",
        json={"name": "x", "price_cents": 1},
        headers={"Authorization": authorization},
    )
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "authorization",
    [
        f"bearer {ADMIN_TOKEN}",
        f"BEARER {ADMIN_TOKEN}",
        f"Bearer  {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN} ",
    ],
)
def test_bearer_scheme_is_case_insensitive_and_whitespace_tolerant(client, app, authorization):
    """RFC 7235: the scheme is case-insensitive; surrounding spaces are not part of the token."""
    response = client.post(
        "/api/v1/products",
        json={"name": "x", "price_cents": 1},
        headers={"Authorization": authorization},
    )
    assert response.status_code == 201


# Authorization --------------------------------------------------------------------------


def test_a_buyer_cannot_touch_another_buyers_order(client, app):
    """Reading it and paying it are both 404 (existence is not leaked); see also
    tests/integration/sales/test_admission.py::test_other_buyers_orders_are_404."""
    sale = make_sale(client)
    alice, bob = signup(client, "alice"), signup(client, "bob")
    order_id = buy(client, sale, alice).get_json()["order_id"]
    assert_error(client.get(f"/api/v1/orders/{order_id}", headers=bob), 404, "not_found")
    assert_error(client.post(f"/api/v1/orders/{order_id}/pay", headers=bob), 404, "not_found")
    assert client.get(f"/api/v1/orders/{order_id}", headers=alice).status_code == 200


def test_a_buyer_cannot_call_admin_endpoints(client, app):
    sale = make_sale(client)
    buyer = signup(client)
    product = {"name": "x", "price_cents": 1}
    calls = [
        ("post", "/api/v1/products", product),
        ("patch", "/api/v1/products/1", product),
        ("post", "/api/v1/sales", {"product_id": "1", "stock": 1, "ends_at": an_hour_from_now()}),
        ("get", f"/api/v1/sales/{sale['id']}/stats", None),
    ]
    for method, path, body in calls:
        response = getattr(client, method)(path, json=body, headers=buyer)
        assert_error(response, 403, "forbidden")
        assert_error(getattr(client, method)(path, json=body), 401, "unauthorized")


def test_the_admin_cannot_buy_or_pay(client, app):
    sale = make_sale(client)
    assert_error(buy(client, sale, admin_headers()), 403, "forbidden")
    assert_error(client.post("/api/v1/sales/1/purchase-token", headers=admin_headers()), 403)


# Over raw HTTP: what a well-behaved client library would not send ------------------------


def raw_request(live_app, request: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are; return (status, headers, body) of the answer."""
    port = int(live_app.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def purchase_bytes(live_app, key: bytes, extra: bytes = b"") -> bytes:
    body = b'{"quantity": 1}'
    return (
        b"POST /api/v1/sales/" + live_app.sale_id.encode() + b"/orders HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
        + live_app.other_buyer["Authorization"].join([b"Authorization: ".decode(), ""]).encode()
        + b"\r\nIdempotency-Key: "
        + key
        + b"\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


@pytest.mark.parametrize(
    "key",
    [
        b"a" * 65,
        b"caf\xc3\xa9",
        b"\xff\xfe",
        b"has space",
        b"tab\there",
        b"nul\x00byte",
        b"x" * 8000,
    ],
    ids=["65-chars", "utf8", "latin1", "space", "tab", "nul", "8000"],
)
def test_bad_idempotency_keys_over_http_are_400(live_app, key):
    status, headers, body = raw_request(live_app, purchase_bytes(live_app, key))
    assert 400 <= status < 500, body
    if status == 400:
        assert json.loads(body)["error"]["code"] == "invalid_request"


def test_crlf_in_a_header_cannot_inject_a_header_into_the_answer(live_app):
    """A CR/LF inside a value ends the header: what follows is a separate (unknown) request
    header, never echoed; the answer carries no header the client chose."""
    key = b"k1\r\nSet-Cookie: injected=1"
    status, headers, body = raw_request(live_app, purchase_bytes(live_app, key))
    assert status in (200, 202, 400)
    assert "set-cookie" not in headers
    status, headers, _ = raw_request(live_app, purchase_bytes(live_app, b"k2\rX-Evil: 1"))
    assert status < 500 and "x-evil" not in headers


@pytest.mark.parametrize(
    "target",
    [
        b"/api/v1/../../etc/passwd",
        b"/static/../app.py",
        b"/static/..%2fapp.py",
        b"/static/%2e%2e/app.py",
        b"/static/..%5capp.py",
        b"/api/v1/sales/1%2f..%2f2",
        b"/api/v1/sales/1/../../products",
        b"//api//v1//sales",
        b"/api/v1/sales/%00",
        b"/api/v1/products/%F0%9F%9B%92",
        b"/api/v1/products/\xf0\x9f\x9b\x92",
        b"/api/v1/sales/%ZZ",
        b"/" + b"a" * 7000,
        b"/api/v1/products?" + b"q" * 7000,
        b"/api/v1/orders/" + b"%2e" * 500,
    ],
    ids=range(15),
)
def test_path_tricks_get_no_file_and_no_5xx(live_app, target):
    """Traversal, encoded slashes, overlong and unicode paths: a 4xx (JSON from the app),
    or a 200 of something public; never the source code, never a 5xx."""
    request = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    status, headers, body = raw_request(live_app, request)
    assert status < 500, (status, body[:200])
    assert b"import " not in body and b"root:" not in body
    if status >= 400 and headers.get("content-type", [""])[0].startswith("application/json"):
        assert set(json.loads(body)["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    "query",
    [f"page={HUGE}", f"per_page={HUGE}", f"page=2&per_page={HUGE}"],
    ids=["page", "per_page", "both"],
)
def test_huge_page_numbers_over_http_are_400(live_app, query):
    """The catalog's fast path runs outside Flask: int() of a 4,301-digit page raised there,
    and the server answered its own bare 500. Such a query now goes to Flask: 400 JSON."""
    for path in ("/api/v1/products", "/api/v1/sales"):
        response = requests.get(f"{live_app.base_url}{path}?{query}", timeout=30)
        assert response.status_code == 400, (path, response.status_code, response.text[:200])
        assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "target",
    [
        b"/api/v1//sales",
        b"/api/v1/sales//1",
        b"/demo//index",
        b"/api//v1/products/1",
        b"/api/v1/sales/1//stats",
    ],
)
def test_doubled_slashes_are_a_json_404_never_a_redirect(live_app, target):
    """Werkzeug used to answer these with an HTML 308 whose Location came from the
    client's Host header; every spelling a route does not have is now a JSON 404."""
    request = b"GET " + target + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    status, headers, body = raw_request(live_app, request)
    assert status == 404, (status, headers, body[:200])
    assert headers["content-type"][0].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"
    assert "location" not in headers and b"evil.example" not in body
