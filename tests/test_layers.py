"""The layer rules of DESIGN §10, read from the import statements of gateway/ with `ast`.

Every import counts: at module level, inside a function, under `if TYPE_CHECKING:`, relative
ones, and `importlib.import_module("…")` with a literal name. A failure names each offending
file, line and imported module.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# what serves HTTP: handlers, routing, auth, middleware, the app and what builds it
WEB = (
    "gateway.routes",
    "gateway.routing",
    "gateway.auth",
    "gateway.middleware",
    "gateway.openapi",
    "gateway.http_server",
    "gateway.app",
    "gateway.wiring",
    "gateway.web",
)
DATA = ("gateway.store", "gateway.db", "gateway.migrations", "sqlite3")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_import_module(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in {"import_module", "__import__"}


def imported(source: str, importer: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `source` imports, wherever the statement is."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, importer, is_package)
            for alias in node.names:
                # `from gateway import store` imports gateway.store; for a name that is not a
                # module the extra segment still lies inside the module it came from
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and _is_import_module(node)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Rule:
    name: str
    applies_to: Callable[[str], bool]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()

    def breaks(self, name: str) -> bool:
        return within(name, self.forbidden) and not within(name, self.allowed)


def _in(*packages: str) -> Callable[[str], bool]:
    return lambda module: within(module, packages)


def _production(module: str) -> bool:
    return not within(module, ("gateway.sandbox", "gateway.cli", "gateway.demo"))


def _outside(home: str) -> Callable[[str], bool]:
    return lambda module: _production(module) and not within(module, (home,))


_PROVIDER_SDKS = {"twilio": "gateway.providers.twilio", "aiosmtplib": "gateway.providers.smtp"}
# what knows a database exists: the store's engines and the migrations runners
DRIVERS = ("sqlite3", "psycopg", "psycopg_pool", "asyncpg")

RULES = [
    Rule(
        "handlers reach the data layer and provider wires only through services",
        _in("gateway.routes"),
        (*DATA, "gateway.providers"),
        allowed=("gateway.providers.base",),
    ),
    Rule(
        "the data layer never imports services or the web layer",
        _in("gateway.store", "gateway.db"),
        ("gateway.services", *WEB),
    ),
    Rule(
        "a provider package never imports services, the data layer or the web layer",
        _in("gateway.providers"),
        ("gateway.services", *DATA, *WEB),
    ),
    Rule(
        "domain types import nothing above them",
        _in("gateway.domain"),
        ("gateway",),
        allowed=("gateway.domain",),
    ),
    Rule(
        "settings import nothing above them (config never imports services/cron)",
        _in(
            "gateway.config",
            "gateway.settings_model",
            "gateway.settings_sources",
            "gateway.settings_types",
            "gateway.cron_expr",
        ),
        ("gateway.services", "gateway.providers", "gateway.sandbox", *DATA, *WEB),
    ),
    Rule(
        "services never import the web layer or the app object",
        _in("gateway.services"),
        WEB,
    ),
    Rule(
        "services, handlers, the console and the CLI never import a database driver",
        _in("gateway.services", "gateway.routes", "gateway.console", "gateway.cli"),
        DRIVERS,
    ),
    Rule(
        "production code never imports the sandbox",
        lambda module: within(module, ("gateway",)) and _production(module),
        ("gateway.sandbox",),
    ),
    Rule(
        "the sandbox never imports services, the data layer or the web layer",
        _in("gateway.sandbox"),
        ("gateway.services", *DATA, *WEB),
    ),
    *(
        Rule(
            f"the {sdk} SDK is imported only by its provider package",
            _outside(home),
            (sdk,),
        )
        for sdk, home in _PROVIDER_SDKS.items()
    ),
]


def gateway_modules(root: Path = ROOT) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for path in sorted((root / "gateway").rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def violations(rule: Rule, root: Path = ROOT) -> list[str]:
    found = []
    for module, path in gateway_modules(root).items():
        if not rule.applies_to(module):
            continue
        is_package = path.name == "__init__.py"
        for line, name in imported(path.read_text(), module, is_package):
            if rule.breaks(name):
                found.append(f"{path.relative_to(root)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_layer_rule_holds(rule: Rule) -> None:
    assert violations(rule) == []


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_each_rule_reads_some_modules(rule: Rule) -> None:
    # a rule whose package moved away would pass without reading anything
    assert any(rule.applies_to(module) for module in gateway_modules())


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_the_scan_finds_imports_wherever_they_are(tmp_path: Path) -> None:
    _write(tmp_path, "gateway/__init__.py", "")
    _write(tmp_path, "gateway/routes/__init__.py", "")
    _write(
        tmp_path,
        "gateway/routes/sneaky.py",
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from gateway.services import crm\n"
        "from gateway.providers.base import WebhookReply\n"
        "if TYPE_CHECKING:\n"
        "    from gateway.db import TenantDB\n"
        "def handler() -> None:\n"
        "    import sqlite3\n"
        "    from ..store import calls\n"
        "    from gateway import migrations\n"
        "    from gateway.providers.twilio.sms import TwilioSms\n"
        "async def later() -> None:\n"
        "    import importlib\n"
        "    importlib.import_module('gateway.store.crm')\n",
    )
    assert violations(RULES[0], tmp_path) == [
        "gateway/routes/sneaky.py:6 imports gateway.db.TenantDB",
        "gateway/routes/sneaky.py:8 imports sqlite3",
        "gateway/routes/sneaky.py:9 imports gateway.store.calls",
        "gateway/routes/sneaky.py:10 imports gateway.migrations",
        "gateway/routes/sneaky.py:11 imports gateway.providers.twilio.sms.TwilioSms",
        "gateway/routes/sneaky.py:14 imports gateway.store.crm",
    ]


def test_relative_imports_resolve_from_a_package(tmp_path: Path) -> None:
    _write(tmp_path, "gateway/domain/__init__.py", "from . import calls\nfrom .. import ids\n")
    domain = next(rule for rule in RULES if rule.name.startswith("domain"))
    assert violations(domain, tmp_path) == ["gateway/domain/__init__.py:2 imports gateway.ids"]


def test_cli_and_demo_may_start_the_sandbox_but_nothing_else_may(tmp_path: Path) -> None:
    lazy = "def run() -> None:\n    from gateway.sandbox import runner\n"
    for relative in ("gateway/cli.py", "gateway/demo.py", "gateway/config.py"):
        _write(tmp_path, relative, lazy)
    _write(tmp_path, "gateway/sandbox/__init__.py", "from gateway.sandbox import server\n")
    sandbox = next(rule for rule in RULES if rule.name.startswith("production"))
    assert violations(sandbox, tmp_path) == ["gateway/config.py:2 imports gateway.sandbox.runner"]
