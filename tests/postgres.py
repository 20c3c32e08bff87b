"""A throwaway PostgreSQL for the test session, and one fresh database per test.

The server is Debian's `postgresql` package run by hand: `initdb` and `pg_ctl` in a temporary
directory, on a free loopback port, with `fsync` off (test speed only: nothing here claims
durability). It starts at the first test that asks for a database and is stopped, its
directory removed, when the session ends. PostgreSQL refuses to run as root: as root the
server runs as the `postgres` user (or `pgtest`, created when neither exists).

The PostgreSQL migrations are applied once, to a template database; each test's database is
a `CREATE DATABASE … TEMPLATE` copy of it, dropped after the test.

When PostgreSQL cannot be found or started, the tests that need it are skipped with the
reason, except under `CI=true`, where they fail: CI must not pass by skipping them.

Fixtures: `postgres_url` (a migrated database), `empty_postgres_url` (a database with no
table). `GATEWAY_TEST_ENGINE=postgres` makes the settings fixtures of `tests.conftest` and
`tests.stack` run the gateway on PostgreSQL (`test_engine`, `engine_environ`).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

try:
    import psycopg
except ImportError:  # reported by `server()` as the reason PostgreSQL tests skip
    psycopg = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "gateway_template"
_USERS = ("postgres", "pgtest")
_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
    "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
)


# Tests that mean something on SQLite only, skipped when GATEWAY_TEST_ENGINE=postgres (the
# test's node id without parameters: the reason).
SQLITE_ONLY: dict[str, str] = {
    "tests/test_analytics.py::test_metrics_queries_search_an_index_on_tenant_and_created_at": (
        "reads SQLite's EXPLAIN QUERY PLAN"
    ),
    "tests/test_analytics.py::test_a_contacts_timeline_searches_by_contact_not_by_time": (
        "reads SQLite's EXPLAIN QUERY PLAN"
    ),
    "tests/test_vapi_sip.py::test_a_sip_tenant_without_its_uri_gets_the_bypass_fallback": (
        "the test's own UPDATE uses SQLite's json_set"
    ),
    **{
        f"tests/console/test_dashboard_browser.py::{name}": "seeds the SQLite file directly"
        for name in (
            "test_dashboard_link_shows_kpis_and_both_charts",
            "test_period_switch_and_custom_period",
            "test_contact_search_shows_the_timeline",
            "test_french_switch_shows_french_numbers",
        )
    },
    "tests/console/test_dashboard_series.py::test_live_ranges_read_index_ranges_without_sorting": (
        "reads SQLite's EXPLAIN QUERY PLAN"
    ),
    "tests/test_http_errors.py::test_readiness_reports_pending_migrations": (
        "adds its probe to the SQLite folder (tests/test_postgres_migrations.py has the twin)"
    ),
}


class PostgresUnavailable(Exception):
    """No PostgreSQL could be started here (the message says why)."""


def test_engine() -> str:
    """The engine the gateway runs on in the settings fixtures: `sqlite` (the default) or
    `postgres` (GATEWAY_TEST_ENGINE=postgres)."""
    engine = os.environ.get("GATEWAY_TEST_ENGINE", "sqlite").strip().lower() or "sqlite"
    if engine not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"GATEWAY_TEST_ENGINE must be sqlite or postgres, not {engine!r}")
    return engine


def find_bindir() -> Path | None:
    """Where `initdb` and `pg_ctl` are: Debian keeps them out of PATH, one folder a version."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(part) if part.isdigit() else 0 for part in p.parent.name.split(".")],
    )
    for candidate in reversed(versions):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def _server_user() -> str | None:
    """The account the server runs as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in _USERS:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _USERS[1]],
        capture_output=True,
        text=True,
        check=False,
    )
    if created.returncode != 0:
        raise PostgresUnavailable(f"cannot create a user to run PostgreSQL: {created.stderr}")
    return _USERS[1]


def _free_port() -> int:
    from gateway.sandbox.server import free_port

    return free_port()


@dataclass
class PostgresServer:
    """One running server in its own directory."""

    bindir: Path
    directory: Path
    user: str | None
    port: int = 0
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> None:
        data = self.directory / "data"
        if self.user is not None:
            shutil.chown(self.directory, self.user, self.user)
        self.directory.chmod(0o700)
        init = self._run(
            "initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()}")
        error = ""
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = _free_port()
            options = f"-k {self.directory} -p {self.port} {_OPTIONS}"
            started = self._run(
                "pg_ctl", "-D", str(data), "-l", str(self.directory / "log"), "-w", "-t", "30",
                "-o", options, "start",
            )  # fmt: skip
            if started.returncode == 0:
                return
            error = (self.directory / "log").read_text(errors="replace")[-2000:]
        raise PostgresUnavailable(f"pg_ctl start failed: {error.strip()}")

    def stop(self) -> None:
        if (self.directory / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, template: str | None = TEMPLATE) -> str:
        """A new database (a copy of `template`, or empty); returns its name."""
        with self._lock:
            name = f"test_{os.getpid()}_{next(self._numbers)}"
        source = f" TEMPLATE {template}" if template else ""
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}{source}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def schema_of(self, name: str) -> tuple[tuple[str, ...], int]:
        """The tables of database `name` and how many migrations it recorded."""
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            return _schema(conn)

    def empty(self, name: str, schema: tuple[tuple[str, ...], int]) -> bool:
        """Delete every row of a test's database for the next test (~10x cheaper than a new
        copy of the template); False when the test changed its schema (drop it instead).
        One connection and two round trips: it runs after every test of the PostgreSQL pass."""
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            if _schema(conn) != schema:
                return False
            # foreign keys are triggers: off for this transaction, any order will do
            deletes = "".join(f"DELETE FROM {t};" for t in schema[0] if t != "d1_migrations")
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid();"
                f"BEGIN; SET LOCAL session_replication_role = replica; {deletes} COMMIT;"
            )
        return True


def _schema(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[tuple[str, ...], int]:
    tables = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    applied = conn.execute("SELECT count(*) FROM d1_migrations").fetchone()
    return tuple(str(row[0]) for row in tables), int(applied[0]) if applied else 0


_server: PostgresServer | None = None
_failure: str | None = None
_start_lock = threading.Lock()
# the databases handed to the current test (name, whether a copy of the template), and the
# emptied copies waiting for the next tests
_created: list[tuple[str, bool]] = []
_spare: list[str] = []
_by_place: dict[str, str] = {}  # engine_environ: the database of each test folder
_template_schema: tuple[tuple[str, ...], int] = ((), 0)


def _start() -> PostgresServer:
    if psycopg is None:
        raise PostgresUnavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "no initdb found: install PostgreSQL (apt-get install postgresql; scripts/test does)"
        )
    server = PostgresServer(bindir, Path(tempfile.mkdtemp(prefix="gateway-pg-")), _server_user())
    try:
        server.start()
        with server.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        from gateway.migrations import apply_postgres_migrations, postgres_directory

        apply_postgres_migrations(
            server.url(TEMPLATE), postgres_directory(ROOT / "database" / "migrations")
        )
        global _template_schema
        _template_schema = server.schema_of(TEMPLATE)
    except BaseException:
        server.stop()
        raise
    atexit.register(server.stop)
    return server


def server() -> PostgresServer:
    """The session's server, started on first use (PostgresUnavailable when it cannot be)."""
    global _server, _failure
    with _start_lock:
        if _server is None and _failure is None:
            try:
                _server = _start()
            except PostgresUnavailable as exc:
                _failure = str(exc)
        if _server is None:
            raise PostgresUnavailable(_failure or "PostgreSQL did not start")
        return _server


