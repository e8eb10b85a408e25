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

MAX_BATCH = 128  # commands per write: bounds the reply a batch waits for


class CommandBatcher:
    """Sends the commands given to :meth:`execute` by concurrent greenlets in batches."""

    def __init__(self, client: Redis):
        self.pool = client.connection_pool
        self.pending: list[tuple[tuple, AsyncResult]] = []
        self.sender: gevent.Greenlet | None = None

    def execute(self, *command):
        """The raw reply to ``command``; raises what redis-py would have raised."""
        result = AsyncResult()
        self.pending.append((command, result))
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

    def _send(self, batch: list[tuple[tuple, AsyncResult]]) -> bool:
        """Send ``batch``, give each command its reply or error; False when the connection
        failed (every command of the batch then has that error)."""
        metrics.redis_batch(len(batch))
        connection = None
        try:
            connection = self.pool.get_connection()
            connection.send_packed_command(
                connection.pack_commands([command for command, _ in batch])
            )
            for _, result in batch:
                try:
                    result.set(connection.read_response())
                except ResponseError as exc:  # that command's error reply; the stream is intact
                    result.set_exception(exc)
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

    @staticmethod
    def _fail(batch: list[tuple[tuple, AsyncResult]], exc: BaseException) -> None:
        for _, result in batch:
            if not result.ready():
                result.set_exception(exc)


def batcher_for(client: Redis, registry: dict) -> CommandBatcher | None:
    """This process's batcher for ``client`` (kept in ``registry``, e.g. an app's
    extensions), or None when the process is not patched by gevent."""
    if not monkey.is_module_patched("socket"):
        return None
    batcher = registry.get("redis_batcher")
    if batcher is None or batcher.pool is not client.connection_pool:
        batcher = registry["redis_batcher"] = CommandBatcher(client)
    return batcher
