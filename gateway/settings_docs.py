"""The README's settings tables, written from `gateway.settings_model`.

    python -m gateway.settings_docs            rewrite the tables of README.md
    python -m gateway.settings_docs --check    only say whether they are current (exit 1 if not)

Each group of settings has one table in the README, between `<!-- settings:<group> -->` and
`<!-- /settings:<group> -->`; the prose around the markers is the README's own and is kept.
`tests/test_settings_docs.py` fails when a table and the model disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic.fields import FieldInfo

from gateway.settings_model import GROUPS, GatewaySettings, as_text
from gateway.settings_types import Accepts

README = Path("README.md")
_BLOCK = re.compile(
    r"(?P<open><!-- settings:(?P<group>[a-z_]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /settings:(?P=group) -->)",
    re.DOTALL,
)
_HEADER = "| name | accepts | default | meaning |\n|------|---------|---------|---------|\n"


class SettingsDocsError(Exception):
    """The README cannot hold the tables: a group without markers, or markers of no group."""


def _accepts(field: FieldInfo) -> str:
    found = [m for m in field.metadata if isinstance(m, Accepts)]
    pending: list[Any] = [field.annotation]
    while pending and not found:
        annotation = pending.pop()
        found = [m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Accepts)]
        pending.extend(get_args(annotation) if get_origin(annotation) is not None else ())
    return found[0].text if found else "text"


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _default(field: FieldInfo) -> str:
    shown = _extra(field).get("shown_default")
    if isinstance(shown, str):
        return shown
    if field.default in (None, ()):
        return "—"
    return f"`{as_text(field.default)}`"


def rows(group: str) -> list[tuple[str, str, str, str]]:
    """(name, accepts, default, meaning) of every setting of `group`, in the model's order."""
    return [
        (f"`{name}`", _accepts(field), _default(field), field.description or "")
        for name, field in GatewaySettings.names()
        if _extra(field).get("group") == group
    ]


def table(group: str) -> str:
    return _HEADER + "".join(f"| {' | '.join(row)} |\n" for row in rows(group))


def update(text: str) -> str:
    """`text` (a README) with every settings table rewritten from the model."""
    seen: list[str] = []

    def rewrite(match: re.Match[str]) -> str:
        group = match["group"]
        if group not in GROUPS:
            raise SettingsDocsError(f"<!-- settings:{group} --> names no group of settings")
        seen.append(group)
        return match["open"] + table(group) + match["close"]

    updated = _BLOCK.sub(rewrite, text)
    missing = [group for group in GROUPS if group not in seen]
    if missing:
        raise SettingsDocsError(
            "no table for the settings group(s) "
            + ", ".join(missing)
            + ": add <!-- settings:<group> --> and <!-- /settings:<group> --> where they belong"
        )
    twice = sorted({group for group in seen if seen.count(group) > 1})
    if twice:
        raise SettingsDocsError(f"the settings group(s) {', '.join(twice)} have two tables")
    return updated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.settings_docs",
        description="Rewrite the settings tables of README.md from gateway.settings_model.",
    )
    parser.add_argument("readme", nargs="?", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    try:
        updated = update(text)
    except SettingsDocsError as exc:
        print(f"settings_docs: {args.readme}: {exc}", file=sys.stderr)
        return 2
    if updated == text:
        return 0
    if args.check:
        print(
            f"settings_docs: {args.readme} is out of date: run python -m gateway.settings_docs",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(updated, encoding="utf-8")
    print(f"settings_docs: rewrote the settings tables of {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
