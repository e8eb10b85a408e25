"""How an app tells Spillway what it needs: one Flask extension, :class:`Spillway`.

An app that declares nothing still runs on the whole stack (``SPILLWAY_APP=pkg:create_app``):
the runtime finds what a Flask app already says about itself — its static folder, a Celery
app kept in ``app.extensions["celery"]`` (Flask's own Celery pattern), Flask-Migrate's
migrations — and answers ``/healthz`` and ``/readyz`` for the dependencies it runs. What an
app may add, it adds here, in Python, never by editing a template::

    from spillway import Spillway

    def create_app():
        app = Flask(__name__)
        ...
        Spillway(app, pages={"/": "index.html"},
                 readiness={"database": check_database},
                 cached_routes=[CachedRoute(r"^/api/items/[0-9]+$", "myapp:")])
        return app

Call it last in the factory: the runtime's WSGI layers (spillway.pipeline) go around
every layer the app installed before, so its fast paths are measured and get the
security headers too.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from flask import Flask

from spillway import clients
from spillway import logs
from spillway import settings

# nginx marks what a cached route sends on to the app after looking in memcached itself (a
# miss, a write, memcached down): an app-side lookup of the same key would be wasted.
CACHE_MISS_ENVIRON = "HTTP_X_SPILLWAY_CACHE_MISS"


class StartRefused(RuntimeError):
    """A start check's refusal: the process must not serve (the message says why and what
    to do)."""


class NotCheckableYet(RuntimeError):
    """A start check cannot decide now (a dependency is starting or down): try again."""


@dataclass(frozen=True)
class CachedRoute:
    """GET and HEAD requests nginx answers from memcached itself, with no Python on a hit:
    the key is ``key_prefix`` + the request URI (``aliases`` maps a URI to the canonical
    one whose key it shares). The app fills those keys on a miss and deletes them after a
    write; a miss, a write or memcached down goes to the app.

    :param location: an nginx location regex, e.g. ``^/api/v1/products(/[0-9]+)?$``.
    """

    location: str
    key_prefix: str
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sidecar:
    """A helper process supervisord runs beside the app: ``python -m module --port N`` on
    a free loopback port N, which every app process finds in ``port_setting``. Not run
    when the operator sets ``unless_set`` (a real service instead of the stand-in)."""

    name: str
    module: str
    port_setting: str
    unless_set: str = ""
    args: tuple[str, ...] = ()


class Spillway:
    """What an app declares to the runtime; kept in ``app.extensions["spillway"]``.

    :param pages: exact paths nginx serves as files of the static folder, e.g.
        ``{"/": "index.html"}``.
    :param readiness: extra ``/readyz`` checks, name → a callable that raises when the
        dependency is down (the runtime checks redis, memcached and the broker itself).
    :param start_checks: callables run before the app serves (by `spillway up`, and by each
        gunicorn and Celery process at start); one raises :class:`StartRefused` to refuse.
    :param cached_routes: URLs nginx answers from memcached (:class:`CachedRoute`).
    :param sidecars: helper processes to run beside the app (:class:`Sidecar`).
    :param collectors: Prometheus collectors read at each scrape of ``/metrics``, each
        made from the app (``collector(app)``).
    :param links: what `spillway up`'s summary lists, name → path (``{"docs": "/docs"}``).
    :param celery: the app's Celery app, when it is not in ``app.extensions["celery"]``.
    :param migrations: whether `spillway up` runs ``db upgrade``; by default, when the app
        uses Flask-Migrate.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        pages: dict[str, str] | None = None,
        readiness: dict[str, Callable[[], None]] | None = None,
        start_checks: tuple[Callable[[], None], ...] = (),
        cached_routes: tuple[CachedRoute, ...] = (),
        sidecars: tuple[Sidecar, ...] = (),
        collectors: tuple = (),
        links: dict[str, str] | None = None,
        celery=None,
        migrations: bool | None = None,
    ):
        self.pages = dict(pages or {})
        self.readiness = dict(readiness or {})
        self.start_checks = tuple(start_checks)
        self.cached_routes = tuple(cached_routes)
        self.sidecars = tuple(sidecars)
        self.collectors = tuple(collectors)
        self.links = dict(links or {})
        self._celery = celery
        self._migrations = migrations
        self.app: Flask | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Bind the runtime to ``app``: its settings (where the app has none of its own),
        its logging (spillway.logs), the redis and memcached clients, and the runtime's
        layers around the app."""
        from spillway import pipeline

        for name, value in settings.runtime(settings.config_name_from_environment()).items():
            if app.config.get(name) is None:
                app.config[name] = value
        logs.configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
        app.logger.setLevel(app.config["LOG_LEVEL"])
        logs.connect_celery()
        clients.init_app(app)
        self.app = app
        app.extensions["spillway"] = self
        pipeline.install(app)

    @classmethod
    def of(cls, app: Flask) -> "Spillway":
        """``app``'s declarations; an app that made none gets the defaults now."""
        return app.extensions.get("spillway") or cls(app)

    @property
    def celery(self):
        """The app's Celery app, or None: the stack then runs no worker and no beat."""
        return self._celery or self.app.extensions.get("celery")

    @property
    def migrations(self) -> bool:
        if self._migrations is not None:
            return self._migrations
        return "migrate" in self.app.extensions

    def describe(self) -> dict:
        """What `spillway up` needs to know, as plain data: it renders the configs from
        this, and never imports the app as root."""
        app = self.app
        static = Path(app.static_folder) if app.static_folder else None
        celery = self.celery
        return {
            "name": app.import_name,
            "celery": celery is not None,
            "beat": bool(celery is not None and celery.conf.beat_schedule),
            "migrations": self.migrations,
            "static": {"url_path": app.static_url_path, "folder": str(static)}
            if static and static.is_dir()
            else None,
            "pages": [
                {"path": path, "root": str(static), "file": name}
                for path, name in self.pages.items()
            ]
            if static
            else [],
            "cached_routes": [
                {
                    "location": route.location,
                    "key_prefix": route.key_prefix,
                    "aliases": route.aliases,
                }
                for route in self.cached_routes
            ],
            "links": self.links,
            "commands": sorted(app.cli.commands),
            "allow": allowed_methods(app),
            "sidecars": [
                {
                    "name": car.name,
                    "module": car.module,
                    "port_setting": car.port_setting,
                    "unless_set": car.unless_set,
                    "args": list(car.args),
                }
                for car in self.sidecars
            ],
        }


def allowed_methods(app: Flask) -> list[dict]:
    """Each route of ``app`` as an nginx regex of its path and the methods it takes, the
    most specific first (fewest variable parts): the ``Allow`` header of a 405 nginx answers
    itself (``TRACE``, a write to a static file), as the app's own 405s carry it."""
    methods: dict[str, set[str]] = {}
    variables: dict[str, int] = {}
    for rule in app.url_map.iter_rules():
        pattern = path_pattern(rule.rule)
        methods.setdefault(pattern, set()).update(rule.methods or ())
        variables[pattern] = rule.rule.count("<")
    return [
        {"pattern": pattern, "methods": ", ".join(sorted(methods[pattern]))}
        for pattern in sorted(methods, key=lambda p: (variables[p], -len(p), p))
    ]


def path_pattern(rule: str) -> str:
    """A Werkzeug rule (``/api/v1/sales/<sale_id>``) as a regex of the path it matches."""
    parts = re.split(r"(<[^>]+>)", rule)
    return "".join(
        (".+" if part.startswith("<path:") else "[^/?]+")
        if part.startswith("<")
        else re.escape(part)
        for part in parts
    )
