"""Stream one image layer into a :class:`FileTree`: decompress, verify, walk tar entries.

A layer blob is read once, front to back: the store's verifying reader checks
its digest and size at EOF, :class:`LayerStream` decompresses it (gzip, zstd or
plain tar, recognised by magic bytes rather than trusting the media type) and
hashes the tar for the diffID in a producer thread (zlib and hashlib release
the GIL, so this overlaps with tar parsing), and each tar entry becomes a node.  Only files
a cataloger wants are read (small metadata kept in memory; binaries and
archives handed to the cataloger as a stream), everything else is skipped as
the stream moves on.  Entry names are normalised: absolute names are read as
relative to the image root, names with ``..`` are skipped with a warning, so
nothing can land outside the scan.

A tar stream may end cleanly without its end-of-archive blocks, and even
without the padding after the last entry's data: ``umoci insert`` writes such
layers, and Go's archive/tar, containerd and umoci read them.  Such an end is
accepted once the whole blob has been read (its digest verified at EOF); a
stream that ends inside an entry header or an entry's data, or goes on with
something that is not a header, is corrupt.
"""

from __future__ import annotations

import hashlib
import queue
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable
from typing import IO, Any, cast

from attest.errors import AttestError, CorruptLayer
from attest.oci.digest import Readable
from attest.oci.whiteout import OPAQUE_MARKER, WHITEOUT_PREFIX
from attest.sbom.catalogers.base import ScanEnv, StreamingCataloger, as_streaming
from attest.sbom.filesystem import DIR, FILE, OTHER, SYMLINK, FileTree, Node

CHUNK = 1 << 18
HEAD_BYTES = 4096
_BLOCK = tarfile.BLOCKSIZE
_TAIL_BYTES = 4 * tarfile.RECORDSIZE  # more than tarfile reads past the header it looks at

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerStream:
    """The uncompressed tar of a layer blob, hashed (for the diffID); decompressed in a thread."""

    def __init__(self, raw: Readable, *, what: str) -> None:
        self._raw = raw
        self._what = what
        self._hash = hashlib.sha256()
        self._pending = b""
        self._pos = 0
        self._eof = False
        self._queue: queue.Queue[tuple[bytes, BaseException | None]] = queue.Queue(maxsize=16)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        head = raw.read(CHUNK)
        self._head: bytes | None = head
        self._gzip: Any = None
        self._zstd: Any = None
        if head.startswith(_GZIP_MAGIC):
            self.compression = "gzip"
            self._gzip = zlib.decompressobj(31)
        elif head.startswith(_ZSTD_MAGIC):
            self.compression = "zstd"
            try:
                import zstandard
            except ImportError:  # pragma: no cover - zstandard is a dependency
                raise CorruptLayer(
                    f"{what}: zstd-compressed, but 'zstandard' is not installed"
                ) from None
            prefixed = cast(IO[bytes], _Prefixed(head, raw))  # zstandard only calls read()
            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                prefixed, read_across_frames=True, read_size=CHUNK
            )
            self._head = None
        else:
            self.compression = "none"

    def _raw_read(self) -> bytes:
        if self._head is not None:
            data, self._head = self._head, None
            return data
        return self._raw.read(CHUNK)

    def _next_gzip(self) -> bytes:
        while True:
            if self._gzip.eof:
                leftover = self._gzip.unused_data or self._raw_read()
                if not leftover:
                    return b""
                if not leftover.strip(b"\0"):  # NUL padding after the last member
                    while more := self._raw_read():
                        if more.strip(b"\0"):
                            raise CorruptLayer(f"{self._what}: garbage after the gzip stream")
                    return b""
                self._gzip = zlib.decompressobj(31)
                data = leftover
            else:
                data = self._gzip.unconsumed_tail or self._raw_read()
                if not data:
                    raise CorruptLayer(f"{self._what}: gzip stream is truncated")
            out: bytes = self._gzip.decompress(data, CHUNK)
            if out:
                return out

    def _next(self) -> bytes:
        try:
            if self._gzip is not None:
                return self._next_gzip()
            if self._zstd is not None:
                chunk: bytes = self._zstd.read(CHUNK)
                return chunk
            return self._raw_read()
        except zlib.error as err:
            raise CorruptLayer(f"{self._what}: gzip data is corrupt ({err})") from None
        except AttestError:  # the store's DigestMismatch, among others
            raise
        except Exception as err:  # zstandard.ZstdError and friends
            if type(err).__name__ == "ZstdError":
                raise CorruptLayer(f"{self._what}: zstd data is corrupt ({err})") from None
            raise

    def _produce(self) -> bytes:
        """The next decompressed chunk, hashed; at the end the blob is read to EOF (verified)."""
        chunk = self._next()
        if chunk:
            self._hash.update(chunk)
            return chunk
        while self._raw.read(CHUNK):  # e.g. bytes after a zstd frame the reader did not need
            pass
        return b""

    def _run(self) -> None:
        """Producer thread: decompression and hashing overlap with tar parsing on another core."""
        try:
            while not self._stop.is_set():
                chunk = self._produce()
                self._put((chunk, None))
                if not chunk:
                    return
        except BaseException as err:  # handed to the reading thread, raised there
            self._put((b"", err))

    def _put(self, item: tuple[bytes, BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _take(self) -> bytes:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="attest-layer", daemon=True)
            self._thread.start()
        chunk, error = self._queue.get()
        if error is not None:
            raise error
        return chunk

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        parts: list[bytes] = []
        while n > 0:
            if self._pos >= len(self._pending):
                if self._eof:
                    break
                chunk = self._take()
                if not chunk:
                    self._eof = True
                    break
                self._pending, self._pos = chunk, 0
            piece = self._pending[self._pos : self._pos + n]
            self._pos += len(piece)
            n -= len(piece)
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def finish(self) -> str:
        """Read to the end (so the blob digest is verified); returns the diffID."""
        while self.read(CHUNK):
            pass
        self.close()
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        """Stop the producer thread (also when the reader gives up early)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Prefixed:
    """A stream that first replays ``head`` and then continues with ``rest``."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(n)
        if n is None or n < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:n], self._head[n:]
        if len(data) < n:
            data += self._rest.read(n - len(data))
        return data

    def readable(self) -> bool:
        return True


