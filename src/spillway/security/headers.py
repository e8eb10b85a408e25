"""Security headers on every answer the app gives itself (nginx sets the same ones in front).

A WSGI wrapper rather than an after_request hook: an app's fast paths answer before Flask,
and they must carry the headers too. It costs one list copy per response.
"""

# One policy for pages and JSON alike: nothing but our own origin, never in a frame.
# The pages have no inline script or style, so 'self' is enough for them.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response of the wrapped WSGI app."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        def start_with_headers(status, headers, exc_info=None):
            return start_response(status, [*headers, *SECURITY_HEADERS], exc_info)

        return self.wsgi_app(environ, start_with_headers)
