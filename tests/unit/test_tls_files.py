"""The certificate and key `spillway up --tls` hands nginx, on a real filesystem: the
operator's files are refused in one line naming the setting when nginx could not serve them
(or would serve an expired certificate), and the self-signed pair is made once, private,
and kept until it no longer fits. (Served by a real nginx: tests/e2e/test_tls.py.)"""

import ipaddress
import os
import stat
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spillway.deploy import tls
from spillway.deploy.layout import StackError
from spillway.deploy.run_dir import RunDir
from tests.servers import binary

NOBODY_UID = 65534


def write_certificate(
    path: Path, key, days: tuple[int, int] = (-1, 90), issuer_key=None, name: str = "shop"
) -> x509.Certificate:
    """A certificate for ``key``, valid from/to ``days`` from now, signed by ``issuer_key``
    (itself by default), written as PEM to ``path``."""
    now = datetime.now(timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca" if issuer_key else name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .sign(issuer_key or key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def write_key(path: Path, password: bytes | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return key


@pytest.fixture
def pair(tmp_path, monkeypatch):
    """A matching certificate and key, named by SPILLWAY_TLS_CERT and SPILLWAY_TLS_KEY."""
    key = write_key(tmp_path / "key.pem")
    write_certificate(tmp_path / "cert.pem", key)
    monkeypatch.setenv("SPILLWAY_TLS_CERT", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("SPILLWAY_TLS_KEY", str(tmp_path / "key.pem"))
    return tmp_path, key


def refusal(*needles: str) -> str:
    """The one line operator_files refuses with; it holds every needle."""
    with pytest.raises(StackError) as refused:
        tls.operator_files()
    line = str(refused.value)
    assert "\n" not in line
    for needle in needles:
        assert needle in line, line
    return line


def test_a_matching_pair_is_taken_with_absolute_paths(pair, monkeypatch):
    """Relative names are made absolute (nginx would read them from its own prefix)."""
    directory, _key = pair
    monkeypatch.chdir(directory)
    monkeypatch.setenv("SPILLWAY_TLS_CERT", "cert.pem")
    monkeypatch.setenv("SPILLWAY_TLS_KEY", "key.pem")
    assert tls.operator_files() == (directory / "cert.pem", directory / "key.pem")


def test_a_chain_with_the_servers_certificate_first_is_taken(pair):
    """fullchain.pem: the server's certificate, then its issuer's."""
    directory, key = pair
    ca_key = ec.generate_private_key(ec.SECP256R1())
    write_certificate(directory / "leaf.pem", key, issuer_key=ca_key)
    write_certificate(directory / "ca.pem", ca_key, name="ca")
    chain = (directory / "leaf.pem").read_bytes() + (directory / "ca.pem").read_bytes()
    (directory / "cert.pem").write_bytes(chain)
    tls.operator_files()
    (directory / "cert.pem").write_bytes(
        (directory / "ca.pem").read_bytes() + (directory / "leaf.pem").read_bytes()
    )
    refusal("SPILLWAY_TLS_KEY=", "not the key of the certificate", "server's own")


def test_a_missing_setting_or_file_is_one_line(pair, monkeypatch):
    directory, _key = pair
    monkeypatch.setenv("SPILLWAY_TLS_CERT", str(directory / "nope.pem"))
    refusal(f"SPILLWAY_TLS_CERT={directory}/nope.pem", "cannot read it", "No such file")
    monkeypatch.delenv("SPILLWAY_TLS_KEY")
    refusal("SPILLWAY_TLS_KEY is not set")


def test_the_key_of_another_certificate_is_refused(pair):
    directory, _key = pair
    write_key(directory / "key.pem")
    refusal(f"SPILLWAY_TLS_KEY={directory}/key.pem", "not the key of the certificate")


def test_files_that_are_not_what_they_are_named_are_refused(pair, monkeypatch):
    directory, _key = pair
    monkeypatch.setenv("SPILLWAY_TLS_CERT", str(directory / "key.pem"))
    refusal("SPILLWAY_TLS_CERT=", "not a PEM certificate")
    monkeypatch.setenv("SPILLWAY_TLS_CERT", str(directory / "cert.pem"))
    monkeypatch.setenv("SPILLWAY_TLS_KEY", str(directory / "cert.pem"))
    refusal("SPILLWAY_TLS_KEY=", "not a PEM private key")


def test_an_encrypted_key_is_refused_before_nginx_would_ask_for_its_passphrase(pair):
    directory, _key = pair
    key = write_key(directory / "key.pem", password=b"secret")
    write_certificate(directory / "cert.pem", key)
    refusal("SPILLWAY_TLS_KEY=", "encrypted", "passphrase")


def test_an_expired_or_future_certificate_is_refused(pair):
    directory, key = pair
    write_certificate(directory / "cert.pem", key, days=(-60, -1))
    refusal("SPILLWAY_TLS_CERT=", "expired on")
    write_certificate(directory / "cert.pem", key, days=(2, 60))
    refusal("SPILLWAY_TLS_CERT=", "not valid before", "clock")


def test_the_self_signed_pair_is_made_once_private_and_kept(tmp_path):
    """A key readable by its owner only, a certificate for loopback's names, the same
    pair at the next start."""
    run_dir = RunDir(tmp_path)
    run_dir.tls.mkdir(mode=0o700)
    tls.make_self_signed(run_dir, "127.0.0.1")
    assert stat.S_IMODE(run_dir.tls_key.stat().st_mode) == 0o600
    assert run_dir.tls_key.stat().st_uid == os.geteuid()
    cert = x509.load_pem_x509_certificate(run_dir.tls_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert cert.not_valid_after_utc - datetime.now(timezone.utc) > timedelta(days=300)
    made = run_dir.tls_cert.read_bytes(), run_dir.tls_key.read_bytes()
    tls.make_self_signed(run_dir, "0.0.0.0")
    assert (run_dir.tls_cert.read_bytes(), run_dir.tls_key.read_bytes()) == made


def test_the_self_signed_pair_is_made_anew_when_it_no_longer_fits(tmp_path):
    """Another listening address, a certificate near its end, or a file that is not
    this process's user's own: a new pair."""
    run_dir = RunDir(tmp_path)
    run_dir.tls.mkdir(mode=0o700)
    tls.make_self_signed(run_dir, "127.0.0.1")

    first = run_dir.tls_cert.read_bytes()
    tls.make_self_signed(run_dir, "10.1.2.3")
    cert = x509.load_pem_x509_certificate(run_dir.tls_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in names.get_values_for_type(x509.IPAddress)
    assert run_dir.tls_cert.read_bytes() != first

    key = serialization.load_pem_private_key(run_dir.tls_key.read_bytes(), password=None)
    write_certificate(run_dir.tls_cert, key, days=(-300, 10))
    tls.make_self_signed(run_dir, "10.1.2.3")
    cert = x509.load_pem_x509_certificate(run_dir.tls_cert.read_bytes())
    assert cert.not_valid_after_utc - datetime.now(timezone.utc) > timedelta(days=300)

    kept = run_dir.tls_key.read_bytes()
    os.link(run_dir.tls_key, tmp_path / "planted-name")  # a second name: anyone's
    tls.make_self_signed(run_dir, "10.1.2.3")
    assert run_dir.tls_key.read_bytes() != kept

    kept = run_dir.tls_key.read_bytes()
    os.chown(run_dir.tls_key, NOBODY_UID, NOBODY_UID)  # the suite runs as root
    tls.make_self_signed(run_dir, "10.1.2.3")
    assert run_dir.tls_key.read_bytes() != kept
    assert run_dir.tls_key.stat().st_uid == os.geteuid()


def test_hsts_pins_for_a_year_only_with_the_operators_certificate(tmp_path):
    """A self-signed certificate (localhost) gets an hour; the operator's, a year."""
    nginx = binary("nginx")
    own = tls.TlsListener(443, tmp_path / "c", tmp_path / "k", self_signed=False)
    local = tls.TlsListener(8443, tmp_path / "c", tmp_path / "k", self_signed=True)
    assert own.template_context(nginx)["hsts"] == "max-age=31536000"
    assert local.template_context(nginx)["hsts"] == "max-age=3600"
    assert (
        own.template_context(nginx)["port_suffix"],
        local.template_context(nginx)["port_suffix"],
    ) == ("", ":8443")


def test_the_installed_nginx_says_its_version():
    """How HTTP/2 is spelled depends on it (a listen parameter before 1.25.1)."""
    assert tls.nginx_version(binary("nginx")) >= (1, 18, 0)
