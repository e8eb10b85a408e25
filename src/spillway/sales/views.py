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
from spillway.sales import service
from spillway.sales.schemas import PurchaseIn
from spillway.sales.schemas import PurchaseOut
from spillway.sales.schemas import SaleIn
from spillway.sales.schemas import SaleList
from spillway.sales.schemas import SaleListArgs
from spillway.sales.schemas import SaleOut
from spillway.sales.schemas import SaleStats

PURCHASE_SCHEMA = PurchaseIn()

bp = Blueprint("sales", __name__, url_prefix="/api/v1/sales",
               description="Flash sales: admission in one redis round trip.")


@bp.route("")
class Sales(MethodView):
    @bp.arguments(SaleListArgs, location="query")
    @bp.response(200, SaleList)
    def get(self, args):
        """List sales, optionally only those with a given status."""
        return {"items": service.list_sales(args.get("status"))}

    @require_admin
    @bp.arguments(SaleIn)
    @bp.response(201, SaleOut)
    def post(self, fields):
        """Create a sale; its stock is in redis before this answers (admin)."""
        return service.create_sale(fields)


@bp.get("/<sale_id>")
@bp.response(200, SaleOut)
def get_sale(sale_id):
    """Get one sale with its live remaining stock."""
    return service.describe(service.get_sale(service.parse_sale_id(sale_id)))


@bp.get("/<sale_id>/stats")
@require_admin
@bp.response(200, SaleStats)
def sale_stats(sale_id):
    """Stock, reservations, orders and refusals of a sale (admin)."""
    return service.stats(service.get_sale(service.parse_sale_id(sale_id)))


@bp.post("/<sale_id>/orders")
@require_buyer
@bp.doc(requestBody={"required": True, "content": {"application/json": {"schema": PurchaseIn}}})
@bp.response(202, PurchaseOut)
@bp.alt_response(200, schema=PurchaseOut, description="The Idempotency-Key's earlier order.")
def purchase(sale_id):
    """Reserve units: 202 with the order id, kept as a promise (send an Idempotency-Key)."""
    # Requests normally reach sales/fastpath.py, which runs these same steps before Flask;
    # this view documents the endpoint and takes what the fast path leaves (chunked bodies).
    body = load_json_body(PURCHASE_SCHEMA)
    status, answer = service.purchase(service.parse_sale_id(sale_id), g.user_id,
                                      body["quantity"], request.headers.get("Idempotency-Key", ""))
    return Response(json.dumps(answer), status=status, mimetype="application/json")


# The live stock stream registers its route on this blueprint (a module of its own).
from spillway.sales import stream  # noqa: E402,F401
