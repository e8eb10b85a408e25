"""Shapes of the operator page's live JSON (for the OpenAPI document)."""

from marshmallow import Schema
from marshmallow import fields

from flashsale.sales.schemas import RejectedOut


class OutboxOut(Schema):
    depth = fields.Integer(required=True, metadata={"description": "entries not yet persisted"})
    pending = fields.Integer(
        required=True, metadata={"description": "taken by a worker, not acknowledged"}
    )


class LiveSaleOut(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True)
    stock = fields.Integer(required=True)
    remaining = fields.Integer(required=True)
    rejected = fields.Nested(
        RejectedOut, required=True, metadata={"description": "cumulative refusals by reason"}
    )


class CacheTotalsOut(Schema):
    tier = fields.String(required=True, metadata={"example": "memcached"})
    namespace = fields.String(required=True, metadata={"example": "catalog-pages"})
    hits = fields.Integer(required=True)
    misses = fields.Integer(required=True)


class HubWorkerOut(Schema):
    pid = fields.Integer(required=True)
    server = fields.String(required=True, metadata={"example": "gunicorn"})
    blocks = fields.Integer(
        required=True,
        metadata={
            "description": "times its hub ran no other greenlet over SPILLWAY_MAX_BLOCKING_MS"
        },
    )
    longest_s = fields.Float(required=True, metadata={"description": "its longest block"})


class CeleryWorkerOut(Schema):
    name = fields.String(required=True, metadata={"example": "celery@worker-1"})
    rtt_s = fields.Float(
        required=True, metadata={"description": "its last ping: sent to its queue → run"}
    )
    age_s = fields.Float(required=True, metadata={"description": "seconds since it ran"})
    silent = fields.Boolean(
        required=True, metadata={"description": "no ping for SPILLWAY_WORKER_STALL_S"}
    )


class LiveOut(Schema):
    """Cumulative counters at one instant; rates are differences of two snapshots."""

    at_ms = fields.Integer(required=True, metadata={"description": "server clock, ms since epoch"})
    admitted = fields.Integer(
        required=True, metadata={"description": "reservations ever admitted (outbox)"}
    )
    orders_persisted = fields.Integer(
        required=True, metadata={"description": "orders the workers persisted"}
    )
    outbox = fields.Nested(OutboxOut, required=True)
    sales = fields.List(
        fields.Nested(LiveSaleOut),
        required=True,
        metadata={
            "description": "sales not ended, or ended in the last "
            "10 minutes; newest first, at most 20"
        },
    )
    cache = fields.List(
        fields.Nested(CacheTotalsOut),
        required=True,
        metadata={
            "description": "app-side lookups on this host (nginx's own "
            "memcached hits are not seen by the app)"
        },
    )
    hub = fields.List(
        fields.Nested(HubWorkerOut),
        required=True,
        metadata={"description": "this host's live gevent workers"},
    )
    celery_workers = fields.List(
        fields.Nested(CeleryWorkerOut),
        required=True,
        metadata={"description": "Celery workers heard of lately"},
    )
