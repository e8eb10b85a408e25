"""What ``/metrics`` answers: every process's metrics, summed (multiprocess mode under
gunicorn and Celery), and the app's own collectors, read at the scrape
(``Spillway(app, collectors=...)``: shared state such as a queue's depth, asked of redis
when Prometheus scrapes rather than recorded per process)."""

from flask import Flask
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from spillway.clients import redis_store
from spillway.guards import worker_liveness
from spillway.metrics.registry import multiprocess_dir


def exposition(app: Flask) -> bytes:
    """The Prometheus text of ``app``'s processes and its declared collectors."""
    shared = CollectorRegistry()
    spec = app.extensions["spillway"]
    if spec.celery is not None:  # each worker's last ping, from redis
        shared.register(worker_liveness.LivenessCollector(redis_store.client))
    for make in spec.collectors:
        shared.register(make(app))
    if multiprocess_dir():
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    return generate_latest(processes) + generate_latest(shared)
