"""The schema gate of a release: `python -m veil.db wait` holds a pod back until the migration Job
has brought the service's tables to the revision its code expects (deploy/k8s, init containers)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from veil.db import DatabaseConfig, create_engine, migrate, schema_state, version_table, wait_for_schema
from veil.errors import FailedPrecondition

ROOT = Path(__file__).resolve().parent.parent
HEAD = "0005"


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("make_pg_database")()
    return f"sqlite:///{tmp_path}/gate.db"


def test_wait_passes_only_once_the_schema_is_at_head(fresh_url):
    engine = create_engine(DatabaseConfig(url=fresh_url))
    state = schema_state("gateway", engine)
    assert (state.current, state.head, state.ready) == (None, HEAD, False)
    started = time.monotonic()
    with pytest.raises(FailedPrecondition, match=r"no migrations applied\), code expects 0005.*"
                                                 r"python -m veil.db migrate --service gateway"):
        wait_for_schema("gateway", engine, timeout_seconds=0.4, poll_seconds=0.1)
    assert 0.4 <= time.monotonic() - started < 5
    migrate("gateway", engine)
    state = wait_for_schema("gateway", engine, timeout_seconds=0)
    assert (state.current, state.ready) == (HEAD, True)
    engine.dispose()


def test_a_migration_landing_while_waiting_releases_the_wait(make_pg_database):
    engine = create_engine(DatabaseConfig(url=make_pg_database()))
    outcome: dict = {}

    def wait() -> None:
        outcome["state"] = wait_for_schema("gateway", engine, timeout_seconds=30, poll_seconds=0.05)
        outcome["at"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive()
    migrated_at = time.monotonic()
    migrate("gateway", engine)
    waiter.join(timeout=10)
    assert outcome["state"].current == HEAD
    assert 0 <= outcome["at"] - migrated_at < 2
    engine.dispose()


def test_a_revision_of_a_later_release_counts_as_ready(tmp_path):
    # A rollback starts old code on a schema a newer release migrated (expand-then-contract keeps
    # it compatible): the gate must not hold the rollback back.
    engine = create_engine(DatabaseConfig(url=f"sqlite:///{tmp_path}/newer.db"))
    migrate("gateway", engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {version_table('gateway')} SET version_num = '0099'"))
    state = schema_state("gateway", engine)
    assert (state.current, state.known, state.ready) == ("0099", False, True)
    assert "newer than this code" in str(state)
    engine.dispose()


def test_wait_command_line_exit_codes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    url = f"sqlite:///{tmp_path}/cli.db"
    command = [sys.executable, "-m", "veil.db", "wait", "--service", "gateway", "--url", url,
               "--timeout-seconds", "0.3"]
    early = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert early.returncode == 1
    assert "veil.db wait: gateway: schema not ready after 0.3 s" in early.stderr
    engine = create_engine(DatabaseConfig(url=url))
    migrate("gateway", engine)
    engine.dispose()
    ready = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout.strip() == "gateway: database at revision 0005, code expects 0005"
    unreachable = subprocess.run(
        [*command[:6], "--url", "postgresql://postgres@127.0.0.1:1/none", "--timeout-seconds", "0.3"],
        env=env, capture_output=True, text=True, timeout=120)
    assert unreachable.returncode == 1 and "database unavailable" in unreachable.stderr
    unknown = subprocess.run([*command[:5], "nonexistent", "--url", url], env=env,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "has no migrations" in unknown.stderr
