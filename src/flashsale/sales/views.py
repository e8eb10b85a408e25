"""Flash-sale endpoints: /api/v1/sales."""

import json

from flask import Response
from flask import g
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from spillway.auth import require_admin
from spillway.errors import load_json_body
from spillway.auth import require_buyer
from spillway.sales import listing
from spillway.sales import purchase_tokens
from spillway.sales import service
from spillway.sales.schemas import PurchaseIn
from spillway.sales.schemas import PurchaseOut
from spillway.sales.schemas import PurchaseTokenOut
from spillway.sales.schemas import SaleIn
from spillway.sales.schemas import SaleList
from spillway.sales.schemas import SaleListArgs
from spillway.sales.schemas import SaleOut
from spillway.sales.schemas import SaleStats
from spillway import apidoc

PURCHASE_SCHEMA = PurchaseIn()
PURCHASE_HEADERS = [
    {"in": "header", "name": "Idempotency-Key", "required": False,
     "description": "The same key from the same buyer answers the first order again.",
     "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$"}},
    {"in": "header", "name": purchase_tokens.HEADER, "required": False,
     "description": "Required by sales created with requires_purchase_token: from "
                    "POST /api/v1/sales/{sale_id}/purchase-token.",
     "schema": {"type": "string"}},
]

bp = Blueprint("sales", __name__, url_prefix="/api/v1/sales",
               description="Flash sales: admission in one redis round trip.")


@bp.route("")
class Sales(MethodView):
    @bp.arguments(SaleListArgs, location="query")
    @apidoc.errors(bp, 400)
    @bp.response(200, SaleList)
    def get(self, args):
        """List sales in the order they were created, a page at a time, optionally only those with given statuses."""
        return listing.list_sales(args.get("status"), args["page"], args["per_page"])

    @require_admin
    @bp.arguments(SaleIn)
    @apidoc.errors(bp, *apidoc.ADMIN, *apidoc.WITH_BODY)
    @bp.response(201, SaleOut)
    def post(self, fields):
        """Create a sale; its stock is in redis before this answers (admin)."""
        return service.create_sale(fields)


@bp.get("/<sale_id>")
@apidoc.errors(bp, 404)
@bp.response(200, SaleOut)
def get_sale(sale_id):
    """Get one sale with its live remaining stock."""
    return service.describe(service.get_sale(service.parse_sale_id(sale_id)))


@bp.get("/<sale_id>/stats")
@require_admin
@apidoc.errors(bp, *apidoc.ADMIN, 404)
@bp.response(200, SaleStats)
def sale_stats(sale_id):
    """Stock, reservations, orders and refusals of a sale (admin)."""
    return service.stats(service.get_sale(service.parse_sale_id(sale_id)))


@bp.post("/<sale_id>/orders")
@require_buyer
@bp.doc(requestBody={"required": True, "content": {"application/json": {"schema": PurchaseIn}}},
        parameters=PURCHASE_HEADERS)
@apidoc.errors(bp, *apidoc.BUYER, *apidoc.WITH_BODY, 404, 409)
@bp.response(202, PurchaseOut)
@bp.alt_response(200, schema=PurchaseOut, description="The Idempotency-Key's earlier order.")
def purchase(sale_id):
    """Reserve units: 202 with the order id, kept as a promise (send an Idempotency-Key)."""
    # Requests normally reach sales/fastpath.py, which runs these same steps before Flask;
    # this view documents the endpoint and takes what the fast path leaves (chunked bodies).
    sale_number = service.parse_sale_id(sale_id)
    purchase_tokens.check(sale_number, g.user_id, request.headers.get(purchase_tokens.HEADER))
    body = load_json_body(PURCHASE_SCHEMA)
    status, answer = service.purchase(sale_number, g.user_id,
                                      body["quantity"], request.headers.get("Idempotency-Key", ""))
    return Response(json.dumps(answer), status=status, mimetype="application/json")


@bp.post("/<sale_id>/purchase-token")
@require_buyer
@apidoc.errors(bp, *apidoc.BUYER, 404, 409)
@bp.response(200, PurchaseTokenOut)
def purchase_token(sale_id):
    """A short-lived token for this buyer and sale, issued only while the sale is on; a sale
    created with requires_purchase_token admits purchases only with it (X-Purchase-Token)."""
    return purchase_tokens.issue(service.parse_sale_id(sale_id), g.user_id)


# The live stock stream registers its route on this blueprint (a module of its own).
from spillway.sales import stream  # noqa: E402,F401
