"""Flash sales."""

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from spillway.clock import utcnow
from spillway.extensions import ID_COLUMN
from spillway.extensions import db
from spillway.ids import new_id


class Sale(db.Model):
    """A number of units of one product, sold between two instants.

    Its live stock lives in redis (spillway.sales.stock); this row is the definition.
    """

    __tablename__ = "sales"

    # Random, so that no other ledger's redis state can share it (spillway.ids).
    id: Mapped[int] = mapped_column(ID_COLUMN, primary_key=True, default=new_id)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    stock: Mapped[int]
    per_user_limit: Mapped[int]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    payment_timeout_s: Mapped[int]
    # Purchases must carry a purchase token (spillway.sales.purchase_tokens); immutable.
    requires_purchase_token: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerIdentity(db.Model):
    """Which ledger this database is: made once, by the migration that creates the table,
    and recorded by redis beside the state it keeps for it (spillway.sales.binding).

    ``outbox_mark_*`` is the newest outbox entry whose order this ledger holds (a redis
    stream id, ms and sequence): redis having deleted newer persisted entries means this
    database is older than redis; redis never having made an entry this new means redis
    is older than the database.
    """

    __tablename__ = "ledger_identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    outbox_mark_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    outbox_mark_seq: Mapped[int] = mapped_column(BigInteger, default=0)
