"""The product endpoints of docs/api.md: shapes, auth, validation, paging."""

import re

import pytest

from tests.factories import admin_headers
from tests.factories import make_product

VALID = {
    "name": "Kettle",
    "description": "Whistles.",
    "price_cents": 2500,
    "image_url": "https://example.test/kettle.png",
}


def test_admin_creates_a_product(client):
    """POST with the admin token answers 201 with the product, its id a string."""
    response = client.post("/api/v1/products", json=VALID, headers=admin_headers())
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert isinstance(body["id"], str)
    assert {k: body[k] for k in VALID} == VALID
    assert client.get(f"/api/v1/products/{body['id']}").get_json() == body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
    ],
)
def test_writes_need_the_admin_token(client, headers):
    """Without the admin token a write is 401 and creates nothing."""
    response = client.post("/api/v1/products", json=VALID, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/api/v1/products").get_json()["total"] == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({**VALID, "colour": "red"}, "colour"),
        ({**VALID, "name": ""}, "name"),
        ({**VALID, "name": "x" * 201}, "name"),
        ({**VALID, "price_cents": "12"}, "price_cents"),
        ({**VALID, "price_cents": 12.5}, "price_cents"),
        ({**VALID, "price_cents": -1}, "price_cents"),
        ({**VALID, "price_cents": True}, "price_cents"),
        ({**VALID, "description": "x" * 5001}, "description"),
        ({**VALID, "image_url": "not a url"}, "image_url"),
        ({**VALID, "image_url": ""}, "image_url"),
        ({**VALID, "image_url": "javascript:alert(1)"}, "image_url"),
        ({**VALID, "image_url": '/static/a"onerror=x.png'}, "image_url"),
        ({**VALID, "name": 7}, "name"),
        ({"description": "no name"}, "name"),
    ],
)
def test_bad_fields_are_400_naming_the_field(client, body, field):
    """Each invalid body is refused with invalid_request naming the field; nothing is created."""
    response = client.post("/api/v1/products", json=body, headers=admin_headers())
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"]
    assert client.get("/api/v1/products").get_json()["total"] == 0


@pytest.mark.parametrize(
    "data, content_type",
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"name=x", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
    ],
)
def test_malformed_bodies_are_400(client, data, content_type):
    """Malformed JSON, a non-object or a non-JSON body is a clean 400 (or 415)."""
    response = client.post(
        "/api/v1/products", data=data, content_type=content_type, headers=admin_headers()
    )
    assert response.status_code in (400, 415)
    assert response.get_json()["error"]["code"] in ("invalid_request", "unsupported_media_type")


@pytest.mark.parametrize("raw_id", ["999", "abc", "0", "-1", "1.5", "9" * 30])
def test_unknown_ids_are_404(client, raw_id):
    """An id that names no product is 404 not_found, whatever its form."""
    response = client.get(f"/api/v1/products/{raw_id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_listing_pages_in_id_order(client, app):
    """Listing pages are ordered by id and report the total."""
    ids = [make_product(name=f"P{i}").id for i in range(5)]
    page = client.get("/api/v1/products?page=2&per_page=2").get_json()
    assert [item["id"] for item in page["items"]] == [str(i) for i in ids[2:4]]
    assert (page["page"], page["per_page"], page["total"]) == (2, 2, 5)
    default = client.get("/api/v1/products").get_json()
    assert (default["page"], default["per_page"], len(default["items"])) == (1, 20, 5)


@pytest.mark.parametrize(
    "query", ["page=0", "per_page=0", "per_page=101", "page=abc", "per_page=1.5"]
)
def test_bad_paging_is_400(client, query):
    """page ≥ 1 and per_page 1…100, else 400."""
    response = client.get(f"/api/v1/products?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_patch_changes_only_the_given_fields(client, app):
    """PATCH answers the whole product with just the sent fields changed."""
    product = make_product()
    response = client.patch(
        f"/api/v1/products/{product.id}", json={"price_cents": 999}, headers=admin_headers()
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["price_cents"] == 999 and body["name"] == "Lantern"


def test_patch_validates_and_changes_nothing_on_error(client, app):
    """A bad PATCH is 400 and leaves the product as it was."""
    product = make_product()
    response = client.patch(
        f"/api/v1/products/{product.id}",
        json={"price_cents": 5, "name": None},
        headers=admin_headers(),
    )
    assert response.status_code == 400
    assert client.get(f"/api/v1/products/{product.id}").get_json()["price_cents"] == 1299


def test_product_responses_are_json_and_revalidated(client, app):
    """Answers are application/json with Cache-Control: no-cache."""
    product = make_product()
    response = client.get(f"/api/v1/products/{product.id}")
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-cache"


def test_openapi_document_and_docs_page(client):
    """The OpenAPI 3 document covers the catalog; /docs is a page that reads it."""
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/products", "/api/v1/products/{product_id}"} <= set(spec["paths"])
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("/ErrorDetail")  # our shape
    with client.get("/docs") as docs:
        assert docs.status_code == 200 and b"openapi.json" in docs.data


def test_the_document_declares_what_image_url_and_text_accept(client):
    """What the server enforces on image_url (an http(s) URL or a path from /) and on every
    text (no NUL) is in the OpenAPI document as a pattern, so a generated client sends only
    what is accepted (schemathesis's positive_data_acceptance found both undeclared)."""
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    image_url = schemas["ProductIn"]["properties"]["image_url"]["pattern"]
    assert re.fullmatch(image_url, "https://example.test/kettle.png")
    assert re.fullmatch(image_url, "/static/kettle.png")
    assert not re.fullmatch(image_url, "ftp://example.test/kettle.png")
    assert schemas["ProductIn"]["properties"]["name"]["pattern"] == "^[^\\x00]*$"
    for url in ("https://example.test/kettle.png", "/static/kettle.png"):
        response = client.post(
            "/api/v1/products", json={**VALID, "image_url": url}, headers=admin_headers()
        )
        assert response.status_code == 201, response.get_json()
