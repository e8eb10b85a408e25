"""`spillway reconcile`: check the books of one sale or all."""

import click
from flask.cli import with_appcontext

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
