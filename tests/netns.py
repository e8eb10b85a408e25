"""Several hosts on one machine: network namespaces on one private bridge.

A "lan" namespace holds a bridge; every host namespace is plugged into it with a veth
pair and gets an address in a private /24 chosen so as not to overlap a route this
machine already has. The test process itself reaches the hosts through one more veth
(the gateway, .254) in its own namespace. Everything is removed by ``cleanup``, which
the caller runs in a finalizer, whatever happened: processes by process group, then the
namespaces (which takes their links with them), then the gateway link.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2.
"""

import ipaddress
import os
import random
import signal
import subprocess
from contextlib import suppress
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from tests.waiting import NotYet
from tests.waiting import wait_until

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"


def ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, text=True)


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no route on this machine overlaps."""
    routes = subprocess.run(
        [IP, "-4", "-o", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    taken = []
    for token in routes.split():  # destinations, gateways, sources: avoid them all
        try:
            taken.append(ipaddress.ip_network(token, strict=False))
        except ValueError:
            continue  # "default", "dev", "eth0", …
    for _ in range(100):
        second, third = random.randint(200, 207), random.randint(0, 255)
        candidate = ipaddress.ip_network(f"10.{second}.{third}.0/24")
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError("no free private /24 for the test network")


@dataclass
class Host:
    """One namespace: its name on the lan and its address."""

    name: str
    namespace: str
    address: str
    processes: list = field(default_factory=list)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """The host dies: every process it runs, at once."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
            # Children (gunicorn's worker, Celery's pool) die a moment after the parent, and
            # hold the listening sockets until they do.
            with suppress(NotYet):
                wait_until(lambda: group_gone(process.pid), 30, 0.05)


def group_gone(pgid: int) -> bool:
    """No process is left in the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


class Network:
    """A private lan of namespaced hosts; ``cleanup`` removes every trace."""

    def __init__(self, log_dir: Path):
        self.tag = f"spw{os.getpid() % 10000:04d}{random.randint(0, 99):02d}"
        self.subnet = free_subnet()
        self.log_dir = log_dir
        self.lan = f"{self.tag}-lan"
        self.gateway_link = f"{self.tag}gw"
        self.hosts: list[Host] = []
        self.namespaces: list[str] = []

    def address(self, index: int) -> str:
        return str(self.subnet.network_address + index)

    def up(self) -> "Network":
        self._add_namespace(self.lan)
        ip("-n", self.lan, "link", "add", "br0", "type", "bridge")
        ip("-n", self.lan, "link", "set", "br0", "up")
        ip(
            "link",
            "add",
            self.gateway_link,
            "type",
            "veth",
            "peer",
            "name",
            "gw",
            "netns",
            self.lan,
        )
        ip("-n", self.lan, "link", "set", "gw", "master", "br0", "up")
        ip("addr", "add", f"{self.address(254)}/24", "dev", self.gateway_link)
        ip("link", "set", self.gateway_link, "up")
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 1
        host = Host(name, f"{self.tag}-{name}", self.address(index))
        self._add_namespace(host.namespace)
        port = f"{self.tag}p{index}"
        ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
        ip("link", "set", port, "netns", self.lan)
        ip("-n", self.lan, "link", "set", port, "master", "br0", "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        self.hosts.append(host)
        return host

    def spawn(
        self, host: Host, name: str, argv: list[str], env: dict, user: tuple[int, int] | None = None
    ) -> subprocess.Popen:
        """Run ``argv`` on ``host`` (as ``user``, (uid, gid), when given), logging to a file."""
        prefix = [IP, "netns", "exec", host.namespace]
        if user:
            prefix += [
                "setpriv",
                f"--reuid={user[0]}",
                f"--regid={user[1]}",
                "--clear-groups",
                "--",
            ]
        with open(self.log_dir / f"{host.name}-{name}.log", "ab") as log:
            process = subprocess.Popen(
                prefix + argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd="/",
                start_new_session=True,
            )
        host.processes.append(process)
        return process

    def cleanup(self) -> None:
        for host in reversed(self.hosts):  # clients before the servers they talk to
            host.kill()
        for name in reversed(self.namespaces):
            subprocess.run([IP, "netns", "del", name], capture_output=True, check=False)
        subprocess.run([IP, "link", "del", self.gateway_link], capture_output=True, check=False)
