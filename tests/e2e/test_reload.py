"""`spillway reload` and `spillway deploy` under load, through nginx: no refused connection,
no 5xx, every 202 persisted, and the new code answering afterwards (DEPLOYMENT.md, §13)."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.audit import Answer
from tests.e2e.conftest import running_stack
from tests.e2e.promises import children_of
from tests.faults.burst import exchange
from tests.waiting import wait_until

THREADS = 8
BUYERS = 200  # × a limit of 100: more purchases than the load makes
LOAD_AFTER_RELOAD_SECONDS = 2.0
MAX_LOAD_SECONDS = 400.0
FIGURES = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts")) / "reload-figures.jsonl"


class Load:
    """``THREADS`` clients, each a loop of one request after another through nginx, for as
    long as it runs (at most ``MAX_LOAD_SECONDS``); every answer recorded."""

    def __init__(self, base_url: str, requests_of):
        self.base_url = base_url
        self.requests_of = requests_of  # thread number, round → (method, path, headers, body, …)
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(THREADS)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self, number: int) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        with requests.Session() as session:
            round_ = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                for method, path, headers, body, intent in self.requests_of(number, round_):
                    answer = exchange(session, f"{self.base_url}{path}", method, headers, body)
                    answer.path = path
                    answer.user_id, answer.key, answer.quantity = intent
                    with self._lock:
                        self.answers.append(answer)
                round_ += 1

    def wait_answers(self, count: int) -> None:
        wait_until(lambda: len(self.answers) >= count, 60, 0.2, what=f"{count} answers")

    def figures(self) -> dict:
        statuses: dict[str, int] = {}
        for answer in self.answers:
            statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
        return {"requests": len(self.answers), "statuses": statuses}

    def assert_clean(self) -> None:
        """No connection error, no timeout, no 5xx: not one."""
        bad = [a for a in self.answers if a.status is None or a.status >= 500]
        assert not bad, f"{len(bad)} of {len(self.answers)} failed, e.g. " + "; ".join(
            f"{a.method} {a.path}: {a.status} {a.transport_error or a.body!r:.200}" for a in bad[:5]
        )


def spillway(
    *args: str, env: dict | None = None, timeout: float = 400
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spillway", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def record(name: str, figures: dict) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with open(FIGURES, "a") as out:
        out.write(json.dumps({"test": name, **figures}) + "\n")


# -- the flash sale: purchases and catalog reads while the stack reloads

# gunicorn's --graceful-timeout (10 s) has passed once the reload is done: a little more.
STREAM_END_SECONDS = 30


class Stream(threading.Thread):
    """A live-stock stream read until it ends (by itself, or cut: either way EventSource
    opens it again)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.status, self.received, self.ended = url, None, b"", False
        self.start()
        wait_until(lambda: self.received, 30, 0.1, what="the stream's first event")

    def run(self) -> None:
        with requests.get(self.url, stream=True, timeout=60) as response:
            self.status = response.status_code
            try:
                for chunk in response.iter_content(chunk_size=None):
                    self.received += chunk
            except requests.exceptions.ChunkedEncodingError:
                pass  # cut mid-chunk
        self.ended = True


@pytest.fixture(scope="module")
def stack():
    # What a worker stopped mid-batch held is re-driven after 2 s instead of 30 s.
    with running_stack({"SPILLWAY_OUTBOX_STUCK_MS": "2000"}) as running:
        yield running


def signup(stack, count: int) -> list[dict]:
    with requests.Session() as session:
        buyers = [
            session.post(f"{stack.base_url}/api/v1/users", json={"name": f"r{n}"}, timeout=10)
            for n in range(count)
        ]
    assert all(b.status_code == 201 for b in buyers)
    return [b.json() for b in buyers]


