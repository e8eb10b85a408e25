"""Start one redis node or Sentinel of `spillway up --redis sentinel`, as the service user.

    python -m spillway.deploy.redis_node node REDIS_SERVER CONF DIR PORT OTHER FIRST SENTINEL...
    python -m spillway.deploy.redis_node sentinel REDIS_SERVER DIR PORT FIRST

A node writes its own config (DIR/node.conf, 0600: the password, and whose replica it is)
including root's CONF, then becomes redis-server. Its role comes from the Sentinels, never
from a file root rendered: after a failover the old primary comes back as a replica.

One case needs care. A primary that dies and is restarted (supervisord does so at once)
before the Sentinels notice would come back with its own AOF (up to a second behind, under
appendfsync everysec) and the replica would resync to that, dropping the 202s it alone
held. So a node the Sentinels still call primary, whose replica holds data from it with
its link down, waits for the Sentinels to promote the replica and then follows it.
"""

import os
import sys
import time
from pathlib import Path

import redis

HOST = "127.0.0.1"
MASTER = "spillway"  # the name the Sentinels know the primary by
DOWN_AFTER_MS = 5000
FAILOVER_TIMEOUT_MS = 10000
ASK_SECONDS = 3.0  # for an answer from any Sentinel, at a start
# For the Sentinels to promote the replica of a primary that died: down-after, the vote
# and the promotion, with room to spare.
FAILOVER_WAIT_S = 3 * DOWN_AFTER_MS / 1000


def password() -> str:
    return os.environ["SPILLWAY_REDIS_PASSWORD"]


def primary_port(sentinels: list[int], within: float) -> int | None:
    """The primary's port as the first Sentinel to answer names it, or None."""
    deadline = time.monotonic() + within
    while True:
        for port in sentinels:
            client = redis.Redis(HOST, port, password=password(), socket_timeout=0.5)
            try:
                answer = client.sentinel_get_master_addr_by_name(MASTER)
                if answer:
                    return int(answer[1])
            except redis.RedisError:
                pass
            finally:
                client.close()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def holds_our_data(other: int, me: int) -> bool:
    """Whether the node at ``other`` is our replica, synced once, with its link down."""
    client = redis.Redis(HOST, other, password=password(), socket_timeout=0.5)
    try:
        info = client.info("replication")
    except redis.RedisError:
        return False
    finally:
        client.close()
    return (
        info.get("role") == "slave"
        and int(info.get("master_port", 0)) == me
        and info.get("master_link_status") == "down"
        and int(info.get("master_repl_offset", 0)) > 0
    )


def role(me: int, other: int, first: int, sentinels: list[int]) -> int | None:
    """The port of the node to replicate, or None to start as the primary."""
    primary = primary_port(sentinels, ASK_SECONDS)
    if primary is None:
        return None if me == first else first  # no Sentinel up yet: the first node leads
    if primary != me:
        return primary
    if not holds_our_data(other, me):
        return None
    print(f"redis {me}: restarted before a failover; waiting for the Sentinels", flush=True)
    deadline = time.monotonic() + FAILOVER_WAIT_S
    while time.monotonic() < deadline:
        primary = primary_port(sentinels, 1.0)
        if primary not in (None, me):
            return primary
        time.sleep(0.5)
    return None  # no promotion came: this node's data is the newest there is


def start_node(server: str, conf: str, directory: str, ports: list[int]) -> None:
    me, other, first, *sentinels = ports
    follow = role(me, other, first, sentinels)
    lines = [
        f"include {conf}",
        f"port {me}",
        f"bind {HOST}",
        f"requirepass {password()}",
        f"masterauth {password()}",
    ]
    if follow is not None:
        lines.append(f"replicaof {HOST} {follow}")
    said = f"replica of {follow}" if follow else "primary"
    print(f"redis {me}: starting as {said}", flush=True)
    node_conf = write_private(Path(directory) / "node.conf", lines)
    os.execv(server, [server, str(node_conf)])


def start_sentinel(server: str, directory: str, me: int, primary: int) -> None:
    """A Sentinel's file is written once: from then on it is the Sentinel's own record."""
    path = Path(directory) / f"sentinel-{me}.conf"
    if not path.exists():
        write_private(
            path,
            [
                f"port {me}",
                f"bind {HOST}",
                f"dir {directory}",
                f"requirepass {password()}",
                f"sentinel sentinel-pass {password()}",
                f"sentinel monitor {MASTER} {HOST} {primary} 2",
                f"sentinel auth-pass {MASTER} {password()}",
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER} 1",
            ],
        )
    os.execv(server, [server, str(path), "--sentinel"])


def write_private(path: Path, lines: list[str]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def main(argv: list[str]) -> None:
    kind, server, *args = argv
    if kind == "node":
        conf, directory, *ports = args
        start_node(server, conf, directory, [int(port) for port in ports])
    elif kind == "sentinel":
        directory, me, first = args
        start_sentinel(server, directory, int(me), int(first))
    else:
        sys.exit(f"redis_node: unknown kind {kind!r}: node or sentinel")


if __name__ == "__main__":
    main(sys.argv[1:])
