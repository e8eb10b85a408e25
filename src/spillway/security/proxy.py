"""The client's address behind nginx: trust exactly the hops we run (nginx is one)."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask) -> None:
    """Wrap the whole WSGI stack, so the fast paths and the rate limits see the client's
    address, not nginx's. A client may send its own X-Forwarded-For; with one trusted hop
    only the address nginx appended (the real peer) is believed."""
    hops = app.config["PROXY_HOPS"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