def shop_traffic(sale: dict, buyers: list[dict]):
    """Thread ``n``'s round ``r``: one purchase (a new key) by a buyer of its own, then a
    catalog read (the product list, or the sale)."""
    reads = ("/api/v1/products", f"/api/v1/sales/{sale['id']}")

    def requests_of(number: int, round_: int):
        buyer = buyers[(number + round_ * THREADS) % len(buyers)]
        key = f"reload-{number}-{round_}"
        headers = {"Authorization": f"Bearer {buyer['token']}", "Idempotency-Key": key}
        path = f"/api/v1/sales/{sale['id']}/orders"
        return [
            ("POST", path, headers, {"quantity": 1}, (buyer["user_id"], key, 1)),
            ("GET", reads[round_ % 2], {}, None, (None, None, 0)),
        ]

    return requests_of


def test_reload_under_load_refuses_nothing_and_loses_nothing(stack):
    """Purchases and catalog reads run through nginx while `spillway reload` renews
    gunicorn's workers (same master) and restarts the Celery worker (warm shutdown); nginx,
    its config unchanged, is left alone: not one connection error or 5xx, every 202 in the
    ledger, the books balanced; an open live-stock stream ends by itself (EventSource
    reconnects)."""
    sale, buyers = stack.new_sale(100_000, per_user_limit=100), signup(stack, BUYERS)
    gunicorn, nginx = stack.program_pid("gunicorn"), stack.program_pid("nginx")
    old_workers, celery = set(children_of(gunicorn)), stack.program_pid("celery-worker")
    stream = Stream(f"{stack.base_url}/api/v1/sales/{sale['id']}/stream")
    started = time.monotonic()
    with Load(stack.base_url, shop_traffic(sale, buyers)) as load:
        load.wait_answers(200)
        reloaded = spillway("reload", env={"SPILLWAY_RUN_DIR": str(stack.run_dir)})
        reload_seconds = time.monotonic() - started
        load.wait_answers(len(load.answers) + 200)
        time.sleep(LOAD_AFTER_RELOAD_SECONDS)
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.startswith("reloaded: gunicorn's 2 workers renewed"), reloaded.stdout
    assert "nginx unchanged" in reloaded.stdout
    # The stream an old worker held has ended (at its graceful timeout), not left hanging.
    stream.join(STREAM_END_SECONDS)
    assert stream.status == 200 and b"data:" in stream.received and stream.ended
    load.assert_clean()
    assert stack.program_pid("gunicorn") == gunicorn and stack.program_pid("nginx") == nginx
    assert not old_workers & set(children_of(gunicorn)) and children_of(gunicorn)
    assert stack.program_pid("celery-worker") != celery
    purchases = [a for a in load.answers if a.method == "POST"]
    figures = stack.sale_audit().audit(sale, purchases)
    assert figures.orders_lost == 0 and figures.accepted > 0
    record(
        "reload",
        {
            **load.figures(),
            "accepted_202": figures.accepted,
            "persisted": figures.accepted,
            "reload_seconds": round(reload_seconds, 1),
        },
    )


def test_reload_without_a_stack_is_one_line(tmp_path):
    """No stack in the run directory: one line, exit 1, nothing signalled."""
    result = spillway("reload", env={"SPILLWAY_RUN_DIR": str(tmp_path)}, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: no stack in {tmp_path}: `make run` starts one; or set SPILLWAY_RUN_DIR"
    ]


# -- an app of one's own: a changed view, deployed under load


APP_VIEW = """
from flask import Flask
from spillway import Spillway


def create_app():
    app = Flask(__name__)
    Spillway(app, pages={pages})

    @app.get("/")
    def index():
        return "{answer}\\n"

    return app
"""
PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "reloadapp"
version = "0.1"

[tool.setuptools]
packages = ["reloadapp"]

