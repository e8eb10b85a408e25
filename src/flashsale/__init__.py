"""The flash-sale storefront: Spillway's flagship app (``SPILLWAY_APP=flashsale:create_app``,
what `make run` runs when nothing else is named)."""


def create_app(config_name: str | None = None, overrides: dict | None = None):
    """Build the shop for ``dev``, ``test`` or ``prd``; see :func:`flashsale.app.create_app`.

    The import is deferred so that importing the package never pulls in Flask, sockets or ssl
    before :mod:`spillway.gevent_boot` has had the chance to patch them.
    """
    from flashsale.app import create_app as build

    return build(config_name, overrides)
