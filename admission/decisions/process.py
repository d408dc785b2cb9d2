"""Decision recording in a separate, lower-priority process: what ``attest admission serve`` uses.

A :class:`~admission.decisions.recorder.DecisionRecorder` thread in a gunicorn
worker shares that worker's GIL and cores with the request threads: turning a
decision into canonical JSON and writing it costs about half a millisecond of
CPU, and while the writer holds the GIL, requests wait.  :class:`RecorderProcess`
keeps the same interface (``record``, ``status``, ``flush``, ``close``) but
runs the recorder in a child process of the worker that only gets the CPU
the webhook leaves idle (``SCHED_IDLE``; ``nice`` where that is refused).  On the request path a decision is only put on a bounded in-memory
queue; a feeder thread turns it into a dict, pickles it (tens of microseconds)
and writes the bytes to a pipe (holding no GIL while it waits).  The child has its
own hash chain (``<host>-<child pid>``), reports its state through shared
memory for ``/readyz``, counts into the same multiprocess metrics, logs in the
server's format, flushes and signs its head when closed, and, when the worker
dies (end of the pipe), writes what it received, signs its head and exits.  It
ignores SIGINT and SIGTERM: a terminal's Ctrl-C or a service manager signalling
the whole process group (systemd's default) reaches the worker too, and the
worker closes its writer in order; killed outright, it would leave its newest
records unsigned.  Drops are counted
on both sides: a full queue or an unusable decision in the worker, a database
fault in the child.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import types
from typing import Any

from admission.decisions.model import decision_document
from admission.decisions.recorder import (
    DEFAULT_CHECKPOINT_RECORDS,
    DEFAULT_CHECKPOINT_SECONDS,
    RecorderStatus,
)
from admission.decisions.store import resolve_target
from admission.jsonlog import LogFormat, LogLevel
from admission.metrics import metrics

log = logging.getLogger("attest.decisions")

_STOP = b""  # an empty message: write what you have, sign the head, exit
_STATUS_BYTES = 4096
_PUBLISH_SECONDS = 0.2
_NICE = 10
# How long the child may take to write what it holds when told to stop: the worker's own
# close() (and the server's grace period) bound it; the default would drop records sooner.
_FINISH_SECONDS = 60.0


class RecorderProcess:
    """A ``DecisionRecorder`` in a child process, fed through a bounded queue and a pipe."""

    def __init__(
        self,
        target: str | None,
        *,
        signing_key: str | None = None,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        checkpoint_records: int = DEFAULT_CHECKPOINT_RECORDS,
        queue_size: int = 10_000,
        log_level: LogLevel = "info",
        log_format: LogFormat = "json",
    ) -> None:
        self.target = resolve_target(target)
        context = multiprocessing.get_context("spawn")  # never fork a threaded worker
        self._reader, self._writer = context.Pipe(duplex=False)
        self._shared: Any = context.Array(ctypes.c_char, _STATUS_BYTES, lock=True)
        self._process = context.Process(
            target=_child_main,
            args=(
                self.target,
                signing_key,
                (checkpoint_seconds, checkpoint_records),
                self._reader,
                self._shared,
                log_level,
                log_format,
            ),
            name="attest-decision-writer",
            daemon=True,
        )
        self._outbox: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._feeder = threading.Thread(
            target=self._feed, name="attest-decision-feeder", daemon=True
        )
        self._lock = threading.Lock()
        self._sent = 0
        self._dropped = 0
        self._closed = False
        self._alerted = 0.0

    # -- request path --------------------------------------------------------------

    def record(self, decision: Any) -> bool:
        """Queue ``decision`` for the child; False (and counted) when it had to be dropped."""
        if self._closed:
            self._drop("closed", "recorder is closed")
            return False
        try:
            self._outbox.put_nowait(decision)
        except queue.Full:
            self._drop("queue_full", "the decision writer process is not keeping up")
            return False
        return True

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> RecorderProcess:
        # A spawned child normally re-runs the parent's main script first; the writer
        # needs nothing from it (and a script without a __main__ guard would start
        # again), so the child is prepared without one.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self._process.start()
        finally:
            sys.modules["__main__"] = main
        self._reader.close()  # the child's end: when this worker dies, the child sees EOF
        self._feeder.start()
        atexit.register(self.close)
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the child has received and written (or dropped) everything sent so far."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            child = self._child_status()
            if (
                not self._outbox.unfinished_tasks
                and child.get("received", 0) >= self._sent
                and child.get("pending") == 0
            ):
                return True
            if not self._process.is_alive():
                return False
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 8.0) -> None:
        """Stop the child: it writes what it has, signs its chain head and exits."""
        if self._closed:
            return
        self._closed = True
        if self._process.pid is not None:
            _full_priority(self._process.pid)  # a starved idle writer could not finish in time
        if self._feeder.is_alive():
            with contextlib.suppress(queue.Full):
                self._outbox.put(_STOP, timeout=timeout / 2)
            self._feeder.join(timeout / 2)
        if self._process.pid is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                log.warning("decision writer process did not stop in %.0fs; killed", timeout)
                self._process.kill()  # it ignores SIGTERM
                self._process.join(2)
        self._writer.close()

    def status(self) -> RecorderStatus:
        child = self._child_status()
        state = child.get("state", "starting")
        last_error = child.get("lastError")
        if self._closed:
            state = "closed"
        elif self._process.pid is not None and not self._process.is_alive():
            state = "degraded"
            last_error = f"decision writer process exited (code {self._process.exitcode})"
        with self._lock:
            sent, dropped = self._sent, self._dropped
        return RecorderStatus(
            state=state,
            database=child.get("database") or self.target,
            replica=child.get("replica") or "",
            written=int(child.get("written") or 0),
            dropped=int(child.get("dropped") or 0) + dropped,
            queued=self._outbox.qsize()
            + max(0, sent - int(child.get("received") or 0))
            + int(child.get("pending") or 0),
            head_seq=child.get("headSeq"),
            last_error=last_error,
        )

    # -- internals ----------------------------------------------------------------------

    def _feed(self) -> None:
        """Pickle queued decisions into the pipe (blocking there releases the GIL)."""
        while True:
            item = self._outbox.get()
            stop = isinstance(item, bytes) and item == _STOP
            try:
                message = _STOP if stop else _message(item)
                self._writer.send_bytes(message)
                if not stop:
                    with self._lock:
                        self._sent += 1
            except (OSError, ValueError):  # the child is gone: nothing more can be written
                if not stop:
                    self._drop("writer_gone", "the decision writer process has exited")
            except Exception as err:  # not a decision that can be recorded
                self._drop("invalid", f"unusable decision: {type(err).__name__}: {err}")
            finally:
                self._outbox.task_done()
            if stop:
                return

    def _child_status(self) -> dict[str, Any]:
        with self._shared.get_lock():
            raw = self._shared.value
        if not raw:
            return {}
        try:
            status = json.loads(raw)
        except ValueError:
            return {}
        return status if isinstance(status, dict) else {}

    def _drop(self, reason: str, detail: str) -> None:
        metrics().records_dropped.labels(reason=reason).inc()
        with self._lock:
            self._dropped += 1
            dropped = self._dropped
            now = time.monotonic()
            alert = now - self._alerted >= 30.0
            if alert:
                self._alerted = now
        if alert:
            log.error(
                "ALERT decision records dropped (%s: %s); %d dropped in this worker",
                reason,
                detail,
                dropped,
                extra={"event": "decision_records_dropped", "reason": reason, "dropped": dropped},
            )


def _message(decision: Any) -> bytes:
    try:
        return pickle.dumps(decision_document(decision), protocol=pickle.HIGHEST_PROTOCOL)
    except (OSError, ValueError) as err:  # keep "the child is gone" for the pipe itself
        raise TypeError(str(err)) from None


def _publish(shared: Any, recorder: Any, received: int) -> None:
    document = recorder.status().to_dict()
    document["received"] = received
    document["pending"] = recorder.pending()
    data = json.dumps(document, separators=(",", ":")).encode()[: _STATUS_BYTES - 1]
    with shared.get_lock():
        shared.value = data


def _yield_cpu() -> None:
    """Run only on CPU time the webhook leaves idle (Linux SCHED_IDLE), else at nice 10.

    Under sustained saturation recording then falls behind (and, past the queue,
    drops records, counted and alerted) instead of slowing admissions down.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(_NICE)


