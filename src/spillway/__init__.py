"""Spillway: run a Flask app on Flask + Celery + gunicorn/gevent + nginx + supervisord,
built for high concurrency.

``from spillway import Spillway`` is the one interface an app declares its needs through
(spillway.extension). Importing the package imports nothing else: :mod:`spillway.gevent_boot`
must be able to patch before Flask, sockets or ssl are imported.
"""


def __getattr__(name: str):
    if name == "Spillway":
        from spillway.extension import Spillway

        return Spillway
    raise AttributeError(f"module 'spillway' has no attribute {name!r}")
