"""``GET /api/v1/ops/live``: what the operator page polls once a second (admin)."""

from flask_smorest import Blueprint

from flashsale import apidoc
from flashsale.auth import require_admin
from flashsale.ops import live
from flashsale.ops.schemas import LiveOut

bp = Blueprint(
    "ops-live",
    __name__,
    url_prefix="/api/v1/ops",
    description="The operator's live view of sales, the queue and the caches.",
)


@bp.get("/live")
@require_admin
@apidoc.errors(bp, *apidoc.ADMIN)
@bp.response(200, LiveOut)
def live_counters():
    """Cumulative counters now: admissions, refusals, outbox, orders persisted, cache (admin)."""
    return live.snapshot()
