"""Build real OCI images without a container engine: layers from file specs or directories.

Used by the demo, the test suite and the benchmarks.  Layers are written as
reproducible tars (fixed mtimes and owners, gzip without a timestamp) streamed
to temporary files, so a multi-gigabyte root filesystem never sits in memory.
Whiteouts (``.wh.NAME``) and opaque directories (``.wh..wh..opq``) are written
exactly as the OCI image spec describes them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from attest.oci import mediatypes as mt
from attest.oci.manifest import Descriptor, Index, Manifest, Platform
from attest.oci.store import ImageStore
from attest.oci.whiteout import OPAQUE_MARKER, WHITEOUT_PREFIX

EntryKind = Literal["file", "dir", "symlink", "hardlink", "disk"]


@dataclass
class _Entry:
    path: str
    kind: EntryKind
    content: bytes = b""
    mode: int = 0o644
    target: str = ""
    source: Path | None = None


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _HashingWriter(io.RawIOBase):
    """Write-through wrapper that hashes and counts what passes."""

    def __init__(self, out: _Sink) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._out.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def _clean(path: str) -> str:
    return path.strip("/")


class LayerBuilder:
    """Collects filesystem changes for one layer, then writes them as a tar."""

    def __init__(self, *, mtime: int | None = None) -> None:
        self.entries: list[_Entry] = []
        self.mtime = (
            mtime if mtime is not None else int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
        )

    def file(self, path: str, content: bytes | str, mode: int = 0o644) -> LayerBuilder:
        data = content.encode() if isinstance(content, str) else content
        self.entries.append(_Entry(_clean(path), "file", data, mode))
        return self

    def dir(self, path: str, mode: int = 0o755) -> LayerBuilder:
        self.entries.append(_Entry(_clean(path), "dir", mode=mode))
        return self

    def symlink(self, path: str, target: str) -> LayerBuilder:
        self.entries.append(_Entry(_clean(path), "symlink", mode=0o777, target=target))
        return self

    def hardlink(self, path: str, target: str) -> LayerBuilder:
        self.entries.append(_Entry(_clean(path), "hardlink", target=_clean(target)))
        return self

    def whiteout(self, path: str) -> LayerBuilder:
        """Delete ``path`` (file or directory) that a lower layer created."""
        parent, _, name = _clean(path).rpartition("/")
        marker = f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else f"{WHITEOUT_PREFIX}{name}"
        self.entries.append(_Entry(marker, "file", b"", 0o644))
        return self

    def opaque(self, directory: str) -> LayerBuilder:
        """Hide everything lower layers put in ``directory``."""
        self.entries.append(_Entry(f"{_clean(directory)}/{OPAQUE_MARKER}", "file", b"", 0o644))
        return self

    def tree(self, root: str | Path, prefix: str = "") -> LayerBuilder:
        """Add a directory on disk recursively (contents streamed when the layer is written)."""
        root = Path(root)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            base = Path(dirpath)
            relative_dir = base.relative_to(root).as_posix()
            for name in sorted(dirnames) + sorted(filenames):
                full = base / name
                relative = name if relative_dir == "." else f"{relative_dir}/{name}"
                self.entries.append(_Entry(_clean(f"{prefix}/{relative}"), "disk", source=full))
        return self

    def write(self, out: IO[bytes], *, compress: bool = True) -> tuple[str, str, int]:
        """Write the layer to ``out``; returns (diffID, digest, size)."""
        outer = _HashingWriter(out)
        compressor: gzip.GzipFile | None = None
        if compress:
            compressor = gzip.GzipFile(fileobj=outer, mode="wb", mtime=0, compresslevel=6)
            inner = _HashingWriter(compressor)
        else:
            inner = outer
        seen_inodes: dict[tuple[int, int], str] = {}
        with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in self.entries:
                self._add(tar, entry, seen_inodes)
        if compressor is not None:
            compressor.close()
        diff_id = "sha256:" + inner.hash.hexdigest()
        digest = "sha256:" + outer.hash.hexdigest()
        return diff_id, digest, outer.size

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def _add(self, tar: tarfile.TarFile, entry: _Entry, seen: dict[tuple[int, int], str]) -> None:
        if entry.kind == "file":
            info = self._info(entry.path, tarfile.REGTYPE, entry.mode)
            info.size = len(entry.content)
            tar.addfile(info, io.BytesIO(entry.content))
        elif entry.kind == "dir":
            tar.addfile(self._info(entry.path, tarfile.DIRTYPE, entry.mode))
        elif entry.kind == "symlink":
            info = self._info(entry.path, tarfile.SYMTYPE, 0o777)
            info.linkname = entry.target
            tar.addfile(info)
        elif entry.kind == "hardlink":
            info = self._info(entry.path, tarfile.LNKTYPE, 0o644)
            info.linkname = entry.target
            tar.addfile(info)
        elif entry.kind == "disk":
            assert entry.source is not None
            st = os.lstat(entry.source)
            info = tar.gettarinfo(str(entry.source), arcname=entry.path)
            info.mtime = min(int(st.st_mtime), self.mtime) if self.mtime else int(st.st_mtime)
            info.uname = info.gname = ""
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen[key]
                    info.size = 0
                    tar.addfile(info)
                    return
                seen[key] = entry.path
            if info.isreg():
                with open(entry.source, "rb") as handle:
                    tar.addfile(info, handle)
            elif info.isdir() or info.issym() or info.ischr() or info.isblk() or info.isfifo():
                tar.addfile(info)


@dataclass
class BuiltLayer:
    descriptor: Descriptor
    diff_id: str
    path: str


@dataclass
class BuiltImage:
    """An image ready to push: its layers on disk, config and manifest bytes."""

    manifest: Manifest
    manifest_bytes: bytes
    config_bytes: bytes
    layers: list[BuiltLayer]
    platform: Platform

    @property
    def digest(self) -> str:
        return Descriptor.for_bytes(self.manifest.media_type, self.manifest_bytes).digest

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor.for_bytes(self.manifest.media_type, self.manifest_bytes)

    def push(self, store: ImageStore, tag: str | None = None) -> Descriptor:
        """Push blobs, config, then the manifest (under ``tag`` if given)."""
        for layer in self.layers:
            store.push_blob(layer.descriptor, path=layer.path)
        store.push_blob(self.manifest.config, data=self.config_bytes)
        return store.push_manifest(self.manifest_bytes, self.manifest.media_type, tag)


@dataclass
class ImageBuilder:
    """Assembles an image from layers; ``build`` writes layer blobs into ``workdir``."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: str = "1970-01-01T00:00:00Z"
    compress: bool = True
    layers: list[LayerBuilder] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    def layer(self) -> LayerBuilder:
        builder = LayerBuilder()
        self.layers.append(builder)
        return builder

    def build(self, workdir: str | Path) -> BuiltImage:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        built: list[BuiltLayer] = []
        media_type = mt.OCI_LAYER_GZIP if self.compress else mt.OCI_LAYER
        for layer in self.layers:
            fd, path = tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=workdir)
            with os.fdopen(fd, "wb") as out:
                diff_id, digest, size = layer.write(out, compress=self.compress)
            built.append(BuiltLayer(Descriptor(media_type, digest, size), diff_id, path))
        image_config: dict[str, Any] = {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        }
        image_config.update(self.config)
        if self.labels:
            image_config["Labels"] = dict(self.labels)
        config: dict[str, Any] = {
            "created": self.created,
            "architecture": self.architecture,
            "os": self.os,
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
            "history": [
                {"created": self.created, "created_by": "attest image builder"} for _ in built
            ],
        }
        if self.variant:
            config["variant"] = self.variant
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        manifest = Manifest(
            media_type=mt.OCI_MANIFEST,
            config=Descriptor.for_bytes(mt.OCI_CONFIG, config_bytes),
            layers=tuple(layer.descriptor for layer in built),
            annotations=dict(self.annotations),
        )
        return BuiltImage(
            manifest=manifest,
            manifest_bytes=manifest.to_bytes(),
            config_bytes=config_bytes,
            layers=built,
            platform=Platform(self.os, self.architecture, self.variant),
        )


def push_index(store: ImageStore, images: list[BuiltImage], tag: str | None = None) -> Descriptor:
    """Push several platform images and an OCI index over them (tagged ``tag``)."""
    descriptors = []
    for image in images:
        pushed = image.push(store)
        descriptors.append(
            Descriptor(pushed.media_type, pushed.digest, pushed.size, platform=image.platform)
        )
    index = Index(mt.OCI_INDEX, tuple(descriptors))
    return store.push_manifest(index.to_bytes(), mt.OCI_INDEX, tag)
