"""The orders' outbox: accepted purchases waiting for the ledger (spillway.outbox).

reserve.lua adds an entry in the same step that takes the stock; orders/tasks.py drains
the stream into the ledger (orders/ledger.py), the sweeper claims back what a dead worker
held, and nothing else reads or writes it.
"""

import logging

from flask import current_app

from flashsale.keys import OUTBOX
from flashsale.keys import OUTBOX_GROUP
from spillway.outbox import Outbox

log = logging.getLogger(__name__)

outbox = Outbox(OUTBOX, OUTBOX_GROUP)
DRAIN_TASK = "flashsale.orders.tasks.drain_outbox"


def nudge_drain() -> None:
    """Ask a worker to drain now (the outbox was idle). Losing this message loses nothing:
    beat schedules a drain every second anyway. Sent by name: admission need not import
    the tasks that persist what it admits."""
    try:
        sent = current_app.extensions["celery"].send_task(DRAIN_TASK, expires=30)
    except Exception as exc:
        log.warning("could not nudge the drainer (beat will): %s", exc)
    else:
        # At most once a second across the web tier (reserve.lua's marker): the line that
        # ties a request to the task it sent, for the request id's trail.
        log.info("the outbox was idle: asked a worker to drain it", extra={"task_id": sent.id})
