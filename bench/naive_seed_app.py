"""The seed's naive server, kept only as the benchmark's baseline.

The same two demo routes as spillway, served by Flask's built-in development server
(``app.run``: threaded, one OS thread per connection), exactly how the seed ran.
``time.sleep`` here is the real, blocking one: nothing is monkey-patched.

Run: ``python bench/naive_seed_app.py PORT`` (listens on 127.0.0.1 only).
"""

import sys
import time

from flask import Flask
from flask import request

app = Flask(__name__)


@app.get("/demo/slow")
def slow():
    seconds = min(max(float(request.args.get("seconds", "10")), 0.0), 60.0)
    time.sleep(seconds)
    return "Hello World!", 200, {"Content-Type": "text/plain; charset=utf-8"}


@app.get("/demo/index")
def index():
    return "Beijing", 200, {"Content-Type": "text/plain; charset=utf-8"}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]))
