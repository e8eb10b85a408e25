"""Buyers."""

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flashsale.extensions import ID_COLUMN
from flashsale.extensions import db
from spillway.clock import utcnow
from spillway.ids import new_id


class User(db.Model):
    """A buyer; the id is shown to clients as an opaque string."""

    __tablename__ = "users"

    # Random, so that no other ledger's redis state can share it (spillway.ids).
    id: Mapped[int] = mapped_column(ID_COLUMN, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
