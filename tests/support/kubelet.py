"""A ConfigMap or Secret volume laid out exactly as the kubelet does it.

The kubelet's ``AtomicWriter`` (kubernetes ``pkg/volume/util/atomic_writer.go``)
writes each version of the data into a new hidden directory
``..<UTC timestamp>.<random>/``, points the ``..data`` symlink at it by creating
``..data_tmp`` and renaming it over ``..data`` (the one atomic step), and makes each
key visible as ``<key> -> ..data/<key>``; then it removes keys no longer present
and the previous timestamped directory.  :meth:`Volume.write` does those steps in
that order; :meth:`Volume.stage` and :meth:`Staged.swap` split them so that a test
can swap while a reader is half-way through.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DATA = "..data"


@dataclass
class Staged:
    """A new version written into its timestamped directory, not yet visible."""

    volume: Volume
    directory: Path
    keys: tuple[str, ...]

    def swap(self) -> None:
        """Make it the visible version: symlinks for new keys, the atomic ``..data`` rename,
        then the old keys and the old directory removed (in the kubelet's order)."""
        root = self.volume.root
        old = os.readlink(root / DATA) if (root / DATA).is_symlink() else None
        for key in self.keys:
            link = root / key
            if not link.is_symlink():
                link.symlink_to(f"{DATA}/{key}")
        temporary = root / "..data_tmp"
        temporary.symlink_to(self.directory.name)
        os.rename(temporary, root / DATA)
        for entry in root.iterdir():
            if (
                entry.is_symlink()
                and not entry.name.startswith("..")
                and entry.name not in self.keys
            ):
                entry.unlink()
        if old is not None and old != self.directory.name:
            shutil.rmtree(root / old)


@dataclass
class Volume:
    """The mount point of one ConfigMap or Secret volume."""

    root: Path

    def stage(self, data: dict[str, bytes | str]) -> Staged:
        """Write ``data`` (key → content) into a new hidden timestamped directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
        directory = Path(tempfile.mkdtemp(prefix=stamp, dir=self.root))
        os.chmod(directory, 0o755)
        for key, content in data.items():
            path = directory / key
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            os.chmod(path, 0o644)
        return Staged(self, directory, tuple(sorted(data)))

    def write(self, data: dict[str, bytes | str]) -> None:
        """Publish a new version of the whole volume, atomically, as the kubelet does."""
        self.stage(data).swap()

    def hidden(self) -> list[str]:
        return sorted(e.name for e in self.root.iterdir() if e.name.startswith(".."))
