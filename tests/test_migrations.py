from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from gateway.migrations import MigrationError, apply_migrations, discover, pending

MIGRATIONS = Path(__file__).resolve().parent.parent / "database" / "migrations"
FORBIDDEN = re.compile(r"\b(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)


# a trigger's body is BEGIN … END; (D1 runs triggers): it opens no transaction
TRIGGER_BODY = re.compile(r"\bCREATE\s+TRIGGER\b.*?\bBEGIN\b.*?\bEND\s*;", re.I | re.S)


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


@pytest.mark.parametrize("migration", discover(MIGRATIONS), ids=lambda m: m.name)
def test_migration_obeys_d1_rules(migration: object) -> None:
    path: Path = migration.path  # type: ignore[attr-defined]
    sql = _strip_comments(path.read_text())
    assert not FORBIDDEN.search(TRIGGER_BODY.sub("", sql)), (
        f"{path.name}: D1 migrations must not manage transactions"
    )
    for pragma in re.findall(r"\bPRAGMA\s+(\w+)", sql, re.IGNORECASE):
        assert pragma.lower() == "defer_foreign_keys", f"{path.name}: PRAGMA {pragma} not allowed"
    assert len(sql.encode()) < 100_000, "D1 limits a statement to 100 KB"


def test_a_transaction_outside_a_trigger_body_is_still_refused() -> None:
    sql = "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); END;\nBEGIN;"
    assert FORBIDDEN.search(TRIGGER_BODY.sub("", sql))
    assert not FORBIDDEN.search(TRIGGER_BODY.sub("", sql.removesuffix("BEGIN;")))


def test_files_are_numbered_in_wrangler_convention() -> None:
    names = [m.name for m in discover(MIGRATIONS)]
    assert names and names[0] == "0001_init.sql"
    assert [int(n[:4]) for n in names] == list(range(1, len(names) + 1))
    assert len(names) == len(list(MIGRATIONS.glob("*.sql"))), "a .sql file is misnamed"


def test_schema_applies_to_an_empty_database_once(tmp_path: Path) -> None:
    db = tmp_path / "d1.sqlite3"
    applied = apply_migrations(db, MIGRATIONS)
    assert applied == [m.name for m in discover(MIGRATIONS)]
    assert apply_migrations(db, MIGRATIONS) == []
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tenants", "api_keys", "channel_configurations", "tenant_numbers"} <= tables
    columns = [r[1] for r in conn.execute("PRAGMA table_info(d1_migrations)")]
    assert columns == ["id", "name", "applied_at"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert pending(conn, MIGRATIONS) == []


def test_failed_file_is_named_rolled_back_and_stops_the_run(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (id INTEGER PRIMARY KEY);")
    (folder / "0002_broken.sql").write_text(
        "CREATE TABLE b (id INTEGER PRIMARY KEY);\nINSERT INTO missing_table VALUES (1);"
    )
    (folder / "0003_later.sql").write_text("CREATE TABLE c (id INTEGER PRIMARY KEY);")
    db = tmp_path / "d1.sqlite3"
    with pytest.raises(MigrationError, match=r"0002_broken\.sql") as info:
        apply_migrations(db, folder)
    assert info.value.name == "0002_broken.sql"
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "a" in tables
    assert "b" not in tables, "the failed file must leave nothing behind"
    assert "c" not in tables, "files after the failure must not run"
    assert [r[0] for r in conn.execute("SELECT name FROM d1_migrations")] == ["0001_ok.sql"]
    conn.close()

    (folder / "0002_broken.sql").write_text("CREATE TABLE b (id INTEGER PRIMARY KEY);")
    assert apply_migrations(db, folder) == ["0002_broken.sql", "0003_later.sql"]
