"""Spillway: Flask + Celery + gunicorn/gevent + nginx + supervisord, built for high concurrency."""


def create_app(config_name: str = "dev"):
    """Build the Flask app for ``dev``, ``test`` or ``prd``; see :func:`spillway.app.create_app`.

    The import is deferred so that importing the package never pulls in Flask, sockets or ssl
    before :mod:`spillway.gevent_boot` has had the chance to patch them.
    """
    from spillway.app import create_app as build

    return build(config_name)
