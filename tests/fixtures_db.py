"""Database fixtures: a fresh PostgreSQL database per test run (random name, dropped at the end)
and SQLite files. PostgreSQL must be reachable: the tests FAIL, never skip, when it is not.

VEIL_TEST_POSTGRES_URL overrides the server (default: postgres@127.0.0.1:5432, trust auth).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from veil.db import Database, DatabaseConfig, create_engine, migrate
from veil.ledger import AttributeSpend, IdentitySpend, ReleaseSpend
from veil.privacy import Mechanism, PrivacySettings
from services.gateway.state import Candidate, GatewayState, StoredObject
from services.gateway.state.state import SERVICE

POSTGRES_URL = os.environ.get("VEIL_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def make_pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases; returns each one's URL."""
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is unreachable at {POSTGRES_URL}: {exc.orig}")
    created: list[str] = []

    def make() -> str:
        name = f"veil_test_{secrets.token_hex(6)}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(False)

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrated(url: str, service: str = SERVICE) -> str:
    """`url` with `service`'s tables (default: the gateway's) migrated."""
    engine = create_engine(DatabaseConfig(url=url))
    migrate(service, engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_url(make_pg_database) -> str:
    """One migrated PostgreSQL database shared by the run; tests isolate by tenant."""
    return migrated(make_pg_database())


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/veil.db"


@pytest.fixture(params=["postgresql", "sqlite"])
def gateway_db(request, tmp_path) -> Iterator[Database]:
    """A migrated gateway database on each backend."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path}/veil.db"
    db = Database.from_config(DatabaseConfig(url=url))
    if request.param == "sqlite":
        migrate(SERVICE, db.engine)
    yield db
    db.dispose()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stored(key: str) -> StoredObject:
    return StoredObject(bucket="veil", key=key, sha256=sha256_of(key), size=1000,
                        content_type="image/png", width=32, height=32)


def settings_for(protect: tuple[str, ...] = ("Male",), eps: float = 1.0,
                 identity: float = 0.0) -> PrivacySettings:
    return PrivacySettings(attribute_epsilon={a: eps for a in protect}, identity_epsilon=identity or None,
                           rho=0.0, level=-1)


def candidates_for(settings: PrivacySettings, count: int, tag: str,
                   identity_noise_multiplier: float = 8.0) -> list[Candidate]:
    """`count` candidates whose receipts spend exactly `settings`."""
    result = []
    for index in range(count):
        receipt_id = f"{tag}-r{index}-{uuid.uuid4().hex[:8]}"
        identity = None
        if settings.identity_epsilon:
            identity = IdentitySpend(settings.identity_epsilon, 1e-6, identity_noise_multiplier)
        spend = ReleaseSpend(receipt_id, tuple(
            AttributeSpend(a, Mechanism.RANDOMIZED_RESPONSE, e)
            for a, e in settings.attribute_epsilon.items()), identity)
        result.append(Candidate(index=index, image=stored(f"candidates/{receipt_id}.png"),
                                spend=spend, model_version="diffae-test@1",
                                receipt={"receipt_id": receipt_id}))
    return result


def open_session(state: GatewayState, tenant: str, subject: str, *, eps: float = 1.0,
                 candidates: int = 2, original_key: str | None = None,
                 protect: tuple[str, ...] = ("Male",), identity: float = 0.0):
    """A session with its first round; returns (session, round)."""
    settings = settings_for(protect, eps, identity)
    session = state.sessions.create_session(
        tenant, subject, original=stored(original_key or f"originals/{uuid.uuid4().hex}.png"),
        protect=protect, settings=settings, candidates_per_round=candidates, seed=7,
        actor="tester")
    first = state.sessions.add_round(tenant, session.session_id, settings=settings,
                                     candidates=candidates_for(settings, candidates, "round1"),
                                     actor="tester")
    return session, first
