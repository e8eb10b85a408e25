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
from spillway.logs import refuse_to_start

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
        refuse_to_start(log, who, exc)
    except NotCheckableYet as exc:
        log.warning("%s: the start checks could not run yet: %s", who, exc)
