"""The decision database: SQLite (WAL mode) or PostgreSQL, one schema, through SQLAlchemy Core.

``--db`` / ``ATTEST_DB`` is either a path to an SQLite file (the embedded
default, for one replica) or a ``postgresql://`` URL (for several replicas;
each writes its own hash chain).  ``append`` writes a batch of decisions as the
next links of a replica's chain, in one transaction, optionally with a signed
checkpoint of the new head; if another writer got there first it re-reads the
head and retries.  Reading and filtering is in ``query``, chain checks in
``verify``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from admission.decisions import DB_VARIABLE
from admission.decisions.chain import ChainHead, Checkpoint, HeadSigner, record_hash
from admission.decisions.model import RecordFields, canonical_bytes, record_fields
from admission.errors import DecisionStoreError
from attest.errors import UsageError

SCHEMA_VERSION = "1"
_APPEND_ATTEMPTS = 3

metadata = sa.MetaData()
_id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

decisions_table = sa.Table(
    "attest_decisions",
    metadata,
    sa.Column("id", _id_type, primary_key=True, autoincrement=True),
    sa.Column("replica", sa.String(200), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("uid", sa.String(128), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(128), nullable=False),
    sa.Column("namespace", sa.String(253), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("bundle_hash", sa.String(128), nullable=False),
    sa.Column("trust_fingerprint", sa.String(128), nullable=False),
    sa.Column("engine", sa.String(32), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("replica", "seq", name="attest_decisions_chain"),
    sa.Index("attest_decisions_time", "time"),
    sa.Index("attest_decisions_namespace_time", "namespace", "time"),
    sa.Index("attest_decisions_result_time", "result", "time"),
    sa.Index("attest_decisions_uid", "uid"),
)

images_table = sa.Table(
    "attest_decision_images",
    metadata,
    sa.Column("replica", sa.String(200), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("reference", sa.Text, nullable=False),
    sa.Column("digest", sa.String(200), nullable=True),
    sa.Column("policy", sa.String(253), nullable=True),
    sa.Index("attest_decision_images_digest", "digest"),
    sa.Index("attest_decision_images_policy", "policy"),
)

checkpoints_table = sa.Table(
    "attest_decision_checkpoints",
    metadata,
    sa.Column("id", _id_type, primary_key=True, autoincrement=True),
    sa.Column("replica", sa.String(200), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("signed_at", sa.String(32), nullable=False),
    sa.Column("key_id", sa.String(128), nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Index("attest_decision_checkpoints_replica", "replica", "seq"),
)

meta_table = sa.Table(
    "attest_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


_IMAGE_COLUMNS = ("replica", "seq", "position", "reference", "digest", "policy")


@dataclass(frozen=True)
class PreparedRecord:
    """A decision ready to be chained: its canonical bytes and derived columns."""

    canonical: bytes
    fields: RecordFields


def prepare(document: dict[str, Any]) -> PreparedRecord:
    """Canonicalise a decision document and derive its columns (raises on unusable input)."""
    return PreparedRecord(canonical_bytes(document), record_fields(document))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()


def resolve_target(target: str | None) -> str:
    """``--db`` if given, else ``$ATTEST_DB``; a one-line error when neither is set."""
    value = target or os.environ.get(DB_VARIABLE, "")
    if not value.strip():
        raise UsageError(
            f"no decision database: pass --db PATH|postgresql://… or set {DB_VARIABLE}"
        )
    return value.strip()


class DecisionDatabase:
    """An open decision database (engine plus schema management)."""

    def __init__(self, target: str, *, create: bool = True) -> None:
        self.target = target
        self.is_postgres = target.startswith(("postgresql:", "postgres:", "postgresql+"))
        self._schema_ready = threading.Event()  # set once the tables are known to exist
        self._schema_lock = threading.Lock()
        self._insert_statements: dict[tuple[str, tuple[str, ...]], str] = {}
        if self.is_postgres:
            self.engine, self.display = self._postgres_engine(target)
        else:
            self.engine, self.display = self._sqlite_engine(target, create)

    @staticmethod
    def _postgres_engine(target: str) -> tuple[Engine, str]:
        try:
            url = sa.engine.make_url(target)
        except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
            raise UsageError(f"decision database URL {target!r} is not a valid URL") from None
        url = url.set(drivername="postgresql+psycopg")
        display = url.render_as_string(hide_password=True)
        engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=2,
            pool_timeout=5,
            connect_args={"connect_timeout": 5, "options": "-c statement_timeout=15000"},
        )
        return engine, display

    @staticmethod
    def _sqlite_engine(target: str, create: bool) -> tuple[Engine, str]:
        path = Path(target.removeprefix("sqlite:///")).expanduser()
        if not create and not path.is_file():
            raise DecisionStoreError(f"decision database {path}: no such file")
        if create and not path.parent.is_dir():
            raise DecisionStoreError(f"decision database {path}: directory {path.parent} missing")
        engine = sa.create_engine(
            f"sqlite:///{path}", connect_args={"timeout": 5, "check_same_thread": False}
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine, str(path)

    def fail(self, action: str, err: Exception) -> DecisionStoreError:
        """A one-line error naming this database, what was being done and why it failed."""
        detail = getattr(err, "orig", None) or err
        text = " ".join(str(detail).split())[:300]
        return DecisionStoreError(f"decision database {self.display}: {action}: {text}")

    def ensure_schema(self) -> None:
        """Create the tables if missing (idempotent, safe with concurrent replicas)."""
        if self._schema_ready.is_set():
            return
        with self._schema_lock:
            if self._schema_ready.is_set():
                return
            for attempt in range(3):
                try:
                    with self.engine.begin() as conn:
                        for table in metadata.sorted_tables:
                            conn.execute(CreateTable(table, if_not_exists=True))
                            for index in table.indexes:
                                conn.execute(CreateIndex(index, if_not_exists=True))
                        self._check_version(conn)
                    break
                except IntegrityError:
                    continue  # another replica inserted the schema version at the same moment
                except SQLAlchemyError as err:
                    if attempt == 2:  # a concurrent CREATE can still collide: retry, then fail
                        raise self.fail("creating the schema", err) from None
                    time.sleep(0.05 * (attempt + 1))
            self._schema_ready.set()

    def _check_version(self, conn: Connection) -> None:
        found = conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar()
        if found is None:
            conn.execute(sa.insert(meta_table).values(key="schema_version", value=SCHEMA_VERSION))
        elif found != SCHEMA_VERSION:
            raise DecisionStoreError(
                f"decision database {self.display}: schema version {found}, "
                f"this attest needs {SCHEMA_VERSION}"
            )

    def require_schema(self) -> None:
        """For readers: fail with one line unless the decision tables exist."""
        try:
            present = sa.inspect(self.engine).has_table(decisions_table.name)
        except SQLAlchemyError as err:
            raise self.fail("connecting", err) from None
        if not present:
            raise DecisionStoreError(f"decision database {self.display}: no decision records yet")
        self._schema_ready.set()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads; database errors become one-line ``DecisionStoreError``."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise self.fail("reading", err) from None

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ----------------------------------------------------------------------

    def heartbeat(self, replica: str) -> ChainHead:
        """A real write (this replica's heartbeat row) proving the database takes writes.

        Returns the replica's chain head as stored.
        """
        self.ensure_schema()
        key = f"heartbeat:{replica}"[:64]
        now = f"{time.time():.3f}"
        try:
            with self.engine.begin() as conn:
                updated = conn.execute(
                    sa.update(meta_table).where(meta_table.c.key == key).values(value=now)
                ).rowcount
                if not updated:
                    conn.execute(sa.insert(meta_table).values(key=key, value=now))
                return self.head(conn, replica)
        except SQLAlchemyError as err:
            raise self.fail("writing a heartbeat", err) from None

    def head(self, conn: Connection, replica: str) -> ChainHead:
        """The current head of ``replica``'s chain as stored."""
        row = conn.execute(
            sa.select(decisions_table.c.seq, decisions_table.c.hash)
            .where(decisions_table.c.replica == replica)
            .order_by(decisions_table.c.seq.desc())
            .limit(1)
        ).first()
        return ChainHead(replica, row.seq, row.hash) if row else ChainHead(replica)

    def append(
        self,
        replica: str,
        records: Sequence[PreparedRecord],
        *,
        head: ChainHead | None = None,
        signer: HeadSigner | None = None,
        on_signed: Callable[[Checkpoint], None] | None = None,
    ) -> ChainHead:
        """Write ``records`` as the next links of ``replica``'s chain; return the new head.

        ``head`` is the writer's idea of the current head (read from the database
        when ``None`` or when another writer moved it).  With ``signer`` a
        checkpoint of the new head is written in the same transaction, and handed
        to ``on_signed`` once committed.
        """
        self.ensure_schema()
        last_error: Exception | None = None
        for _attempt in range(_APPEND_ATTEMPTS):
            try:
                checkpoint = None
                with self.engine.begin() as conn:
                    start = head if head is not None else self.head(conn, replica)
                    new_head = self._insert(conn, start, records)
                    if signer is not None and records:
                        checkpoint = signer.sign(new_head)
                        insert_checkpoint(conn, checkpoint)
                if checkpoint is not None and on_signed is not None:
                    on_signed(checkpoint)
                return new_head
            except IntegrityError as err:  # someone else extended this replica's chain
                last_error, head = err, None
            except SQLAlchemyError as err:
                raise self.fail("writing decisions", err) from None
        raise self.fail("writing decisions", last_error or RuntimeError("conflict"))

    def _insert(
        self, conn: Connection, head: ChainHead, records: Sequence[PreparedRecord]
    ) -> ChainHead:
        rows: list[tuple[Any, ...]] = []
        image_rows: list[tuple[Any, ...]] = []
        seq, prev, replica = head.seq, head.hash, head.replica
        for record in records:
            seq += 1
            digest = record_hash(replica, seq, prev, record.canonical)
            fields = record.fields
            columns = fields.columns()
            rows.append(
                (
                    replica,
                    seq,
                    *columns.values(),
                    record.canonical.decode(),
                    prev,
                    digest,
                )
            )
            image_rows.extend(
                (replica, seq, image.position, image.reference, image.digest, image.policy)
                for image in fields.images
            )
            prev = digest
        if rows:
            names = ("replica", "seq", *columns, "document", "prev_hash", "hash")
            conn.exec_driver_sql(self._insert_sql(decisions_table, names), rows)
        if image_rows:
            conn.exec_driver_sql(self._insert_sql(images_table, _IMAGE_COLUMNS), image_rows)
        return ChainHead(head.replica, seq, prev)

    def _insert_sql(self, table: sa.Table, columns: tuple[str, ...]) -> str:
        """A plain positional INSERT for the driver's ``executemany`` (tuples, no per-row
        SQLAlchemy processing: the writer's largest cost after the JSON itself)."""
        key = (table.name, columns)
        sql = self._insert_statements.get(key)
        if sql is None:
            quote = self.engine.dialect.identifier_preparer.quote
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            sql = (
                f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "
                f"VALUES ({', '.join([mark] * len(columns))})"
            )
            self._insert_statements[key] = sql
        return sql

    def signed_seq(self, replica: str) -> int:
        """The highest head of ``replica`` that a stored checkpoint names (0 when none).

        Only a writer's hint (which inherited records still need a signature); trust
        is ``verify``'s business.
        """
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                found = conn.execute(
                    sa.select(sa.func.max(checkpoints_table.c.seq)).where(
                        checkpoints_table.c.replica == replica
                    )
                ).scalar()
        except SQLAlchemyError as err:
            raise self.fail("reading checkpoints", err) from None
        return int(found or 0)

    def sign_head(self, replica: str, signer: HeadSigner) -> Checkpoint | None:
        """Sign the stored head of ``replica`` now (None when the chain is empty)."""
        self.ensure_schema()
        try:
            with self.engine.begin() as conn:
                head = self.head(conn, replica)
                if head.seq == 0:
                    return None
                checkpoint = signer.sign(head)
                insert_checkpoint(conn, checkpoint)
                return checkpoint
        except SQLAlchemyError as err:
            raise self.fail("signing the chain head", err) from None


def insert_checkpoint(conn: Connection, checkpoint: Checkpoint) -> None:
    conn.execute(
        sa.insert(checkpoints_table).values(
            replica=checkpoint.replica,
            seq=checkpoint.seq,
            hash=checkpoint.hash,
            signed_at=checkpoint.signed_at,
            key_id=checkpoint.key_id,
            signature=checkpoint.signature,
            public_key=checkpoint.public_key,
        )
    )


def open_database(target: str | None, *, create: bool = False) -> DecisionDatabase:
    """Open ``--db``/``$ATTEST_DB``; readers (``create=False``) need existing records."""
    database = DecisionDatabase(resolve_target(target), create=create)
    try:
        if create:
            database.ensure_schema()
        else:
            database.require_schema()
    except BaseException:
        database.close()
        raise
    return database


def record_now(
    target: str | None,
    decisions: Iterable[Any],
    *,
    replica: str,
    signer: HeadSigner | None = None,
) -> ChainHead:
    """Write decisions synchronously (``attest admission review --record``); raises on failure."""
    from admission.decisions.model import decision_document

    prepared = [prepare(decision_document(decision)) for decision in decisions]
    database = open_database(target, create=True)
    try:
        return database.append(replica, prepared, signer=signer)
    finally:
        database.close()
