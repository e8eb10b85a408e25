"""Redis state bound to its ledger: checked before any process trusts it.

Redis keeps what the ledger does not hold yet (live stock, buyers' holdings, idempotency
keys, the outbox of accepted purchases), keyed by ids the ledger hands out. If the two part
ways — a new database beside an old redis, a database restored from an older backup, two
deployments on one redis, a redis restored from another host — the new ledger's sale 1
inherits the old sale 1's keys, and new buyers are answered with ghost orders. So the pair
is checked, and a mismatch stops the process with one line saying what to do:

1. **Identity.** The database has an identity made once by a migration
   (``ledger_identity``); redis records, in ``spillway:ledger``, which ledger its state
   belongs to. Another identity there: everything in redis is another ledger's.
2. **Sales.** Redis registers every sale it holds (``spillway:sales``); the ledger must hold
   the same sales. Sales only redis knows: the database is older (restored) or another's.
   Sales only the database knows: redis was emptied, replaced or restored from an older copy.
3. **Outbox mark.** With each batch of orders the ledger records the newest outbox entry it
   holds (a stream id). Redis having deleted newer persisted entries: the database lost
   orders (restored from an older backup). The ledger holding an entry newer than any redis
   ever made: redis lost writes (an old copy, or the last second before a crash).

Why a checked marker, not keys namespaced by the identity: namespacing would hide another
ledger's state rather than say so (its accepted purchases would sit in a redis nobody
drains), and a database restored from a backup keeps its identity, so namespacing cannot
notice it at all. Ids themselves are random (spillway.ids), so that even then one ledger's
id never lands on another's keys. The ways out, adopt and clear, are in sales/repair.py.
"""

import logging
from dataclasses import dataclass
from dataclasses import field

from sqlalchemy import func
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import update

from flashsale import keys
from flashsale.extensions import db
from flashsale.orders.models import LedgerIdentity
from flashsale.orders.models import Order
from flashsale.sales import service
from flashsale.sales import stock
from flashsale.sales.models import Sale
from spillway.clients import redis_store
from spillway.clock import now_ms
from spillway.extension import NotCheckableYet
from spillway.extension import StartRefused

log = logging.getLogger(__name__)

WAY_OUT = (
    "see `spillway ledger status`, then `spillway ledger adopt` (redis is the newer "
    "truth) or `spillway ledger clear` (the database is)"
)


class LedgerMismatch(RuntimeError):
    """Redis holds state that does not belong to this database; the message says why."""


class NotCheckable(RuntimeError):
    """The pair cannot be checked now: a dependency is down or the schema is not there."""


