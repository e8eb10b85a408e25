"""Entry point of the Celery worker and beat: ``celery -A spillway.make_celery worker``.

Workers use the prefork pool, so this module deliberately does not monkey-patch.
"""

import os

from spillway import create_app

flask_app = create_app(os.environ.get("SPILLWAY_ENV", "prd"))
celery_app = flask_app.extensions["celery"]
