"""The operator page's numbers: cumulative counters, cheap to read once a second.

The page computes rates from two consecutive snapshots. Sales, the outbox and the
orders persisted come from redis (one pipelined round trip) and are global; cache
lookups come from this host's Prometheus counters (summed over its processes). The
runtime's guards (docs/guards.md): each gevent worker of this host with its hub blocks,
and each Celery worker with its last ping through the broker.
"""

import glob
import os
import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

from flask import current_app
from sqlalchemy import select

from flashsale import keys
from flashsale.extensions import db
from flashsale.ops.collectors import outbox_state
from flashsale.sales.models import Sale
from flashsale.sales.service import status_of
from spillway.clients import redis_store
from spillway.guards import hub_monitor
from spillway.guards import worker_liveness
from spillway.metrics import registry

# Sales shown: not yet ended, or ended this recently; the newest first, at most this many.
RECENTLY_ENDED = timedelta(minutes=10)
MAX_SALES = 20
REJECT_REASONS = ("sold_out", "limit_exceeded", "sale_not_active", "rate_limited")


def snapshot() -> dict:
    """Every cumulative counter the operator page charts, and the server's clock."""
    now_ms = int(time.time() * 1000)
    since = datetime.now(timezone.utc) - RECENTLY_ENDED
    sales = db.session.scalars(
        select(Sale)
        .where(Sale.ends_at > since.replace(tzinfo=None))
        .order_by(Sale.created_at.desc())
        .limit(MAX_SALES)
    ).all()
    pipe = redis_store.pipeline(transaction=False)
    for sale in sales:
        pipe.hgetall(keys.sale_key(sale.id))
    states = pipe.execute()
    outbox = outbox_state(redis_store.client)
    return {
        "at_ms": now_ms,
        "admitted": outbox["added"],
        "orders_persisted": outbox["persisted"],
        "outbox": {"depth": outbox["depth"], "pending": outbox["pending"]},
        "sales": [_sale(sale, raw, now_ms) for sale, raw in zip(sales, states)],
        "cache": cache_totals(),
        "hub": hub_monitor.worker_blocks(),
        "celery_workers": celery_workers(),
    }


def celery_workers() -> list[dict]:
    """Each Celery worker heard of lately, with its last ping's round trip and age, and
    whether it is silent past the stall bound (the bound its watchdog restarts it at)."""
    stall_s = current_app.config["WORKER_STALL_S"]
    return [
        {
            "name": name,
            "rtt_s": round(entry["rtt_s"], 4),
            "age_s": round(entry["age_s"], 1),
            "silent": entry["age_s"] > stall_s,
        }
        for name, entry in sorted(worker_liveness.workers(redis_store.client).items())
    ]


def _sale(sale: Sale, raw: dict, now_ms: int) -> dict:
    live = {k.decode(): int(v) for k, v in raw.items()}
    remaining = live.get("remaining", sale.stock)
    return {
        "id": str(sale.id),
        "status": status_of(sale, remaining, now_ms),
        "stock": sale.stock,
        "remaining": remaining,
        "rejected": {r: live.get(f"rejected_{r}", 0) for r in REJECT_REASONS},
    }


def cache_totals() -> list[dict]:
    """Hits and misses by tier and namespace, summed over this host's processes."""
    kinds = {"spillway_cache_hits": "hits", "spillway_cache_misses": "misses"}
    totals: dict[tuple[str, str], dict] = {}
    for family in _counter_families():
        kind = kinds.get(family.name)
        for sample in family.samples if kind else ():
            if not sample.name.endswith("_total"):
                continue
            key = sample.labels["tier"], sample.labels["namespace"]
            entry = totals.setdefault(
                key, {"tier": key[0], "namespace": key[1], "hits": 0, "misses": 0}
            )
            entry[kind] += int(sample.value)
    return [totals[key] for key in sorted(totals)]


def _counter_families():
    shared = registry.multiprocess_dir()
    if not shared:
        return [*registry.CACHE_HITS.collect(), *registry.CACHE_MISSES.collect()]
    from prometheus_client.multiprocess import MultiProcessCollector

    # Counter files only: histograms (the bulk of the data) are not read.
    return MultiProcessCollector.merge(glob.glob(os.path.join(shared, "counter_*.db")))
