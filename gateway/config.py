"""Settings: `wrangler_like.toml` + environment variables + `.dev.vars`, into one object.

Precedence for every name, highest first: the process environment, `.dev.vars.<env>`,
`.dev.vars`, `[env.<env>.vars]`, `[vars]`, the built-in default (the sources are in
`gateway.settings_sources`, the typed fields in `gateway.settings_model`). Unlike wrangler, an
environment's `vars` table overlays the top-level one instead of replacing it.

`Settings` is what the app, the CLI and the tests hold: the typed settings (`settings.typed`),
the TOML tables that are not vars (D1 binding, crons, rate limits), the admin key and the
keyring. Read a setting as `settings.typed.<field>`: its type, default and validation are in
the model, once; nothing reads a setting by name.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.cron_expr import Cron
from gateway.crypto import Keyring
from gateway.errors import ConfigError
from gateway.settings_model import GatewaySettings, reveal
from gateway.settings_sources import (
    DEFAULT_CONFIG_FILE,
    PRODUCTION_ENVS,
    Layers,
    parse_dotenv,
    read_toml,
    wrangler_section,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "PRODUCTION_ENVS",
    "GatewaySettings",
    "RateLimit",
    "Settings",
    "load_settings",
    "parse_dotenv",
]

_LOCAL_BASE_URL = "http://localhost:8787"


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
    database_path: Path
    database_name: str
    database_id: str
    migrations_dir: Path
    migrations_table: str
    crons: list[str]
    ratelimits: list[RateLimit]
    admin_api_key: str = field(repr=False)
    keyring: Keyring = field(repr=False)
    typed: GatewaySettings = field(repr=False)
    generated: list[str] = field(default_factory=list)
    hyperdrive_url: str | None = field(default=None, repr=False)

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL database to run on (DATABASE_URL, else the `localConnectionString`
        of a `[[hyperdrive]]` binding), or None: the SQLite file."""
        return reveal(self.typed.database_url) or self.hyperdrive_url

    @property
    def is_production(self) -> bool:
        return self.env in PRODUCTION_ENVS

    @property
    def public_base_url(self) -> str:
        return (self.typed.public_base_url or _LOCAL_BASE_URL).rstrip("/")

    @property
    def max_body_bytes(self) -> int:
        return self.typed.max_body_bytes

    def ratelimit(self, name: str) -> RateLimit | None:
        return next((r for r in self.ratelimits if r.name == name), None)


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


def _parse_crons(raw: Any) -> list[str]:
    crons = [str(c) for c in raw or []]
    for expression in crons:
        try:
            Cron(expression)
        except ValueError as exc:
            raise ConfigError(f"[triggers] crons: {exc}") from None
    return crons


def _hyperdrive_url(raw: Any) -> str | None:
    """The `localConnectionString` of the first `[[hyperdrive]]` binding that has one."""
    for entry in raw or []:
        url = entry.get("localConnectionString") if isinstance(entry, Mapping) else None
        if not url:
            continue
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("[[hyperdrive]] localConnectionString must be a postgresql:// URL")
        return url
    return None


def _generate_dev_secrets(path: Path, values: Mapping[str, str]) -> list[str]:
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
    section = wrangler_section(read_toml(path), env)
    layers = Layers.for_project(root, env, section, environ)

    generated: list[str] = []
    is_production = (env or "") in PRODUCTION_ENVS
    if generate_missing and not is_production:
        generated = _generate_dev_secrets(root / ".dev.vars", layers.merged())

    typed = GatewaySettings.from_layers(layers, env, str(path))
    admin_key = reveal(typed.admin_api_key)
    if not admin_key:
        raise ConfigError("ADMIN_API_KEY is not set (environment or .dev.vars)")
    keyring = Keyring.from_settings(reveal(typed.encryption_keys), reveal(typed.encryption_key))
    if is_production and typed.public_base_url is None:
        raise ConfigError("PUBLIC_BASE_URL must be set in production (webhook signatures use it)")

    databases = section.get("d1_databases") or [{}]
    d1 = next((d for d in databases if d.get("binding", "DB") == "DB"), databases[0])
    database_name = str(d1.get("database_name", "gateway"))
    database_path = typed.database_path or Path(f".state/d1/{database_name}.sqlite3")
    if not database_path.is_absolute():
        database_path = root / database_path
    migrations_dir = Path(str(d1.get("migrations_dir", "database/migrations")))
    if not migrations_dir.is_absolute():
        migrations_dir = root / migrations_dir
    if not migrations_dir.is_dir():
        migrations_dir = Path(__file__).resolve().parent.parent / "database" / "migrations"

    return Settings(
        env=env or "development",
        root=root,
        name=str(section.get("name", "channel-gateway")),
        database_path=database_path,
        database_name=database_name,
        database_id=str(d1.get("database_id", "")),
        migrations_dir=migrations_dir,
        migrations_table=str(d1.get("migrations_table", "d1_migrations")),
        crons=_parse_crons(section.get("triggers", {}).get("crons", [])),
        ratelimits=_parse_ratelimits(section.get("ratelimits")),
        admin_api_key=admin_key,
        keyring=keyring,
        typed=typed,
        generated=generated,
        hyperdrive_url=_hyperdrive_url(section.get("hyperdrive")),
    )
