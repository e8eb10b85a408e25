"""Small apps the guards' tests serve with gunicorn and `spillway serve`: views that hold
the hub (a C sleep, a busy loop), that sleep cooperatively past a deadline, and factories
that import a blocking driver first; and an app whose beat runs one task a second."""

import os
import time

import gevent
from flask import Flask
from flask import request
from gevent import monkey

from spillway import Spillway
from spillway.celery_app import FlaskCelery
from spillway.celery_app import base_config
from spillway.celery_app import every
from spillway.clients import redis_store
from spillway.guards.deadline import deadline

# time.sleep as it was before gevent patched it: a C call that holds the hub.
C_SLEEP = monkey.get_original("time", "sleep")
# Each run of the beat app's task: when it ran, one list item per run.
BEAT_RUNS_KEY = "spillway:test:beat-runs"


def create_app() -> Flask:
    """The guards' test app, on the runtime's layers (which set up its logging)."""
    app = Flask(__name__)

    @app.get("/block")
    def block_in_c():
        """Sleep in C: no other greenlet of the worker runs meanwhile."""
        C_SLEEP(float(request.args["seconds"]))
        return "blocked"

    @app.get("/spin")
    def spin():
        """Busy-loop in Python without yielding."""
        until = time.perf_counter() + float(request.args["seconds"])
        while time.perf_counter() < until:
            pass
        return "spun"

    @app.get("/sleep")
    def sleep():
        """Sleep cooperatively (other greenlets run), then set the redis key ``mark``, if
        named: a greenlet its deadline ended never sets it."""
        gevent.sleep(float(request.args["seconds"]))
        if "mark" in request.args:
            redis_store.set(f"spillway:smoke:{request.args['mark']}", "done")
        return "slept"

    @app.get("/sleep/short")
    @deadline(0.5)
    def sleep_short_deadline():
        """Sleep under a deadline of its own, shorter than the app's."""
        gevent.sleep(float(request.args["seconds"]))
        return "slept"

    @app.get("/sleep/exempt")
    @deadline(None)
    def sleep_exempt():
        """Sleep with no deadline at all."""
        gevent.sleep(float(request.args["seconds"]))
        return "slept"

    @app.get("/stream")
    def stream():
        """A streamed body that outlives the deadline (iterated after the WSGI call)."""
        seconds = float(request.args["seconds"])

        def chunks():
            for _ in range(4):
                gevent.sleep(seconds / 4)
                yield b"tick\n"

        return app.response_class(chunks(), mimetype="text/plain")

    Spillway(app)
    return app


def create_psycopg2_app() -> Flask:
    """The app, with psycopg2 imported as it is (no wait callback)."""
    import psycopg2  # noqa: F401

    return create_app()


def create_green_psycopg2_app() -> Flask:
    """The app, with psycopg2 made to wait through the hub by psycogreen."""
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
    return create_app()


def create_beat_app() -> Flask:
    """An app whose beat sends ``guards.tick`` every second; each run is counted."""
    app = Flask(__name__)
    app.config["CELERY"] = base_config(os.environ["SPILLWAY_BROKER_URL"])
    app.config["CELERY"]["beat_schedule"] = {"tick": every(1.0, "guards.tick")}
    celery_app = FlaskCelery().init_app(app)

    @celery_app.task(name="guards.tick")
    def tick() -> None:
        """Count this run."""
        redis_store.rpush(BEAT_RUNS_KEY, time.time())

    Spillway(app)
    return app
