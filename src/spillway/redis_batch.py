"""Concurrent redis commands of one gevent process, sent together: auto-pipelining.

Under load a gevent worker has dozens of purchases in flight, each one EVALSHA. Sent one
by one, every purchase pays a pool checkout, a send, a read that would block, a trip
through the hub and a second read. Here the commands that arrive while a batch is on the
wire wait for it, then go out together as the next batch: one write, one read, one
connection (what ioredis calls auto-pipelining). Redis runs pipelined commands in order and
each script atomically, so what a command does is unchanged; only the syscalls are shared.

Failure keeps the meaning of a command sent alone: an error reply fails that command only;
a broken or timed-out connection fails every command of the batch with that error (each
may or may not have run, exactly as when sent alone), and the connection is dropped.

A command sent as ``durable`` has its reply held until the batch's one wait of the
durability policy (spillway.redis_durability) confirms every write before it: one
``WAIT`` per batch, not one per purchase.

Only a process patched by gevent batches: elsewhere (the CLI, Celery's prefork children,
tests calling the app in-process) commands go straight through redis-py.
"""

import gevent
from gevent import monkey
from gevent.event import AsyncResult
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from spillway.metrics import registry as metrics
from spillway.redis_durability import Durability

MAX_BATCH = 128  # commands per write: bounds the reply a batch waits for


class CommandBatcher:
    """Sends the commands given to :meth:`execute` by concurrent greenlets in batches."""

    def __init__(self, client: Redis, durability: Durability = Durability()):
        self.pool = client.connection_pool
        self.durability = durability
        self.pending: list[tuple[tuple, AsyncResult, bool]] = []
        self.sender: gevent.Greenlet | None = None

    def execute(self, *command, durable: bool = False):
        """The raw reply to ``command``; raises what redis-py would have raised, and
        :class:`~spillway.redis_durability.NotDurable` when ``durable`` and the policy's
        wait falls short."""
        result = AsyncResult()
        self.pending.append((command, result, durable and self.durability.waits))
        if self.sender is None:
            self.sender = gevent.spawn(self._send_pending)
        return result.get()

    def _send_pending(self) -> None:
        try:
            while self.pending:  # no yield between this test and the reset below
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                if not self._send(batch):
                    # Whoever queued behind a dead or frozen connection would only wait
                    # for the same failure: refuse them now (their commands never left).
                    self._fail(
                        self.pending,
                        RedisConnectionError(
                            "not sent: the redis connection failed the batch before"
                        ),
                    )
                    self.pending = []
        except BaseException as exc:  # the sender itself was killed (a worker exiting)
            self._fail(self.pending, exc)
            self.pending = []
            raise
        finally:
            self.sender = None

    def _send(self, batch: list[tuple[tuple, AsyncResult, bool]]) -> bool:
        """Send ``batch``, give each command its reply or error; False when the connection
        failed (every command of the batch then has that error)."""
        metrics.redis_batch(len(batch))
        commands = [command for command, _, _ in batch]
        held = []  # the durable commands' replies, until the wait confirms them
        waits = any(durable for _, _, durable in batch)
        if waits:
            commands.append(self.durability.command())
        connection = None
        try:
            connection = self.pool.get_connection()
            connection.send_packed_command(connection.pack_commands(commands))
            for _, result, durable in batch:
                try:
                    reply = connection.read_response()
                except ResponseError as exc:  # that command's error reply; the stream is intact
                    result.set_exception(exc)
                    continue
                if durable:
                    held.append((result, reply))
                else:
                    result.set(reply)
            if waits:
                self._confirm(held, _reply_or_error(connection))
            return True
        except BaseException as exc:
            if connection is not None:
                connection.disconnect()
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return False
        finally:
            if connection is not None:
                self.pool.release(connection)

    def _confirm(self, held: list[tuple[AsyncResult, object]], wait_reply) -> None:
        try:
            self.durability.check(wait_reply)
        except Exception as exc:  # noqa: BLE001 - each held command hears it
            for result, _ in held:
                result.set_exception(exc)
            return
        for result, reply in held:
            result.set(reply)

    @staticmethod
    def _fail(batch: list[tuple[tuple, AsyncResult, bool]], exc: BaseException) -> None:
        for _, result, _ in batch:
            if not result.ready():
                result.set_exception(exc)


def _reply_or_error(connection):
    try:
        return connection.read_response()
    except ResponseError as exc:
        return exc


def batcher_for(
    client: Redis, registry: dict, durability: Durability = Durability()
) -> CommandBatcher | None:
    """This process's batcher for ``client`` (kept in ``registry``, e.g. an app's
    extensions), or None when the process is not patched by gevent."""
    if not monkey.is_module_patched("socket"):
        return None
    batcher = registry.get("redis_batcher")
    stale = batcher is not None and (
        batcher.pool is not client.connection_pool or batcher.durability is not durability
    )
    if batcher is None or stale:
        batcher = registry["redis_batcher"] = CommandBatcher(client, durability)
    return batcher
