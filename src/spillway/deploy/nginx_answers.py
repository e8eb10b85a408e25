"""What nginx answers by itself: its error pages in the API's JSON error shape, and the
security headers on every answer, rendered into nginx.conf from this one list.

Each error nginx raises is sent to an internal URI (``error_page 400 =400 /_spillway/...``)
whose location returns the JSON body. A URI, not a named location: nginx refuses to
redirect a request whose request line it could not parse to a named location ("empty URI
in redirect to named location"), and answers its HTML 500 instead.

Measured with raw sockets against nginx 1.22 (tests/e2e/test_nginx_answers.py): a
malformed request line, an unknown method, a NUL or a bad %-escape in the path, a 9 KB
header (494), a 10 KB URI (414), ``TRACE /`` (405), ``Transfer-Encoding: xchunked`` (501),
``HTTP/9.9`` (505), a bad chunk, a Range past the end of a file (416), a failed
``If-Match`` (412) all get these pages. The 416 keeps the headers of the location that
refused it (a static file's Cache-Control too, then overruled by ``no-store``): nginx
raises it after that location's add_header lines ran, and has no way to drop a header.
What no error_page can change: a client that stops sending its request line, headers or
body is disconnected without an answer (nginx logs 408, sends nothing); an HTTP/0.9
request (``GET /`` with no version) gets the body alone, as HTTP/0.9 has no status line or
headers.
"""

import json
from dataclasses import dataclass

from spillway.errors import CODES
from spillway.errors import RETRY_AFTER_SECONDS
from spillway.security.headers import SECURITY_HEADERS

ERRORS_URI = "/_spillway/errors"
# nginx's statuses the app never answers with, so errors.CODES has no code for them.
NGINX_ONLY_CODES = {
    411: "length_required",
    412: "precondition_failed",
    414: "uri_too_long",
    416: "range_not_satisfiable",
    500: "internal_error",
    501: "not_implemented",
    505: "http_version_not_supported",
}


@dataclass(frozen=True)
class ErrorPage:
    """One of nginx's own errors (``raised``, what nginx raises) and its JSON answer."""

    raised: tuple[int, ...]
    status: int  # what the client gets (nginx sends its 494 as a 400)
    message: str
    # False for the 416 nginx's range filter raises after the location's add_header lines
    # ran: nginx keeps those headers on the error page, so adding the security headers
    # again (or inheriting the server's) would send each twice.
    adds_headers: bool = True

    @property
    def code(self) -> str:
        return CODES.get(self.status) or NGINX_ONLY_CODES[self.status]

    @property
    def uri(self) -> str:
        return f"{ERRORS_URI}/{self.raised[0]}"

    @property
    def retry_after(self) -> bool:
        return self.status in (429, 503)

    @property
    def body(self) -> str:
        """The JSON body, as nginx's single-quoted ``return`` text (``\\n``: a newline)."""
        text = json.dumps({"error": {"code": self.code, "message": self.message}})
        return nginx_quotable(text, "'") + "\\n"


def error_pages(max_body_bytes: int) -> list[ErrorPage]:
    """Every error nginx can answer by itself on the public listener."""
    return [
        ErrorPage((400,), 400, "The request is malformed."),
        ErrorPage((494,), 400, "The request headers are too large."),
        ErrorPage((403,), 403, "This resource is not public."),
        ErrorPage((404,), 404, "No such resource."),
        ErrorPage((405,), 405, "This method is not allowed here."),
        ErrorPage((411,), 411, "This request needs a Content-Length."),
        ErrorPage((412,), 412, "A precondition of this request failed."),
        ErrorPage((413,), 413, f"The request body exceeds {max_body_bytes} bytes."),
        ErrorPage((414,), 414, "The request URI is too long."),
        ErrorPage((416,), 416, "The requested range is not satisfiable.", adds_headers=False),
        ErrorPage((429,), 429, "Too many requests from your address; slow down."),
        ErrorPage((500,), 500, "Internal error; it has been logged."),
        ErrorPage((501,), 501, "This transfer encoding or method is not implemented."),
        ErrorPage((503, 502, 504), 503, "The application is not answering; retry."),
        ErrorPage((505,), 505, "This HTTP version is not supported."),
    ]


def nginx_quotable(text: str, quote: str) -> str:
    """``text``, which can stand as it is inside nginx's ``quote``-quoted string.

    :raise ValueError: it holds that quote, a backslash (an escape to nginx), a ``$`` (a
        variable) or a line break.
    """
    if set(text) & {quote, "\\", "$", "\n", "\r"}:
        raise ValueError(f"cannot stand in an nginx {quote}-quoted string: {text!r}")
    return text


def template_context(max_body_bytes: int) -> dict:
    """What nginx.conf needs to render its own answers."""
    for _name, value in SECURITY_HEADERS:
        nginx_quotable(value, '"')
    return {
        "error_pages": error_pages(max_body_bytes),
        "security_header_pairs": SECURITY_HEADERS,
        "retry_after": RETRY_AFTER_SECONDS,
    }
