"""HTTPS at nginx for `spillway up --tls`: the certificate and key nginx serves, checked
before anything starts, and how this nginx spells HTTP/2.

Two sources. ``self-signed``, for local use: an ECDSA key and a certificate for localhost,
127.0.0.1 and ::1, made once into the run directory's ``tls/`` (root's and closed, the key
0600: nginx's master reads both as root before its workers drop privileges) and kept while
it is valid. ``files``: the operator's, named by SPILLWAY_TLS_CERT (the server's certificate
first, then its chain) and SPILLWAY_TLS_KEY, read where they are, so that a renewed
certificate behind the same names is picked up when nginx reloads. Either way, files nginx
would refuse (or serve to no avail: an expired certificate) end `spillway up` in one line
before it starts anything.
"""

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import click
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

from spillway.deploy.files import NO_FOLLOW_READ
from spillway.deploy.files import is_single_regular_file
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import TLS_CERT_SETTING
from spillway.deploy.layout import TLS_KEY_SETTING
from spillway.deploy.layout import StackError
from spillway.deploy.layout import tls_file_settings
from spillway.deploy.run_dir import RunDir

# A year, on the TLS server only. No includeSubDomains: a domain's other hosts are not
# this stack's to pin to HTTPS.
HSTS = "max-age=31536000"
# An hour for the self-signed certificate: a browser that was told to trust it would
# otherwise keep every http://localhost (any port, any other local server) on HTTPS for a
# year. (Browsers ignore HSTS from an address such as 127.0.0.1, and from a certificate
# they do not trust.)
SELF_SIGNED_HSTS = "max-age=3600"
SELF_SIGNED_DAYS = 365
# A self-signed certificate this close to its end is made anew at the next start.
RENEW_BEFORE = timedelta(days=30)
SELF_SIGNED_NAMES = ("localhost",)
SELF_SIGNED_ADDRESSES = ("127.0.0.1", "::1")
# nginx 1.25.1 made HTTP/2 a directive of its own (`http2 on;`) and deprecated the listen
# parameter; older ones (Debian 12 has 1.22) know only the parameter.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)
NGINX_VERSION = re.compile(r"nginx/(\d+)\.(\d+)\.(\d+)")
PUBLIC_KEY_DER = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class TlsListener:
    """nginx's HTTPS listener: its port and the files it serves."""

    port: int
    cert: Path
    key: Path
    self_signed: bool

    def template_context(self, nginx: str) -> dict:
        """What nginx.conf's TLS server and its plain-HTTP redirect are rendered from."""
        return {
            "port": self.port,
            "cert": str(self.cert),
            "key": str(self.key),
            "http2_on_listen": nginx_version(nginx) < HTTP2_DIRECTIVE_SINCE,
            "hsts": SELF_SIGNED_HSTS if self.self_signed else HSTS,
            # Where the plain listener redirects: no port in the URL for the standard one.
            "port_suffix": "" if self.port == 443 else f":{self.port}",
        }


def tls_listener(mode: str, port: int, run_dir: RunDir, host: str) -> TlsListener | None:
    """The HTTPS listener ``mode`` asks for (None when off).

    :raise StackError: the operator's files are missing, unreadable, not a certificate
        and its key, or the certificate has expired; one line says which and why.
    """
    if mode == "off":
        return None
    if mode == "self-signed":
        make_self_signed(run_dir, host)
        return TlsListener(port, run_dir.tls_cert, run_dir.tls_key, self_signed=True)
    cert, key = operator_files()
    return TlsListener(port, cert, key, self_signed=False)


def operator_files() -> tuple[Path, Path]:
    """SPILLWAY_TLS_CERT and SPILLWAY_TLS_KEY, absolute, once checked as nginx will use them.

    :raise StackError: as :func:`tls_listener`.
    """
    settings = tls_file_settings()
    for name, value in settings.items():
        if not value:
            raise StackError(
                f"{name} is not set: --tls files serves the certificate {TLS_CERT_SETTING} "
                f"names with the key {TLS_KEY_SETTING} names (--tls self-signed makes its own)"
            )
    cert_label = f"{TLS_CERT_SETTING}={settings[TLS_CERT_SETTING]}"
    key_label = f"{TLS_KEY_SETTING}={settings[TLS_KEY_SETTING]}"
    chain = load_chain(read_operator_file(settings[TLS_CERT_SETTING], cert_label), cert_label)
    key = load_key(read_operator_file(settings[TLS_KEY_SETTING], key_label), key_label)
    if not same_public_key(chain[0], key):
        raise StackError(
            f"{key_label}: not the key of the certificate {cert_label} "
            f"(its first certificate must be the server's own)"
        )
    refuse_out_of_date(chain[0], cert_label)
    return (
        Path(os.path.abspath(settings[TLS_CERT_SETTING])),
        Path(os.path.abspath(settings[TLS_KEY_SETTING])),
    )