[tool.setuptools.package-data]
reloadapp = ["static/*"]
"""


def write_view(source: Path, answer: str, pages: dict | None = None) -> None:
    (source / "reloadapp" / "__init__.py").write_text(
        APP_VIEW.format(answer=answer, pages=pages or {})
    )


# The app alone: what it imports (Flask) is in the venv already.
PIP_ARGS = ("--no-deps",)


@pytest.fixture
def own_app(tmp_path):
    """``reloadapp``, a one-view Flask app installed into the venv (removed afterwards)."""
    source = tmp_path / "reloadapp"
    (source / "reloadapp" / "static").mkdir(parents=True)
    (source / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (source / "reloadapp" / "static" / "about.html").write_text("<p>about</p>\n")
    write_view(source, "version 1")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", *PIP_ARGS, str(source)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    try:
        yield source
    finally:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "reloadapp"],
            capture_output=True,
            timeout=120,
        )


def test_deploy_of_a_changed_view_under_load(own_app):
    """`spillway deploy DIR` while clients read `/`: every answer is a 200, from the old
    view until the new one; afterwards only the new one answers. Before it, a deploy whose
    install fails, and one whose code does not import, are one line each and reload
    nothing: the old code keeps serving. After it, a release that declares a page makes
    nginx reload, and nginx serves the page."""
    with running_stack({"SPILLWAY_APP": "reloadapp:create_app"}) as app_stack:
        run_dir = {"SPILLWAY_RUN_DIR": str(app_stack.run_dir)}
        workers = set(children_of(app_stack.program_pid("gunicorn")))
        failed = spillway("deploy", *PIP_ARGS, str(own_app / "missing"), env=run_dir)
        assert failed.returncode == 1
        [line] = failed.stderr.strip().splitlines()
        assert line.startswith("Error: pip install ") and "nothing reloaded" in line, line
        assert set(children_of(app_stack.program_pid("gunicorn"))) == workers
        assert requests.get(f"{app_stack.base_url}/", timeout=10).text == "version 1\n"

        # A release that does not import: installed, refused before any program is told.
        (own_app / "reloadapp" / "__init__.py").write_text("raise RuntimeError('broken')\n")
        broken = spillway("deploy", *PIP_ARGS, str(own_app), env=run_dir)
        assert broken.returncode == 1
        [line] = broken.stderr.strip().splitlines()
        assert line.startswith("Error: reload failed, nothing reloaded:") and "broken" in line
        assert set(children_of(app_stack.program_pid("gunicorn"))) == workers
        assert requests.get(f"{app_stack.base_url}/", timeout=10).text == "version 1\n"

        write_view(own_app, "version 2")

        def reads(_number, _round):
            return [("GET", "/", {}, None, (None, None, 0))]

        with Load(app_stack.base_url, reads) as load:
            load.wait_answers(200)
            deployed = spillway("deploy", *PIP_ARGS, str(own_app), env=run_dir)
            load.wait_answers(len(load.answers) + 200)
        assert deployed.returncode == 0, deployed.stderr
        assert deployed.stdout.splitlines()[-1].startswith("reloaded:"), deployed.stdout
        load.assert_clean()
        texts = [a.body for a in load.answers]
        assert set(texts) == {"version 1\n", "version 2\n"}, set(texts)
        assert texts[-THREADS:] == ["version 2\n"] * THREADS
        for _ in range(20):
            assert requests.get(f"{app_stack.base_url}/", timeout=10).text == "version 2\n"
        record("deploy", load.figures())

        # A release that declares a page nginx serves: its nginx.conf changes, nginx reloads.
        write_view(own_app, "version 3", pages={"/about": "about.html"})
        deployed = spillway("deploy", *PIP_ARGS, str(own_app), env=run_dir)
        assert deployed.returncode == 0, deployed.stderr
        assert "nginx reloaded (its config or certificate changed)" in deployed.stdout, (
            deployed.stdout
        )
        about = requests.get(f"{app_stack.base_url}/about", timeout=10)
        assert about.status_code == 200 and about.text == "<p>about</p>\n"
        assert requests.get(f"{app_stack.base_url}/", timeout=10).text == "version 3\n"
