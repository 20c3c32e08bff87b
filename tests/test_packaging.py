"""The runtime wheel: the provider emulators (`gateway.sandbox`) and aiosmtpd stay out of it,
and the runtime imports without them; `gateway sandbox` / `gateway demo` then say what to
install, in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Makes aiosmtpd unimportable, as in an environment where it was never installed.
_BLOCK_AIOSMTPD = """
import sys

class _NoAiosmtpd:
    def find_spec(self, name, path=None, target=None):
        if name == "aiosmtpd" or name.startswith("aiosmtpd."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoAiosmtpd())
"""

# Imports the gateway from `path` alone: an editable install of the checkout in this
# environment (setuptools' finder on sys.meta_path) would otherwise answer for gateway.*.
_ONLY_FROM = """
sys.meta_path[:] = [f for f in sys.meta_path if not f.__module__.startswith("__editable__")]
sys.path.insert(0, {path!r})
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel .` builds, offline, from a copy of the project's sources (a
    build in the checkout would leave build/ behind, whose stale files a later build packs)."""
    scratch = tmp_path_factory.mktemp("wheel")
    source = scratch / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "gateway", source / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = scratch / "dist"
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--disable-pip-version-check", "--quiet", "-w", str(out), "."),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [found] = out.glob("channel_gateway-*.whl")
    return found


@pytest.fixture(scope="module")
def unpacked(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's files as an installation would lay them out (a pure-Python wheel)."""
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def _metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The wheel's runtime requirements, and each extra's."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    runtime: list[str] = []
    extras: dict[str, list[str]] = {extra: [] for extra in metadata.get_all("Provides-Extra", [])}
    for requirement in metadata.get_all("Requires-Dist", []):
        spec, _, marker = requirement.partition(";")
        if "extra ==" in marker:
            extra = marker.split("extra ==", 1)[1].strip().strip("'\"")
            extras[extra].append(spec.strip())
        else:
            runtime.append(spec.strip())
    return runtime, extras


def _project(requirement: str) -> str:
    for stop in "[<>=!~ ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.lower()


def test_the_wheel_has_the_runtime_and_no_emulator(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert [n for n in names if n.startswith("gateway/sandbox")] == []
    for module in ("gateway/app.py", "gateway/cli.py", "gateway/demo.py", "gateway/wiring.py"):
        assert module in names
    assert any(n.startswith("gateway/providers/smtp/") for n in names)
    assert "gateway = gateway.cli:main" in scripts


def test_aiosmtpd_is_a_sandbox_extra_not_a_runtime_requirement(wheel: Path) -> None:
    runtime, extras = _metadata(wheel)
    assert "aiosmtpd" not in [_project(r) for r in runtime]
    assert "aiosmtplib" in [_project(r) for r in runtime]  # what the email channel sends with
    assert [_project(r) for r in extras["sandbox"]] == ["aiosmtpd"]
    assert "channel-gateway[sandbox]" in extras["dev"]


def _python(script: str, cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `script` with aiosmtpd blocked, importing the gateway from `path` (the checkout
    when None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PYTHON"))}
    prelude = _BLOCK_AIOSMTPD
    if path is not None:
        prelude += _ONLY_FROM.format(path=str(path))
    else:
        env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", prelude + script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


_RUNTIME_IMPORTS = """
import gateway, gateway.app, gateway.cli, gateway.demo
from gateway.providers.smtp import sender
print(gateway.__file__)
assert "aiosmtpd" not in sys.modules
assert not [m for m in sys.modules if m.startswith("gateway.sandbox")]
"""


def test_the_installed_wheel_imports_and_runs_without_aiosmtpd(
    unpacked: Path, tmp_path: Path
) -> None:
    done = _python(_RUNTIME_IMPORTS + "gateway.cli.main(['--help'])", tmp_path, unpacked)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(unpacked / "gateway"))  # the wheel's, not the checkout's
    assert "serve" in done.stdout and "sandbox" in done.stdout


@pytest.mark.parametrize("command", [["sandbox", "--print-settings"], ["demo"]])
def test_sandbox_and_demo_from_the_wheel_say_what_to_install(
    unpacked: Path, tmp_path: Path, command: list[str]
) -> None:
    done = _python(f"sys.exit(__import__('gateway.cli').cli.main({command!r}))", tmp_path, unpacked)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"gateway: {command[0]} ")
    assert "pip install -e '.[sandbox]'" in line
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no .dev.vars generated on the way out


def test_the_checkout_runs_without_aiosmtpd_but_its_sandbox_asks_for_the_extra(
    tmp_path: Path,
) -> None:
    imported = _python(_RUNTIME_IMPORTS, tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(ROOT / "gateway"))

    done = _python(
        "sys.exit(__import__('gateway.cli').cli.main(['sandbox', '--print-settings']))", tmp_path
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "pip install -e '.[sandbox]'" in line
    assert list(tmp_path.iterdir()) == []
