from __future__ import annotations

import base64
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import load_settings, parse_dotenv
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
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
    assert s.typed.twilio_api_base == "https://api.twilio.com"


def test_env_flag_and_gateway_env_pick_the_environment(project: Path) -> None:
    by_flag = load_settings(project / "wrangler_like.toml", env="production", environ=base_env())
    by_var = load_settings(
        project / "wrangler_like.toml", environ={**base_env(), "GATEWAY_ENV": "production"}
    )
    for s in (by_flag, by_var):
        assert s.env == "production" and s.is_production
        assert s.name == "gw-prod" and s.database_name == "gw-prod"
        assert s.typed.sms_price_per_segment == Decimal("0.09")
        assert s.typed.log_level == "INFO", "top-level vars still apply"


def test_environment_beats_dev_vars_beats_toml(project: Path) -> None:
    (project / ".dev.vars").write_text(
        '# local\nSMS_PRICE_PER_SEGMENT="0.08"\nexport LOG_LEVEL=DEBUG\n'
        f"ADMIN_API_KEY={'d' * 24}\nENCRYPTION_KEY={KEY}\n"
    )
    s = load_settings(project / "wrangler_like.toml", environ={"LOG_LEVEL": "WARNING"})
    assert s.typed.sms_price_per_segment == Decimal("0.08")
    assert s.typed.log_level == "WARNING"
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
        # read by name elsewhere, these used to pass start-up and fail later (or never)
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of DEBUG, INFO"),
        ({"SMS_PRICE_PER_SEGMENT": "NaN"}, "SMS_PRICE_PER_SEGMENT must be a decimal number"),
        ({"USD_EUR_RATE": "Infinity"}, "USD_EUR_RATE must be a decimal number"),
        ({"DISPATCH_CONCURRENCY": "lots"}, "DISPATCH_CONCURRENCY must be a whole number"),
        ({"DISPATCH_CONCURRENCY": "0"}, "DISPATCH_CONCURRENCY must be positive"),
        ({"DISPATCH_RECONCILE_SECONDS": "soon"}, "DISPATCH_RECONCILE_SECONDS must be a number"),
        ({"PROVIDER_TIMEOUT_SECONDS": "-1"}, "PROVIDER_TIMEOUT_SECONDS must be more than 0"),
        ({"DISPATCH_POLL_SECONDS": "0"}, "DISPATCH_POLL_SECONDS must be more than 0"),
        ({"DISPATCHER": "of"}, "DISPATCHER must be one of on, off"),
        ({"HEADER_READ_TIMEOUT_SECONDS": "0"}, "HEADER_READ_TIMEOUT_SECONDS must be more than 0"),
        ({"VOICE_BRIDGE_TIMEOUT_SECONDS": "20"}, "VOICE_BRIDGE_TIMEOUT_SECONDS must be more"),
        ({"TWILIO_PHONE_NUMBER": "0939035761"}, "TWILIO_PHONE_NUMBER: '0939035761' must be"),
        ({"OPERATOR_NUMBERS": "+33939099999,+339"}, "OPERATOR_NUMBERS: '\\+339' is not"),
        ({"WHATSAPP_GRAPH_VERSION": "21"}, "WHATSAPP_GRAPH_VERSION must look like v21.0"),
        # the Telnyx and failover settings
        ({"TELNYX_API_BASE": "api.telnyx.com"}, "TELNYX_API_BASE must be an http"),
        ({"TELNYX_PUBLIC_KEY": "not-a-key"}, "TELNYX_PUBLIC_KEY must be the base64 Ed25519"),
        ({"SMS_PROVIDERS": "twilio,telnyx,twilio"}, "SMS_PROVIDERS names twilio more than once"),
        ({"SMS_PROVIDERS": "twilio,,telnyx"}, "SMS_PROVIDERS must list provider names"),
        ({"SMS_FAILOVER_AFTER": "0"}, "SMS_FAILOVER_AFTER must be positive"),
        ({"SMS_CIRCUIT_SECONDS": "never"}, "SMS_CIRCUIT_SECONDS must be a number of seconds"),
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


