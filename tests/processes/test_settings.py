"""Settings: the contract's defaults, the environment's names, and what is refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from settings import Settings, load

# Every variable a setting could be read from, cleared so the machine's environment cannot leak in.
NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ENV", "development")  # the default, production, wants a token verifier


def test_production_is_the_default_and_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_ENV")
    with pytest.raises(ValidationError, match="JWT_SECRET or JWT_JWKS_URL must be set"):
        load()
    assert load(jwt_secret="a-production-secret").app_env == "production"


def test_defaults_match_the_contract() -> None:
    settings = load()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.redis_tls_verify is True
    assert settings.database_url == "sqlite:///data.db"
    assert settings.mongo_url is None
    assert settings.jwt_secret is None
    assert settings.open_dev_mode is True
    assert settings.port == 5000
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.cors_origin_list == []


def test_the_contract_variables_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@redis.example:6380/2")
    monkeypatch.setenv("REDIS_TLS_VERIFY", "false")
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://u:p@db/app")
    monkeypatch.setenv("MONGO_URL", "mongodb://mongo/app")
    monkeypatch.setenv("JWT_SECRET", "from-the-environment")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example,")
    settings = load()
    assert settings.redis_url == "rediss://:pw@redis.example:6380/2"
    assert settings.redis_tls_verify is False
    assert settings.database_url == "mysql+pymysql://u:p@db/app"
    assert settings.mongo_url == "mongodb://mongo/app"
    assert settings.jwt_secret == "from-the-environment"
    assert settings.open_dev_mode is False
    assert settings.port == 8080
    assert settings.max_body_bytes == 2048
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    assert load(port=9000).port == 9000


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@host:5432/db", "postgresql+psycopg://u:p@host:5432/db"),
        ("postgresql://u:p@host/db?sslmode=require", "postgresql+psycopg://u:p@host/db?sslmode=require"),
        ("postgresql+psycopg://u@host/db", "postgresql+psycopg://u@host/db"),
        ("mysql+pymysql://root@127.0.0.1/app", "mysql+pymysql://root@127.0.0.1/app"),
        ("sqlite:////var/data/app.db", "sqlite:////var/data/app.db"),
    ],
)
def test_database_urls_are_made_sqlalchemy_urls(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    assert load(database_url=given).database_url == expected
    monkeypatch.setenv("DATABASE_URL", given)  # as Heroku writes it
    assert load().database_url == expected


def test_collection_stores_are_parsed() -> None:
    settings = load(collection_stores=" audit = mongo ,events_log=sql,, ")
    assert settings.collection_store_map == {"audit": "mongo", "events_log": "sql"}
    assert load().collection_store_map == {}


@pytest.mark.parametrize("value", ["audit", "audit=mongo,logs", "audit:mongo", "audit=", "=mongo"])
def test_collection_stores_without_pairs_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="COLLECTION_STORES"):
        load(collection_stores=value)


@pytest.mark.parametrize("value", ["0", "-1", "1025", "four", " "])  # "" is unset (test_deploy_files)
def test_bad_partitions_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PARTITIONS", value)
    with pytest.raises(ValidationError, match="partitions"):
        load()


@pytest.mark.parametrize("value", ["1", "16", "1024"])
def test_partitions_within_bounds_are_taken(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PARTITIONS", value)
    assert load().partitions == int(value)


@pytest.mark.parametrize(("name", "value"), [("PORT", "0"), ("PORT", "65536"), ("MAX_BODY_BYTES", "10")])
def test_out_of_range_numbers_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        load()


@pytest.mark.parametrize("prefix", ["", "a b", "gw:x", "x" * 33, "{gw}"])
def test_key_prefixes_that_would_break_key_names_are_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match="key_prefix"):
        load(key_prefix=prefix)


def test_production_needs_a_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        load(app_env="production")
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        load(app_env="production", jwt_secret="")
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        load()
    monkeypatch.setenv("JWT_SECRET", "a-production-secret")
    settings = load()
    assert settings.app_env == "production"
    assert settings.open_dev_mode is False


def test_unknown_app_env_is_refused() -> None:
    with pytest.raises(ValidationError, match="app_env"):
        load(app_env="prod")


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_an_app_routing_to_an_unknown_store_fails_at_start(settings_env: dict[str, str]) -> None:
    from app import create_app

    with pytest.raises(LookupError, match="no store named 'nosuch'"):
        create_app({k.lower(): v for k, v in settings_env.items()} | {"collection_stores": "audit=nosuch"})
