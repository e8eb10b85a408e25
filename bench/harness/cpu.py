"""CPU time of a server's process tree, from /proc: CPU per request is a measure of a
server's cost that other load on a shared machine disturbs far less than req/s."""

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (empty when it is gone)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid] + [p for child in children for p in tree(int(child))]


def seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far, with that of their
    children already reaped (a worker recycled by gunicorn ends up in its master's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / TICKS


class Meter:
    """CPU used by a process tree between ``start`` and ``stop``."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.pids: list[int] = []
        self.before = 0.0

    def start(self) -> "Meter":
        if self.pid:
            self.pids = tree(self.pid)
            self.before = seconds(self.pids)
        return self

    def stop(self) -> float | None:
        """CPU seconds since ``start``; None when it cannot be known (the root is gone)."""
        if not self.pid:
            return None
        pids = tree(self.pid)  # the dead were reaped into their parent's counters
        used = seconds(pids) - self.before
        return used if pids and used >= 0 else None
