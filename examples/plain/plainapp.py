"""A Flask app written for no stack at all: no Spillway import, no Celery, no database.

``SPILLWAY_APP=plainapp:create_app PYTHONPATH=examples/plain make run`` puts it behind
nginx on gunicorn's gevent workers, non-root, with the runtime's /healthz and /readyz.
"""

import time

from flask import Flask
from flask import request


def create_app():
    app = Flask(__name__)

    @app.get("/")
    def index():
        return "hello from a plain Flask app\n"

    @app.get("/slow")
    def slow():
        time.sleep(min(float(request.args.get("seconds", "1")), 30))
        return "slept\n"

    @app.get("/fast")
    def fast():
        return "fast\n"

    return app
