"""What must hold a write before its reply counts: SPILLWAY_REDIS_DURABILITY.

A redis primary answers a write from memory. With AOF ``everysec`` the last second of
writes is lost with the host; with a replica the writes not yet streamed to it are lost
when a failover promotes it. A promise made on such a write (a 202) is then broken. So
a write that carries a promise can wait for more before its reply is used:

- ``none``: the primary's memory (its AOF policy is the only durability);
- ``replica``: ``WAIT n ms``: on ``n`` replicas (SPILLWAY_REDIS_REPLICAS, 1) too;
- ``fsync``: ``WAITAOF 1 0 ms``: fsynced to the primary's AOF (redis 7.2 or later).

One wait covers every earlier write of its connection, so a batch of concurrent writes
(spillway.redis_batch) pays for one. A wait that times out or is refused does not undo
the write: it may still be on the primary, or lost with it. The caller hears
:class:`NotDurable` (a 503 with Retry-After), and a retry with the same idempotency key
finds the write if it survived or makes it again if it did not: never a promise on a write
that could vanish, never two writes for one key.
"""

from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError

POLICIES = ("none", "replica", "fsync")


class NotDurable(RedisConnectionError):
    """A write ran on the primary but was not acknowledged as the policy asks, in time."""


@dataclass(frozen=True)
class Durability:
    policy: str = "none"
    replicas: int = 1
    timeout_ms: int = 200

    @classmethod
    def from_config(cls, config) -> "Durability":
        return cls(
            config.get("REDIS_DURABILITY", "none"),
            config.get("REDIS_DURABILITY_REPLICAS", 1),
            config.get("REDIS_DURABILITY_TIMEOUT_MS", 200),
        )

    @property
    def waits(self) -> bool:
        return self.policy != "none"

    def command(self) -> tuple:
        """The command that waits, sent on the connection right after the writes."""
        if self.policy == "replica":
            return ("WAIT", self.replicas, self.timeout_ms)
        return ("WAITAOF", 1, 0, self.timeout_ms)

    def check(self, reply) -> None:
        """Raise :class:`NotDurable` unless ``reply`` (to :meth:`command`, or the error it
        got) says the writes before it are held as the policy asks."""
        if isinstance(reply, Exception):  # e.g. WAITAOF on a redis before 7.2
            raise NotDurable(f"redis could not confirm the write ({self.policy}): {reply}")
        if self.policy == "replica" and reply < self.replicas:
            raise NotDurable(
                f"the write reached {reply} of {self.replicas} redis replicas "
                f"within {self.timeout_ms} ms"
            )
        if self.policy == "fsync" and reply[0] < 1:
            raise NotDurable(f"the write was not fsynced by redis within {self.timeout_ms} ms")
