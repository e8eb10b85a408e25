"""Catalog endpoints: /api/v1/products."""

from flask import Response
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from flashsale import apidoc
from flashsale.auth import is_admin
from flashsale.auth import require_admin
from flashsale.catalog import service
from flashsale.catalog.schemas import PageArgs
from flashsale.catalog.schemas import ProductIn
from flashsale.catalog.schemas import ProductOut
from flashsale.catalog.schemas import ProductPage
from flashsale.catalog.schemas import ProductPatch

bp = Blueprint(
    "catalog",
    __name__,
    url_prefix="/api/v1/products",
    description="Products: read-mostly, cached in memcached and served by nginx.",
)


def json_body(body: bytes, status: int = 200) -> Response:
    # no-cache: clients revalidate, so a PATCH is seen by the very next GET anywhere.
    return Response(
        body, status=status, mimetype="application/json", headers={"Cache-Control": "no-cache"}
    )


def cache_allowed() -> bool:
    """An admin may read past the caches with `Cache-Control: no-cache` (benchmarks, audits)."""
    return not ("no-cache" in request.headers.get("Cache-Control", "") and is_admin())


@bp.route("")
class Products(MethodView):
    @bp.arguments(PageArgs, location="query")
    @apidoc.errors(bp, 400)
    @bp.response(200, ProductPage)
    def get(self, args):
        """List products, ordered by id."""
        return json_body(service.listing_body(args["page"], args["per_page"], cache_allowed()))

    @require_admin
    @bp.arguments(ProductIn)
    @apidoc.errors(bp, *apidoc.ADMIN, *apidoc.WITH_BODY)
    @bp.response(201, ProductOut)
    def post(self, fields):
        """Create a product (admin)."""
        return json_body(service.encode(service.create_product(fields).to_dict()), 201)


@bp.route("/<product_id>")
class ProductById(MethodView):
    @apidoc.errors(bp, 404)
    @bp.response(200, ProductOut)
    def get(self, product_id):
        """Get one product."""
        return json_body(service.product_body(service.parse_id(product_id), cache_allowed()))

    @require_admin
    @bp.arguments(ProductPatch(partial=True))
    @apidoc.errors(bp, *apidoc.ADMIN, *apidoc.WITH_BODY, 404)
    @bp.response(200, ProductOut)
    def patch(self, changes, product_id):
        """Change any of a product's fields (admin)."""
        product = service.update_product(service.parse_id(product_id), changes)
        return json_body(service.encode(product.to_dict()))
