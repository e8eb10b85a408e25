"""The outbox: take a write in redis atomically, drain it into the database in batches, and
never lose one that was accepted.

A request's hot path writes its state and an outbox entry in one redis step (a Lua script:
the flash sale's reserve.lua), answers at once, and never waits for the database. Workers
read the stream through one consumer group, in batches; the database insert must be
idempotent (the entry's id, or the record's, as a unique key), because an entry is
acknowledged only after the commit, and one whose worker died is claimed back by a sweeper
after ``stuck_ms`` and persisted again. So an entry is persisted at least once, and stored
exactly once.

:class:`Outbox` names the stream and its group once, and holds the redis half of that
protocol: reading new entries, re-reading this consumer's unacknowledged ones, claiming
stuck ones, acknowledging a batch, and the backlog. What "persist" means is the app's.
"""

import os
import socket
from collections.abc import Iterator
from pathlib import Path

from redis.exceptions import ResponseError

from spillway import redis_scripts
from spillway.clients import redis_store

ACKNOWLEDGE = Path(__file__).parent / "lua" / "acknowledge.lua"
Entry = tuple[bytes, dict[bytes, bytes]]
# Every outbox made in this process, by stream: what `spillway status` reports the backlog of.
OUTBOXES: dict[str, "Outbox"] = {}


class Outbox:
    """One redis stream of accepted writes and the consumer group that drains it."""

    def __init__(self, stream: str, group: str, batch: int = 1000):
        self.stream = stream
        self.group = group
        self.batch = batch
        OUTBOXES[stream] = self

    @staticmethod
    def consumer() -> str:
        """This process's consumer name: what a dead process held stays pending under its
        name until a sweeper claims it."""
        return f"{socket.gethostname()}-{os.getpid()}"

    def ensure_group(self) -> None:
        try:
            redis_store.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # it exists already
                raise

    def read_new(self, consumer: str) -> list[Entry]:
        """Up to a batch of entries nobody has taken yet, now this consumer's."""
        reply = redis_store.xreadgroup(self.group, consumer, {self.stream: ">"}, count=self.batch)
        return reply[0][1] if reply else []

    def read_mine(self, consumer: str) -> list[Entry]:
        """Entries this consumer took and has not acknowledged (its commit failed)."""
        reply = redis_store.xreadgroup(self.group, consumer, {self.stream: "0"}, count=self.batch)
        return [entry for entry in (reply[0][1] if reply else []) if entry[1]]

    def claim_stuck(self, stuck_ms: int, sweeper: str = "sweeper") -> Iterator[list[Entry]]:
        """Batches of entries taken and not acknowledged for ``stuck_ms``, now the
        sweeper's (their worker died or lost redis mid-batch)."""
        cursor = "0-0"
        while True:
            cursor, entries, *_ = redis_store.xautoclaim(
                self.stream,
                self.group,
                sweeper,
                min_idle_time=stuck_ms,
                start_id=cursor,
                count=self.batch,
            )
            entries = [entry for entry in entries if entry[1]]  # deleted ones come back empty
            if entries:
                yield entries
            if cursor in (b"0-0", "0-0"):
                return

    def acknowledge(self, entry_ids: list, forget: list[tuple[str, str]] = ()) -> None:
        """Acknowledge and delete a persisted batch, and remove each (set, member) of
        ``forget`` (the app's own clean-up), in one atomic script call (redis killed
        between a separate XACK and XDEL left acknowledged entries in the stream for
        good)."""
        if not entry_ids:
            return
        redis_scripts.script(ACKNOWLEDGE)(
            keys=[self.stream, *(key for key, _ in forget)],
            args=[self.group, len(entry_ids), *entry_ids, *(member for _, member in forget)],
            client=redis_store.client,
        )

    def backlog(self) -> int:
        """Entries not yet persisted: those no worker has taken, and those taken and not
        acknowledged. Not XLEN, which also counts entries acknowledged and not deleted."""
        return sum(self.depths(redis_store.client))

    def depths(self, client) -> tuple[int, int]:
        """(entries nobody has taken, entries taken and not acknowledged), from ``client``
        (a scrape or an audit may hold a client of its own)."""
        try:
            groups = {_text(g["name"]): g for g in client.xinfo_groups(self.stream)}
        except ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            return 0, 0  # no stream yet: nothing was ever written
        group = groups.get(self.group)
        if group is None:
            return client.xlen(self.stream), 0
        last = _text(group["last-delivered-id"])
        untaken = len(client.xrange(self.stream, f"({last}", "+", count=self.batch))
        return untaken, group["pending"]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
