"""What the Sentinel tests ask of real Sentinels and nodes on loopback ports: who is the
primary by a majority, and waiting for a node to follow it."""

import redis

from tests.waiting import wait_until

MASTER = "spillway"  # the name the tests' and `spillway up`'s Sentinels know the primary by


def ask(port: int, password: str | None, *command):
    client = redis.Redis("127.0.0.1", port, password=password, socket_timeout=1)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def primary_port(sentinels: tuple[int, ...], password: str | None = None) -> int | None:
    """The primary's port as a majority of the Sentinels says (None: no majority yet)."""
    said = []
    for port in sentinels:
        try:
            reply = ask(port, password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        except redis.exceptions.ConnectionError:
            continue
        said.append(int(reply[1]) if reply else None)
    best = max(set(said), key=said.count, default=None)
    return best if said.count(best) > len(sentinels) // 2 else None


def wait_following(node: int, sentinels: tuple[int, ...], password: str | None = None) -> None:
    """Until ``node`` replicates the primary the Sentinels name, its link up (the new one,
    or a later one: on a loaded machine the Sentinels may fail over again)."""
    wait_until(
        lambda: (ask(node, password, "INFO", "replication"), primary_port(sentinels, password)),
        60,
        0.2,
        until=lambda seen: (
            seen[0].get("role") == "slave"
            and seen[0].get("master_port") == seen[1]
            and seen[0].get("master_link_status") == "up"
        ),
        what=f"redis {node} replicating the primary",
        ignoring=(redis.exceptions.ConnectionError,),
    )
