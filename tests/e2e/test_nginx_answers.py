"""What nginx answers by itself, through the real nginx of a `spillway up` stack, over raw
sockets (no client library to tidy a request up): every error in the API's JSON shape with
the security headers, the JSON 503 with Retry-After while the app is down, and the JSON 429
once one address holds too many requests open."""

import json
import re
import socket
import time
from contextlib import ExitStack

import pytest
import requests

from spillway.security.headers import SECURITY_HEADERS
from tests.waiting import wait_until

CONN_PER_IP = 6

# The JSON shape of every error, with what a well-behaved client would never send.
# (name, request, status, code)
HOSTILE_REQUESTS = [
    ("malformed request line", b"GARBAGE\r\n\r\n", 400, "invalid_request"),
    ("unknown method", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request"),
    ("NUL in the path", b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request"),
    ("bad %-escape", b"GET /%zz/../x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request"),
    ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", 400, "invalid_request"),
    (
        "9 KB header",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9 * 1024 + b"\r\n\r\n",
        400,
        "invalid_request",
    ),
    (
        "10 KB URI",
        b"GET /" + b"a" * 10 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
        "uri_too_long",
    ),
    ("TRACE", b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    (
        "Transfer-Encoding: xchunked",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
        501,
        "not_implemented",
    ),
    ("HTTP/9.9", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
    (
        "a POST to a static file",
        b"POST /static/site.css HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        405,
        "method_not_allowed",
    ),
    # nginx discards the body of a request it refuses (405): the bad chunk is a second error.
    (
        "a bad chunk to a static page",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "invalid_request",
    ),
    (
        "a bad chunk to the app",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "invalid_request",
    ),
    (
        "Content-Length and chunked",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "invalid_request",
    ),
    (
        "a range past the end",
        b"GET /static/site.css HTTP/1.1\r\nHost: x\r\nRange: bytes=99999999-\r\n\r\n",
        416,
        "range_not_satisfiable",
    ),
    (
        "a failed If-Match",
        b'GET /static/site.css HTTP/1.1\r\nHost: x\r\nIf-Match: "not-this-one"\r\n\r\n',
        412,
        "precondition_failed",
    ),
    (
        "an error page asked for by name",
        b"GET /_spillway/errors/400 HTTP/1.1\r\nHost: x\r\n\r\n",
        404,
        "not_found",
    ),
]


@pytest.fixture(scope="module")
def stack_env() -> dict:
    """Limits on, as in production: limit_req far above what these tests send, limit_conn
    low enough to reach with a handful of sockets."""
    return {
        "SPILLWAY_RATE_LIMITS": "on",
        "SPILLWAY_NGINX_RATE_PER_IP": "1000r/s",
        "SPILLWAY_NGINX_BURST_PER_IP": "1000",
        "SPILLWAY_NGINX_CONN_PER_IP": str(CONN_PER_IP),
    }


def exchange(stack, request: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Send ``request`` as it is, half-close, and read the whole answer: (status, headers
    by lower-case name, body)."""
    port = int(stack.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def metrics_url(stack) -> str:
    """The loopback metrics listener's URL, as the banner of `spillway up` prints it."""
    found = re.search(
        r"^\s+metrics\s+(http://127\.0\.0\.1:\d+/metrics)", stack.log_path.read_text(), re.M
    )
    assert found, "no metrics line in the banner"
    return found.group(1)


def assert_json_error(status, headers, body, expected_status: int, code: str) -> None:
    """The API's error shape, as JSON, with each security header exactly once."""
    assert status == expected_status, (status, body)
    assert headers["content-type"] == ["application/json"], headers
    assert json.loads(body)["error"]["code"] == code, body
    for name, value in SECURITY_HEADERS:
        assert headers.get(name.lower()) == [value], (name, headers)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [case[1:] for case in HOSTILE_REQUESTS],
    ids=[case[0] for case in HOSTILE_REQUESTS],
)
def test_nginx_answers_its_own_errors_in_the_json_shape(stack, request_bytes, status, code):
    """Errors nginx raises before (or instead of) the app: JSON, never its HTML page."""
    assert_json_error(*exchange(stack, request_bytes), status, code)


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/v1/sales/123/orders", "OPTIONS, POST"),
        ("/api/v1/products?page=2", "GET, HEAD, OPTIONS, POST"),
        ("/api/v1/users/me/orders", "GET, HEAD, OPTIONS"),
        ("/static/app.js", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_405_nginx_answers_itself_says_what_the_path_allows(stack, path, allow):
    """TRACE, which nginx refuses before the app sees it, gets the Allow header the app's
    own 405s carry (RFC 9110): the methods of the path asked for, its query aside."""
    status, headers, body = exchange(stack, f"TRACE {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert_json_error(status, headers, body, 405, "method_not_allowed")
    assert headers["allow"] == [allow]
    flask = requests.delete(f"{stack.base_url}{path}", timeout=10)
    if flask.status_code == 405:  # the app's own, for a method nginx lets through
        assert set(flask.headers["Allow"].split(", ")) == set(allow.split(", "))


def test_with_the_app_down_every_answer_is_a_json_503(stack):
    """gunicorn stopped: a product read that misses memcached, product writes, a sale
    listing, the metrics listener: 503 unavailable as JSON, with Retry-After."""
    base, admin = stack.base_url, stack.admin_headers()
    product = requests.post(
        f"{base}/api/v1/products",
        headers=admin,
        timeout=10,
        json={"name": "Not cached", "price_cents": 1},
    ).json()
    url = f"{base}/api/v1/products/{product['id']}"  # never read: not in memcached
    stack.supervisorctl("stop", "gunicorn")
    try:
        answers = {
            "uncached product": requests.get(url, timeout=10),
            "uncached listing page": requests.get(f"{base}/api/v1/products?page=97", timeout=10),
            "product PATCH": requests.patch(url, json={"name": "x"}, headers=admin, timeout=10),
            "product POST": requests.post(
                f"{base}/api/v1/products",
                headers=admin,
                json={"name": "x", "price_cents": 1},
                timeout=10,
            ),
            "sales": requests.get(f"{base}/api/v1/sales", timeout=10),
            "metrics listener": requests.get(metrics_url(stack), timeout=10),
        }
        for name, answer in answers.items():
            assert answer.status_code == 503, (name, answer.status_code, answer.text)
            assert answer.headers["Content-Type"] == "application/json", name
            assert answer.json()["error"]["code"] == "unavailable", name
            assert answer.headers["Retry-After"] == "1", name
            for header, value in SECURITY_HEADERS:
                assert answer.headers[header] == value, (name, header)
    finally:
        stack.supervisorctl("start", "gunicorn")
    stack.wait_for_app()
    assert requests.get(url, timeout=10).json()["name"] == "Not cached"


def hold_request_open(stack) -> socket.socket:
    """A POST whose promised body never comes: nginx holds it, reading, for up to 60 s
    (client_body_timeout), counted in limit_conn, before any Python runs."""
    port = int(stack.base_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    return sock


def hold_the_limit_and_ask(stack, attempts: int = 5) -> requests.Response:
    """Hold CONN_PER_IP requests open, then ask for a static file until nginx refuses it
    (it may not have read every held request's headers yet): its 429.

    A request of this address that nginx still counts from before (a socket an earlier
    test closed, which nginx notices only on its next read of it) makes one of the held
    requests the refused one: then they are all let go, and it is tried again.
    """
    for _ in range(attempts):
        with ExitStack() as held:
            sockets = [hold_request_open(stack) for _ in range(CONN_PER_IP)]
            for sock in sockets:
                held.callback(sock.close)
            try:
                return wait_until(
                    lambda: get_static_file(stack),
                    10,
                    0.1,
                    until=lambda answer: answer.status_code == 429,
                )
            except AssertionError as exc:
                said = answered(sockets)
                if not any(said):
                    raise AssertionError(f"{exc}; every held request is still held") from None
        time.sleep(2)  # the leftover's socket is read, and let go, meanwhile
    raise AssertionError(f"a held request was refused {attempts} times: {said}")


def answered(sockets: list[socket.socket]) -> list[bytes | None]:
    """What each held socket has been sent so far (None: nothing, it is still held)."""
    said = []
    for sock in sockets:
        sock.setblocking(False)
        try:
            said.append(sock.recv(300))
        except BlockingIOError:
            said.append(None)
    return said


def get_static_file(stack) -> requests.Response:
    """A request nginx answers alone (no Python): what a limit refuses is nginx's doing."""
    return requests.get(f"{stack.base_url}/static/site.css", timeout=10)


def test_one_address_holding_too_many_requests_gets_a_json_429(stack):
    """With SPILLWAY_NGINX_CONN_PER_IP requests held open from one address, its next
    request is refused by nginx (limit_conn) with the JSON 429 and Retry-After; once they
    are closed it passes again."""
    refused = hold_the_limit_and_ask(stack)
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "1"
    for name, value in SECURITY_HEADERS:
        assert refused.headers[name] == value, name
    # nginx notices the closed sockets on its next read of each
    answer = wait_until(
        lambda: get_static_file(stack), 10, 0.1, until=lambda answer: answer.status_code == 200
    )
    assert answer.status_code == 200
