"""``GET /api/v1/ops/live``: what the operator page polls once a second (admin)."""

from flask_smorest import Blueprint

from spillway import apidoc
from spillway.auth import require_admin
from spillway.metrics import live
from spillway.metrics.schemas import LiveOut

bp = Blueprint("ops-live", __name__, url_prefix="/api/v1/ops",
               description="The operator's live view of sales, the queue and the caches.")


@bp.get("/live")
@require_admin
@apidoc.errors(bp, *apidoc.ADMIN)
@bp.response(200, LiveOut)
def live_counters():
    """Cumulative counters now: admissions, refusals, outbox, orders persisted, cache (admin)."""
    return live.snapshot()
