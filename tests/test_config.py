from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.config import load_settings, parse_dotenv
from gateway.errors import ConfigError

KEY = base64.b64encode(b"K" * 32).decode()
TOML = """
name = "gw"
[vars]
SMS_PRICE_PER_SEGMENT = "0.07"
LOG_LEVEL = "INFO"
PUBLIC_BASE_URL = "http://localhost:8787"

[[d1_databases]]
binding = "DB"
database_name = "gw-dev"
database_id = "id-dev"
migrations_dir = "database/migrations"
migrations_table = "d1_migrations"

[triggers]
crons = ["*/5 * * * *"]

[[ratelimits]]
name = "SEND_RATE_LIMITER"
namespace_id = "1001"
simple = { limit = 10, period = 60 }

[env.production]
name = "gw-prod"
[env.production.vars]
SMS_PRICE_PER_SEGMENT = "0.09"
PUBLIC_BASE_URL = "https://gw.example.com"
[[env.production.d1_databases]]
binding = "DB"
database_name = "gw-prod"
database_id = "id-prod"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "wrangler_like.toml").write_text(TOML)
    return tmp_path


def base_env() -> dict[str, str]:
    return {"ADMIN_API_KEY": "a" * 24, "ENCRYPTION_KEY": KEY}


def test_toml_sections_are_read(project: Path) -> None:
    s = load_settings(project / "wrangler_like.toml", environ=base_env())
    assert s.name == "gw"
    assert s.database_name == "gw-dev" and s.database_id == "id-dev"
    assert s.database_path == project / ".state/d1/gw-dev.sqlite3"
    assert s.migrations_table == "d1_migrations"
    assert s.crons == ["*/5 * * * *"]
    limit = s.ratelimit("SEND_RATE_LIMITER")
    assert limit is not None and (limit.limit, limit.period) == (10, 60)
    assert s.get("TWILIO_API_BASE") == "https://api.twilio.com"


def test_env_flag_and_gateway_env_pick_the_environment(project: Path) -> None:
    by_flag = load_settings(project / "wrangler_like.toml", env="production", environ=base_env())
    by_var = load_settings(
        project / "wrangler_like.toml", environ={**base_env(), "GATEWAY_ENV": "production"}
    )
    for s in (by_flag, by_var):
        assert s.env == "production" and s.is_production
        assert s.name == "gw-prod" and s.database_name == "gw-prod"
        assert s.get("SMS_PRICE_PER_SEGMENT") == "0.09"
        assert s.get("LOG_LEVEL") == "INFO", "top-level vars still apply"


def test_environment_beats_dev_vars_beats_toml(project: Path) -> None:
    (project / ".dev.vars").write_text(
        '# local\nSMS_PRICE_PER_SEGMENT="0.08"\nexport LOG_LEVEL=DEBUG\n'
        f"ADMIN_API_KEY={'d' * 24}\nENCRYPTION_KEY={KEY}\n"
    )
    s = load_settings(project / "wrangler_like.toml", environ={"LOG_LEVEL": "WARNING"})
    assert s.get("SMS_PRICE_PER_SEGMENT") == "0.08"
    assert s.get("LOG_LEVEL") == "WARNING"
    assert s.admin_api_key == "d" * 24


def test_unknown_environment_is_an_error(project: Path) -> None:
    with pytest.raises(ConfigError, match="staging"):
        load_settings(project / "wrangler_like.toml", env="staging", environ=base_env())


def test_missing_secrets_are_generated_once_into_dev_vars(project: Path) -> None:
    first = load_settings(project / "wrangler_like.toml", environ={}, generate_missing=True)
    assert first.generated == ["ADMIN_API_KEY", "ENCRYPTION_KEY"]
    dev_vars = project / ".dev.vars"
    assert dev_vars.stat().st_mode & 0o077 == 0, ".dev.vars must not be world-readable"
    second = load_settings(project / "wrangler_like.toml", environ={}, generate_missing=True)
    assert second.generated == []
    assert second.admin_api_key == first.admin_api_key
    assert second.keyring.primary_id == first.keyring.primary_id


def test_production_never_generates_secrets(project: Path) -> None:
    with pytest.raises(ConfigError, match="ADMIN_API_KEY"):
        load_settings(
            project / "wrangler_like.toml", env="production", environ={}, generate_missing=True
        )
    assert not (project / ".dev.vars").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ADMIN_API_KEY": ""}, "ADMIN_API_KEY is not set"),
        ({"ADMIN_API_KEY": "short"}, "at least 16"),
        ({"ENCRYPTION_KEY": base64.b64encode(b"x" * 16).decode()}, "32 bytes"),
        ({"ENCRYPTION_KEY": "", "ENCRYPTION_KEYS": ""}, "must be set"),
        ({"ENCRYPTION_KEYS": "nocolon"}, "<id>:<base64 key>"),
        ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES must be a whole number"),
        ({"SMS_PRICE_PER_SEGMENT": "-1"}, "must not be negative"),
        ({"TWILIO_API_BASE": "ftp://x"}, "TWILIO_API_BASE must be an http"),
        ({"TWILIO_ACCOUNT_SID": "SK123"}, "TWILIO_ACCOUNT_SID"),
    ],
)
def test_malformed_settings_fail_fast_with_one_line(
    project: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(project / "wrangler_like.toml", environ={**base_env(), **overrides})
    assert "\n" not in str(info.value)


def test_bad_ratelimit_entry(project: Path) -> None:
    (project / "wrangler_like.toml").write_text('[[ratelimits]]\nname = "X"\n')
    with pytest.raises(ConfigError, match="ratelimits"):
        load_settings(project / "wrangler_like.toml", environ=base_env())


def test_dotenv_parser_rejects_garbage() -> None:
    assert parse_dotenv("A=1\n\n# c\nB='two words'\n") == {"A": "1", "B": "two words"}
    with pytest.raises(ConfigError, match="line 2"):
        parse_dotenv("A=1\nnot a pair\n")