def stream_id(raw) -> tuple[int, int]:
    """A redis stream id (``b"1700000000000-3"``) as comparable integers."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw or "0-0")
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Examination:
    """What the database and redis say about each other."""

    ledger_id: str
    mark: tuple[int, int]
    bound_to: str | None
    db_sales: set[int]
    redis_sales: dict[int, stock.SaleDefinition]
    drafts: set[int]  # registered, never opened, not in the ledger: failed creations
    registered_after: set[int]  # the registry again, read after the database
    last_made: tuple[int, int]
    last_deleted: tuple[int, int] | None  # None: this redis does not report it
    problems: list[str] = field(default_factory=list)
    # Sales of this ledger in a redis written before binding existed (None: not this
    # ledger's); registered, with the mark, when the pair is bound.
    legacy: dict[int, stock.SaleDefinition] | None = None
    unregistered: bool = False  # sales from before binding that are not this ledger's

    @property
    def foreign(self) -> bool:
        return self.bound_to is not None and self.bound_to != self.ledger_id

    @property
    def redis_only(self) -> set[int]:
        return set(self.redis_sales) - self.db_sales - self.drafts

    @property
    def db_only(self) -> set[int]:
        return self.db_sales - self.registered_after


def examine() -> Examination:
    """Read both sides and list every way they disagree.

    The stack may be running (a worker starting beside busy web processes), so the reads
    are ordered to never see a creation or a batch in flight as a disagreement: redis
    first (what it registered, opened and persisted), then the database, then redis again
    (what it registered and made since). A sale is registered before its row commits and
    opened after; a batch's mark moves before its entries are deleted.

    :raise NotCheckable: the schema is not migrated, or a dependency is down.
    """
    if not inspect(db.engine).has_table(LedgerIdentity.__tablename__):
        raise NotCheckable("the database has no ledger identity yet: run `spillway db upgrade`")
    bound = redis_store.hget(keys.LEDGER_MARKER, "id")
    registered = stock.registered_sales()
    drafts = {
        sale_id
        for sale_id in registered
        if redis_store.hget(keys.sale_key(sale_id), "open") == b"0"
    }
    deleted = _outbox_info().get("max-deleted-entry-id")
    identity = db.session.scalars(select(LedgerIdentity)).one()
    # Read now: the rollback expires the row, and touching it later would read it again,
    # after redis's second look, and see batches that redis has not been asked about.
    ledger_id, mark = identity.id, (identity.outbox_mark_ms, identity.outbox_mark_seq)
    db_sales = set(db.session.scalars(select(Sale.id)))
    db.session.rollback()
    registered_after = {int(sale_id) for sale_id in redis_store.hkeys(keys.REGISTRY)}
    info = _outbox_info()
    found = Examination(
        ledger_id,
        mark,
        bound.decode() if bound else None,
        db_sales,
        registered,
        drafts - db_sales,
        registered_after,
        stream_id(info.get("last-generated-id")),
        stream_id(deleted) if "max-deleted-entry-id" in info else None,
    )
    legacy = _unregistered(_legacy_sales()) if bound is None and not registered else {}
    if legacy:
        found.legacy = _own_legacy(legacy, info)
        if found.legacy is None:
            found.unregistered = True
            found.problems.append(
                "redis holds sales from before ledger binding existed that do not match this "
                "database's sales and orders"
            )
            return found
        # This ledger's own state from before binding: judged as if registered.
        found.redis_sales = found.legacy
        found.registered_after = set(found.legacy)
        found.mark = max(found.mark, found.last_deleted or (0, 0))
    found.problems += _disagreements(found)
    return found


def _disagreements(found: Examination) -> list[str]:
    if found.foreign:
        return [
            f"redis keeps the state of ledger {found.bound_to}; this database is ledger "
            f"{found.ledger_id}"
        ]
    problems = []
    if found.redis_only:
        problems.append(
            f"redis holds {len(found.redis_only)} sale(s) this database does not "
            f"have ({_some(found.redis_only)}): the database is older than redis "
            "(restored from a backup?) or another deployment's"
        )
    if found.db_only:
        problems.append(
            f"this database has {len(found.db_only)} sale(s) redis does not know "
            f"({_some(found.db_only)}): redis was emptied, replaced or restored "
            "from an older copy"
        )
    if found.last_deleted is not None and found.last_deleted > found.mark:
        problems.append(
            f"redis persisted orders up to outbox entry {_entry(found.last_deleted)}"
            f" but this database holds them only up to {_entry(found.mark)}: the "
            "database is older than redis (restored from a backup?)"
        )
    if found.mark > found.last_made:
        problems.append(
            f"this database holds orders up to outbox entry {_entry(found.mark)}, "
            f"newer than any this redis made ({_entry(found.last_made)}): redis "
            "lost writes or was restored from an older copy"
        )
    return problems


def verify() -> Examination:
    """Check the pair; bind an unbound redis to this ledger when nothing disagrees.

    :raise LedgerMismatch: they disagree (the message says how, and what to do).
    :raise NotCheckable: they cannot be checked now.
    """
    found = examine()
    if found.problems:
        raise LedgerMismatch(f"{'; '.join(found.problems)}; {WAY_OUT}")
    if found.legacy:
        _register_legacy(found)
    if found.bound_to is None:
        bind(found.ledger_id)
    return found


def bind(ledger_id: str) -> None:
    """Record in redis that its state belongs to ``ledger_id``."""
    redis_store.hset(keys.LEDGER_MARKER, mapping={"id": ledger_id, "bound_ms": now_ms()})
    log.info("redis bound to ledger %s", ledger_id)


def start_check() -> None:
    """The shop's start check (Spillway(app, start_checks=...)): the pair, verified.

    :raise StartRefused: they disagree.
    :raise NotCheckableYet: they cannot be checked now.
    """
    try:
        verify()
    except LedgerMismatch as exc:
        raise StartRefused(str(exc)) from None
    except NotCheckable as exc:
        raise NotCheckableYet(str(exc)) from None


def _outbox_info() -> dict:
    try:
        raw = redis_store.xinfo_stream(keys.OUTBOX)
    except Exception as exc:  # no stream yet: nothing was ever reserved
        if "no such key" not in str(exc).lower():
            raise
        return {}
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _legacy_sales() -> dict[int, dict[str, int]]:
    """The sale hashes of a redis written before sales were registered, by sale id."""
    found = {}
    for key in redis_store.scan_iter(match=keys.EVERY_SALE, count=500):
        match = keys.LEGACY_SALE_KEY.match(key.decode())
        if match:
            found[int(match.group(1))] = {
                k.decode(): int(v) for k, v in redis_store.hgetall(key).items()
            }
    return found


def _unregistered(found: dict[int, dict[str, int]]) -> dict[int, dict[str, int]]:
    """``found`` less the sales registered by now: a sale created while the check runs
    writes its hash and its registry entry in one MULTI (stock.prewarm), so a hash the scan
    found that is registered once it is over is a creation in flight, not state from
    before binding (a first check beside the first sale once refused it)."""
    if not found:
        return found
    registered = {int(sale_id) for sale_id in redis_store.hkeys(keys.REGISTRY)}
    return {sale_id: state for sale_id, state in found.items() if sale_id not in registered}


def _own_legacy(legacy: dict[int, dict[str, int]], info: dict):
    """The definitions of ``legacy`` if they are this ledger's own sales and every order
    redis ever accepted and let go is in this ledger; else None.

    Each sale must exist here with the same stock, limit, payment timeout and duration
    (not the same instants: SQLite stored non-UTC offsets shifted before spillway.clock).
    """
    sales = {
        sale.id: sale for sale in db.session.scalars(select(Sale).where(Sale.id.in_(list(legacy))))
    }
    definitions = {}
    for sale_id, state in legacy.items():
        sale = sales.get(sale_id)
        if sale is None:
            return None
        definition = service.definition_of(sale, state.get("shards", 1))
        same = (
            state.get("stock"),
            state.get("per_user_limit"),
            state.get("payment_timeout_s"),
            state.get("ends_ms", 0) - state.get("starts_ms", 0),
        ) == (
            sale.stock,
            sale.per_user_limit,
            sale.payment_timeout_s,
            definition.ends_ms - definition.starts_ms,
        )
        if not same:
            return None
        definitions[sale_id] = definition
    let_go = int(info.get("entries-added", 0)) - int(info.get("length", 0))
    persisted = db.session.scalar(select(func.count(Order.id)))
    db.session.rollback()
    return definitions if persisted == let_go else None


def _register_legacy(found: Examination) -> None:
    pipe = redis_store.pipeline(transaction=False)
    for sale_id, definition in found.legacy.items():
        pipe.hset(keys.REGISTRY, sale_id, stock.encode_definition(definition))
    pipe.execute()
    db.session.execute(
        update(LedgerIdentity).values(outbox_mark_ms=found.mark[0], outbox_mark_seq=found.mark[1])
    )
    db.session.commit()
    log.info("registered %d sales written before ledger binding", len(found.legacy))


def _some(ids: set[int]) -> str:
    listed = ", ".join(str(i) for i in sorted(ids)[:5])
    return listed + (", …" if len(ids) > 5 else "")


def _entry(mark: tuple[int, int]) -> str:
    return f"{mark[0]}-{mark[1]}"
