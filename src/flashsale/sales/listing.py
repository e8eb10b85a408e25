"""The sales listing, ``GET /api/v1/sales``: one page of sales in the order they were
created, filtered by status.

A sale's status is decided by its times, except active against sold out, which is its live
stock. So the times filter in SQL (scheduled: not started; ended: past its end; active and
sold out: on now) and only "active or sold out, not both" reads the live stock of every
sale on now before it can cut the page. The page's live stock is read from redis in one
pipelined round trip (a second one for sharded sales), never one round trip per sale.
"""

from datetime import datetime
from datetime import timedelta

from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select

from flashsale.extensions import db
from flashsale.sales import stock
from flashsale.sales.models import Sale
from flashsale.sales.schemas import STATUSES
from flashsale.sales.service import document
from flashsale.sales.service import status_of
from spillway.clock import now_ms

ON_NOW = frozenset({"active", "sold_out"})
EPOCH = datetime(1970, 1, 1)


def list_sales(statuses: list[str] | None, page: int, per_page: int) -> dict:
    """One page of the sales with any of ``statuses`` (every sale when None), in the order
    they were created (ids are random: spillway.ids)."""
    at_ms = now_ms()
    wanted = set(statuses or STATUSES)
    query = select(Sale).where(_times_allow(wanted, at_ms)).order_by(Sale.created_at, Sale.id)
    offset = (page - 1) * per_page
    if len(wanted & ON_NOW) == 1:
        # The live stock decides: read every sale on now, then cut the page.
        sales = db.session.scalars(query).all()
        remaining = remaining_of([sale for sale in sales if _on_now(sale, at_ms)])
        matching = [
            sale
            for sale in sales
            if status_of(sale, remaining.get(sale.id, sale.stock), at_ms) in wanted
        ]
        total, shown = len(matching), matching[offset : offset + per_page]
        remaining |= remaining_of([sale for sale in shown if sale.id not in remaining])
    else:  # the times decide: count and page in SQL
        total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
        shown = db.session.scalars(query.offset(offset).limit(per_page)).all()
        remaining = remaining_of(shown)
    return {
        "items": [document(sale, remaining[sale.id], at_ms) for sale in shown],
        "page": page,
        "per_page": per_page,
        "total": total,
    }


def _times_allow(wanted: set[str], at_ms: int):
    """The SQL condition of a sale whose times allow one of the ``wanted`` statuses.

    status_at compares whole milliseconds: ended once ``at_ms >= ends_ms``, scheduled
    while ``at_ms < starts_ms``. Against the stored instants that is ``ends_at < edge``
    and ``starts_at >= edge``, with ``edge`` the millisecond after ``at_ms`` (stored
    naive, in UTC, as every timestamp here).
    """
    edge = EPOCH + timedelta(milliseconds=at_ms + 1)
    conditions = []
    if "scheduled" in wanted:
        conditions.append(Sale.starts_at >= edge)
    if "ended" in wanted:
        conditions.append(Sale.ends_at < edge)
    if wanted & ON_NOW:
        conditions.append(and_(Sale.starts_at < edge, Sale.ends_at >= edge))
    return or_(*conditions)


def _on_now(sale: Sale, at_ms: int) -> bool:
    return status_of(sale, 1, at_ms) == "active"


def remaining_of(sales: list[Sale]) -> dict[int, int]:
    """Each sale's live remaining stock (its full stock where redis does not know it, as
    :func:`flashsale.sales.service.describe` answers), in one pipelined round trip."""
    live = stock.remaining_many([sale.id for sale in sales])
    return {sale.id: live.get(sale.id, sale.stock) for sale in sales}
