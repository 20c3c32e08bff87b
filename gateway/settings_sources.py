"""Where settings come from, as pydantic-settings sources, highest precedence first:

1. the process environment (`EnvironmentSource`, over the mapping `load_settings` is given);
2. `.dev.vars.<env>`, then `.dev.vars` (`DevVarsSource`: dotenv syntax, read strictly);
3. `[env.<env>.vars]` laid over `[vars]` of `wrangler_like.toml` (`WranglerVarsSource`);
4. the defaults of `gateway.settings_model.GatewaySettings`.

An empty value counts as not set, so the next layer (or the default) applies. Unlike
wrangler, an environment's `vars` table overlays the top-level one instead of replacing it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

DEFAULT_CONFIG_FILE = "wrangler_like.toml"
PRODUCTION_ENVS = frozenset({"production", "prod"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `.dev.vars` (dotenv syntax: KEY=value, optional quotes, # comments). Values are
    taken as written: no `${VAR}` interpolation and no escapes, since secrets hold any byte."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _NAME.fullmatch(key):
            raise ConfigError(f".dev.vars line {number} is not KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def read_dev_vars(paths: tuple[Path, ...]) -> dict[str, str]:
    """The `.dev.vars` files merged, `paths` highest first; a missing file is skipped."""
    values: dict[str, str] = {}
    for path in reversed(paths):
        if path.is_file():
            values.update(parse_dotenv(path.read_text()))
    return values


def read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None


def wrangler_section(doc: Mapping[str, Any], env: str | None) -> dict[str, Any]:
    """The top-level table with the `[env.<env>]` table laid over it."""
    merged = {k: v for k, v in doc.items() if k != "env"}
    if not env:
        return merged
    envs = doc.get("env", {})
    if env not in envs:
        if env in PRODUCTION_ENVS or env == "development":
            return merged
        raise ConfigError(f"environment {env!r} is not defined in [env.*]")
    for key, value in envs[env].items():
        if key == "vars":
            merged["vars"] = {**merged.get("vars", {}), **value}
        else:
            merged[key] = value
    return merged


def toml_vars(section: Mapping[str, Any]) -> dict[str, str]:
    """`[vars]` as text, the form every other source has: `true`/`false` for booleans, a list
    joined with commas (`SMS_PROVIDERS = ["twilio", "telnyx"]`); empty values are dropped."""
    table = section.get("vars", {})
    if not isinstance(table, Mapping):
        raise ConfigError("[vars] must be a table of NAME = value")
    values: dict[str, str] = {}
    for name, value in table.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            text = ",".join(str(v) for v in value)
        else:
            raise ConfigError(f"[vars] {name} must be a string, a number, a boolean or a list")
        if text:
            values[str(name)] = text
    return values


class _TextSource(PydanticBaseSettingsSource):
    """Settings by name from one mapping of text (blank values are not set). Values stay
    text: each type of `gateway.settings_model` parses its own, lists included."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = field.alias or field_name
        return self.values.get(name), name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, name, _ = self.get_field_value(field, field_name)
            if value not in (None, ""):
                found[name] = value
        return found

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.values)} names)"


class EnvironmentSource(_TextSource):
    """The process environment, or the mapping `load_settings` is given (tests hand in their
    own, so that nothing leaks in from the shell)."""


class DevVarsSource(_TextSource):
    """The `.dev.vars` files (`paths` highest first; a missing one is skipped), in dotenv
    syntax read by `parse_dotenv`: a malformed line stops start-up instead of being skipped,
    and values are never interpolated."""

    def __init__(self, settings_cls: type[BaseSettings], paths: tuple[Path, ...]) -> None:
        super().__init__(settings_cls, read_dev_vars(paths))


class WranglerVarsSource(_TextSource):
    """The `[vars]` of `wrangler_like.toml` with `[env.<env>.vars]` over them, as text."""


@dataclass(frozen=True)
class Layers:
    """The inputs of one load: the environment, the `.dev.vars` files (highest first) and the
    TOML vars of the chosen environment."""

    environ: Mapping[str, str]
    dev_vars: tuple[Path, ...]
    vars: Mapping[str, str]

    @classmethod
    def for_project(
        cls, root: Path, env: str | None, section: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Layers:
        files = (root / f".dev.vars.{env}",) if env else ()
        return cls(environ, (*files, root / ".dev.vars"), toml_vars(section))

    def merged(self) -> dict[str, str]:
        """Every name of every layer as text, the higher layers winning (blank = not set)."""
        values: dict[str, str] = {}
        for layer in (self.vars, read_dev_vars(self.dev_vars), self.environ):
            values.update({k: v for k, v in layer.items() if v})
        return values

    def sources(self, settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            EnvironmentSource(settings_cls, self.environ),
            DevVarsSource(settings_cls, self.dev_vars),
            WranglerVarsSource(settings_cls, self.vars),
        )