def _full_priority(pid: int) -> None:
    """Give every thread of the writer ``pid`` (0: this process) normal CPU priority again.

    Under sustained load an idle-priority writer gets almost no CPU; when it must
    finish (write what it holds, sign its head) within the shutdown grace period,
    it competes like any process.  Scheduling policies are per thread on Linux, and
    the writing is done by the recorder's thread, so each thread is switched.  (A
    writer that could only be reniced stays so.)
    """
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid or os.getpid()}/task")]
    except OSError:
        threads = [pid]
    for thread in threads:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(thread, os.SCHED_OTHER, os.sched_param(0))


def _child_main(
    target: str,
    signing_key: str | None,
    schedule: tuple[float, int],
    inbox: Any,
    shared: Any,
    log_level: LogLevel,
    log_format: LogFormat,
) -> None:
    """The child: a niced process running a ``DecisionRecorder`` until told to stop."""
    import logging.config

    from admission.decisions.chain import load_head_signer
    from admission.decisions.recorder import DecisionRecorder
    from admission.jsonlog import logging_config

    for number in (signal.SIGINT, signal.SIGTERM):  # the worker decides when to stop
        signal.signal(number, signal.SIG_IGN)
    _yield_cpu()
    logging.config.dictConfig(logging_config(log_level, log_format))
    signer = load_head_signer(signing_key) if signing_key else None
    seconds, records = schedule
    recorder = DecisionRecorder(
        target, signer=signer, checkpoint_seconds=seconds, checkpoint_every=records
    ).start()
    received = 0
    published = 0.0
    try:
        while True:
            message = None
            if inbox.poll(_PUBLISH_SECONDS):
                try:
                    message = inbox.recv_bytes()
                except EOFError:  # the worker is gone; everything it sent has been read
                    log.warning("decision writer: the worker is gone; writing what it sent")
                    break
                if message == _STOP:
                    break
                recorder.record(pickle.loads(message))
                received += 1
            now = time.monotonic()
            if message is None or now - published >= _PUBLISH_SECONDS:
                _publish(shared, recorder, received)
                published = now
    finally:
        _full_priority(0)  # finish promptly (when the worker died without promoting it)
        recorder.close(timeout=_FINISH_SECONDS)
        _publish(shared, recorder, received)
