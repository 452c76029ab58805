"""veil.db: configuration, engines, per-service migrations on PostgreSQL and SQLite."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from veil.config import from_env
from veil.db import Database, DatabaseConfig, create_engine, migrate, version_table
from veil.errors import ConfigError, InvalidArgument, Unavailable
from services.gateway.state.state import SERVICE
from services.gateway.state.tables import metadata

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_TABLES = {t.name for t in metadata.sorted_tables}


def schema_drift(engine: sa.Engine) -> list:
    """Differences between the migrated database and services.gateway.state.tables (ours only)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": lambda name, kind, _parent: kind != "table" or name in GATEWAY_TABLES})
        return compare_metadata(context, metadata)


def test_url_normalisation_and_config_errors():
    assert DatabaseConfig(url="postgresql://u@h/db").url == "postgresql+psycopg://u@h/db"
    assert DatabaseConfig(url="sqlite:///var/x.db").url == "sqlite+pysqlite:///var/x.db"
    for url, message in [("mysql://u@h/db", "unsupported database"),
                         ("sqlite://", "needs a file path"),
                         ("sqlite:///:memory:", "needs a file path"),
                         ("not a url", "not a database URL")]:
        with pytest.raises(ConfigError, match=message):
            DatabaseConfig(url=url)
    config = from_env(DatabaseConfig, {"VEIL_DATABASE_URL": "postgresql://u@h/db",
                                       "VEIL_DATABASE_POOL_SIZE": "3"})
    assert (config.url, config.pool_size) == ("postgresql+psycopg://u@h/db", 3)
    assert from_env(DatabaseConfig, {}).url == "sqlite+pysqlite:///var/veil.db"
    with pytest.raises(ConfigError, match="VEIL_DATABASE_POOL_SIZE"):
        from_env(DatabaseConfig, {"VEIL_DATABASE_POOL_SIZE": "0"})


def test_sqlite_engine_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = create_engine(DatabaseConfig(url=f"sqlite:///{tmp_path}/sub/dir/v.db",
                                          busy_timeout_ms=1234))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    engine.dispose()


def test_migrations_apply_idempotently_and_match_the_tables_on_both_backends(make_pg_database,
                                                                             tmp_path):
    for url in (make_pg_database(), f"sqlite:///{tmp_path}/v.db"):
        engine = create_engine(DatabaseConfig(url=url))
        # Another service's tables and history in the same database stay untouched.
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE ul_jobs (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text("CREATE TABLE alembic_version_unlearner "
                                 "(version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO alembic_version_unlearner VALUES ('u9')"))
        assert migrate(SERVICE, engine) == "0005"
        assert migrate(SERVICE, engine) == "0005"
        tables = set(sa.inspect(engine).get_table_names())
        assert GATEWAY_TABLES | {"ul_jobs", version_table("gateway"),
                                 "alembic_version_unlearner"} == tables
        assert "alembic_version" not in tables
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version_unlearner")
                                ).scalar_one() == "u9"
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version_gateway")
                                ).scalar_one() == "0005"
        assert schema_drift(engine) == [], url
        engine.dispose()


def test_concurrent_migrations_on_postgresql_do_not_collide(make_pg_database):
    url = make_pg_database()
    engines = [create_engine(DatabaseConfig(url=url)) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results, errors = [], []

    def run(engine):
        barrier.wait()
        try:
            results.append(migrate(SERVICE, engine))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and results == ["0005"] * 4
    with engines[0].connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version_gateway")).scalar() == 1
    assert schema_drift(engines[0]) == []
    for engine in engines:
        engine.dispose()


def test_migrate_command_line_is_idempotent_and_names_bad_input(make_pg_database, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "veil.db", "migrate", "--service", "gateway"]
    url = make_pg_database()
    runs = [subprocess.Popen([*command, "--url", url], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert out.strip() == "gateway: database at revision 0005"
    sqlite_env = {**env, "VEIL_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}
    done = subprocess.run(command, env=sqlite_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "revision 0005" in done.stdout
    bad = subprocess.run([*command[:-1], "nonexistent"], env=sqlite_env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "has no migrations; known: gateway" in bad.stderr


def test_unknown_service_and_unreachable_database(tmp_path):
    with pytest.raises(InvalidArgument, match="no migrations"):
        migrate("nonexistent", create_engine(DatabaseConfig(url=f"sqlite:///{tmp_path}/v.db")))
    db = Database.from_config(DatabaseConfig(url="postgresql://postgres@127.0.0.1:1/none",
                                             connect_timeout_seconds=1))
    with pytest.raises(Unavailable, match="database unavailable"), db.read() as conn:
        conn.execute(sa.text("SELECT 1"))
    db.dispose()
