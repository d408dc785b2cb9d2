"""Fixtures for decision records: a real PostgreSQL server, databases of both kinds, keys."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from admission.testing.samples import write_key_pair
from attest.testing.postgres import PostgresServer

_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (each test gets its own database)."""
    server = PostgresServer().start()
    yield server
    server.stop(remove=True)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty decision database: an SQLite path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "decisions.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"decisions_{next(_names)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "decisions.db")


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    return postgres.create_database(f"decisions_{next(_names)}")


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_key_pair(tmp_path)