def unavailable(reason: str) -> None:
    """Skip the test for `reason`, or fail it under CI=true."""
    message = f"PostgreSQL unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def new_database(template: str | None = TEMPLATE) -> str:
    """The URL of a fresh database, dropped after the current test."""
    try:
        running = server()
    except PostgresUnavailable as exc:
        unavailable(str(exc))
        raise  # unreachable: skip and fail raise
    copy = template == TEMPLATE
    name = _spare.pop() if copy and _spare else running.create_database(template)
    _created.append((name, copy))
    return running.url(name)


def engine_environ(place: Path) -> dict[str, str]:
    """What the gateway's environment needs to run on the test engine. `place` is where the
    SQLite file would be: gateways given the same place share one database, on either engine
    (two instances of one test)."""
    if test_engine() != "postgres":
        return {}
    key = str(place.resolve())
    if key not in _by_place:
        _by_place[key] = new_database()
    return {"DATABASE_URL": _by_place[key]}


@pytest.fixture
def postgres_url() -> str:
    """A database with every PostgreSQL migration applied."""
    return new_database()


@pytest.fixture
def empty_postgres_url() -> str:
    """A database without a single table."""
    return new_database(template=None)


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    # a module- or session-scoped fixture (one gateway for a whole module) was set up before
    # this one: its databases live until the server stops, never emptied under its feet
    _created.clear()
    yield
    if not _created or _server is None:
        return
    databases, _created[:] = list(_created), []
    for name, copy in databases:
        if copy and _server.empty(name, _template_schema):
            _spare.append(name)
        else:
            _server.drop_database(name)


def reaches_a_database(item: pytest.Item) -> bool:
    """Whether a test runs the gateway on the test engine: it builds its settings with the
    `environ` fixture (`settings`, `api`, … do) or a gateway of `tests.stack` (directly or
    through another test module's helpers)."""
    if "environ" in getattr(item, "fixturenames", ()):
        return True
    module = getattr(item, "module", None)
    return module is not None and _uses_stack(module.__name__, set())


def _uses_stack(name: str, seen: set[str]) -> bool:
    if name == "tests.stack":
        return True
    module = sys.modules.get(name)
    if module is None or name in seen:
        return False
    seen.add(name)
    for value in vars(module).values():
        home = getattr(value, "__name__", None) if isinstance(value, ModuleType) else None
        home = home or getattr(value, "__module__", None)
        if isinstance(home, str) and home.startswith("tests.") and _uses_stack(home, seen):
            return True
    return False


def _one_case_is_enough(item: pytest.Item, seen: set[str]) -> bool:
    """Whether `item` is a case after the first of a test marked `refused_before_the_store`:
    its cases are requests the gateway refuses while reading them (JSON, types, ranges), before
    any query of its own, so they behave alike on both engines. The first case runs on
    PostgreSQL as the witness that such a refusal writes nothing there either."""
    if item.get_closest_marker("refused_before_the_store") is None:
        return False
    function = item.nodeid.partition("[")[0]
    if function in seen:
        return True
    seen.add(function)
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL (GATEWAY_TEST_ENGINE=postgres) the rule is: a test runs again when it
    reaches a database (`reaches_a_database`: the others ran on SQLite already and would run
    the same), except the cases after the first of a test whose cases are all refused before
    the store (`_one_case_is_enough`); SQLITE_ONLY is skipped with its reason."""
    if test_engine() != "postgres":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    seen: set[str] = set()
    for item in items:
        again = reaches_a_database(item) and not _one_case_is_enough(item, seen)
        (kept if again else dropped).append(item)
        reason = SQLITE_ONLY.get(item.nodeid.partition("[")[0])
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    # scripts/test runs this pass in the background and ends it with SIGTERM when the other
    # pass is interrupted: end the session as Ctrl-C would, so the server is stopped too
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
