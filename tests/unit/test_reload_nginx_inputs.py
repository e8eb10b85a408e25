"""What a reload compares to decide whether nginx must load again: nginx.conf and the TLS
files it names (spillway/deploy/reload.py)."""

from spillway.deploy.reload import nginx_inputs
from spillway.deploy.run_dir import RunDir


def conf(cert: str, key: str) -> str:
    return (
        "http {\n    server {\n"
        f'        ssl_certificate "{cert}";\n'
        f'        ssl_certificate_key "{key}";\n'
        "        ssl_protocols TLSv1.2 TLSv1.3;\n    }\n}\n"
    )


def test_a_renewed_certificate_under_the_same_name_counts(tmp_path):
    """nginx.conf unchanged, the certificate it names renewed: nginx must load again."""
    run_dir = RunDir(tmp_path)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("old certificate")
    key.write_text("old key")
    run_dir.nginx_conf.write_text(conf(str(cert), str(key)))
    before = nginx_inputs(run_dir)
    assert nginx_inputs(run_dir) == before
    cert.write_text("renewed certificate")
    assert nginx_inputs(run_dir) != before


def test_a_changed_config_counts_and_a_missing_file_is_no_error(tmp_path):
    """Another nginx.conf is another digest; a file it names that is gone is hashed as
    missing (nginx itself then refuses the reload and keeps serving the old config)."""
    run_dir = RunDir(tmp_path)
    run_dir.nginx_conf.write_text(conf("/nonexistent/cert.pem", "/nonexistent/key.pem"))
    before = nginx_inputs(run_dir)
    run_dir.nginx_conf.write_text(conf("/nonexistent/cert.pem", "/nonexistent/key.pem") + "#\n")
    assert nginx_inputs(run_dir) != before
