"""Order endpoints: status, payment, a buyer's orders."""

from flask import g
from flask_smorest import Blueprint

from flashsale import apidoc
from flashsale.auth import current_caller
from flashsale.auth import require_buyer
from flashsale.orders import service
from flashsale.orders.schemas import OrderList
from flashsale.orders.schemas import OrderOut
from flashsale.orders.schemas import PaidOut

bp = Blueprint("orders", __name__, description="Orders: poll their status, pay them.")


@bp.get("/api/v1/orders/<order_id>")
@apidoc.errors(bp, 401, 404)
@bp.response(200, OrderOut)
def get_order(order_id):
    """Get an order: pending, confirmed, paid or cancelled (owner or admin)."""
    role, user_id = current_caller()
    return service.find(order_id, role, user_id)


@bp.post("/api/v1/orders/<order_id>/pay")
@require_buyer
@apidoc.errors(bp, *apidoc.BUYER, 404, 409)
@bp.response(200, PaidOut)
def pay_order(order_id):
    """Pay a confirmed order before its deadline (owner); paying twice is harmless."""
    return service.pay(order_id, g.user_id)


@bp.get("/api/v1/users/me/orders")
@require_buyer
@apidoc.errors(bp, *apidoc.BUYER)
@bp.response(200, OrderList)
def my_orders():
    """List the calling buyer's orders, newest first."""
    return {"items": service.of_buyer(g.user_id)}
