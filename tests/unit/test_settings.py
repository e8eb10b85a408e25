"""Settings come from the environment; prd refuses unsafe ones in one line."""

import os

import pytest

from flashsale import settings
from flashsale.app import create_app
from spillway import settings as runtime_settings
from spillway.settings import SettingsError

ADMIN_TOKEN = "Zq3vT9-admin-token-0123456789abcdef"  # 35 characters
SAFE_PRD = {"SPILLWAY_SECRET_KEY": "x" * 32, "SPILLWAY_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture
def prd_env(monkeypatch):
    """A safe production environment, which each test then spoils one way."""
    for name in ("SPILLWAY_DEBUG", "FLASK_DEBUG", "SPILLWAY_SECRET_KEY", "SPILLWAY_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in SAFE_PRD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_prd_builds_with_safe_settings(prd_env):
    """A secret key, an admin token and debug off are enough for prd."""
    app = create_app("prd")
    assert app.debug is False
    assert app.config["ADMIN_TOKEN"] == ADMIN_TOKEN


@pytest.mark.parametrize("variable", ["SPILLWAY_DEBUG", "FLASK_DEBUG"])
def test_prd_refuses_debug(prd_env, variable):
    """Debug on in prd is refused, naming the variable."""
    prd_env.setenv(variable, "1")
    with pytest.raises(SettingsError, match="SPILLWAY_DEBUG"):
        settings.load("prd")


@pytest.mark.parametrize("secret", [None, "dev", "changeme", "short"])
def test_prd_refuses_missing_or_default_secret(prd_env, secret):
    """A missing, default or short secret key is refused in prd."""
    if secret is None:
        prd_env.delenv("SPILLWAY_SECRET_KEY")
    else:
        prd_env.setenv("SPILLWAY_SECRET_KEY", secret)
    with pytest.raises(SettingsError, match="SPILLWAY_SECRET_KEY"):
        settings.load("prd")


def test_prd_refuses_missing_admin_token(prd_env):
    """prd needs SPILLWAY_ADMIN_TOKEN."""
    prd_env.delenv("SPILLWAY_ADMIN_TOKEN")
    with pytest.raises(SettingsError, match="SPILLWAY_ADMIN_TOKEN"):
        settings.load("prd")


@pytest.mark.parametrize(
    "token, weakness",
    [
        ("admin-token", "shorter than 32"),
        ("t" * 31, "shorter than 32"),
        ("x" * 40, "placeholder"),
        ("x" * 32, "placeholder"),  # also the secret key here
        ("CHANGEME", "shorter than 32"),
    ],
)
def test_prd_refuses_a_weak_admin_token(prd_env, token, weakness):
    """prd wants an admin token as strong as the one `spillway up` generates: 32+
    characters, not a placeholder, not the secret key; one line naming the variable."""
    prd_env.setenv("SPILLWAY_ADMIN_TOKEN", token)
    with pytest.raises(SettingsError, match=f"SPILLWAY_ADMIN_TOKEN is .*{weakness}") as refused:
        settings.load("prd")
    assert "\n" not in str(refused.value)


def test_prd_refuses_the_secret_key_as_admin_token(prd_env):
    """The signing key and the admin token are two secrets, not one."""
    prd_env.setenv("SPILLWAY_SECRET_KEY", ADMIN_TOKEN)
    with pytest.raises(
        SettingsError, match="SPILLWAY_ADMIN_TOKEN is the same as SPILLWAY_SECRET_KEY"
    ):
        settings.load("prd")


def test_the_generated_admin_token_is_strong_enough(prd_env):
    """What `spillway up` generates (secrets.token_urlsafe(32)) passes."""
    import secrets

    prd_env.setenv("SPILLWAY_ADMIN_TOKEN", secrets.token_urlsafe(32))
    assert settings.load("prd")["ADMIN_TOKEN"]


def test_error_message_is_one_line(prd_env):
    """The refusal is one line an operator can act on."""
    prd_env.setenv("SPILLWAY_DEBUG", "true")
    with pytest.raises(SettingsError) as excinfo:
        settings.load("prd")
    assert "\n" not in str(excinfo.value)


def test_unknown_config_name_is_refused():
    """Only dev, test and prd exist."""
    with pytest.raises(SettingsError, match="unknown config"):
        settings.load("staging")


def test_malformed_value_is_a_settings_error(monkeypatch):
    """A value of the wrong type names the variable instead of a traceback."""
    monkeypatch.setenv("SPILLWAY_HEARTBEAT_SECONDS", "often")
    with pytest.raises(SettingsError, match="SPILLWAY_HEARTBEAT_SECONDS"):
        settings.load("dev")


def test_environment_drives_the_config(monkeypatch, tmp_path):
    """Every URL and level is read from the environment."""
    monkeypatch.setenv("SPILLWAY_REDIS_URL", "redis://127.0.0.1:7000/3")
    monkeypatch.setenv("SPILLWAY_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.delenv("SPILLWAY_BROKER_URL", raising=False)
    config = settings.load("dev")
    assert config["REDIS_URL"] == "redis://127.0.0.1:7000/3"
    assert config["CELERY"]["broker_url"] == "redis://127.0.0.1:7000/3"
    assert config["LOG_LEVEL"] == 30
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/x.db"


def test_celery_never_accepts_pickle():
    """Workers take JSON only and acknowledge late, one message at a time."""
    celery = settings.load("test")["CELERY"]
    assert celery["accept_content"] == ["json"]
    assert celery["task_serializer"] == "json"
    assert celery["task_acks_late"] and celery["task_reject_on_worker_lost"]
    assert celery["worker_prefetch_multiplier"] == 1


def test_dev_defaults_to_debug_and_test_does_not(monkeypatch):
    """dev debugs unless told otherwise; the operator can turn it off."""
    monkeypatch.delenv("SPILLWAY_DEBUG", raising=False)
    assert settings.load("dev")["DEBUG"] is True
    assert settings.load("test")["DEBUG"] is False
    monkeypatch.setenv("SPILLWAY_DEBUG", "0")
    assert settings.load("dev")["DEBUG"] is False


def test_postgresql_gets_a_bounded_pool_in_utc(monkeypatch):
    """A PostgreSQL URL gets the pool settings (the connection budget) and a UTC session;
    SQLite keeps SQLAlchemy's defaults (its pragmas are set on connect)."""
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app@db.internal/spillway")
    monkeypatch.setenv("SPILLWAY_DB_POOL_SIZE", "3")
    options = settings.load("dev")["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"], options["pool_pre_ping"]) == (3, 5, True)
    assert "timezone=UTC" in options["connect_args"]["options"]
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    assert settings.load("dev")["SQLALCHEMY_ENGINE_OPTIONS"] == {}


def test_redis_gets_a_memory_ceiling(monkeypatch):
    """SPILLWAY_REDIS_MAXMEMORY in redis's own syntax, else a quarter of the machine's
    memory; anything else is refused, naming the variable."""
    monkeypatch.delenv("SPILLWAY_REDIS_MAXMEMORY", raising=False)
    physical_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    assert runtime_settings.redis_maxmemory() == f"{max(physical_mb // 4, 64)}mb"
    monkeypatch.setenv("SPILLWAY_REDIS_MAXMEMORY", "2GB")
    assert runtime_settings.redis_maxmemory() == "2GB"
    for nonsense in ("0", "lots", "1tb", "-5mb", "1 gb"):
        monkeypatch.setenv("SPILLWAY_REDIS_MAXMEMORY", nonsense)
        with pytest.raises(SettingsError, match="SPILLWAY_REDIS_MAXMEMORY"):
            runtime_settings.redis_maxmemory()
