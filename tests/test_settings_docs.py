"""The README's settings tables are the model's: a setting cannot go undocumented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gateway.settings_docs import SettingsDocsError, main, rows, update
from gateway.settings_model import GROUPS, GatewaySettings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Upper-case string constants of gateway/ that are not settings: the names of the
# `[[ratelimits]]` bindings.
NOT_SETTINGS = {"SEND_RATE_LIMITER", "CHANNEL_TEST_RATE_LIMITER"}
_SETTING_LIKE = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+")


def test_the_readme_tables_are_generated_from_the_model() -> None:
    text = README.read_text(encoding="utf-8")
    assert update(text) == text, "README.md is stale: run .venv/bin/python -m gateway.settings_docs"


def test_every_setting_is_in_exactly_one_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    for name, _ in GatewaySettings.names():
        assert len(re.findall(rf"^\| `{name}` \|", text, re.MULTILINE)) == 1, name


def test_every_setting_named_in_the_code_is_in_the_model() -> None:
    """A name read anywhere in gateway/ (`settings.get("X")`, a tuple of names…) is a field,
    so it is typed, validated at start-up and in the README."""
    fields = {name for name, _ in GatewaySettings.names()}
    named: dict[str, str] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exports = {  # the names of `__all__` are Python names, not settings
            id(constant)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for constant in ast.walk(node.value)
        }
        for node in ast.walk(tree):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and id(node) not in exports and _SETTING_LIKE.fullmatch(node.value):
                named.setdefault(node.value, str(path.relative_to(ROOT)))
    unknown = {name: where for name, where in named.items() if name not in fields | NOT_SETTINGS}
    assert not unknown, f"add these to gateway/settings_model.py: {unknown}"


def test_every_setting_has_a_group_a_type_and_a_one_line_description() -> None:
    for group in GROUPS:
        assert rows(group), f"group {group} has no setting"
    documented = [row for group in GROUPS for row in rows(group)]
    assert len(documented) == len(list(GatewaySettings.names()))
    for name, accepts, default, meaning in documented:
        assert accepts and default and meaning, name
        for cell in (accepts, default, meaning):
            assert "|" not in cell and "\n" not in cell, name


def test_a_stale_table_is_reported_then_rewritten_and_the_prose_kept(tmp_path: Path) -> None:
    current = README.read_text(encoding="utf-8")
    row = next(line for line in current.splitlines() if line.startswith("| `SMS_FAILOVER_AFTER`"))
    stale = current.replace(row + "\n", "").replace(
        "SMS providers, tried in order", "SMS providers (prose of our own), tried in order"
    )
    readme = tmp_path / "README.md"
    readme.write_text(stale, encoding="utf-8")

    assert main(["--check", str(readme)]) == 1
    assert readme.read_text(encoding="utf-8") == stale, "--check changes nothing"
    assert main([str(readme)]) == 0
    rewritten = readme.read_text(encoding="utf-8")
    assert row in rewritten
    assert "SMS providers (prose of our own), tried in order" in rewritten
    assert main(["--check", str(readme)]) == 0


def test_a_readme_without_a_group_table_is_refused() -> None:
    text = README.read_text(encoding="utf-8")
    without = re.sub(
        r"<!-- settings:failover -->.*?<!-- /settings:failover -->\n", "", text, flags=re.DOTALL
    )
    with pytest.raises(SettingsDocsError, match="failover"):
        update(without)
    doubled = text + "\n<!-- settings:voice -->\n<!-- /settings:voice -->\n"
    with pytest.raises(SettingsDocsError, match="voice"):
        update(doubled)
    with pytest.raises(SettingsDocsError, match="nothing"):
        update(text + "\n<!-- settings:nothing -->\n<!-- /settings:nothing -->\n")
