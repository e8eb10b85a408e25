"""Serve cached catalog pages before Flask: the app-side twin of nginx's memcached fast path.

A hot product GET that reaches the app (a non-canonical URI, no nginx in front) is a
memcached lookup; running Flask's routing, request and response machinery around it cost
more than the lookup itself (measured: 185 µs against 72 µs for a bare view). This WSGI
middleware answers a hit with the cached bytes and hands everything else — misses, writes,
an admin's no-cache read, memcached trouble — to Flask, which has the full rules.
"""

import re
from urllib.parse import parse_qs

from flask import Flask

from spillway.catalog import cache

PRODUCT_PATH = re.compile(r"^/api/v1/products/([1-9][0-9]{0,18})$")
LISTING_PATH = "/api/v1/products"
MAX_NUMBER_DIGITS = 7  # the longest page a listing can have (catalog.schemas.PageArgs)
HEADERS = [("Content-Type", "application/json"), ("Cache-Control", "no-cache")]


class CachedPageMiddleware:
    """Wraps ``app.wsgi_app``; reads the client from ``app.extensions`` on every call."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        key = self._key(environ)
        if key is not None:
            try:
                body = self.app.extensions["memcache"].get(key)
            except Exception:
                body = None  # Flask's view degrades, warns and counts
            if body is not None:
                start_response("200 OK", [*HEADERS, ("Content-Length", str(len(body)))])
                return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]
        return self.wsgi_app(environ, start_response)

    @staticmethod
    def _key(environ) -> str | None:
        """The page key this request may be answered from, or None to ask Flask."""
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return None
        if "no-cache" in environ.get("HTTP_CACHE_CONTROL", "") and environ.get(
                "HTTP_AUTHORIZATION"):
            return None  # maybe an admin reading past the cache: Flask decides
        path = environ.get("PATH_INFO", "")
        if match := PRODUCT_PATH.match(path):
            return cache.product_key(int(match.group(1)))
        if path == LISTING_PATH:
            return _listing_key(environ.get("QUERY_STRING", ""))
        return None


def _listing_key(query: str) -> str | None:
    args = parse_qs(query, keep_blank_values=True)
    if set(args) - {"page", "per_page"} or any(len(v) != 1 for v in args.values()):
        return None
    page, per_page = args.get("page", ["1"])[0], args.get("per_page", ["20"])[0]
    if not (_small_number(page) and _small_number(per_page)):
        return None
    return cache.listing_key(int(page), int(per_page))


def _small_number(text: str) -> bool:
    # isascii: "²" is a digit to str.isdigit and no number to int(). The length: int() of
    # 4,301 digits raises, here outside Flask (a bare 500); no page that long is cached.
    return text.isascii() and text.isdigit() and len(text) <= MAX_NUMBER_DIGITS


def init_app(app: Flask) -> None:
    """Put the middleware in front of the app."""
    app.wsgi_app = CachedPageMiddleware(app, app.wsgi_app)
