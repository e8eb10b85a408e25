"""Task durations and outcomes, measured inside the worker's (prefork) child processes.

Connected once per process (Celery dedupes a receiver connected twice). Each prefork child
writes its own files in multiprocess mode; a child that exits has its live gauges dropped.
"""

import time

from celery.signals import task_postrun
from celery.signals import task_prerun
from celery.signals import worker_process_shutdown

from spillway.metrics import registry

_started: dict[str, float] = {}


def _task_started(task_id=None, **_):
    _started[task_id] = time.perf_counter()


def _task_finished(task_id=None, task=None, state=None, **_):
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        registry.task_finished(
            task.name, (state or "unknown").lower(), time.perf_counter() - started
        )


def _child_exiting(pid=None, **_):
    if registry.multiprocess_dir() and pid:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def connect() -> None:
    task_prerun.connect(_task_started)
    task_postrun.connect(_task_finished)
    worker_process_shutdown.connect(_child_exiting)
