"""Redis state is bound to its ledger: another ledger, an older database or an older redis
is refused before anything trusts it, and each way out (adopt, clear) ends with balanced
books (issue #19)."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask_migrate import upgrade
from gunicorn.arbiter import Arbiter
from sqlalchemy import select

from flashsale import keys
from flashsale.app import create_app
from flashsale.extensions import db
from flashsale.orders import tasks
from flashsale.orders.models import LedgerIdentity
from flashsale.orders.models import Order
from flashsale.sales import binding
from flashsale.sales import repair
from flashsale.sales import stock
from flashsale.sales.models import Sale
from flashsale.sales.reconcile import reconcile_all
from spillway.clients import redis_store
from tests.factories import buy
from tests.factories import make_sale
from tests.factories import signup
from tests.servers import Server
from tests.servers import free_port


class Backups:
    """A backup of this test's database taken now, and its restore: a file copy through
    SQLite's backup API, or a template copy of the PostgreSQL database."""

    def __init__(self, database_url: str, database_server, tmp_path: Path):
        self.url = database_url
        self.server = database_server
        self.path = tmp_path / "backup.db"

    def take(self) -> None:
        db.session.remove()
        db.engine.dispose()
        if self.server is None:
            with (
                sqlite3.connect(self.url.removeprefix("sqlite:///")) as live,
                sqlite3.connect(self.path) as copy,
            ):
                live.backup(copy)
        else:
            self.server.copy_database(self.url.rpartition("/")[2], "backup")

    def restore(self) -> None:
        db.session.remove()
        db.engine.dispose()
        if self.server is None:
            with (
                sqlite3.connect(self.path) as copy,
                sqlite3.connect(self.url.removeprefix("sqlite:///")) as live,
            ):
                copy.backup(live)
        else:
            self.server.copy_database("backup", self.url.rpartition("/")[2])


@pytest.fixture
def backups(database_url, database_server, tmp_path):
    return Backups(database_url, database_server, tmp_path)


@pytest.fixture
def other_ledger(database_server, tmp_path, service_env, monkeypatch):
    """Build an app on a second, new database beside the same redis: another ledger."""
    built = []

    def build():
        if database_server is None:
            url = f"sqlite:///{tmp_path / 'other.db'}"
        else:
            url = database_server.url(database_server.create_database())
        other = create_app("test", overrides={"SQLALCHEMY_DATABASE_URI": url})
        with other.app_context():
            upgrade()
        built.append(other)
        return other, url

    yield build
    for other in built:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def sell(client, sale, buyers, key: str) -> dict[str, int]:
    """Each buyer buys one unit with ``key``: {order id: quantity} of the 202s."""
    answers = [buy(client, sale, buyer, key=key) for buyer in buyers]
    assert all(a.status_code == 202 for a in answers), [a.get_json() for a in answers]
    return {a.get_json()["order_id"]: 1 for a in answers}


def ledger_orders() -> dict[str, int]:
    db.session.rollback()
    return {o.id: o.quantity for o in db.session.scalars(select(Order))}


def assert_books_balance():
    reports = reconcile_all()
    assert reports and all(report.ok for report in reports), [r.describe() for r in reports]


def test_an_empty_redis_is_bound_to_the_first_ledger_that_checks(app):
    """Nothing in redis: the check binds it to this database's identity."""
    identity = db.session.scalars(select(LedgerIdentity)).one()
    assert redis_store.hget(keys.LEDGER_MARKER, "id") is None
    binding.verify()
    assert redis_store.hget(keys.LEDGER_MARKER, "id").decode() == identity.id


def test_ids_are_random_and_never_counted_from_one(client, app):
    """Sale and buyer ids are random 16-digit numbers, not 1, 2, 3 … (spillway.ids)."""
    sale = make_sale(client)
    user = client.post("/api/v1/users", json={"name": "x"}).get_json()
    for value in (sale["id"], user["user_id"]):
        assert len(value) == 16 and value.isdigit(), value


def test_a_second_ledger_on_the_same_redis_is_refused(client, app, other_ledger):
    """Two deployments with different databases on one redis: the second is refused with
    one line naming both ledgers, and the first one's state is untouched."""
    binding.verify()
    sale = make_sale(client, stock=5)
    sell(client, sale, [signup(client)], "k")
    other, _ = other_ledger()
    with other.app_context():
        theirs = db.session.scalars(select(LedgerIdentity)).one().id
        with pytest.raises(binding.LedgerMismatch) as refused:
            binding.verify()
    ours = db.session.scalars(select(LedgerIdentity)).one().id
    assert ours in str(refused.value) and theirs in str(refused.value)
    assert "spillway ledger" in str(refused.value)
    assert stock.sale_state(sale["id"])["remaining"] == 4


