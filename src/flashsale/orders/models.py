"""Orders: reservations made durable."""

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flashsale.extensions import ID_COLUMN
from flashsale.extensions import db
from spillway.clock import utcnow


class Order(db.Model):
    """A reservation made durable. Its id is the reservation id, so a redelivered
    persist is a no-op (the primary key refuses the second insert)."""

    __tablename__ = "orders"
    # By buyer (a buyer's orders) and by sale (stats and reconciliation count and sum them).
    __table_args__ = (
        Index("ix_orders_user_sale", "user_id", "sale_id"),
        Index("ix_orders_sale_status", "sale_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sale_id: Mapped[int] = mapped_column(ID_COLUMN, ForeignKey("sales.id"))
    user_id: Mapped[int] = mapped_column(ID_COLUMN)
    quantity: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    # The buyer's Idempotency-Key, if any: with it the ledger alone can rebuild what redis
    # must know to answer a replay (spillway ledger clear).
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerIdentity(db.Model):
    """Which ledger this database is: made once, by the migration that creates the table,
    and recorded by redis beside the state it keeps for it (flashsale.sales.binding).

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
