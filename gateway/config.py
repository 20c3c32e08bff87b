"""Settings: `wrangler_like.toml` + environment variables + `.dev.vars`, into one typed object.

Precedence for every name, highest first: the process environment, `.dev.vars.<env>`,
`.dev.vars`, `[env.<env>.vars]`, `[vars]`, the built-in default. Unlike wrangler, an
environment's `vars` table overlays the top-level one instead of replacing it.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gateway.crypto import Keyring
from gateway.errors import ConfigError

DEFAULT_CONFIG_FILE = "wrangler_like.toml"
PRODUCTION_ENVS = frozenset({"production", "prod"})
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

_DEFAULTS: dict[str, str] = {
    "TWILIO_API_BASE": "https://api.twilio.com",
    "VAPI_API_BASE": "https://api.vapi.ai",
    "WHATSAPP_GRAPH_BASE": "https://graph.facebook.com",
    "WHATSAPP_GRAPH_VERSION": "v21.0",
    "D360_API_BASE": "https://waba-v2.360dialog.io",
    "MAX_BODY_BYTES": "1048576",
    "SMS_PRICE_PER_SEGMENT": "0.07",
    "CALL_PRICE_PER_MINUTE": "0.15",
    "USD_EUR_RATE": "0.92",
    "DEFAULT_TIMEZONE": "Europe/Paris",
    "READ_CONNECTIONS": "4",
    "LOG_LEVEL": "INFO",
    "SMTP_ALLOW_PRIVATE_HOSTS": "false",
    "SMTP_ALLOWED_PORTS": "25,465,587,2525",
}


@dataclass(frozen=True)
class RateLimit:
    """One `[[ratelimits]]` entry, shaped like Cloudflare's rate-limiting binding."""

    name: str
    namespace_id: str
    limit: int
    period: int


