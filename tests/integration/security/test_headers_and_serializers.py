"""Security headers on every answer the app gives itself (the fast paths included), and no
pickle anywhere a message or a cached value is decoded."""

import ast
from pathlib import Path

import spillway
from spillway.security.headers import SECURITY_HEADERS
from tests.factories import buy
from tests.factories import make_product
from tests.factories import make_sale
from tests.factories import signup


def assert_secured(response):
    for name, value in SECURITY_HEADERS:
        assert response.headers.get_all(name) == [value], (name, response.headers)


def test_every_kind_of_answer_carries_the_security_headers(client, app):
    """Flask views, both WSGI fast paths, static pages and errors (served directly, as by
    `spillway serve`; behind nginx see tests/e2e/test_security.py)."""
    sale = make_sale(client)
    buyer = signup(client)
    product = make_product()
    client.get(f"/api/v1/products/{product.id}")  # fill the page cache
    answers = {
        "flask view": client.get("/api/v1/sales"),
        "purchase fast path": buy(client, sale, buyer),
        "purchase fast path error": buy(client, sale, {}),
        "catalog fast path": client.get(f"/api/v1/products/{product.id}"),
        "storefront page": client.get("/"),
        "docs page": client.get("/docs"),
        "static file": client.get("/static/site.css"),
        "404": client.get("/nowhere"),
        "405": client.delete("/api/v1/sales"),
        "413": client.post("/api/v1/users", data=b"x" * 70_000, content_type="application/json"),
        "health": client.get("/healthz"),
    }
    assert answers["purchase fast path"].status_code == 202
    for response in answers.values():
        response.close()  # static files are streamed from an open file
        assert_secured(response)


def test_pages_load_no_inline_script_or_style(client, app):
    """The Content-Security-Policy (default-src 'self') blocks inline code: the pages have
    none, and what they load comes from this origin."""
    for page in ("/", "/docs"):
        response = client.get(page)
        html = response.get_data(as_text=True)
        response.close()
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert "on" + "click=" not in html and "http" not in html.split("<body>")[0]
    for script in ("/static/docs.js", "/static/storefront.js", "/static/api.js"):
        response = client.get(script)
        response.close()
        assert response.status_code == 200
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200 and spec.get_json()["paths"]


# No pickle ------------------------------------------------------------------------------


def test_celery_accepts_and_sends_json_only(app):
    """See also tests/integration/test_celery_worker.py::test_worker_refuses_pickle (a real
    worker refuses a pickled message) and tests/unit/test_settings.py."""
    conf = app.extensions["celery"].conf
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"


def test_memcached_client_stores_bytes_and_text_only(app):
    """pymemcache without a serde (never pickle_serde): values go out as their bytes and
    come back as bytes, never as unpickled objects."""
    client = app.extensions["memcache"]
    assert type(client.serde).__name__ == "LegacyWrappingSerde"
    assert client.serde.serialize.__name__ == "_default_serialize"
    assert client.serde.deserialize.__name__ == "_default_deserialize"
    client.set("spillway:test:object", {"an": "object"})
    assert isinstance(client.get("spillway:test:object"), bytes)
    client.set("spillway:test:text", "plain")
    assert client.get("spillway:test:text") == b"plain"


def test_no_module_imports_pickle_or_its_kin():
    """No source file imports pickle, shelve, marshal, dill or jsonpickle."""
    forbidden = {"pickle", "cPickle", "_pickle", "shelve", "marshal", "dill", "jsonpickle"}
    offenders = []
    for path in Path(spillway.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path}: {name}" for name in names if name.split(".")[0] in forbidden]
    assert offenders == []


def test_no_cookie_is_ever_set(client, app):
    """Bearer tokens only: no answer sets a cookie, so there is nothing for CSRF to ride."""
    sale = make_sale(client)
    buyer = signup(client)
    for response in (
        client.get("/api/v1/sales"),
        buy(client, sale, buyer),
        client.post("/api/v1/users", json={"name": "x"}),
        client.get("/nowhere"),
    ):
        assert "Set-Cookie" not in response.headers


def test_malformed_limit_settings_stop_the_process(monkeypatch):
    """A rate-limit setting that does not parse is a one-line SettingsError naming it."""
    from flashsale import settings as shop_settings
    from spillway import settings

    for variable in ("SPILLWAY_RATE_LIMIT_PER_IP", "SPILLWAY_RATE_LIMIT_PER_BUYER"):
        monkeypatch.setenv(variable, "lots")
        try:
            shop_settings.load("test")
        except settings.SettingsError as exc:
            assert variable in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{variable}=lots was accepted")
        monkeypatch.delenv(variable)
    for variable, value in (
        ("SPILLWAY_NGINX_RATE_PER_IP", "fast"),
        ("SPILLWAY_NGINX_CONN_PER_IP", "0"),
    ):
        monkeypatch.setenv(variable, value)
        try:
            settings.nginx_rate_limits()
        except settings.SettingsError as exc:
            assert variable in str(exc)
        else:
            raise AssertionError(f"{variable}={value} was accepted")
        monkeypatch.delenv(variable)


def test_nginx_limits_are_rendered_only_when_limits_are_on(monkeypatch, tmp_path):
    """SPILLWAY_RATE_LIMITS=off leaves no limit_req in nginx.conf; on, every location is
    covered and its 429 is the JSON page. (Behaviour: tests/e2e/test_security.py.)"""
    from jinja2 import Environment
    from jinja2 import FileSystemLoader
    from jinja2 import StrictUndefined

    from spillway import request_id
    from spillway.deploy.layout import TEMPLATES_DIR
    from spillway.deploy.nginx_answers import template_context
    from spillway.deploy.run_dir import RunDir
    from spillway.settings import nginx_rate_limits

    template = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR), undefined=StrictUndefined
    ).get_template("nginx.conf")
    app = {
        "static": {"url_path": "/static", "folder": str(tmp_path)},
        "pages": [{"path": "/", "root": str(tmp_path), "file": "index.html"}],
        "cached_routes": [
            {"location": "^/api/v1/products(/[0-9]+)?$", "key_prefix": "p", "aliases": {}}
        ],
        "allow": [{"pattern": "/api/v1/products", "methods": "GET, HEAD"}],
    }
    context = dict(
        user="",
        group="",
        nginx_workers=1,
        paths=RunDir(tmp_path),
        log_dir=tmp_path,
        max_body_bytes=65536,
        app=app,
        host="127.0.0.1",
        port=1,
        metrics_port=2,
        tls=None,
        request_id_pattern=request_id.PATTERN,
        log_format="text",
        **template_context(65536),
    )
    rendered = {}
    for mode in ("on", "off"):
        monkeypatch.setenv("SPILLWAY_RATE_LIMITS", mode)
        rendered[mode] = template.render(**context, **nginx_rate_limits())
    assert "limit_req" not in rendered["off"] and "limit_conn" not in rendered["off"]
    assert "limit_req zone=per_ip burst=40 nodelay;" in rendered["on"]
    assert "rate=20r/s" in rendered["on"]
    assert "limit_conn conn_per_ip 64;" in rendered["on"]
    for config in rendered.values():
        # Both servers, and the memcached location (its own error_page lines).
        assert config.count("error_page 429 =429 /_spillway/errors/429;") == 3
