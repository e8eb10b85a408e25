"""The start-up audit's judgement of each client library it knows, by what the process has
imported (the real psycopg2 refusal in a gevent worker: tests/integration/guards/).

The C clients it judges are not installed here; a module of that name in ``sys.modules``
is what the audit looks at, so that is what each case puts there."""

import logging
import sys
import types

import pytest

from spillway.guards import startup_audit


@pytest.fixture
def imported(monkeypatch):
    """Puts a module in ``sys.modules``, the others the audit knows out of it (whatever the
    suite imported before stays imported once the test is done)."""
    for name in (*startup_audit.BLOCKING, *startup_audit.UNJUDGED):
        if name != "psycopg":
            monkeypatch.delitem(sys.modules, name, raising=False)

    def put(name: str, **attributes) -> None:
        module = types.ModuleType(name)
        for key, value in attributes.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)

    return put


@pytest.mark.parametrize(
    "module, cure",
    [("pylibmc", "use pymemcache"), ("MySQLdb", "use PyMySQL (mysql+pymysql://)")],
)
def test_a_blocking_c_client_is_refused_with_its_cure(imported, caplog, module, cure):
    imported(module)
    refusals, _warnings = startup_audit.findings()
    assert any(module in line and cure in line for line in refusals), refusals
    with pytest.raises(SystemExit) as refused:
        startup_audit.refuse_blocking_drivers("worker")
    assert refused.value.code == 1  # the logged line is the one line
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage().startswith(f"worker refuses to start: {module}")


def test_psycopg_3_is_judged_by_its_version(imported):
    import psycopg  # the real driver the ledger uses: new enough

    assert psycopg.__version__ and not startup_audit.findings()[0]
    imported("psycopg", __version__="3.1.8")
    (refusal,) = startup_audit.findings()[0]
    assert "psycopg 3.1.8" in refusal and "upgrade to psycopg 3.1.14 or later" in refusal


def test_a_client_it_cannot_judge_is_one_warning_and_serves(imported, caplog):
    imported("zmq")
    with caplog.at_level(logging.WARNING, logger="spillway.guards.startup_audit"):
        startup_audit.refuse_blocking_drivers("worker")  # no SystemExit: it serves
    (record,) = [r for r in caplog.records if "zmq" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "use zmq.green" in record.getMessage()
    assert "spillway_hub_blocks will show whether it blocks" in record.getMessage()
