"""`spillway init DIR`: the first step of your own app on Spillway, a package with a
factory and a blueprint of a slow and a fast endpoint (docs/your-app.md goes on from it)."""

import keyword
from pathlib import Path

from jinja2 import Template

TEMPLATE = Path(__file__).parent / "__init__.py.tmpl"


class ScaffoldError(RuntimeError):
    """The app cannot be made there; the message says why."""


def scaffold(directory: Path, name: str) -> Path:
    """Write ``directory/name/__init__.py``; returns it.

    :raise ScaffoldError: ``name`` is no Python package name, or the package exists.
    """
    if not name.isidentifier() or keyword.iskeyword(name) or name in ("spillway", "flask"):
        raise ScaffoldError(f"{name!r} cannot name a Python package: use letters, digits and _")
    package = directory / name
    if package.exists():
        raise ScaffoldError(f"{package} exists already: choose another name or directory")
    package.mkdir(parents=True)
    target = package / "__init__.py"
    target.write_text(Template(TEMPLATE.read_text(), keep_trailing_newline=True).render(name=name))
    return target
