"""HTTPS at nginx: `spillway up --tls self-signed` on free ports, spoken to by real clients
(Python's ssl, curl, requests, Debian's chromium): TLS 1.3 and 1.2 with forward-secret AEAD
suites only, older protocols and CBC suites refused by the server, HTTP/2 by ALPN, HSTS on
every HTTPS answer and on no plain one, plain HTTP sent to HTTPS with a 308 except the health
probes, and the storefront working over it, live stock included. A certificate nginx could
not serve ends `spillway up` in one line with nothing started.
"""

import shutil
import socket
import ssl
import subprocess
import tempfile
import uuid
import warnings
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright

from spillway.deploy.run_dir import RunDir
from spillway.deploy.tls import SELF_SIGNED_HSTS
from tests.e2e.conftest import running_stack
from tests.e2e.test_start_failures import FAILED_START_SECONDS
from tests.e2e.test_start_failures import assert_one_line_failure
from tests.e2e.test_start_failures import spillway_up
from tests.servers import binary
from tests.servers import free_port

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30_000
HSTS = "Strict-Transport-Security"


@pytest.fixture(scope="module")
def stack():
    """The whole stack with HTTPS on a port of its own and its self-signed certificate."""
    tls_port = free_port()
    with running_stack(args=("--tls", "self-signed", "--tls-port", str(tls_port))) as running:
        running.tls_port = tls_port
        running.https_url = f"https://127.0.0.1:{tls_port}"
        running.ca = str(running.paths.tls_cert)
        yield running


