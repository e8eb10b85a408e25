"""Flash-sale endpoints: /api/v1/sales."""

import json
import logging

from flask import Response
from flask import current_app
from flask import g
from flask import request
from flask.views import MethodView
from flask_limiter import RateLimitExceeded
from flask_smorest import Blueprint
from redis.exceptions import RedisError

from flashsale import apidoc
from flashsale.auth import require_admin
from flashsale.auth import require_buyer
from flashsale.sales import listing
from flashsale.sales import purchase_tokens
from flashsale.sales import service
from flashsale.sales import stock
from flashsale.sales import stream
from flashsale.sales.schemas import STATUSES
from flashsale.sales.schemas import PurchaseIn
from flashsale.sales.schemas import PurchaseOut
from flashsale.sales.schemas import PurchaseTokenOut
from flashsale.sales.schemas import SaleIn
from flashsale.sales.schemas import SaleList
from flashsale.sales.schemas import SaleListArgs
from flashsale.sales.schemas import SaleOut
from flashsale.sales.schemas import SaleStats
from spillway.errors import load_json_body
from spillway.security.ratelimits import too_many_requests

PURCHASE_SCHEMA = PurchaseIn()
PURCHASE_HEADERS = [
    {
        "in": "header",
        "name": "Idempotency-Key",
        "required": False,
        "description": "The same key from the same buyer answers the first order again; an "
        "empty header counts as none.",
        "schema": {"type": "string", "pattern": "^([\\x21-\\x7e]{1,64})?$"},
    },
    {
        "in": "header",
        "name": purchase_tokens.HEADER,
        "required": False,
        "description": "Required by sales created with requires_purchase_token: from "
        "POST /api/v1/sales/{sale_id}/purchase-token.",
        "schema": {"type": "string"},
    },
]

# One event of the stream, as OpenAPI before 3.2 describes a text/event-stream: its fields
# (an unnamed "message" event, its data a JSON object).
STREAM_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["message"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["remaining", "status"],
                "additionalProperties": False,
                "properties": {
                    "remaining": {"type": "integer", "minimum": 0},
                    "status": {"type": "string", "enum": list(STATUSES)},
                },
            },
        },
    },
    "required": ["data"],
}
# What a client can follow from one answer to the next (OpenAPI links): a sale to its
# purchase, a purchase's order to its status and payment.
TO_THE_SALE = {"sale_id": "$response.body#/id"}
SALE_LINKS = {
    "purchase": {"operationId": "purchase", "parameters": TO_THE_SALE},
    "get_sale": {"operationId": "get_sale", "parameters": TO_THE_SALE},
    "purchase_token": {"operationId": "purchase_token", "parameters": TO_THE_SALE},
}
TO_THE_ORDER = {"order_id": "$response.body#/order_id"}
ORDER_LINKS = {
    "get_order": {"operationId": "get_order", "parameters": TO_THE_ORDER},
    "pay_order": {"operationId": "pay_order", "parameters": TO_THE_ORDER},
}

log = logging.getLogger(__name__)
bp = Blueprint(
    "sales",
    __name__,
    url_prefix="/api/v1/sales",
    description="Flash sales: admission in one redis round trip.",
)


@bp.route("")
class Sales(MethodView):
    @bp.arguments(SaleListArgs, location="query")
    @apidoc.errors(bp, 400)
    @bp.doc(
        operationId="list_sales",
        responses={
            200: {
                "links": {
                    "purchase": {
                        "operationId": "purchase",
                        "parameters": {"sale_id": "$response.body#/items/0/id"},
                    }
                }
            }
        },
    )
    @bp.response(200, SaleList)
    def get(self, args):
        """List sales in the order they were created, a page at a time, optionally only
        those with given statuses."""
        return listing.list_sales(args.get("status"), args["page"], args["per_page"])

    @require_admin
    @bp.arguments(SaleIn)
    @apidoc.errors(bp, *apidoc.ADMIN, *apidoc.WITH_BODY)
    @bp.doc(operationId="create_sale", responses={201: {"links": SALE_LINKS}})
    @bp.response(201, SaleOut)
    def post(self, fields):
        """Create a sale; its stock is in redis before this answers (admin)."""
        return service.create_sale(fields)


@bp.get("/<sale_id>")
@apidoc.errors(bp, 404)
@bp.doc(operationId="get_sale")
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
@bp.doc(
    requestBody={"required": True, "content": {"application/json": {"schema": PurchaseIn}}},
    parameters=PURCHASE_HEADERS,
    operationId="purchase",
    responses={202: {"links": ORDER_LINKS}, 200: {"links": ORDER_LINKS}},
)
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
    status, answer = service.purchase(
        sale_number, g.user_id, body["quantity"], request.headers.get("Idempotency-Key", "")
    )
    return Response(json.dumps(answer), status=status, mimetype="application/json")


@bp.errorhandler(RateLimitExceeded)
def per_address_limit(exc: RateLimitExceeded):
    """A purchase refused by the per-address limit counts in its sale's stats too (the
    per-buyer one is counted by reserve.lua itself)."""
    if request.endpoint == "sales.purchase":
        try:
            stock.count_rejection((request.view_args or {}).get("sale_id", ""), "rate_limited")
        except RedisError as exc_redis:
            log.warning("could not count a rate-limited purchase: %s", exc_redis)
    return too_many_requests(exc)


@bp.post("/<sale_id>/purchase-token")
@require_buyer
@apidoc.errors(bp, *apidoc.BUYER, 404, 409)
@bp.doc(operationId="purchase_token")
@bp.response(200, PurchaseTokenOut)
def purchase_token(sale_id):
    """A short-lived token for this buyer and sale, issued only while the sale is on; a sale
    created with requires_purchase_token admits purchases only with it (X-Purchase-Token)."""
    return purchase_tokens.issue(service.parse_sale_id(sale_id), g.user_id)


@bp.get("/<sale_id>/stream")
@bp.response(
    200,
    content_type="text/event-stream",
    description=(
        'Server-sent events: `data: {"remaining": 7, "status": "active"}` at once and '
        "on every change of either (status also changes when the sale starts or ends, by the "
        "server clock); a `: ping` comment every 15 s while nothing changes; the stream ends "
        "after SPILLWAY_STREAM_MAX_LIFETIME_S (600 s) and EventSource reconnects by itself."
    ),
)
@bp.doc(
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": STREAM_EVENT,
                    "example": (
                        'retry: 2000\n\ndata: {"remaining": 7, "status": "active"}\n\n: ping\n\n'
                    ),
                }
            }
        }
    }
)
@apidoc.errors(bp, 404)  # and 429/503: this address's or this server's streams are at the cap
def stream_sale(sale_id):
    """Follow a sale's remaining stock and status live (text/event-stream)."""
    # Requests normally reach stream.StreamFastPath; this view documents the endpoint and
    # serves what the fast path leaves to Flask.
    return Response(
        stream.open_stream(current_app._get_current_object(), sale_id, request.remote_addr or ""),
        headers=stream.STREAM_HEADERS,
    )
