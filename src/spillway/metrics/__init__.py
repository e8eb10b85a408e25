"""Observability: Prometheus metrics (multiprocess-safe), the operator's live view, Flower.

Kept import-light on purpose: gunicorn's master loads :mod:`.gunicorn_conf` before its
workers fork and patch for gevent, so nothing here may pull in Flask or sockets.
"""
