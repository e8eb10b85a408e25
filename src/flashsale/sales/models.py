"""Flash sales."""

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy import false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flashsale.extensions import ID_COLUMN
from flashsale.extensions import db
from spillway.clock import utcnow
from spillway.ids import new_id


class Sale(db.Model):
    """A number of units of one product, sold between two instants.

    Its live stock lives in redis (flashsale.sales.stock); this row is the definition.
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
    # Purchases must carry a purchase token (flashsale.sales.purchase_tokens); immutable.
    requires_purchase_token: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
