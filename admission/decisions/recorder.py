"""Recording decisions without ever slowing or failing an admission response.

``DecisionRecorder.record`` only puts the decision on a bounded in-memory
queue (no I/O, no serialisation, never raises, never waits).  One writer thread
per process drains the queue in batches (while more than ``linger_rate`` records
a second come, at most one transaction per ``linger_seconds``), turns each
decision into canonical JSON (handing the GIL back to other threads between
records), chains it and writes the batch in one transaction, signing the chain
head every ``checkpoint_every`` records or ``checkpoint_seconds`` (whichever
comes first), and once more when closed, so at most that many of the newest
records are ever unprotected by a signature.  Each checkpoint is also logged
(``event: decision_chain_checkpoint``), so a copy of every signed head lives
outside the database.  When the queue is full or the database is unavailable or full, records are dropped and counted,
an ``ALERT`` line is logged (at most every ``alert_interval`` seconds per
cause) and ``status()`` reports ``degraded`` until a write succeeds again.  An
SQLite database that cannot be opened yet (its directory missing) is the same
fault: the recorder starts degraded and keeps trying; only an unusable target
(no ``--db``, a malformed URL) is an error at construction.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from admission.decisions.chain import (
    ChainHead,
    Checkpoint,
    HeadSigner,
    check_replica,
    default_replica,
)
from admission.decisions.model import decision_document
from admission.decisions.store import DecisionDatabase, PreparedRecord, prepare, resolve_target
from admission.errors import DecisionStoreError
from admission.metrics import metrics
from attest.errors import AttestError

log = logging.getLogger("attest.decisions")

_STOP = object()
CHECKPOINT_EVENT = "decision_chain_checkpoint"
DEFAULT_CHECKPOINT_SECONDS = 10.0
DEFAULT_CHECKPOINT_RECORDS = 1000
# While records come faster than DEFAULT_LINGER_RATE a second, at most one transaction per
# DEFAULT_LINGER_SECONDS: a commit costs as much as a few records, and a batch of 20 costs
# about a third per record of one at a time.  Slower, each record is written at once.
DEFAULT_LINGER_SECONDS = 0.25
DEFAULT_LINGER_RATE = 40.0


@dataclass(frozen=True)
class RecorderStatus:
    """What ``/readyz`` and ``/metrics`` report about decision recording."""

    state: str  # "ok" | "degraded" | "starting" | "closed"
    database: str
    replica: str
    written: int
    dropped: int
    queued: int
    head_seq: int | None
    last_error: str | None

    @property
    def healthy(self) -> bool:
        return self.state in ("ok", "starting")

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "database": self.database,
            "replica": self.replica,
            "written": self.written,
            "dropped": self.dropped,
            "queued": self.queued,
            "headSeq": self.head_seq,
            "lastError": self.last_error,
        }


class DecisionRecorder:
    """A bounded queue plus one writer thread in front of a ``DecisionDatabase``."""

    def __init__(
        self,
        target: str | None,
        *,
        replica: str | None = None,
        signer: HeadSigner | None = None,
        queue_size: int = 10_000,
        batch_size: int = 256,
        checkpoint_every: int = DEFAULT_CHECKPOINT_RECORDS,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        retry_seconds: float = 2.0,
        alert_interval: float = 30.0,
        linger_seconds: float = DEFAULT_LINGER_SECONDS,
        linger_rate: float = DEFAULT_LINGER_RATE,
    ) -> None:
        self.target = resolve_target(target)
        self.database: DecisionDatabase | None = None
        try:
            self.database = DecisionDatabase(self.target, create=True)
        except DecisionStoreError:  # e.g. the SQLite directory is missing: degraded, retried
            self.database = None
        self.replica = check_replica(replica) if replica else default_replica()
        self.signer = signer
        self.batch_size = batch_size
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.retry_seconds = retry_seconds
        self.alert_interval = alert_interval
        self.linger_seconds = linger_seconds
        self.linger_rate = linger_rate
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._written = 0
        self._dropped = 0
        self._state = "starting"
        self._last_error: str | None = None
        self._head: ChainHead | None = None
        self._unsigned = 0
        self._last_checkpoint = time.monotonic()
        self._last_attempt = 0.0
        self._last_batch = 0.0
        self._last_count = 0
        self._alerted: dict[str, tuple[float, int]] = {}
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="attest-decision-writer", daemon=True
        )

    # -- request path ------------------------------------------------------------------

    def record(self, decision: Any) -> bool:
        """Queue ``decision`` for writing; False (and counted) when it had to be dropped."""
        if self._closed:
            self._drop("closed", 1, "recorder is closed")
            return False
        try:
            self._queue.put_nowait(decision)
        except queue.Full:
            self._drop("queue_full", 1, f"queue full ({self._queue.maxsize} waiting)")
            return False
        return True

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> DecisionRecorder:
        """Start the writer thread (call in each worker process, after fork)."""
        self._thread.start()
        atexit.register(self.close)
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written or dropped; False on timeout."""
        end = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.002)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (within ``timeout``), sign the final head, stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)
        database = self.database
        if (
            database is not None
            and self.signer is not None
            and self._unsigned
            and self._state == "ok"
        ):
            try:
                self._signed(database.sign_head(self.replica, self.signer))
            except AttestError as err:
                log.warning("decision chain head not signed at shutdown: %s", err)
        if database is not None:
            database.close()
        with self._lock:
            self._state = "closed"

    def pending(self) -> int:
        """Decisions queued or being written right now."""
        return self._queue.unfinished_tasks

    def status(self) -> RecorderStatus:
        with self._lock:
            return RecorderStatus(
                state=self._state,
                database=self.database.display if self.database else self.target,
                replica=self.replica,
                written=self._written,
                dropped=self._dropped,
                queued=self._queue.qsize(),
                head_seq=self._head.seq if self._head else None,
                last_error=self._last_error,
            )

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        self._probe()
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, min(1.0, self.retry_seconds)))
            except queue.Empty:
                self._idle()
                continue
            now = time.monotonic()
            busy = self._last_count >= self.linger_rate * (now - self._last_batch)
            wait = self._last_batch + self.linger_seconds - now
            if (
                item is not _STOP
                and busy
                and wait > 0
                and self._queue.qsize() < self.batch_size - 1
            ):
                time.sleep(wait)  # gather a batch: fewer, cheaper transactions
            self._last_batch = time.monotonic()
            batch = [item]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._last_count = len(batch)
            stop = any(entry is _STOP for entry in batch)
            decisions = [entry for entry in batch if entry is not _STOP]
            try:
                if decisions:
                    self._write(decisions)
            except Exception as err:  # never let the writer thread die
                log.exception("decision writer failed unexpectedly")
                self._drop("internal", len(decisions), f"{type(err).__name__}: {err}")
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _probe(self) -> None:
        """Check the database takes writes (creating the schema) to report the state early."""
        self._last_attempt = time.monotonic()
        try:
            database = self._opened()
            head = database.heartbeat(self.replica)
            # records a previous process of this replica left unsigned (it crashed, or
            # was killed): sign them with the next checkpoint
            inherited = head.seq - database.signed_seq(self.replica) if self.signer else 0
        except Exception as err:
            self._fail(err)
            return
        self._unsigned = max(self._unsigned, inherited)
        with self._lock:
            self._head = head
            self._state = "ok"
            self._last_error = None

    def _idle(self) -> None:
        now = time.monotonic()
        if self._state != "ok":
            if now - self._last_attempt >= self.retry_seconds:
                self._probe()
            return
        if (
            self.signer
            and self._unsigned
            and now - self._last_checkpoint >= self.checkpoint_seconds
        ):
            try:
                self._signed(self._opened().sign_head(self.replica, self.signer))
                self._unsigned, self._last_checkpoint = 0, now
            except AttestError as err:
                self._fail(err)

    def _prepare(self, decisions: list[Any]) -> list[PreparedRecord]:
        prepared = []
        for decision in decisions:
            try:
                prepared.append(prepare(decision_document(decision)))
            except Exception as err:
                self._drop("invalid", 1, f"unusable decision: {type(err).__name__}: {err}")
            time.sleep(0)  # hand the GIL to waiting request threads between records
        return prepared

    def _write(self, decisions: list[Any]) -> None:
        records = self._prepare(decisions)
        if not records:
            return
        if self._state != "ok" and time.monotonic() - self._last_attempt < self.retry_seconds:
            self._drop("database", len(records), self._last_error or "database unavailable")
            return
        due = self.signer is not None and (
            self._unsigned + len(records) >= self.checkpoint_every
            or time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        )
        self._last_attempt = time.monotonic()
        try:
            head = self._opened().append(
                self.replica,
                records,
                head=self._head,
                signer=self.signer if due else None,
                on_signed=self._signed,
            )
        except Exception as err:
            self._fail(err)
            self._drop("database", len(records), self._last_error or str(err))
            return
        metrics().records_written.inc(len(records))
        with self._lock:
            self._head = head
            self._written += len(records)
            self._state = "ok"
            self._last_error = None
        if due:
            self._unsigned, self._last_checkpoint = 0, time.monotonic()
        else:
            self._unsigned += len(records)

    def _signed(self, checkpoint: Checkpoint | None) -> None:
        """Log a committed checkpoint in full: a copy of the signed head outside the database."""
        if checkpoint is None:
            return
        metrics().checkpoints.inc()
        log.info(
            "decision chain head signed: replica %s up to #%d",
            checkpoint.replica,
            checkpoint.seq,
            extra={
                "event": CHECKPOINT_EVENT,
                "fields": {
                    "replica": checkpoint.replica,
                    "seq": checkpoint.seq,
                    "hash": checkpoint.hash,
                    "signedAt": checkpoint.signed_at,
                    "keyId": checkpoint.key_id,
                    "signature": checkpoint.signature,
                },
            },
        )

    def _opened(self) -> DecisionDatabase:
        """The database, opening it now if that failed before (raises while it still fails)."""
        if self.database is None:
            self.database = DecisionDatabase(self.target, create=True)
        return self.database

    def _fail(self, err: Exception) -> None:
        message = str(err) if isinstance(err, AttestError) else f"{type(err).__name__}: {err}"
        with self._lock:
            self._state = "degraded"
            self._last_error = " ".join(message.split())[:500]
            self._head = None  # unknown after a failed write: re-read before the next one

    def _drop(self, reason: str, count: int, detail: str) -> None:
        metrics().records_dropped.labels(reason=reason).inc(count)
        with self._lock:
            self._dropped += count
            total = self._dropped
            last, pending = self._alerted.get(reason, (0.0, 0))
            now = time.monotonic()
            pending += count
            emit = last == 0.0 or now - last >= self.alert_interval
            self._alerted[reason] = (now, 0) if emit else (last, pending)
        if emit:
            log.error(
                "ALERT decision records dropped: %d (%s: %s); %d dropped in total by replica %s",
                pending,
                reason,
                detail,
                total,
                self.replica,
                extra={"event": "decision_records_dropped", "reason": reason, "dropped": total},
            )