def handshake(stack, context: ssl.SSLContext, server_hostname: str = "localhost"):
    """(protocol, cipher suite, ALPN protocol) of one handshake with nginx's TLS port."""
    with socket.create_connection(("127.0.0.1", stack.tls_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.version(), tls.cipher()[0], tls.selected_alpn_protocol()


def verifying_client(stack) -> ssl.SSLContext:
    """A client that trusts the stack's self-signed certificate and nothing else."""
    context = ssl.create_default_context(cafile=stack.ca)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def permissive_client(highest: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> ssl.SSLContext:
    """A client willing to speak anything down to TLS 1.0, up to ``highest``: whatever it
    is refused, the server refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(ciphers)
    with warnings.catch_warnings():  # the old versions are what is being tried
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = highest
    return context


def test_tls13_handshake_verifies_the_self_signed_certificate_and_offers_h2(stack):
    """Python's ssl, verifying against run/tls/cert.pem for localhost and for 127.0.0.1:
    TLS 1.3, and h2 chosen by ALPN."""
    for name in ("localhost", "127.0.0.1"):
        version, _cipher, alpn = handshake(stack, verifying_client(stack), name)
        assert (version, alpn) == ("TLSv1.3", "h2")


def test_tls12_gets_a_forward_secret_aead_suite_and_cbc_is_refused(stack):
    """A TLS 1.2 client gets ECDHE with GCM or ChaCha20; one offering only CBC suites is
    refused by the server (handshake failure)."""
    version, cipher, _alpn = handshake(stack, permissive_client(ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    cbc_only = permissive_client(
        ssl.TLSVersion.TLSv1_2, "AES128-SHA:AES256-SHA:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"
    )
    with pytest.raises(ssl.SSLError) as refused:
        handshake(stack, cbc_only)
    assert refused.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", refused.value


@pytest.mark.parametrize(
    "highest", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_tls10_and_tls11_are_refused_by_the_server(stack, highest):
    """The client would speak them; nginx answers with a protocol-version alert."""
    with pytest.raises(ssl.SSLError) as refused:
        handshake(stack, permissive_client(highest))
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


def curl(*args: str) -> str:
    result = subprocess.run(
        [binary("curl"), "-sS", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def test_curl_gets_http2_answers_from_the_app_and_from_memcached(stack):
    """curl --http2 -k: the storefront, the API, and a product read twice (the second one
    nginx's memcached hit, no Python) all answer 200 over HTTP/2, with HSTS."""
    written = ("-o", "/dev/null", "-w", "%{http_version} %{http_code}")
    assert curl("--http2", "-k", *written, f"{stack.https_url}/") == "2 200"
    products = requests.get(f"{stack.https_url}/api/v1/products", verify=stack.ca, timeout=10)
    product_url = f"{stack.https_url}/api/v1/products/{products.json()['items'][0]['id']}"
    curl("--http2", "-k", "-o", "/dev/null", product_url)  # fills the cache
    headers = curl("--http2", "--cacert", stack.ca, "-D", "-", "-o", "/dev/null", product_url)
    assert headers.startswith("HTTP/2 200"), headers
    assert "x-served-by: nginx-memcached" in headers.lower(), headers
    assert f"strict-transport-security: {SELF_SIGNED_HSTS}" in headers.lower(), headers


def test_hsts_is_on_every_https_answer_and_on_no_plain_one(stack):
    """The app's pages and JSON, nginx's own JSON error pages: HSTS. The plain listener's
    health answers and redirects, and the metrics listener: none (it means nothing there)."""
    for path in ("/", "/api/v1/products", "/metrics", "/api/v1/nope", "/healthz"):
        response = requests.get(f"{stack.https_url}{path}", verify=stack.ca, timeout=10)
        assert response.headers.get(HSTS) == SELF_SIGNED_HSTS, (path, response.headers)
    assert requests.get(f"{stack.https_url}/metrics", verify=stack.ca, timeout=10).json()
    for path in ("/healthz", "/readyz", "/"):
        response = requests.get(f"{stack.base_url}{path}", allow_redirects=False, timeout=10)
        assert HSTS not in response.headers, (path, response.headers)


def test_plain_http_is_redirected_to_https_but_health_probes_are_answered(stack):
    """A GET or a POST on the plain port: 308 to the same path and query on HTTPS (a POST
    stays a POST). /healthz and /readyz: answered where they are asked, as a balancer
    expects."""
    response = requests.get(
        f"{stack.base_url}/api/v1/products?page=2", allow_redirects=False, timeout=10
    )
    assert response.status_code == 308
    assert response.headers["Location"] == f"{stack.https_url}/api/v1/products?page=2"
    response = requests.post(
        f"{stack.base_url}/api/v1/users", json={"name": "x"}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 308
    assert response.headers["Location"] == f"{stack.https_url}/api/v1/users"
    for path in ("/healthz", "/readyz"):
        response = requests.get(f"{stack.base_url}{path}", allow_redirects=False, timeout=10)
        assert response.status_code == 200, (path, response.text)


def test_the_self_signed_key_is_roots_and_private(stack):
    """run/tls is root's and closed; the key is root's, 0600 (nginx's master reads it as
    root; its workers, the service user, cannot)."""
    paths = RunDir(stack.run_dir)
    assert paths.tls.stat().st_uid == 0 and paths.tls.stat().st_mode & 0o777 == 0o700
    assert paths.tls_key.stat().st_uid == 0 and paths.tls_key.stat().st_mode & 0o777 == 0o600


def create_sale(stack, stock: int) -> dict:
    product = requests.get(f"{stack.https_url}/api/v1/products", verify=stack.ca, timeout=10)
    response = requests.post(
        f"{stack.https_url}/api/v1/sales",
        json={
            "product_id": product.json()["items"][0]["id"],
            "stock": stock,
            "per_user_limit": 1,
            "ends_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
        },
        headers=stack.admin_headers(),
        verify=stack.ca,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def buy_over_https(stack, sale: dict) -> None:
    """A purchase by another buyer, over HTTPS, as if from another browser."""
    token = requests.post(
        f"{stack.https_url}/api/v1/users", json={"name": "elsewhere"}, verify=stack.ca, timeout=10
    ).json()["token"]
    response = requests.post(
        f"{stack.https_url}/api/v1/sales/{sale['id']}/orders",
        json={"quantity": 1},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        verify=stack.ca,
        timeout=10,
    )
    assert response.status_code == 202, response.text


def test_the_storefront_works_over_https_in_a_browser(stack):
    """chromium (the self-signed certificate accepted for this context) loads the page over
    HTTP/2, shows the sale with its live stream open, and counts the stock down as buyers
    elsewhere purchase; no uncaught script error, no CSP violation."""
    sale = create_sale(stack, stock=4)
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(ignore_https_errors=True)
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            problems = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"{stack.https_url}/")
            protocol = page.evaluate(
                "performance.getEntriesByType('navigation')[0].nextHopProtocol"
            )
            assert protocol == "h2"
            card = page.locator(f'li.sale[data-sale-id="{sale["id"]}"]')
            expect(card.locator(".remaining")).to_have_text("4")
            expect(card.locator(".live")).to_be_visible()  # the stream is open
            buy_over_https(stack, sale)
            expect(card.locator(".remaining")).to_have_text("3")
            buy_over_https(stack, sale)
            expect(card.locator(".remaining")).to_have_text("2")
            assert page.url.startswith("https://")
            # (The browser's own /favicon.ico, a 404, is logged as a console error too.)
            assert not [p for p in problems if "Content Security Policy" in p or "Uncaught" in p]
        finally:
            browser.close()


@pytest.fixture
def run_dir():
    """A run directory the service user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="spillway-tls-refused-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(FAILED_START_SECONDS + 30)
def test_a_certificate_that_cannot_be_read_stops_up_in_one_line(run_dir, tmp_path):
    """SPILLWAY_TLS_CERT names no file: one line naming it, a non-zero exit, no traceback,
    and nothing started: no supervisord config, both ports still free."""
    port, tls_port = free_port(), free_port()
    result = spillway_up(
        run_dir,
        port,
        SPILLWAY_TLS_CERT=str(tmp_path / "missing.pem"),
        SPILLWAY_TLS_KEY=str(tmp_path / "key.pem"),
        SPILLWAY_TLS_PORT=str(tls_port),
    )
    assert_one_line_failure(result, f"SPILLWAY_TLS_CERT={tmp_path}/missing.pem", "cannot read")
    assert not RunDir(run_dir).supervisord_conf.exists()
    for free in (port, tls_port):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", free))  # nothing listens there


def test_the_tls_port_taken_stops_up_in_one_line(run_dir):
    """Something already listens on the HTTPS port: one line naming SPILLWAY_TLS_PORT."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        tls_port = taken.getsockname()[1]
        result = spillway_up(
            run_dir, free_port(), SPILLWAY_TLS="self-signed", SPILLWAY_TLS_PORT=str(tls_port)
        )
    assert_one_line_failure(result, f"SPILLWAY_TLS_PORT={tls_port}", "already listens")
    assert not RunDir(run_dir).supervisord_conf.exists()