def read_operator_file(path: str, label: str) -> bytes:
    """The operator's file, links followed (certbot's live/ names are links)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StackError(f"{label}: cannot read it: {exc.strerror}") from None


def load_chain(data: bytes, label: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise StackError(f"{label}: not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None


def load_key(data: bytes, label: str):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        raise StackError(
            f"{label}: the key is encrypted, and nginx would stop to ask for its "
            f"passphrase: give it the key unencrypted, readable by root only"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise StackError(f"{label}: not a PEM private key (BEGIN … PRIVATE KEY)") from None


def same_public_key(cert: x509.Certificate, key) -> bool:
    return cert.public_key().public_bytes(*PUBLIC_KEY_DER) == key.public_key().public_bytes(
        *PUBLIC_KEY_DER
    )


def refuse_out_of_date(cert: x509.Certificate, label: str) -> None:
    now = datetime.now(timezone.utc)
    if now > cert.not_valid_after_utc:
        raise StackError(f"{label}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if now < cert.not_valid_before_utc:
        raise StackError(
            f"{label}: the certificate is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (is this machine's clock right?)"
        )


# ------------------------------------------------------------------------- self-signed


def make_self_signed(run_dir: RunDir, host: str) -> None:
    """Keep the run directory's self-signed certificate, or make a new one when there is
    none, it is not root's own, it does not name ``host`` or it ends soon."""
    names, addresses = self_signed_names(host)
    if self_signed_still_good(run_dir, names, addresses):
        return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(key, names, addresses)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first: a start stopped in between finds a mismatched pair and makes both anew.
    write_atomically(run_dir.tls_key, pem_key.decode("ascii"), 0o600)
    write_atomically(
        run_dir.tls_cert, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), 0o644
    )
    click.echo(
        f"spillway up: made a self-signed certificate for {', '.join(names + addresses)} "
        f"({run_dir.tls_cert}, until {cert.not_valid_after_utc:%Y-%m-%d}); browsers will "
        f"warn about it: it is for local use"
    )


def self_signed_names(host: str) -> tuple[list[str], list[str]]:
    """The names and addresses the certificate covers: loopback's, and ``host`` when it
    is one address (not a wildcard)."""
    names, addresses = list(SELF_SIGNED_NAMES), list(SELF_SIGNED_ADDRESSES)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host and host not in names:
            names.append(host)
        return names, addresses
    if not address.is_unspecified and str(address) not in addresses:
        addresses.append(str(address))
    return names, addresses


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey, names: list[str], addresses: list[str]
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(timezone.utc)
    alternative_names = [x509.DNSName(name) for name in names] + [
        x509.IPAddress(ipaddress.ip_address(address)) for address in addresses
    ]
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a client's clock a little behind
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def self_signed_still_good(run_dir: RunDir, names: list[str], addresses: list[str]) -> bool:
    cert_pem, key_pem = read_own_file(run_dir.tls_cert), read_own_file(run_dir.tls_key)
    if cert_pem is None or key_pem is None:
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        covered = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.ExtensionNotFound):
        return False
    return (
        same_public_key(cert, key)
        and cert.not_valid_after_utc - datetime.now(timezone.utc) > RENEW_BEFORE
        and set(names) <= set(covered.get_values_for_type(x509.DNSName))
        and {ipaddress.ip_address(a) for a in addresses}
        <= set(covered.get_values_for_type(x509.IPAddress))
    )


def read_own_file(path: Path) -> bytes | None:
    """``path``'s bytes if it is a regular file with one name owned by this process's user
    (root's: nothing the service user left there is served as the stack's key); else None,
    never opened through a link."""
    try:
        fd = os.open(path, NO_FOLLOW_READ)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not is_single_regular_file(info) or info.st_uid != os.geteuid():
            return None
        return source.read()


def nginx_version(nginx: str) -> tuple[int, ...]:
    """This nginx's version (``nginx -v``); (0, 0, 0) if it does not say."""
    result = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    found = NGINX_VERSION.search(result.stderr + result.stdout)
    return tuple(int(part) for part in found.groups()) if found else (0, 0, 0)
