"""`spillway reconcile` (the books of one sale or all) and `spillway ledger` (redis bound to
this database)."""

import click
from flask.cli import with_appcontext

from spillway.sales import binding
from spillway.sales import repair
from spillway.sales.reconcile import reconcile
from spillway.sales.reconcile import reconcile_all


@click.command("reconcile")
@click.argument("sale_id", required=False, type=int)
@with_appcontext
def reconcile_command(sale_id):
    """Check stock == remaining + held units, and the ledger once the queue drained.

    Exits 1 when any sale has drifted (also run every minute by Celery beat).
    """
    reports = [reconcile(sale_id)] if sale_id else reconcile_all()
    for report in reports:
        click.echo(report.describe())
    if not reports:
        click.echo("no sales")
    if any(not report.ok for report in reports):
        raise SystemExit(1)


@click.group("ledger")
def ledger_group():
    """Check and repair the binding of redis's state to this database (RELIABILITY.md).

    Redis keeps what the ledger does not hold yet; if the two part ways (a new or restored
    database, another deployment's redis) every process refuses to start. `status` shows
    what each side holds that the other lacks; `adopt` takes redis's state into this
    database; `clear` rebuilds redis from this database. Stop the stack first.
    """


@ledger_group.command("check")
@with_appcontext
def ledger_check_command():
    """Exit 0 if redis's state belongs to this database (binding an unbound redis), else
    print why in one line and exit 1 (spillway up runs this before it starts anything)."""
    try:
        binding.verify()
    except (binding.LedgerMismatch, binding.NotCheckable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("ledger: redis and the database belong together")


@ledger_group.command("status")
@with_appcontext
def ledger_status_command():
    """Show both sides, whether they agree, and what each holds that the other lacks."""
    for line in _checked(repair.survey).lines():
        click.echo(line)


@ledger_group.command("adopt")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would happen).")
@with_appcontext
def ledger_adopt_command(yes):
    """Take redis's state into this database: redis is the newer truth (the database was
    restored from an older backup). Sales and buyers only redis knows are written into the
    ledger, orders only redis knows are persisted, then every sale is reconciled."""
    _confirm(yes, "adopt: redis's state is kept and written into this database")
    for line in _checked(repair.adopt):
        click.echo(line)
    _reconcile_all()


@ledger_group.command("clear")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would go).")
@with_appcontext
def ledger_clear_command(yes):
    """Delete Spillway's state in redis and rebuild it from this database: the database is
    the truth (it is new, or redis is another's or older). What only redis knew is lost:
    the survey printed first says what."""
    _confirm(yes, "clear: what only redis holds (above) is deleted")
    for line in _checked(repair.clear):
        click.echo(line)
    _reconcile_all()


def _confirm(yes: bool, what: str) -> None:
    survey = _checked(repair.survey)
    for line in survey.lines():
        click.echo(line)
    if not survey.found.problems:
        raise click.ClickException("redis and the database agree: nothing to repair")
    if not yes:
        raise click.ClickException(f"{what}; run again with --yes to do it")


def _checked(step):
    try:
        return step()
    except (binding.LedgerMismatch, binding.NotCheckable) as exc:
        raise click.ClickException(str(exc)) from None


def _reconcile_all() -> None:
    reports = reconcile_all()
    for report in reports:
        click.echo(report.describe())
    if any(not report.ok for report in reports):
        raise SystemExit(1)
