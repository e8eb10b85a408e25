"""`spillway up --redis sentinel`: redis as a primary, a replica and three Sentinels on
this one machine, to try a failover before running it on hosts of their own (there the
operator points SPILLWAY_REDIS_URL at their Sentinels instead: DEPLOYMENT.md).

What it keeps in the run directory: the ports and the password, chosen once
(redis-sentinel.json, root's, 0600); the second node's data (redis-replica/) and the
Sentinels' files (sentinel/), the service user's, because a Sentinel rewrites its file as
it learns the replicas, the other Sentinels and, after a failover, the new primary. Which
node is the primary is never written by root: each node asks the Sentinels as it starts
(spillway/deploy/redis_node.py), so a restart never undoes a failover.
"""

import json
import os
import secrets
from dataclasses import dataclass

from spillway.deploy.files import read_regular
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import StackError
from spillway.deploy.layout import free_loopback_port
from spillway.deploy.redis_node import HOST
from spillway.deploy.redis_node import MASTER
from spillway.deploy.run_dir import RunDir
from spillway.redis_location import SentinelAddress

TOPOLOGIES = ("single", "sentinel")
TOPOLOGY_SETTING = "SPILLWAY_REDIS_TOPOLOGY"
# Preferred loopback ports (any free one where taken), kept once chosen: the Sentinels'
# files name them.
NODE_PORTS = (6390, 6391)
SENTINEL_PORTS = (26390, 26391, 26392)
PASSWORD_SETTING = "SPILLWAY_REDIS_PASSWORD"
# What a purchase waits for before its 202 unless the operator chose (redis_durability.py):
# the replica too, so that the primary's death loses no 202.
DEFAULT_DURABILITY = "replica"


@dataclass(frozen=True)
class Replication:
    nodes: tuple[int, int]
    sentinels: tuple[int, ...]
    password: str

    def url(self, db: int) -> str:
        """The runtime's Sentinel URL (spillway/redis_location.py) for database ``db``."""
        sentinels = tuple((HOST, port) for port in self.sentinels)
        return SentinelAddress(sentinels, MASTER, db, self.password).url()

    def addresses(self) -> dict[str, str]:
        return {"SPILLWAY_REDIS_URL": self.url(0), "SPILLWAY_BROKER_URL": self.url(1)}

    def node_environment(self) -> dict[str, str]:
        """What the nodes' and Sentinels' launchers read (supervisord.conf is root's, 0600:
        the password is never on a command line)."""
        return {PASSWORD_SETTING: self.password}

    def to_json(self) -> str:
        fields = {"nodes": self.nodes, "sentinels": self.sentinels, "password": self.password}
        return json.dumps(fields) + "\n"


def chosen_topology(run_dir: RunDir, chosen: str = "") -> str:
    """``chosen`` (--redis, SPILLWAY_REDIS_TOPOLOGY), else what the run directory runs.

    :raise StackError: a run directory with Sentinels asked to run one redis: the
        primary may be the replica's node by now, and one node alone would lose its data.
    """
    chosen = chosen or os.environ.get(TOPOLOGY_SETTING, "")
    if chosen and chosen not in TOPOLOGIES:
        raise StackError(f"{TOPOLOGY_SETTING}={chosen}: choose one of {', '.join(TOPOLOGIES)}")
    kept = load(run_dir) is not None
    if chosen == "single" and kept:
        raise StackError(
            f"{run_dir.root} runs redis with Sentinels ({run_dir.replication_file}): it "
            f"cannot go back to one redis by itself, the primary may be the replica's node"
        )
    return "sentinel" if chosen == "sentinel" or kept else "single"


def load(run_dir: RunDir) -> Replication | None:
    """The run directory's replication, or None where it runs one redis (or this user
    cannot read the file: only root can)."""
    try:
        text = read_regular(run_dir.replication_file)
    except PermissionError:
        return None
    if not text:
        return None
    fields = json.loads(text)
    return Replication(tuple(fields["nodes"]), tuple(fields["sentinels"]), fields["password"])


def load_or_create(run_dir: RunDir) -> Replication:
    """The kept replication, else new ports and a new password, written once."""
    kept = load(run_dir)
    if kept:
        return kept
    taken: set[int] = set()

    def port(preferred: int) -> int:
        chosen = free_loopback_port(preferred)
        while chosen in taken:
            chosen = free_loopback_port(0)
        taken.add(chosen)
        return chosen

    made = Replication(
        tuple(port(p) for p in NODE_PORTS),
        tuple(port(p) for p in SENTINEL_PORTS),
        secrets.token_urlsafe(32),
    )
    write_atomically(run_dir.replication_file, made.to_json(), 0o600)
    return made


def refuse_taken_ports(replication: Replication) -> None:
    """:raise StackError: a kept port is taken by something else (a node would not start)."""
    for port in (*replication.nodes, *replication.sentinels):
        if free_loopback_port(port) != port:
            raise StackError(
                f"127.0.0.1:{port} is taken, and the run directory's redis nodes and "
                f"Sentinels keep their ports (redis-sentinel.json): stop what listens there"
            )
