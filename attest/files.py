"""Files replaced atomically: written to a temporary file in the target's directory and renamed
over the target only once complete, so a reader never sees half a file and a failure (an
exception, a bad digest, an interrupt) leaves the old file, if any, and no temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    mode: int | None = None,
    fsync: bool = False,
) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content to; it replaces ``path`` when the block ends.

    ``prefix`` names the temporary file (default ``.<name>.``); ``mode`` sets its permissions
    before the rename (``mkstemp`` creates it 0600); ``fsync`` flushes it to disk first.
    Errors creating the temporary file propagate as :class:`OSError` before the block runs.
    """
    target = Path(path)
    fd, temporary = tempfile.mkstemp(
        prefix=prefix or f".{target.name}.", dir=os.path.dirname(os.path.abspath(target))
    )
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
