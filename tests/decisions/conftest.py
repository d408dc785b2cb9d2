"""Fixtures for decision records: a real PostgreSQL server, databases of both kinds, keys."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.postgres import PostgresServer

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


def write_key_pair(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """An ECDSA P-256 key pair as unencrypted PKCS#8 / PKIX PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.key"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_key_pair(tmp_path)
