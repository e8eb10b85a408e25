"""`spillway reconcile` (the books of one sale or all) and `spillway ledger` (redis bound to
this database)."""

import click
from flask import current_app
from flask.cli import with_appcontext

from flashsale.sales import binding
from flashsale.sales import repair
from flashsale.sales.reconcile import reconcile
from flashsale.sales.reconcile import reconcile_all
from spillway.deploy.layout import StackError
from spillway.deploy.local_stack import dependency_line
from spillway.deploy.local_stack import redis_of
from spillway.deploy.local_stack import run_dir_of_checkout
from spillway.errors import DEPENDENCY_ERRORS
from spillway.failures import one_line


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


class NotYet(click.ClickException):
    """The pair cannot be checked now (a dependency is starting or down): exit 3."""

    exit_code = 3


@ledger_group.command("check")
@with_appcontext
def ledger_check_command():
    """Exit 0 if redis's state belongs to this database (binding an unbound redis); else
    print why in one line and exit 1, or 3 when it cannot be checked yet (spillway up runs
    this once redis answers, before anything is served)."""
    try:
        binding.verify()
    except binding.LedgerMismatch as exc:
        raise click.ClickException(str(exc)) from None
    except binding.NotCheckable as exc:
        raise NotYet(str(exc)) from None
    except DEPENDENCY_ERRORS as exc:
        raise NotYet(
            f"cannot check the ledger binding yet: {one_line(exc, current_app.config)}"
        ) from None
    click.echo("ledger: redis and the database belong together")


@ledger_group.command("status")
@with_appcontext
def ledger_status_command():
    """Show both sides, whether they agree, and what each holds that the other lacks."""
    _with_redis(lambda: _echo(repair.survey().lines()))


@ledger_group.command("adopt")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would happen).")
@with_appcontext
def ledger_adopt_command(yes):
    """Take redis's state into this database: redis is the newer truth (the database was
    restored from an older backup). Sales and buyers only redis knows are written into the
    ledger, orders only redis knows are persisted, then every sale is reconciled."""
    _with_redis(
        lambda: _repair(
            repair.adopt, yes, "adopt: redis's state is kept and written into this database"
        )
    )


@ledger_group.command("clear")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would go).")
@with_appcontext
def ledger_clear_command(yes):
    """Delete Spillway's state in redis and rebuild it from this database: the database is
    the truth (it is new, or redis is another's or older). What only redis knew is lost:
    the survey printed first says what."""
    _with_redis(
        lambda: _repair(repair.clear, yes, "clear: what only redis holds (above) is deleted")
    )


def _repair(way_out, yes: bool, what: str) -> None:
    """Survey, refuse unless there is a mismatch and --yes, repair, reconcile."""
    survey = repair.survey()
    _echo(survey.lines())
    if not survey.found.problems:
        raise click.ClickException("redis and the database agree: nothing to repair")
    if not yes:
        raise click.ClickException(f"{what}; run again with --yes to do it")
    _echo(way_out())
    reports = reconcile_all()
    _echo(report.describe() for report in reports)
    if any(not report.ok for report in reports):
        raise SystemExit(1)


def _with_redis(work) -> None:
    """Run ``work`` with the checkout's redis up (the stack's, or one started for this
    command: the stack is stopped while the operator repairs), failures as one line."""
    run_dir = run_dir_of_checkout()
    try:
        if run_dir is None:
            return work()
        with redis_of(run_dir):
            return work()
    except (binding.LedgerMismatch, binding.NotCheckable, StackError) as exc:
        raise click.ClickException(str(exc)) from None
    except DEPENDENCY_ERRORS as exc:
        raise NotYet(
            dependency_line(exc, current_app.config) or one_line(exc, current_app.config)
        ) from None


def _echo(lines) -> None:
    for line in lines:
        click.echo(line)
