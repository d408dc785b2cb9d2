"""The ``exceptions:`` section of the admission configuration: trusted signers and a directory.

::

    exceptions:
      directory: exceptions/        # or a mounted ConfigMap; relative to this file
      signers:                      # the same authority syntax as image policies
        - name: appsec
          key: {path: appsec.pub}

Every regular, non-hidden file of the directory is read as one exception when the
configuration loads, and the directory and each file are watched with the rest of
it (:class:`admission.watcher.ConfigWatcher`): adding, editing or deleting an
exception reloads the configuration.  A file that is not a trusted exception does
not fail the load: it is kept with the reason, so decisions can report it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from admission.errors import ConfigError
from admission.exceptions.document import LoadedException, read_exception
from admission.fields import Reader, parse_authority, resolve_path
from attest.signing.authority import Authority

MAX_EXCEPTION_FILES = 1000


@dataclass(frozen=True)
class ExceptionSet:
    """The exceptions in force for one configuration (trusted or not) and their signers."""

    directory: str = ""
    signers: tuple[Authority, ...] = ()
    exceptions: tuple[LoadedException, ...] = ()

    def signer_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.signers)


def exception_files(directory: str) -> list[str]:
    """The exception files of ``directory`` in name order: regular files (symlinks followed,
    as a ConfigMap volume lays them out), hidden ones (``..data``) skipped."""
    names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    return [os.path.join(directory, n) for n in names if os.path.isfile(os.path.join(directory, n))]


def load_exceptions(directory: str, signers: tuple[Authority, ...]) -> ExceptionSet:
    """Read and check every exception file of ``directory`` (ConfigError if it is unreadable)."""
    try:
        files = exception_files(directory)
    except OSError as err:
        raise ConfigError(f"exceptions.directory {directory}: {err.strerror}") from None
    if len(files) > MAX_EXCEPTION_FILES:
        raise ConfigError(
            f"exceptions.directory {directory}: more than {MAX_EXCEPTION_FILES} files"
        )
    loaded = []
    for name in files:
        try:
            with open(name, "rb") as handle:
                raw = handle.read(2 * 1024 * 1024)
        except OSError as err:
            loaded.append(LoadedException(name, None, problem=f"unreadable: {err.strerror}"))
            continue
        loaded.append(read_exception(raw, name, signers))
    return ExceptionSet(directory, signers, tuple(loaded))


def parse_exceptions(data: Any, base: Path, files: list[str]) -> ExceptionSet | None:
    """The validated ``exceptions`` section (None when absent); watched paths go to ``files``."""
    if data is None:
        return None
    reader = Reader(data, "exceptions", {"directory", "signers"})
    directory = reader.get("directory", str)
    if not directory:
        raise ConfigError("exceptions.directory is missing")
    raw_signers = reader.get("signers", list, [])
    if not raw_signers:
        raise ConfigError("exceptions.signers must list at least one trusted signer")
    signers = tuple(
        parse_authority(s, f"exceptions.signers[{i}]", base, files)
        for i, s in enumerate(raw_signers)
    )
    names = [s.name for s in signers]
    if len(set(names)) != len(names):
        raise ConfigError("exceptions.signers: a name is used twice")
    resolved = resolve_path(base, directory)
    if not Path(resolved).is_dir():
        raise ConfigError(f"exceptions.directory {resolved}: no such directory")
    loaded = load_exceptions(resolved, signers)
    files.append(resolved)  # a file added or removed changes the directory
    files.extend(e.source for e in loaded.exceptions)
    return loaded


EXPIRING_SOON = dt.timedelta(days=1)


def status(loaded: LoadedException, now: dt.datetime, soon: dt.timedelta = EXPIRING_SOON) -> str:
    """``rejected`` (not trusted), ``expired``, ``expiring`` (within ``soon``) or ``in-force``."""
    if not loaded.trusted or loaded.document is None:
        return "rejected"
    if now >= loaded.document.expires_at:
        return "expired"
    return "expiring" if loaded.document.expires_at - now <= soon else "in-force"


def describe(exceptions: ExceptionSet, now: dt.datetime) -> list[dict[str, Any]]:
    """Every exception file as plain data, with its status (``attest exception list``, the
    AppSec overview)."""
    rows = []
    for loaded in exceptions.exceptions:
        document = loaded.document
        rows.append(
            {
                "id": document.id if document else None,
                "status": status(loaded, now),
                "namespace": document.namespace if document else None,
                "image": document.image.text() if document else None,
                "expires": document.expires if document else None,
                "ticket": document.ticket if document else None,
                "reason": document.reason if document else None,
                "covers": list(document.covers) if document else [],
                "signer": loaded.signer or None,
                "problem": loaded.problem,
                "file": loaded.source,
            }
        )
    return rows
