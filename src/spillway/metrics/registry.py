"""Every Prometheus metric the app records, and the small helpers that record them.

Under gunicorn and Celery each process writes its values to mmap'd files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen by that variable
at import); ``/metrics`` sums them. Label values come from code (route templates, task
names, outcomes), never from raw client input, so the number of series stays bounded.
Children are bound on first use: a process that never records a series writes no file.
"""

import os

from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram

# Sub-millisecond to seconds: the purchase fast path answers in well under 5 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TASK_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_LATENCY = Histogram(
    "spillway_http_request_duration_seconds",
    "Time from a request reaching the app until its response starts, by route template.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
CACHE_HITS = Counter(
    "spillway_cache_hits_total", "App-side cache lookups that hit.", ["tier", "namespace"]
)
CACHE_MISSES = Counter(
    "spillway_cache_misses_total", "App-side cache lookups that missed.", ["tier", "namespace"]
)
REDIS_BATCH_COMMANDS = Histogram(
    "spillway_redis_batch_commands",
    "Commands per auto-pipelined redis write (spillway/redis_batch.py); _sum over _count is "
    "how many purchases share one round trip.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
TASK_DURATION = Histogram(
    "spillway_celery_task_duration_seconds",
    "Celery task run time in the worker, by task and final state.",
    ["task", "state"],
    buckets=TASK_BUCKETS,
)

# The guards (spillway/guards/). "liveall" gauges keep one series per live process (a pid
# label), dropped when gunicorn reaps the worker: the blocks of each gevent worker. Labelled
# by the server ("gunicorn", "serve") so that only a process that watches its hub writes them.
HUB_BLOCK_SECONDS = Histogram(
    "spillway_hub_block_seconds",
    "How long the gevent hub ran no other greenlet, per block over SPILLWAY_MAX_BLOCKING_MS.",
    ["server"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
HUB_BLOCKS = Gauge(
    "spillway_hub_blocks",
    "Blocks of this gevent worker's hub since it started.",
    ["server"],
    multiprocess_mode="liveall",
)
HUB_BLOCK_LONGEST = Gauge(
    "spillway_hub_block_longest_seconds",
    "The longest block of this gevent worker's hub since it started.",
    ["server"],
    multiprocess_mode="liveall",
)
REQUEST_DEADLINES = Counter(
    "spillway_request_deadlines_total",
    "Requests ended by their deadline (SPILLWAY_REQUEST_TIMEOUT_S) and answered 503.",
    ["route"],
)


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, or None when this process counts alone."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class BoundChildren(dict):
    """``labels(...)`` children cached per label tuple: the lookup on a hot path is one
    dict access instead of prometheus_client's lock and validation."""

    def __init__(self, metric):
        super().__init__()
        self.metric = metric

    def __missing__(self, labels):
        child = self[labels] = self.metric.labels(*labels)
        return child


_latency = BoundChildren(HTTP_LATENCY)
_hits = BoundChildren(CACHE_HITS)
_misses = BoundChildren(CACHE_MISSES)
_tasks = BoundChildren(TASK_DURATION)


def observe_request(method: str, route: str, status: str, seconds: float) -> None:
    _latency[method, route, status].observe(seconds)


def cache_lookup(tier: str, namespace: str, hit: bool) -> None:
    (_hits if hit else _misses)[tier, namespace].inc()


def redis_batch(commands: int) -> None:
    REDIS_BATCH_COMMANDS.observe(commands)


def task_finished(task: str, state: str, seconds: float) -> None:
    _tasks[task, state].observe(seconds)
