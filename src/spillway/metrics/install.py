"""Wire the metrics into an app: the /metrics and operator-page routes, the live JSON for
the operator page, Celery's task signals, and (last of all) the request middleware."""

from flask import Flask

from spillway.extensions import api


def init_app(app: Flask) -> None:
    """Call after every other middleware is installed: the request middleware must wrap them."""
    from spillway.metrics import celery_signals
    from spillway.metrics import middleware
    from spillway.metrics.live_views import bp as live_bp
    from spillway.metrics.views import bp

    app.register_blueprint(bp)
    api.register_blueprint(live_bp)
    celery_signals.connect()
    if app.config["METRICS_ENABLED"]:
        middleware.init_app(app)