def test_a_database_restored_from_an_older_backup_is_refused_then_adopted(client, app, backups):
    """Sales and orders made after the backup live on in redis: the restored database is
    refused; adopt writes them into it; every 202 is then exactly one order."""
    binding.verify()
    first = make_sale(client, stock=20, per_user_limit=1)
    accepted = sell(client, first, [signup(client, f"a{i}") for i in range(3)], "early")
    assert tasks.drain_outbox() == 3
    backups.take()
    second = make_sale(client, stock=10, per_user_limit=1)
    later = [signup(client, f"b{i}") for i in range(4)]
    accepted |= sell(client, first, later, "late") | sell(client, second, later, "late")
    assert tasks.drain_outbox() == 8
    backups.restore()
    with pytest.raises(binding.LedgerMismatch) as refused:
        binding.verify()
    assert "older than redis" in str(refused.value)
    done = repair.adopt()
    assert any("re-driven" in line for line in done)
    binding.verify()
    assert ledger_orders() == accepted
    assert db.session.get(Sale, int(second["id"])) is not None
    assert_books_balance()


def test_a_database_restored_from_an_older_backup_can_clear_redis_instead(client, app, backups):
    """clear keeps the database as the truth: what came after the backup leaves redis,
    redis is rebuilt from the ledger (stock, holdings, idempotency keys), and a replay of a
    key the ledger knows still answers its order."""
    binding.verify()
    sale = make_sale(client, stock=20, per_user_limit=1)
    early = signup(client, "early")
    kept = sell(client, sale, [early], "early")
    assert tasks.drain_outbox() == 1
    backups.take()
    sell(client, sale, [signup(client, f"late{i}") for i in range(5)], "late")
    assert tasks.drain_outbox() == 5
    backups.restore()
    with pytest.raises(binding.LedgerMismatch):
        binding.verify()
    repair.clear()
    binding.verify()
    assert stock.sale_state(sale["id"])["remaining"] == 19
    replay = buy(client, sale, early, key="early")
    assert replay.status_code == 200 and replay.get_json()["order_id"] in kept
    assert buy(client, sale, early, key="again").status_code == 409  # the limit is rebuilt
    assert_books_balance()


def test_a_redis_that_lost_its_data_is_refused_then_rebuilt(client, app):
    """A redis emptied (a new host, an AOF lost) beside a ledger with sales and orders: the
    stock it would offer is wrong, so it is refused; clear rebuilds it and nothing oversells."""
    binding.verify()
    sale = make_sale(client, stock=3, per_user_limit=1)
    sell(client, sale, [signup(client, f"s{i}") for i in range(2)], "k")
    assert tasks.drain_outbox() == 2
    redis_store.flushdb()
    with pytest.raises(binding.LedgerMismatch) as refused:
        binding.verify()
    assert "redis does not know" in str(refused.value)
    repair.clear()
    binding.verify()
    buyers = [signup(client, f"t{i}") for i in range(3)]
    answers = [buy(client, sale, buyer).status_code for buyer in buyers]
    assert sorted(answers) == [202, 409, 409]
    assert tasks.drain_outbox() == 1
    assert_books_balance()


def test_this_ledgers_state_from_before_binding_is_recognised(client, app):
    """A redis written before binding existed (no marker, no registry) that matches this
    ledger's sales and orders is bound without the operator: an upgrade just works."""
    sale = make_sale(client, stock=5)
    sell(client, sale, [signup(client)], "k")
    assert tasks.drain_outbox() == 1
    redis_store.delete(keys.LEDGER_MARKER, keys.REGISTRY)
    db.session.execute(binding.update(LedgerIdentity).values(outbox_mark_ms=0, outbox_mark_seq=0))
    db.session.commit()
    binding.verify()
    assert int(sale["id"]) in stock.registered_sales()
    assert redis_store.hget(keys.LEDGER_MARKER, "id") is not None


def test_another_ledgers_state_from_before_binding_is_refused(client, app, other_ledger):
    """The issue's scenario: a redis written before binding existed, beside a new, empty
    database. Its sales are not this ledger's: refused, never inherited."""
    sale = make_sale(client, stock=137)
    sell(client, sale, [signup(client)], "k")
    redis_store.delete(keys.LEDGER_MARKER, keys.REGISTRY)
    other, _ = other_ledger()
    with other.app_context():
        with pytest.raises(binding.LedgerMismatch) as refused:
            binding.verify()
    assert "before ledger binding" in str(refused.value)


def test_a_first_check_beside_the_first_sale_being_created_binds(client, app, monkeypatch):
    """A fresh redis (no marker, no registry) and a sale created while a process's first
    check runs, just before it looks for state from before binding (a per-test server on
    PostgreSQL met this): a creation in flight, not another ledger's state; the check binds."""
    scan = binding._legacy_sales
    created = []

    def a_sale_created_meanwhile():
        created.append(make_sale(client))
        return scan()

    monkeypatch.setattr(binding, "_legacy_sales", a_sale_created_meanwhile)
    binding.verify()
    monkeypatch.undo()
    assert created and redis_store.hget(keys.LEDGER_MARKER, "id") is not None
    assert int(created[0]["id"]) in binding.verify().redis_sales


