"""Abuse and hostile-input defences: rate limits, the trusted proxy hop, security headers.

See SECURITY.md at the repository root for the threat model and the test of each defence.
"""

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the defences; the WSGI wrappers go outermost, around the fast paths too."""
    from spillway.security import headers
    from spillway.security import proxy
    from spillway.security import ratelimits

    ratelimits.init_app(app)
    headers.init_app(app)
    proxy.init_app(app)  # last, so every layer inside sees the client's address