def test_each_source_wins_over_the_ones_below_it(project: Path) -> None:
    """environment > .dev.vars.<env> > .dev.vars > [env.<env>.vars] > [vars] > default."""
    (project / "wrangler_like.toml").write_text(
        TOML.replace(
            "[vars]\n",
            "[vars]\nPROVIDER_TIMEOUT_SECONDS = 1\nDISPATCH_MAX_ATTEMPTS = 1\n"
            "SMS_FAILOVER_AFTER = 1\nSMS_CIRCUIT_SECONDS = 1\n"
            'SMS_PROVIDERS = ["telnyx", "twilio"]\n',
        ).replace(
            "[env.production.vars]\n",
            "[env.production.vars]\nDISPATCH_MAX_ATTEMPTS = 2\nSMS_FAILOVER_AFTER = 2\n"
            "SMS_CIRCUIT_SECONDS = 2\n",
        )
    )
    (project / ".dev.vars").write_text("SMS_FAILOVER_AFTER=3\nSMS_CIRCUIT_SECONDS=3\n")
    (project / ".dev.vars.production").write_text("SMS_CIRCUIT_SECONDS=4\n")
    s = load_settings(
        project / "wrangler_like.toml",
        env="production",
        environ={**base_env(), "SMS_CIRCUIT_SECONDS": "5.5"},
    )
    typed = s.typed
    assert typed.dispatch_concurrency == 32, "the default"
    assert typed.provider_timeout_seconds == 1.0, "[vars]"
    assert typed.dispatch_max_attempts == 2, "[env.production.vars]"
    assert typed.sms_failover_after == 3, ".dev.vars"
    assert typed.sms_circuit_seconds == 5.5, "the environment"
    assert typed.sms_providers == ("telnyx", "twilio"), "a TOML array is a list"
    without_env = load_settings(
        project / "wrangler_like.toml", env="production", environ=base_env()
    )
    assert without_env.typed.sms_circuit_seconds == 4.0, ".dev.vars.production over .dev.vars"


def test_typed_defaults_of_the_telnyx_and_failover_settings(project: Path) -> None:
    s = load_settings(project / "wrangler_like.toml", environ=base_env())
    assert s.typed.telnyx_api_base == "https://api.telnyx.com"
    assert s.typed.sms_providers == ("twilio",)
    assert (s.typed.sms_failover_after, s.typed.sms_circuit_seconds) == (3, 30.0)
    assert s.typed.telnyx_api_key is None
    key = base64.b64encode(b"P" * 32).decode()
    s = load_settings(
        project / "wrangler_like.toml",
        environ={**base_env(), "TELNYX_PUBLIC_KEY": key, "TELNYX_API_KEY": "KEY0123"},
    )
    assert s.typed.telnyx_public_key == key
    assert s.typed.telnyx_api_key is not None
    assert s.typed.telnyx_api_key.get_secret_value() == "KEY0123"


def test_an_empty_value_counts_as_not_set(project: Path) -> None:
    (project / ".dev.vars").write_text("SMS_PRICE_PER_SEGMENT=\n")
    s = load_settings(
        project / "wrangler_like.toml", environ={**base_env(), "LOG_LEVEL": "", "DISPATCHER": ""}
    )
    assert s.typed.sms_price_per_segment == Decimal("0.07"), "[vars] applies"
    assert s.typed.log_level == "INFO" and s.typed.dispatcher == "on"


def test_dev_vars_values_are_taken_as_written(project: Path) -> None:
    """No `${VAR}` interpolation, no escapes: a secret may hold any of these characters."""
    token = r"pa$$w${HOME}rd\n#1"
    (project / ".dev.vars").write_text(f"TWILIO_AUTH_TOKEN='{token}'\n")
    s = load_settings(project / "wrangler_like.toml", environ=base_env())
    assert s.typed.twilio_auth_token is not None
    assert s.typed.twilio_auth_token.get_secret_value() == token


def test_a_malformed_dev_vars_line_stops_start_up(project: Path) -> None:
    (project / ".dev.vars").write_text("LOG_LEVEL=DEBUG\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.dev\.vars line 2"):
        load_settings(project / "wrangler_like.toml", environ=base_env())


@pytest.mark.parametrize(
    ("table", "line", "message"),
    [
        (
            "[vars]\n",
            'SMS_PROVIDER = "telnyx"\n',
            "SMS_PROVIDER \\(did you mean SMS_PROVIDERS\\?\\)",
        ),
        ("[env.production.vars]\n", 'X_LATER = "1"\n', "X_LATER is not a setting"),
    ],
)
def test_a_name_in_vars_that_is_no_setting_stops_start_up(
    project: Path, table: str, line: str, message: str
) -> None:
    """A typo in the TOML file used to leave the default in force without a word."""
    (project / "wrangler_like.toml").write_text(TOML.replace(table, table + line))
    with pytest.raises(ConfigError, match=rf"^\[vars\] {message}") as info:
        load_settings(project / "wrangler_like.toml", env="production", environ=base_env())
    assert "\n" not in str(info.value)


