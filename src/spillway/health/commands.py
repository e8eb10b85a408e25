"""``spillway check``: the readiness checks, from the command line."""

import click
from flask.cli import with_appcontext

from spillway.health.checks import run_checks


@click.command("check")
@with_appcontext
def check_command():
    """Check every dependency (the app's own, redis, memcached, the broker); exit 1 if any
    is down."""
    results = run_checks()
    for name, result in results.items():
        click.echo(f"{name:10} {result}")
    if any(result != "ok" for result in results.values()):
        raise SystemExit(1)