@dataclass
class Settings:
    env: str
    root: Path
    name: str
    values: dict[str, str]
    database_path: Path
    database_name: str
    database_id: str
    migrations_dir: Path
    migrations_table: str
    crons: list[str]
    ratelimits: list[RateLimit]
    admin_api_key: str
    keyring: Keyring
    generated: list[str] = field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else default

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise ConfigError(f"{name} is not set (environment, .dev.vars or [vars])")
        return value

    def decimal(self, name: str) -> Decimal:
        raw = self.require(name)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ConfigError(f"{name} must be a decimal number, got {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{name} must not be negative")
        return value

    def flag(self, name: str) -> bool:
        raw = (self.get(name) or "false").strip().lower()
        if raw not in _FLAGS:
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return _FLAGS[raw]

    def integer(self, name: str) -> int:
        raw = self.require(name)
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None

    @property
    def is_production(self) -> bool:
        return self.env in PRODUCTION_ENVS

    @property
    def public_base_url(self) -> str:
        return (self.get("PUBLIC_BASE_URL") or "http://localhost:8787").rstrip("/")

    @property
    def max_body_bytes(self) -> int:
        return self.integer("MAX_BODY_BYTES")

    def ratelimit(self, name: str) -> RateLimit | None:
        return next((r for r in self.ratelimits if r.name == name), None)


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `.dev.vars` (dotenv syntax: KEY=value, optional quotes, # comments)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f".dev.vars line {number} is not KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None


def _section(doc: Mapping[str, Any], env: str | None) -> dict[str, Any]:
    """The top-level table with the `[env.<env>]` table laid over it."""
    merged = {k: v for k, v in doc.items() if k != "env"}
    if not env:
        return merged
    envs = doc.get("env", {})
    if env not in envs:
        if env in PRODUCTION_ENVS or env == "development":
            return merged
        raise ConfigError(f"environment {env!r} is not defined in [env.*]")
    overlay = envs[env]
    for key, value in overlay.items():
        if key == "vars":
            merged["vars"] = {**merged.get("vars", {}), **value}
        else:
            merged[key] = value
    return merged


def _parse_ratelimits(raw: Any) -> list[RateLimit]:
    limits = []
    for entry in raw or []:
        try:
            simple = entry["simple"]
            limit = RateLimit(
                name=str(entry["name"]),
                namespace_id=str(entry.get("namespace_id", "")),
                limit=int(simple["limit"]),
                period=int(simple["period"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                "[[ratelimits]] entries need name and simple = { limit = N, period = S }"
            ) from None
        if limit.limit <= 0 or limit.period <= 0:
            raise ConfigError(f"rate limit {limit.name}: limit and period must be positive")
        limits.append(limit)
    return limits


def _generate_dev_secrets(path: Path, values: dict[str, str]) -> list[str]:
    """Write an admin key and an encryption key into `.dev.vars` when none exists yet."""
    lines: list[str] = []
    generated: list[str] = []
    if not values.get("ADMIN_API_KEY"):
        lines.append(f"ADMIN_API_KEY={secrets.token_urlsafe(32)}")
        generated.append("ADMIN_API_KEY")
    if not values.get("ENCRYPTION_KEY") and not values.get("ENCRYPTION_KEYS"):
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        lines.append(f"ENCRYPTION_KEY={key}")
        generated.append("ENCRYPTION_KEY")
    if not lines:
        return []
    existing = path.read_text() if path.exists() else ""
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(prefix + "# generated by `gateway` on first start; keep secret\n")
        fh.write("\n".join(lines) + "\n")
    values.update(parse_dotenv("\n".join(lines)))
    return generated


def load_settings(
    config_path: Path | str | None = None,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
    generate_missing: bool = False,
) -> Settings:
    environ = os.environ if environ is None else environ
    path = Path(config_path or environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_FILE)
    root = path.resolve().parent
    env = env or environ.get("GATEWAY_ENV") or None
    section = _section(_read_toml(path), env)

    values: dict[str, str] = dict(_DEFAULTS)
    values.update({k: str(v) for k, v in section.get("vars", {}).items()})
    dev_vars = root / ".dev.vars"
    for candidate in (dev_vars, root / f".dev.vars.{env}" if env else None):
        if candidate is not None and candidate.exists():
            values.update(parse_dotenv(candidate.read_text()))
    values.update(environ)

    generated: list[str] = []
    is_production = (env or "") in PRODUCTION_ENVS
    if generate_missing and not is_production:
        generated = _generate_dev_secrets(dev_vars, values)

    admin_key = values.get("ADMIN_API_KEY") or ""
    if not admin_key:
        raise ConfigError("ADMIN_API_KEY is not set (environment or .dev.vars)")
    if len(admin_key) < 16:
        raise ConfigError("ADMIN_API_KEY must be at least 16 characters long")
    keyring = Keyring.from_settings(values.get("ENCRYPTION_KEYS"), values.get("ENCRYPTION_KEY"))

    databases = section.get("d1_databases") or [{}]
    d1 = next((d for d in databases if d.get("binding", "DB") == "DB"), databases[0])
    database_name = str(d1.get("database_name", "gateway"))
    database_path = Path(values.get("DATABASE_PATH") or f".state/d1/{database_name}.sqlite3")
    if not database_path.is_absolute():
        database_path = root / database_path
    migrations_dir = Path(str(d1.get("migrations_dir", "database/migrations")))
    if not migrations_dir.is_absolute():
        migrations_dir = root / migrations_dir
    if not migrations_dir.is_dir():
        migrations_dir = Path(__file__).resolve().parent.parent / "database" / "migrations"

    crons = section.get("triggers", {}).get("crons", [])
    settings = Settings(
        env=env or "development",
        root=root,
        name=str(section.get("name", "channel-gateway")),
        values=values,
        database_path=database_path,
        database_name=database_name,
        database_id=str(d1.get("database_id", "")),
        migrations_dir=migrations_dir,
        migrations_table=str(d1.get("migrations_table", "d1_migrations")),
        crons=[str(c) for c in crons],
        ratelimits=_parse_ratelimits(section.get("ratelimits")),
        admin_api_key=admin_key,
        keyring=keyring,
        generated=generated,
    )
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    from gateway.net_guard import parse_ports
    from gateway.services.cron import Cron

    for expression in settings.crons:
        try:
            Cron(expression)
        except ValueError as exc:
            raise ConfigError(f"[triggers] crons: {exc}") from None
    for name in ("MAX_BODY_BYTES", "READ_CONNECTIONS"):
        if settings.integer(name) <= 0:
            raise ConfigError(f"{name} must be positive")
    for name in ("SMS_PRICE_PER_SEGMENT", "CALL_PRICE_PER_MINUTE", "USD_EUR_RATE"):
        settings.decimal(name)
    settings.flag("SMTP_ALLOW_PRIVATE_HOSTS")
    try:
        parse_ports(settings.require("SMTP_ALLOWED_PORTS"))
    except ValueError as exc:
        raise ConfigError(f"SMTP_ALLOWED_PORTS {exc}") from None
    for name in (
        "PUBLIC_BASE_URL",
        "TWILIO_API_BASE",
        "VAPI_API_BASE",
        "WHATSAPP_GRAPH_BASE",
        "D360_API_BASE",
    ):
        value = settings.get(name)
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    sid = settings.get("TWILIO_ACCOUNT_SID")
    if sid is not None and not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        raise ConfigError("TWILIO_ACCOUNT_SID must look like AC followed by 32 hex digits")
    if settings.is_production and not settings.get("PUBLIC_BASE_URL"):
        raise ConfigError("PUBLIC_BASE_URL must be set in production (webhook signatures use it)")
