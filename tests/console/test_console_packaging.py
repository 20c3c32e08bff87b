"""The runtime wheel carries the console: its templates, translations, stylesheet and the
vendored JavaScript with its licences, so an installed gateway serves the same pages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.test_packaging import _ONLY_FROM, unpacked, wheel

__all__ = ["unpacked", "wheel"]

CONSOLE = Path(__file__).resolve().parents[2] / "gateway" / "console"


def test_wheel_holds_every_console_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    expected = {
        path.relative_to(CONSOLE.parent.parent).as_posix()
        for folder in ("templates", "i18n", "static")
        for path in (CONSOLE / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected, "no console files found"
    assert expected - packed == set()
    assert "gateway/console/static/vendor/htmx.LICENSE" in packed


def test_installed_console_renders_its_sign_in_page(unpacked: Path) -> None:
    script = _ONLY_FROM.format(path=str(unpacked)) + (
        "from gateway.console import render\n"
        "assert str(render.TEMPLATES).startswith(sys.argv[1]), render.TEMPLATES\n"
        "template = render.environment.get_template('sign_in.html')\n"
        "print('ok', len(template.filename))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + script, str(unpacked)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
