"""`spillway status`: the running stack at a glance, for the operator in its checkout.

Each program supervisord runs (its state, pid and uptime, asked over supervisord's
socket), the depth of the app's Celery queues (on the broker), the backlog of every outbox
the app made (entries accepted and not yet in the database), and the URLs `spillway up`
printed in its banner (kept in the run directory's urls.json).
"""

import json
from dataclasses import dataclass
from dataclasses import field

from flask import Flask
from kombu.exceptions import ChannelError

from spillway.deploy import supervisor_rpc
from spillway.deploy.files import read_regular
from spillway.deploy.run_dir import RunDir
from spillway.errors import DEPENDENCY_ERRORS
from spillway.extension import Spillway
from spillway.failures import one_line
from spillway.outbox import OUTBOXES


@dataclass
class Status:
    """What `spillway status` prints; ``healthy`` when every program runs and every
    figure could be read."""

    lines: list[str] = field(default_factory=list)
    healthy: bool = True

    def problem(self, line: str) -> None:
        self.lines.append(line)
        self.healthy = False


def status_of(run_dir: RunDir, app: Flask) -> Status:
    """The stack of ``run_dir`` running ``app``.

    :raise supervisor_rpc.SupervisorUnreachable: supervisord does not answer.
    """
    status = Status()
    add_programs(status, supervisor_rpc.programs(run_dir))
    add_queues(status, app)
    add_outboxes(status, app)
    add_urls(status, run_dir)
    return status


def add_programs(status: Status, programs: list[dict]) -> None:
    status.lines.append("programs")
    for info in programs:
        line = f"  {info['name']:16} {info['statename']:9}"
        if info["statename"] == "RUNNING":
            status.lines.append(
                f"{line} pid {info['pid']:<8} up {uptime(info['now'] - info['start'])}"
            )
        else:
            status.problem(f"{line} {info['description']}".rstrip())


def uptime(seconds: int) -> str:
    """``3d 4h``, ``2h 5m``, ``5m 12s`` or ``12s``: the two largest units."""
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(units) > 1 and units[0][0] == 0:
        units.pop(0)
    return " ".join(f"{value}{unit}" for value, unit in units[:2])


def add_queues(status: Status, app: Flask) -> None:
    """Messages waiting in each of the app's Celery queues (none: the app has no Celery)."""
    celery = Spillway.of(app).celery
    if celery is None:
        return
    names = [queue.name for queue in celery.conf.task_queues or ()] or [
        celery.conf.task_default_queue
    ]
    try:
        with celery.connection_for_read() as connection:
            channel = connection.default_channel
            depths = {name: queue_depth(channel, name) for name in names}
    except DEPENDENCY_ERRORS as exc:
        status.problem(f"queue      error: {one_line(exc, app.config)}")
        return
    for name, depth in depths.items():
        status.lines.append(f"queue      {name}: {depth} task(s) waiting")


def queue_depth(channel, name: str) -> int:
    try:
        return channel.queue_declare(name, passive=True).message_count
    except ChannelError:  # never declared, or empty: the broker holds no such list
        return 0


def add_outboxes(status: Status, app: Flask) -> None:
    for stream, outbox in sorted(OUTBOXES.items()):
        try:
            backlog = outbox.backlog()
        except DEPENDENCY_ERRORS as exc:
            status.problem(f"outbox     {stream}: error: {one_line(exc, app.config)}")
            continue
        status.lines.append(f"outbox     {stream}: {backlog} entr(ies) not yet in the database")


def add_urls(status: Status, run_dir: RunDir) -> None:
    try:
        urls = json.loads(read_regular(run_dir.urls_file) or "{}")
    except ValueError:
        urls = {}
    if not urls:
        status.lines.append(
            f"urls       not known yet ({run_dir.urls_file}: written once the stack is ready)"
        )
        return
    status.lines.append("urls")
    status.lines += [f"  {name:14} {url}" for name, url in urls.items()]