def normalize_entry_name(name: str) -> tuple[str | None, str | None]:
    """(relative path, problem): ``..`` names are refused, absolute ones made relative."""
    problem = None
    if name.startswith("/"):
        problem = "absolute path in layer; read relative to the image root"
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None, "path contains '..'; skipped"
        parts.append(part)
    return "/".join(parts), problem


class _ParentCache:
    """Resolved parent directories for the layer being applied (cleared when links change)."""

    def __init__(self, tree: FileTree) -> None:
        self.tree = tree
        self.cache: dict[str, str] = {}

    def directory(self, path: str) -> str:
        real = self.cache.get(path)
        if real is None:
            real = self.cache[path] = self.tree.resolve_staged(path)
        return real

    def resolve(self, path: str) -> str:
        """``path`` with its directory part resolved through symlinks."""
        parent, sep, base = path.rpartition("/")
        if not sep:
            return path
        real_parent = self.directory(parent)
        return f"{real_parent}/{base}" if real_parent else base


class _TarInput:
    """The layer's tar as tarfile reads it: how many bytes so far, and the last of them."""

    def __init__(self, stream: LayerStream) -> None:
        self._stream = stream
        self.position = 0
        self._tail = bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.position += len(data)
        self._tail += data
        if len(self._tail) > 2 * _TAIL_BYTES:
            del self._tail[: len(self._tail) - _TAIL_BYTES]
        return data

    def between(self, start: int, end: int) -> bytes | None:
        """The bytes at ``[start, end)`` if they are still remembered."""
        first = self.position - len(self._tail)
        if start < first or end > self.position:
            return None
        return bytes(self._tail[start - first : end - first])

    def at_end(self) -> bool:
        """Whether the stream has nothing more (reading to its end verifies the blob)."""
        return not self.read(1)


def _ends_after_entry(source: _TarInput, data_end: int, padded_end: int) -> bool:
    """The stream ended cleanly after the last entry's data, before (or within) its padding."""
    if not source.at_end() or not data_end <= source.position < padded_end:
        return False
    padding = source.between(data_end, source.position)
    return padding is not None and not padding.strip(b"\0")


def _trailer_problem(source: _TarInput, header_at: int) -> str | None:
    """Why what follows the last entry (at ``header_at``) is not a clean end, if it is not:
    nothing, or end-of-archive (zero) blocks, is clean."""
    block = source.between(header_at, min(header_at + _BLOCK, source.position))
    if block is None or not block.strip(b"\0"):
        return None
    if len(block) < _BLOCK:
        return f"the stream ends inside an entry header at byte {header_at}"
    return f"what follows the last entry at byte {header_at} is not a tar header"


