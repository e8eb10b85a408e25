"""SPILLWAY_APP spelled the way gunicorn and the Flask CLI spell it (spillway.loader)."""

import textwrap

import pytest

from spillway.loader import AppNotFound
from spillway.loader import load_app

FACTORY = textwrap.dedent(
    """
    from flask import Flask

    def create_app(config="default", *, workers=1):
        app = Flask(__name__)
        app.config["CHOSEN"] = (config, workers)
        return app

    app = create_app("module attribute")
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's own, found on the path as PYTHONPATH would put it there."""
    name = f"userapp_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize(
    ("attribute", "chosen"),
    [
        ("create_app", ("default", 1)),
        ('create_app("prd")', ("prd", 1)),
        ("create_app('prd', workers=4)", ("prd", 4)),
        ("app", ("module attribute", 1)),
        ("", ("module attribute", 1)),  # just the module: its `app`
    ],
)
def test_every_spelling_gunicorn_knows_makes_the_app(user_module, attribute, chosen):
    spec = f"{user_module}:{attribute}" if attribute else user_module
    assert load_app(spec).config["CHOSEN"] == chosen


@pytest.mark.parametrize(
    ("attribute", "words"),
    [
        ("no_such_factory", "no_such_factory"),
        ("create_app(", "create_app("),
    ],
)
def test_a_name_that_makes_no_app_is_one_line(user_module, attribute, words):
    with pytest.raises(AppNotFound) as caught:
        load_app(f"{user_module}:{attribute}")
    message = str(caught.value)
    assert message.startswith(f"SPILLWAY_APP={user_module}:{attribute}: ")
    assert words in message and "\n" not in message
