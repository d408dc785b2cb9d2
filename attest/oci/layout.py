"""OCI image layouts on disk: a directory (``oci:``) or a tar of one (``oci-archive:``).

A layout is ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``.  Tags are
the ``org.opencontainers.image.ref.name`` annotation of top-level descriptors,
as skopeo and umoci write them.  Every write is atomic (temp file + rename),
blobs before the index that names them, so an interrupted write never leaves
an index pointing at missing content.

Archives are read in place, streaming members from the tar; a write unpacks
the archive into a temporary layout and repacks it atomically on close.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from attest.errors import InvalidReference, LayoutError, ManifestError, NotFound
from attest.files import atomic_write
from attest.oci import mediatypes as mt
from attest.oci.digest import VerifyingReader, hasher_for, sha256_digest
from attest.oci.manifest import Descriptor, FetchedManifest, Index, parse_manifest
from attest.oci.reference import validate_digest

LAYOUT_VERSION = "1.0.0"
_REFERRER_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.[a-z]+)?\Z")


def is_signature_tag(tag: str) -> bool:
    """Whether a tag is a referrers-fallback or cosign ``.sig``/``.att``/``.sbom`` tag."""
    return bool(_REFERRER_TAG.match(tag))


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path, fsync=True) as out:
        out.write(data)


def _parse_index(raw: bytes, display: str) -> Index:
    try:
        parsed = parse_manifest(raw, mt.OCI_INDEX, what=f"{display} index.json")
    except ManifestError as err:
        raise LayoutError(str(err)) from None
    if not isinstance(parsed, Index):
        raise LayoutError(f"{display}: index.json is not an image index")
    return parsed


def _tags(index: Index) -> list[str]:
    return [
        e.annotations[mt.ANNOTATION_REF_NAME]
        for e in index.manifests
        if mt.ANNOTATION_REF_NAME in e.annotations
    ]


class OCILayout:
    """An OCI image layout directory."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        self.display = f"oci:{path}"
        if create:
            self._initialise()
        self._check()

    def _initialise(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise LayoutError(f"{self.display}: exists and is not a directory")
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (self.path / "oci-layout").exists():
            _write_atomic(
                self.path / "oci-layout",
                json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode(),
            )
        if not (self.path / "index.json").exists():
            _write_atomic(
                self.path / "index.json",
                json.dumps(
                    {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
                ).encode(),
            )

    def _check(self) -> None:
        if not self.path.is_dir():
            raise LayoutError(f"{self.display}: no such OCI layout directory")
        marker = self.path / "oci-layout"
        try:
            version = json.loads(marker.read_text()).get("imageLayoutVersion")
        except FileNotFoundError:
            raise LayoutError(f"{self.display}: not an OCI layout (no oci-layout file)") from None
        except (OSError, ValueError, AttributeError):
            raise LayoutError(f"{self.display}: oci-layout file is corrupt") from None
        if not isinstance(version, str) or not version.startswith("1."):
            raise LayoutError(f"{self.display}: unsupported imageLayoutVersion {version!r}")

    # -- index ------------------------------------------------------------------

    def read_index(self) -> Index:
        try:
            raw = (self.path / "index.json").read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.display}: index.json is missing") from None
        return _parse_index(raw, self.display)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path / ".attest.lock"
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_index(self, index: Index) -> None:
        data = index.to_dict()
        _write_atomic(self.path / "index.json", json.dumps(data, indent=2).encode())

    def add_manifest(self, descriptor: Descriptor, tag: str | None = None) -> None:
        """List ``descriptor`` in index.json; with ``tag`` it replaces any entry of that tag."""
        with self._locked():
            index = self.read_index()
            kept = []
            for entry in index.manifests:
                if tag is not None and entry.annotations.get(mt.ANNOTATION_REF_NAME) == tag:
                    continue
                if (
                    tag is None
                    and entry.digest == descriptor.digest
                    and mt.ANNOTATION_REF_NAME not in entry.annotations
                ):
                    continue
                kept.append(entry)
            annotations = dict(descriptor.annotations)
            if tag is not None:
                annotations[mt.ANNOTATION_REF_NAME] = tag
            kept.append(
                Descriptor(
                    descriptor.media_type,
                    descriptor.digest,
                    descriptor.size,
                    annotations,
                    descriptor.platform,
                    descriptor.artifact_type,
                )
            )
            self._write_index(Index(mt.OCI_INDEX, tuple(kept), index.annotations))

    def remove(self, identifier: str) -> str:
        """Drop index entries for a tag or digest (blobs stay until garbage-collected)."""
        with self._locked():
            index = self.read_index()
            if ":" in identifier:
                kept = [e for e in index.manifests if e.digest != identifier]
                digest = identifier
            else:
                matches = [
                    e
                    for e in index.manifests
                    if e.annotations.get(mt.ANNOTATION_REF_NAME) == identifier
                ]
                if not matches:
                    raise NotFound(f"{self.display}:{identifier}: no such tag")
                digest = matches[0].digest
                kept = [e for e in index.manifests if e.digest != digest]
            if len(kept) == len(index.manifests):
                # An untagged manifest (e.g. a referrer listed only by the fallback index) is
                # not in index.json: deleting it means deleting its blob.
                blob = self.blob_path(digest) if ":" in identifier else None
                if blob is not None and blob.is_file():
                    blob.unlink()
                    return digest
                raise NotFound(f"{self.display}@{identifier}: not in index.json")
            self._write_index(Index(mt.OCI_INDEX, tuple(kept), index.annotations))
            return digest

    def tags(self) -> list[str]:
        return _tags(self.read_index())

    # -- blobs ------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_part = validate_digest(digest).split(":", 1)
        return self.path / "blobs" / algorithm / hex_part

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob_file(self, digest: str) -> IO[bytes]:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(
                f"{self.display}: blob {digest} is missing (truncated layout?)"
            ) from None

    def write_blob(self, data: bytes, media_type: str = "application/octet-stream") -> Descriptor:
        descriptor = Descriptor.for_bytes(media_type, data)
        path = self.blob_path(descriptor.digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, data)
        return descriptor

    def write_blob_from(self, reader: IO[bytes], descriptor: Descriptor) -> None:
        """Copy a stream into the layout, verifying it against ``descriptor``."""
        path = self.blob_path(descriptor.digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, prefix=".blob-") as out:
            hasher = hasher_for(descriptor.digest)
            size = 0
            while chunk := reader.read(1 << 20):
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
            actual = f"{descriptor.digest.split(':')[0]}:{hasher.hexdigest()}"
            if actual != descriptor.digest or size != descriptor.size:
                from attest.errors import DigestMismatch

                raise DigestMismatch(
                    f"{self.display}: blob content hashes to {actual} ({size} bytes), "
                    f"expected {descriptor.digest} ({descriptor.size} bytes)"
                )


class ArchiveLayout:
    """An OCI layout packed in a tar file, read in place."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.display = f"oci-archive:{path}"
        if not self.path.is_file():
            raise LayoutError(f"{self.display}: no such archive file")
        try:
            self._tar = tarfile.open(self.path, "r:*")  # noqa: SIM115 (closed by close())
            self._members = {self._clean(m.name): m for m in self._tar.getmembers() if m.isfile()}
        except (tarfile.TarError, EOFError, OSError) as err:
            raise LayoutError(f"{self.display}: not a readable tar archive ({err})") from None
        if "oci-layout" not in self._members:
            raise LayoutError(f"{self.display}: not an OCI layout archive (no oci-layout file)")

    @staticmethod
    def _clean(name: str) -> str:
        return os.path.normpath(name).lstrip("./") if name not in (".", "./") else ""

    def close(self) -> None:
        self._tar.close()

    def _read_member(self, name: str) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise LayoutError(f"{self.display}: {name} is missing from the archive")
        handle = self._tar.extractfile(member)
        if handle is None:
            raise LayoutError(f"{self.display}: {name} is not a regular file")
        try:
            return handle.read()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise LayoutError(f"{self.display}: {name} is truncated ({err})") from None

    def read_index(self) -> Index:
        return _parse_index(self._read_member("index.json"), self.display)

    def tags(self) -> list[str]:
        return _tags(self.read_index())

    def _blob_name(self, digest: str) -> str:
        algorithm, hex_part = validate_digest(digest).split(":", 1)
        return f"blobs/{algorithm}/{hex_part}"

    def has_blob(self, digest: str) -> bool:
        return self._blob_name(digest) in self._members

    def open_blob_file(self, digest: str) -> IO[bytes]:
        name = self._blob_name(digest)
        member = self._members.get(name)
        if member is None:
            raise NotFound(f"{self.display}: blob {digest} is missing (truncated archive?)")
        handle = self._tar.extractfile(member)
        if handle is None:
            raise LayoutError(f"{self.display}: blob {digest} is not a regular file")
        return handle

    def unpack_to(self, directory: Path) -> None:
        for name, member in self._members.items():
            target = directory / name
            if not str(target.resolve()).startswith(str(directory.resolve())):
                raise LayoutError(f"{self.display}: member {member.name!r} escapes the archive")
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = self._tar.extractfile(member)
            if handle is None:
                continue
            with open(target, "wb") as out:
                shutil.copyfileobj(handle, out)


def pack_layout(directory: Path, archive: Path) -> None:
    """Tar a layout directory into ``archive`` atomically, with stable metadata."""
    with (
        atomic_write(archive) as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            relative = path.relative_to(directory).as_posix()
            if relative.startswith(".attest.lock") or "/." in f"/{relative}":
                continue
            info = tar.gettarinfo(str(path), arcname=relative)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(path, "rb") as handle:
                tar.addfile(info, handle)


class LayoutStore:
    """The :class:`~attest.oci.store.ImageStore` over an OCI layout directory or archive."""

    def __init__(self, path: str, *, archive: bool = False, create: bool = False) -> None:
        self._archive_path = Path(path) if archive else None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._dirty = False
        self.display = f"oci-archive:{path}" if archive else f"oci:{path}"
        self._reader: OCILayout | ArchiveLayout
        if archive and create and not Path(path).exists():
            self._reader = self._unpacked(None)
        elif archive:
            self._reader = ArchiveLayout(path)
        else:
            self._reader = OCILayout(path, create=create)

    def _unpacked(self, archive: ArchiveLayout | None) -> OCILayout:
        assert self._archive_path is not None
        self._tmpdir = tempfile.TemporaryDirectory(
            prefix=".attest-archive-", dir=self._archive_path.parent
        )
        directory = Path(self._tmpdir.name)
        if archive is not None:
            archive.unpack_to(directory)
            archive.close()
        layout = OCILayout(directory, create=True)
        layout.display = self.display
        self._dirty = True
        return layout

    def _materialise(self) -> OCILayout:
        """The writable layout: the directory itself, or an unpacked copy of the archive."""
        if isinstance(self._reader, ArchiveLayout):
            self._reader = self._unpacked(self._reader)
        if self._archive_path is not None:
            self._dirty = True
        return self._reader

    def close(self) -> None:
        """Finish: repack a modified archive atomically, then release everything."""
        try:
            if self._dirty and self._archive_path is not None and self._tmpdir is not None:
                pack_layout(Path(self._tmpdir.name), self._archive_path)
        finally:
            if isinstance(self._reader, ArchiveLayout):
                self._reader.close()
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
                self._tmpdir = None
            self._dirty = False

    def abort(self) -> None:
        """Discard unsaved changes to an archive."""
        self._dirty = False
        self.close()

    def __enter__(self) -> LayoutStore:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    # -- ImageStore -------------------------------------------------------------

    def default_identifier(self) -> str:
        """The one image in the layout when no tag is given; raises when it is ambiguous."""
        entries = [
            e
            for e in self._reader.read_index().manifests
            if not is_signature_tag(e.annotations.get(mt.ANNOTATION_REF_NAME, ""))
            and e.media_type in mt.ALL_MANIFESTS
            and not (e.artifact_type and e.artifact_type != mt.OCI_CONFIG)
        ]
        if len(entries) == 1:
            return entries[0].digest
        if not entries:
            raise NotFound(f"{self.display}: the layout holds no image")
        tags = sorted({e.annotations.get(mt.ANNOTATION_REF_NAME, e.digest) for e in entries})
        raise LayoutError(
            f"{self.display}: the layout holds {len(entries)} images; name one as :TAG ({', '.join(tags)})"
        )

    def _descriptor_in_index(self, identifier: str) -> Descriptor | None:
        for entry in self._reader.read_index().manifests:
            if ":" in identifier and identifier.startswith("sha256:"):
                if entry.digest == identifier:
                    return entry
            elif entry.annotations.get(mt.ANNOTATION_REF_NAME) == identifier:
                return entry
        return None

    def resolve(self, identifier: str) -> Descriptor:
        entry = self._descriptor_in_index(identifier)
        if entry is not None:
            return Descriptor(entry.media_type, entry.digest, entry.size)
        if _is_digest(identifier) and self._reader.has_blob(identifier):
            return self.fetch_manifest(identifier).descriptor
        if _is_digest(identifier):
            raise NotFound(f"{self.display}@{identifier}: no such manifest in the layout")
        raise NotFound(f"{self.display}:{identifier}: no such tag in the layout")

    def fetch_manifest(self, identifier: str) -> FetchedManifest:
        entry = self._descriptor_in_index(identifier)
        digest = entry.digest if entry else identifier
        if not _is_digest(digest):
            raise NotFound(f"{self.display}:{identifier}: no such tag in the layout")
        what = f"{self.display}@{digest}"
        size = entry.size if entry else None
        with self._reader.open_blob_file(digest) as handle:
            reader = VerifyingReader(handle, digest, size, what=f"manifest {what}")
            try:
                raw = reader.read()
            except (tarfile.TarError, EOFError, OSError) as err:
                raise LayoutError(f"manifest {what}: unreadable ({err})") from None
        media_type = entry.media_type if entry else None
        parsed = parse_manifest(raw, media_type, what=f"manifest {what}")
        return FetchedManifest(digest, parsed.media_type, raw, parsed)

    def push_manifest(self, raw: bytes, media_type: str, tag: str | None = None) -> Descriptor:
        layout = self._materialise()
        descriptor = layout.write_blob(raw, media_type)
        parsed = parse_manifest(raw, media_type)
        artifact_type = parsed.artifact_type
        if tag is not None:
            layout.add_manifest(
                Descriptor(
                    media_type, descriptor.digest, descriptor.size, artifact_type=artifact_type
                ),
                tag,
            )
        return descriptor

    def tag(self, descriptor: Descriptor, tag: str) -> None:
        self._materialise().add_manifest(descriptor, tag)

    def delete_manifest(self, identifier: str) -> str:
        return self._materialise().remove(identifier)

    def list_tags(self) -> list[str]:
        return self._reader.tags()

    def blob_exists(self, digest: str) -> bool:
        return self._reader.has_blob(digest)

    def open_blob(self, descriptor: Descriptor) -> VerifyingReader:
        what = f"blob {descriptor.digest} in {self.display}"
        return VerifyingReader(
            _LayoutStream(self._reader.open_blob_file(descriptor.digest), what),
            descriptor.digest,
            descriptor.size,
            what=what,
        )

    def push_blob(
        self, descriptor: Descriptor, *, data: bytes | None = None, path: str | None = None
    ) -> None:
        layout = self._materialise()
        if data is not None:
            if sha256_digest(data) != descriptor.digest:
                raise ManifestError(
                    f"push blob to {self.display}: data does not match {descriptor.digest}"
                )
            layout.write_blob(data)
            return
        assert path is not None
        with open(path, "rb") as handle:
            layout.write_blob_from(handle, descriptor)

    def referrers_api(
        self, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        return None  # layouts use the referrers tag schema, like registries without the API


class _LayoutStream:
    """Turns tar/IO errors while reading a blob into :class:`LayoutError`."""

    def __init__(self, handle: IO[bytes], what: str) -> None:
        self._handle = handle
        self._what = what

    def read(self, n: int = -1) -> bytes:
        try:
            return self._handle.read(n)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise LayoutError(f"{self._what}: unreadable ({err})") from None

    def close(self) -> None:
        self._handle.close()


def _is_digest(identifier: str) -> bool:
    try:
        validate_digest(identifier)
    except InvalidReference:
        return False
    return True