def test_the_shipped_configuration_file_names_only_settings() -> None:
    for env in (None, "production"):
        s = load_settings(ROOT / "wrangler_like.toml", env=env, environ=base_env())
        assert s.name.startswith("channel-gateway")


def test_other_programs_names_in_the_environment_and_dev_vars_are_left_alone(
    project: Path,
) -> None:
    (project / ".dev.vars").write_text("SOME_OTHER_TOOL_TOKEN=x\nLOG_LEVEL=DEBUG\n")
    s = load_settings(project / "wrangler_like.toml", environ={**base_env(), "HOME": "/nowhere"})
    assert s.typed.log_level == "DEBUG"


def test_gateway_env_is_read_from_the_environment_only(project: Path) -> None:
    (project / ".dev.vars").write_text("GATEWAY_ENV=production\n")
    s = load_settings(project / "wrangler_like.toml", environ=base_env())
    assert s.env == "development" and s.typed.gateway_env is None
    chosen = load_settings(project / "wrangler_like.toml", env="production", environ=base_env())
    assert chosen.typed.gateway_env == "production"


SECRETS = {
    "ADMIN_API_KEY": "admin-secret-0123456789",
    "ENCRYPTION_KEY": KEY,
    "TWILIO_AUTH_TOKEN": "twilio-secret-token",
    "VAPI_API_KEY": "vapi-secret-key",
    "VAPI_WEBHOOK_SECRET": "vapi-webhook-secret",
    "TELNYX_API_KEY": "telnyx-secret-key",
}


def test_printing_the_settings_shows_no_secret(project: Path) -> None:
    s = load_settings(project / "wrangler_like.toml", environ=SECRETS)
    for shown in (repr(s), str(s), repr(s.typed), str(s.typed)):
        for name, secret in SECRETS.items():
            assert secret not in shown, f"{name} is printed"
    assert "gw-dev" in repr(s), "the rest is still there"


def test_a_bad_log_level_ends_the_command_in_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    for name, value in {**base_env(), "LOG_LEVEL": "chatty"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_PATH", str(project / "gw.sqlite3"))
    monkeypatch.delenv("GATEWAY_ENV", raising=False)
    code = main(["migrate", "--config", str(project / "wrangler_like.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        "gateway: configuration error: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, "
        "CRITICAL, got 'chatty'"
    )
    assert not (project / "gw.sqlite3").exists(), "nothing ran"


def _run_command(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    **settings: str,
) -> tuple[int, str]:
    from gateway.cli import main

    for name, value in {**base_env(), **settings}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_PATH", str(project / "gw.sqlite3"))
    monkeypatch.delenv("GATEWAY_ENV", raising=False)
    code = main([*command, "--config", str(project / "wrangler_like.toml")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("DISPATCH_CONCURRENCY", "lots", "'lots'"),  # a number
        ("SMTP_ALLOW_PRIVATE_HOSTS", "sometimes", "'sometimes'"),  # a flag
        ("TWILIO_API_BASE", "api.twilio.com", "'api.twilio.com'"),  # a URL
        ("TWILIO_PHONE_NUMBER", "0939035761", "'0939035761'"),  # a phone number
        ("OPERATOR_NUMBERS", "+33939099999,+339", "'+339'"),  # a list of them
    ],
)
def test_a_bad_setting_ends_start_up_in_one_line_naming_it(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    shown: str,
) -> None:
    code, err = _run_command(project, monkeypatch, capsys, ["migrate"], **{name: value})
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"gateway: configuration error: {name}")
    assert shown in err, "the bad value is quoted"
    assert not (project / "gw.sqlite3").exists(), "nothing ran"


def test_an_unknown_sms_provider_ends_start_up_naming_the_known_ones(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Which providers exist is the registry's: SMS_PROVIDERS is checked when the gateway is
    built, by every command that builds one (`serve`, `cron`, `assistant sync`)."""
    code, err = _run_command(project, monkeypatch, capsys, ["cron"], SMS_PROVIDERS="twilio,nope")
    assert code == 2
    assert err == (
        "gateway: configuration error: SMS_PROVIDERS names an unknown provider 'nope'; "
        "the SMS providers are telnyx, twilio\n"
    )
    code, err = _run_command(project, monkeypatch, capsys, ["cron"], SMS_PROVIDERS="telnyx,twilio")
    assert code == 0, err


def test_loading_settings_imports_no_service(project: Path) -> None:
    """Configuration sits below the services: checking the crons must not import them."""
    code = (
        "import sys\n"
        "from gateway.config import load_settings\n"
        f"load_settings({str(project / 'wrangler_like.toml')!r}, environ={base_env()!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith('gateway.services')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