def run_cli(service_env, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **service_env, "SPILLWAY_ENV": "test"}
    return subprocess.run(
        [sys.executable, "-m", "spillway", "ledger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def test_the_ledger_commands_speak_in_lines_not_tracebacks(client, app, service_env):
    """check refuses in one line and exits 1; status shows both sides; clear without --yes
    only says what would go; with --yes it repairs and check then passes."""
    binding.verify()
    sale = make_sale(client, stock=4)
    sell(client, sale, [signup(client)], "k")
    assert tasks.drain_outbox() == 1
    redis_store.hset(keys.LEDGER_MARKER, "id", "not-this-ledger")
    check = run_cli(service_env, "check")
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert len(check.stderr.strip().splitlines()) == 1, check.stderr
    assert "not-this-ledger" in check.stderr
    status = run_cli(service_env, "status")
    assert status.returncode == 0 and "problem:" in status.stdout, status.stderr
    dry = run_cli(service_env, "clear")
    assert dry.returncode == 1 and "--yes" in dry.stderr
    assert redis_store.hget(keys.LEDGER_MARKER, "id") == b"not-this-ledger"
    done = run_cli(service_env, "clear", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_cli(service_env, "check").returncode == 0
    assert stock.sale_state(sale["id"])["remaining"] == 3


def process_argv(process: str) -> list[str]:
    port = str(free_port())
    return {
        "spillway serve": [sys.executable, "-m", "spillway", "serve", "--port", port],
        "gunicorn": [
            sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b",
            f"127.0.0.1:{port}", "--no-control-socket", "spillway.wsgi:app",
        ],
        "celery": [sys.executable, "-c", "import spillway.celery_entry"],
    }[process]  # fmt: skip


def test_ledger_adopt_surveys_without_yes_and_with_it_keeps_what_only_redis_knew(
    client, app, service_env
):
    """Redis is the newer truth (the database came back from an older backup): the dry run
    counts what only redis holds and changes nothing; --yes persists the order only redis
    knew, binds redis to this ledger, and the books balance."""
    binding.verify()
    sale = make_sale(client, stock=4)
    promised = sell(client, sale, [signup(client), signup(client)], "k")
    redis_store.hset(keys.LEDGER_MARKER, "id", "an-older-ledger")
    dry = run_cli(service_env, "adopt")
    assert dry.returncode == 1 and "--yes" in dry.stderr, dry.stdout + dry.stderr
    assert "only in redis: 0 sale(s), 2 order(s) holding 2 unit(s)" in dry.stdout, dry.stdout
    assert redis_store.hget(keys.LEDGER_MARKER, "id") == b"an-older-ledger"
    assert ledger_orders() == {}
    done = run_cli(service_env, "adopt", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "redis bound to ledger" in done.stdout and "Traceback" not in done.stderr
    assert ledger_orders() == promised
    assert run_cli(service_env, "check").returncode == 0
    assert stock.sale_state(sale["id"])["remaining"] == 2
    assert_books_balance()


# gunicorn's master halts on a worker exiting with its boot error, and boots again on any
# other code: a refusing check that exited 1 was a worker booted again and again, forever.
EXIT_CODES = {"spillway serve": 1, "gunicorn": Arbiter.WORKER_BOOT_ERROR, "celery": 1}


@pytest.mark.parametrize("process", ["spillway serve", "gunicorn", "celery"])
def test_each_process_refuses_a_foreign_redis_by_itself(
    client, app, service_env, tmp_path, process
):
    """Not only `spillway up`: a web server, a gunicorn worker or a Celery worker or beat
    started by hand beside a redis of another ledger exits by itself, in one line naming
    the ledger, no traceback, and never serves: gunicorn's master stops after one boot
    instead of booting the worker again and again."""
    binding.verify()
    redis_store.hset(keys.LEDGER_MARKER, "id", "not-this-ledger")
    env = {**os.environ, **service_env, "SPILLWAY_ENV": "test"}
    argv = process_argv(process)
    refused = Server(process.replace(" ", "-"), argv, 0, tmp_path, env=env, cwd="/")
    refused.start()
    try:
        code = refused.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        refused.stop()
    output = refused.log()
    assert code == EXIT_CODES[process], f"exit {code} (None: still running after 60 s)\n{output}"
    lines = [line for line in output.splitlines() if "not-this-ledger" in line]
    assert len(lines) == 1 and f"{process} " in lines[0] and "refuses to start" in lines[0], output
    assert "Traceback" not in output, output
    if process == "gunicorn":
        assert output.count("Booting worker") == 1 and "Worker failed to boot" in output, output


def test_a_check_beside_a_busy_shop_never_refuses(app, service_env):
    """A worker starting while sales are created and orders persisted (the multi-host test
    met this): each check reads redis, then the database, then redis again, so a creation
    or a batch in flight is never taken for a disagreement."""
    import threading

    binding.verify()
    stop = threading.Event()
    failures = []

    def busy_shop():
        with app.app_context(), app.test_client() as client:
            try:
                while not stop.is_set():
                    sale = make_sale(client, stock=3)
                    buy(client, sale, signup(client))
                    tasks.drain_outbox()
            except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
                failures.append(exc)

    shop = threading.Thread(target=busy_shop)
    shop.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not failures:
            with app.app_context():
                binding.verify()
    finally:
        stop.set()
        shop.join(timeout=60)
    assert not failures, failures
