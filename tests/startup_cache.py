"""What every gateway start builds the same way, built once per test session.

Starting the app in a test (`tests.conftest.start_api`, `tests.stack.running_stack`) is most of
what a short test costs, and two of its steps are pure and expensive: the OpenAPI document
(pydantic's JSON schemas of every model, ~60 ms) and the system trust store of the SMTP
sender's TLS context (`ssl.create_default_context`, ~30 ms). A session starts the app about
two thousand times, with the same endpoints and the same trust store. `install()` puts a memo
in front of each, in this process only: the first start runs the real function, the next ones
get its result (the document, which the gateway only serves; the context, which it only wraps
sockets with), so every test sees what production builds. A context for a CA file of the
test's own is built every time, and processes the tests start (`gateway serve`, the wheel's
smoke tests) run the real code. The third is applying every migration file to a new SQLite
file (~40 ms): `seed_sqlite`.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import gateway.app
import gateway.providers.smtp.sender
from gateway.config import Settings
from gateway.migrations import apply_migrations, discover
from gateway.routing import Endpoint

_documents: dict[Hashable, dict[str, Any]] = {}
_trust: list[ssl.SSLContext] = []


def _fields(ep: Endpoint) -> Hashable:
    """Everything of an endpoint its part of the document is made of (it is not hashable)."""
    return (
        ep.method,
        ep.path,
        ep.handler,
        ep.auth,
        ep.summary,
        tuple(ep.tags),
        ep.body,
        ep.query,
        ep.form,
        ep.body_schema,
        ep.status,
        tuple(sorted(ep.responses.items())),
        ep.description,
    )


def _cached_openapi(
    build: Callable[[list[Endpoint], str, str], dict[str, Any]],
) -> Callable[[list[Endpoint], str, str], dict[str, Any]]:
    def cached(endpoints: list[Endpoint], title: str, version: str) -> dict[str, Any]:
        key = (title, version, tuple(_fields(ep) for ep in endpoints))
        if key not in _documents:
            _documents[key] = build(endpoints, title, version)
        return _documents[key]

    cached.session_cached = True  # type: ignore[attr-defined]
    return cached


def _cached_tls(
    make: Callable[[str | None], ssl.SSLContext],
) -> Callable[[str | None], ssl.SSLContext]:
    def cached(ca_file: str | None) -> ssl.SSLContext:
        if ca_file is not None:
            return make(ca_file)
        if not _trust:
            _trust.append(make(None))
        return _trust[0]

    cached.session_cached = True  # type: ignore[attr-defined]
    return cached


def install() -> None:
    """Put the memos in place (once)."""
    # setattr: a module's function is not assignable for mypy
    app, sender = gateway.app, gateway.providers.smtp.sender
    build = getattr(app, "build_openapi")  # noqa: B009
    if not getattr(build, "session_cached", False):
        setattr(app, "build_openapi", _cached_openapi(build))  # noqa: B010
    if not getattr(sender.tls_context, "session_cached", False):
        setattr(sender, "tls_context", _cached_tls(sender.tls_context))  # noqa: B010


_migrated: dict[Hashable, Path] = {}


def seed_sqlite(settings: Settings) -> None:
    """Give a gateway about to start on a SQLite file that does not exist yet a copy of one
    the same migration files made (once per session), instead of running each file again at
    every start. The gateway's own migration step still runs: it finds nothing pending. A
    test whose file exists already (seeded, an older schema) or which runs on PostgreSQL is
    left alone, and a change to the migration files (a test adding one) makes a new copy."""
    target = settings.database_path
    if settings.database_url or target.exists():
        return
    directory, table = settings.migrations_dir, settings.migrations_table
    files = tuple(
        (m.name, m.path.stat().st_mtime_ns, m.path.stat().st_size) for m in discover(directory)
    )
    key = (str(directory.resolve()), table, files)
    if key not in _migrated:
        folder = tempfile.mkdtemp(prefix="gateway-migrated-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        made = Path(folder) / "gateway.sqlite3"
        apply_migrations(made, directory, table)
        _migrated[key] = made
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated[key], target)
