"""The start checks an app declares (``Spillway(app, start_checks=...)``), run before it
serves: by `spillway up` (``spillway start-checks``, once redis answers) and by every
gunicorn and Celery process at start. One that refuses stops the process with one line.
"""

import logging

from flask import Flask

from spillway.errors import is_dependency_down
from spillway.extension import NotCheckableYet
from spillway.extension import Spillway
from spillway.extension import StartRefused
from spillway.failures import one_line

log = logging.getLogger(__name__)


def run_start_checks(app: Flask) -> None:
    """Run each check in the app's context.

    :raise StartRefused: a check refused.
    :raise NotCheckableYet: a check could not decide (a dependency is starting or down).
    """
    with app.app_context():
        for check in Spillway.of(app).start_checks:
            try:
                check()
            except (StartRefused, NotCheckableYet):
                raise
            except Exception as exc:
                if not is_dependency_down(exc):
                    raise
                raise NotCheckableYet(one_line(exc, app.config)) from None


def verify_at_start(app: Flask, who: str) -> None:
    """A process's checks before it serves: exit with one line on a refusal; go on (and
    say so) when they cannot decide yet, since the dependency may come back."""
    try:
        run_start_checks(app)
    except StartRefused as exc:
        log.error("%s refuses to start: %s", who, exc)
        # The logged line is the one line (in the log's format, text or JSON); the exit
        # repeats it only where the log would not show it.
        said = log.isEnabledFor(logging.ERROR)
        raise SystemExit(1 if said else f"{who} refuses to start: {exc}") from None
    except NotCheckableYet as exc:
        log.warning("%s: the start checks could not run yet: %s", who, exc)