def apply_layer(
    tree: FileTree,
    index: int,
    stream: LayerStream,
    env: ScanEnv,
    *,
    what: str,
    tick: Callable[[], None] | None = None,
) -> set[str]:
    """Read one layer's tar from ``stream`` into ``tree``; returns catalogers whose files changed."""
    tree.begin_layer()
    parents = _ParentCache(tree)
    source = _TarInput(stream)
    try:
        try:
            tar = tarfile.open(fileobj=source, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
        except tarfile.ReadError:
            if source.position == 0 and source.at_end():  # no entries at all: an empty layer
                return tree.commit_layer()
            raise
        with tar:
            last: tarfile.TarInfo | None = None
            while True:
                next_header = tar.offset
                try:
                    member = tar.next()
                except tarfile.ReadError:
                    if last is None:
                        raise
                    data_end = min(last.offset_data + last.size, next_header)
                    if not _ends_after_entry(source, data_end, next_header):
                        raise
                    break  # no padding after the last entry's data, no end-of-archive blocks
                if member is None:
                    problem = _trailer_problem(source, next_header if last else 0)
                    if problem:
                        raise CorruptLayer(f"{what}: not a valid tar stream ({problem})")
                    break
                tar.members.clear()  # stream mode would otherwise keep every header
                last = member
                _apply_entry(tree, tar, member, index, env, parents, what)
                if tick is not None:
                    tick()
    except tarfile.TarError as err:
        raise CorruptLayer(f"{what}: not a valid tar stream ({err})") from None
    except EOFError as err:
        raise CorruptLayer(f"{what}: tar stream ends unexpectedly ({err})") from None
    return tree.commit_layer()


def _apply_entry(
    tree: FileTree,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    index: int,
    env: ScanEnv,
    parents: _ParentCache,
    what: str,
) -> None:
    path, problem = normalize_entry_name(member.name)
    if problem:
        env.warn(member.name, f"{what}: {problem}")
    if not path:
        return
    parent, _, base = path.rpartition("/")
    if base.startswith(WHITEOUT_PREFIX):
        if base == OPAQUE_MARKER:
            tree.stage_opaque(parents.directory(parent) if parent else "")
        elif not base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):  # .wh..wh.plnk etc.
            hidden = base[len(WHITEOUT_PREFIX) :]
            tree.stage_whiteout(parents.resolve(f"{parent}/{hidden}" if parent else hidden))
        return
    path = parents.resolve(path)
    mode = stat.S_IMODE(member.mode)
    if member.isdir():
        if (old := tree.staged(path)) is not None and old.kind == SYMLINK:
            parents.cache.clear()
        tree.stage(path, Node(DIR, mode, 0, index))
    elif member.issym():
        parents.cache.clear()
        tree.stage(path, Node(SYMLINK, 0o777, 0, index, member.linkname))
    elif member.islnk():
        _apply_hardlink(tree, member, path, index, env, what, parents)
    elif member.isreg():
        _apply_file(tree, tar, member, path, mode, index, env)
    else:
        tree.stage(path, Node(OTHER, mode, 0, index))


def _apply_hardlink(
    tree: FileTree,
    member: tarfile.TarInfo,
    path: str,
    index: int,
    env: ScanEnv,
    what: str,
    parents: _ParentCache,
) -> None:
    target_name, _problem = normalize_entry_name(member.linkname)
    target = tree.staged(parents.resolve(target_name)) if target_name else None
    if target is None or target.kind != FILE:
        env.warn(path, f"{what}: hard link to missing {member.linkname!r}; skipped")
        return
    wanted = tuple(c.name for c in tree.selector.match(path, target.mode))
    node = Node(FILE, target.mode, target.size, index, wanted=wanted)
    node.content = target.content
    node.analysis = dict(target.analysis) if target.analysis else None
    if wanted and node.content is None and not node.analysis and target.wanted != wanted:
        env.warn(
            path, f"{what}: hard link to {member.linkname!r}, whose content was not kept; skipped"
        )
    tree.stage(path, node)


def _apply_file(
    tree: FileTree,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    path: str,
    mode: int,
    index: int,
    env: ScanEnv,
) -> None:
    catalogers = tree.selector.match(path, mode) if member.size or mode & 0o111 else []
    node = Node(FILE, mode, member.size, index, wanted=tuple(c.name for c in catalogers))
    tree.stage(path, node)
    if not catalogers:
        return
    limits = env.limits
    kept = [c for c in catalogers if not c.interest.stream]
    streamed = [as_streaming(c) for c in catalogers if c.interest.stream]
    handle = tar.extractfile(member)
    if handle is None:
        return
    if kept:
        if env.over_limit(path, member.size, limits.max_metadata_bytes):
            return
        node.content = handle.read()
        if streamed:
            import io

            _analyze(node, path, streamed, io.BytesIO(node.content), node.content[:HEAD_BYTES], env)
        return
    if env.over_limit(path, member.size, limits.max_archive_bytes):
        return
    head = handle.read(HEAD_BYTES)
    _analyze(node, path, streamed, _Prefixed(head, handle), head, env)


def _analyze(
    node: Node,
    path: str,
    catalogers: list[StreamingCataloger],
    stream: Any,
    head: bytes,
    env: ScanEnv,
) -> None:
    for cataloger in catalogers:
        if not cataloger.sniff(path, head):
            continue
        node.analysis = {cataloger.name: cataloger.analyze(path, stream, node.size, env)}
        return
