"""The blocked-hub detector: a greenlet that keeps the gevent hub from running any other
(a C call that does not yield, a busy loop) freezes every request of its worker, and this
says so — a metric and one log line with the blocking greenlet's stack.

Two halves, one per thread:

- gevent's monitor thread (``gevent.config.monitor_thread``, ``max_blocking_time``) sees
  that no greenlet switch happened for the threshold and emits ``EventLoopBlocked`` *in
  that native thread*, with its report (the blocked stack). Logging or prometheus_client
  there would take locks gevent patched, so :meth:`HubMonitor.on_event` only appends the
  report to a deque (thread-safe). Its ``blocking_time`` is the threshold, not the length;
  gevent's own stderr dump is turned off (``print_blocking_reports``).
- a ticker greenlet in the hub sleeps :data:`TICK_S` and measures how late it woke: that
  lag is the real length of a block (to within a tick). When it wakes with reports
  waiting, the block is over: it logs one line and records the metrics, by worker (pid).

A lag without a report is not counted (the process may only have been short of CPU), nor
is a report without a lag (the monitor's last look at a block the ticker already counted).
"""

import collections
import glob
import logging
import os
import re
import time
import warnings

import gevent
from gevent import events

from spillway.metrics import registry

log = logging.getLogger(__name__)

# At most; half a low threshold. Each tick costs an idle worker about 0.14 ms of CPU: at a
# tenth of the default threshold (10 ms) that was 14 ms a second, 1.4 % of a core per worker
# doing nothing (docs/guards.md, Figures); a block's length is within a tick anyway.
TICK_S = 0.05
# Reports kept until the ticker runs: a long block is reported once per threshold.
MAX_PENDING = 64
STACK_FRAMES = 12
FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
GAUGES = {"spillway_hub_blocks": "blocks", "spillway_hub_block_longest_seconds": "longest_s"}

_monitor = None


class HubMonitor:
    """This process's blocks: the reports gevent's thread queued, the ticker's figures."""

    def __init__(self, threshold_s: float, server: str):
        self.threshold_s = threshold_s
        self.tick_s = min(TICK_S, threshold_s / 2)
        self.server = server
        self.reports: collections.deque = collections.deque(maxlen=MAX_PENDING)
        self.blocks = 0
        self.longest_s = 0.0
        self._count = registry.HUB_BLOCKS.labels(server)
        self._longest = registry.HUB_BLOCK_LONGEST.labels(server)
        self._lengths = registry.HUB_BLOCK_SECONDS.labels(server)
        self._count.set(0)  # every watched worker shows, blocked or not
        self._longest.set(0)

    def on_event(self, event) -> None:
        """gevent's subscriber, called in the monitor thread: queue the report, nothing else."""
        if isinstance(event, events.EventLoopBlocked):
            self.reports.append(event.info)

    def watch(self) -> None:
        """The ticker greenlet: after each late wake-up with reports waiting, one block."""
        while True:
            before = time.perf_counter()
            gevent.sleep(self.tick_s)
            lag = time.perf_counter() - before - self.tick_s
            if not self.reports:
                continue
            if lag >= self.threshold_s - self.tick_s:  # the monitor's lower bound
                self.record(max(lag, self.threshold_s))
            else:
                self._take_reports()

    def record(self, seconds: float) -> None:
        """One block of ``seconds``: the metrics, and one line with its first report."""
        reports = self._take_reports()
        self.blocks += 1
        self.longest_s = max(self.longest_s, seconds)
        self._count.set(self.blocks)
        self._longest.set(self.longest_s)
        self._lengths.observe(seconds)
        log.error(
            "hub blocked %d ms in pid %d (over %d ms); stack, innermost last: %s",
            seconds * 1000,
            os.getpid(),
            self.threshold_s * 1000,
            stack_of(reports[0]) if reports else "none caught",
        )

    def flush(self, why: str) -> None:
        """Log what is still queued (the worker is being killed with its hub blocked)."""
        for report in self._take_reports()[:1]:
            log.error(
                "hub blocked in pid %d when %s; stack, innermost last: %s",
                os.getpid(),
                why,
                stack_of(report),
            )

    def _take_reports(self) -> list:
        reports = []
        while True:
            try:
                reports.append(self.reports.popleft())
            except IndexError:
                return reports


def stack_of(report: list) -> str:
    """The blocking greenlet's stack from gevent's report, on one line (its last frames)."""
    for index, part in enumerate(report[:-1]):
        if str(part).startswith("Blocked Stack"):
            frames = [
                f"{_short(m['file'])}:{m['line']} {m['func']}"
                for m in FRAME.finditer(str(report[index + 1]))
            ]
            if frames:
                return " > ".join(frames[-STACK_FRAMES:])
    return "not in gevent's report"


def _short(path: str) -> str:
    """The last two parts of a path: enough to find the file, short enough for one line."""
    return "/".join(path.split("/")[-2:])


def start(threshold_s: float, server: str) -> HubMonitor:
    """Watch this process's hub (once; call it from the thread that runs the hub)."""
    global _monitor
    if _monitor is not None:
        return _monitor
    gevent.config.max_blocking_time = threshold_s
    gevent.config.print_blocking_reports = False  # our one line replaces gevent's dump
    gevent.config.monitor_thread = True
    monitor = HubMonitor(threshold_s, server)
    events.subscribers.append(monitor.on_event)
    with warnings.catch_warnings():
        # gevent also watches memory when psutil is installed; we ask nothing of it.
        warnings.filterwarnings("ignore", message="Unable to monitor memory usage")
        gevent.get_hub().start_periodic_monitoring_thread()
    gevent.spawn(monitor.watch)
    _monitor = monitor
    log.info("watching the hub: a greenlet that holds it over %d ms is logged", threshold_s * 1000)
    return monitor


def flush_pending(why: str) -> None:
    """Log a block still in progress, if this process watches its hub."""
    if _monitor is not None:
        _monitor.flush(why)


def worker_blocks() -> list[dict]:
    """Each live watched worker of this host: its pid, blocks and longest block (seconds),
    from the shared metrics (for an operator's page)."""
    shared = registry.multiprocess_dir()
    if shared:
        from prometheus_client.multiprocess import MultiProcessCollector

        families = MultiProcessCollector.merge(
            glob.glob(os.path.join(shared, "gauge_liveall_*.db"))
        )
    else:
        families = [*registry.HUB_BLOCKS.collect(), *registry.HUB_BLOCK_LONGEST.collect()]
    workers: dict[int, dict] = {}
    for family in families:
        field = GAUGES.get(family.name)
        for sample in family.samples if field else ():
            pid = int(sample.labels.get("pid", os.getpid()))
            entry = workers.setdefault(
                pid, {"pid": pid, "server": sample.labels["server"], "blocks": 0, "longest_s": 0.0}
            )
            entry[field] = int(sample.value) if field == "blocks" else round(sample.value, 3)
    return [workers[pid] for pid in sorted(workers)]
