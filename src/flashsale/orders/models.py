"""Orders: reservations made durable."""

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from spillway.clock import utcnow
from spillway.extensions import ID_COLUMN
from spillway.extensions import db


class Order(db.Model):
    """A reservation made durable. Its id is the reservation id, so a redelivered
    persist is a no-op (the primary key refuses the second insert)."""

    __tablename__ = "orders"
    # By buyer (a buyer's orders) and by sale (stats and reconciliation count and sum them).
    __table_args__ = (Index("ix_orders_user_sale", "user_id", "sale_id"),
                      Index("ix_orders_sale_status", "sale_id", "status"))

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
