"""The merged filesystem an SBOM is read from: layers applied in order, or a directory walked.

:class:`FileTree` holds one small :class:`Node` per path (kind, mode, size, the
layer it came from, symlink target) and the *content* only of files some
cataloger wants (``Interest``), so memory grows with metadata, not with the
image.  Layers are applied the way overlay filesystems and container engines
do: entries are staged per layer, then the layer's whiteouts (``.wh.NAME``)
and opaque markers (``.wh..wh..opq``) delete what lower layers put there, a
non-directory replacing a directory hides the directory's children, and the
staged entries win.  Symlinks are resolved inside the root (an absolute target
starts at the image root, ``..`` stops there), with a hop limit against loops,
so nothing ever points outside the scan.

For ``dir:`` targets the same tree is filled by a walk that never follows
symlinks; wanted files are then read lazily from disk.
"""

from __future__ import annotations

import marshal
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, Literal

from attest.sbom.catalogers.base import Cataloger, Limits, ScanEnv, T, Warn, as_streaming

NodeKind = Literal["file", "dir", "symlink", "other"]
FILE: NodeKind = "file"
DIR: NodeKind = "dir"
SYMLINK: NodeKind = "symlink"
OTHER: NodeKind = "other"
MAX_SYMLINK_HOPS = 40


class SymlinkLoop(Exception):
    """Resolving a path took more than :data:`MAX_SYMLINK_HOPS` symlinks."""


@dataclass(slots=True)
class Node:
    """One path of the merged filesystem."""

    kind: NodeKind
    mode: int
    size: int
    layer: int
    link: str = ""  # symlink target
    wanted: tuple[str, ...] = ()  # names of catalogers that want this file
    content: bytes | None = None  # kept only for wanted, non-streamed files
    analysis: dict[str, Any] | None = None  # cataloger name -> what analyze() returned
    memo: dict[str, tuple[Any, tuple[str, ...]]] | None = None  # parse results + warnings


class Selector:
    """Indexes the catalogers' interests so each path costs a few dict lookups."""

    def __init__(self, catalogers: Iterable[Cataloger]) -> None:
        self.catalogers = {c.name: c for c in catalogers}
        self._by_name: dict[str, list[Cataloger]] = {}
        self._by_suffix: dict[str, list[Cataloger]] = {}
        self._by_parent: dict[str, list[Cataloger]] = {}
        self._executables: list[Cataloger] = []
        self._suffix_lengths: set[int] = set()
        for cataloger in self.catalogers.values():
            interest = cataloger.interest
            for name in interest.names:
                self._by_name.setdefault(name, []).append(cataloger)
            for suffix in interest.suffixes:
                self._by_suffix.setdefault(suffix, []).append(cataloger)
                self._suffix_lengths.add(len(suffix))
            for parent in interest.parents:
                self._by_parent.setdefault(parent, []).append(cataloger)
            if interest.executables:
                self._executables.append(cataloger)
        self.names = frozenset(self._by_name)
        self.suffixes = tuple(self._by_suffix)
        self.parents = frozenset(self._by_parent)
        self.executables = bool(self._executables)  # then every regular file's mode matters

    def match(self, path: str, mode: int) -> list[Cataloger]:
        """The catalogers that want the regular file ``path`` (in declaration order)."""
        parent, _, base = path.rpartition("/")
        found: list[Cataloger] = []
        found.extend(self._by_name.get(base, ()))
        for length in self._suffix_lengths:
            if len(base) > length:
                found.extend(self._by_suffix.get(base[-length:], ()))
        found.extend(self._by_parent.get(parent, ()))
        if mode & 0o111:
            found.extend(self._executables)
        if not found:
            return found
        unique: list[Cataloger] = []
        for cataloger in found:
            if cataloger not in unique and (
                cataloger.interest.accept is None or cataloger.interest.accept(path)
            ):
                unique.append(cataloger)
        return unique


class FileTree:
    """The merged filesystem at the current point of a scan (see the module docstring)."""

    def __init__(
        self,
        selector: Selector,
        env: ScanEnv,
        *,
        loader: Callable[[str, Node], bytes | None] | None = None,
        opener: Callable[[str], IO[bytes]] | None = None,
    ) -> None:
        self.selector = selector
        self.env = env
        self.nodes: dict[str, Node] = {}
        self._candidates: dict[str, set[str]] = {name: set() for name in selector.catalogers}
        self._loader = loader
        self._opener = opener
        self._upper: dict[str, Node] = {}
        self._whiteouts: set[str] = set()
        self._opaques: set[str] = set()
        self._directories: set[str] = set()  # every path that has (or had) something below it

    # -- building ---------------------------------------------------------------

    def begin_layer(self) -> None:
        self._upper = {}
        self._whiteouts = set()
        self._opaques = set()

    def staged(self, path: str) -> Node | None:
        """A node of the layer being applied, else of the layers below."""
        node = self._upper.get(path)
        return node if node is not None else self.nodes.get(path)

    def stage(self, path: str, node: Node) -> None:
        self._upper[path] = node

    def stage_whiteout(self, path: str) -> None:
        self._whiteouts.add(path)

    def stage_opaque(self, directory: str) -> None:
        self._opaques.add(directory)

    def resolve_staged(self, directory: str) -> str:
        """``directory`` with symlinks resolved as tar extraction would (staged layer included)."""
        try:
            return self._resolve(directory, follow_final=True, lookup=self.staged)
        except SymlinkLoop:
            return directory

    def commit_layer(self) -> set[str]:
        """Apply the staged layer; returns the catalogers whose candidate files changed."""
        changed: set[str] = set()
        subtrees = set(self._whiteouts)
        children_of = set(self._opaques)
        for path, node in self._upper.items():
            if node.kind != DIR and path in self._directories:
                children_of.add(path)  # a file or link replaces a directory: hide its contents
        if subtrees or children_of:
            self._prune(subtrees, children_of, changed)
        for path, node in self._upper.items():
            old = self.nodes.get(path)
            if old is not None:
                for name in old.wanted:
                    self._candidates[name].discard(path)
                    changed.add(name)
            self.nodes[path] = node
            for name in node.wanted:
                self._candidates[name].add(path)
                changed.add(name)
            parent = path
            while True:
                parent, sep, _ = parent.rpartition("/")
                if not sep or parent in self._directories:
                    break
                self._directories.add(parent)
        self._upper = {}
        self._whiteouts = set()
        self._opaques = set()
        return changed

    def _prune(self, subtrees: set[str], children_of: set[str], changed: set[str]) -> None:
        doomed: list[str] = [p for p in subtrees if p not in self._directories and p in self.nodes]
        subtrees = {p for p in subtrees if p in self._directories}
        if not subtrees and not children_of:  # only plain files were whited out
            self._drop(doomed, changed)
            return
        doomed = []
        root_opaque = "" in children_of
        for path in self.nodes:
            if path in subtrees or root_opaque:
                doomed.append(path)
                continue
            ancestor = path
            while True:
                ancestor, sep, _ = ancestor.rpartition("/")
                if not sep:
                    break
                if ancestor in subtrees or ancestor in children_of:
                    doomed.append(path)
                    break
        self._drop(doomed, changed)

    def _drop(self, paths: list[str], changed: set[str]) -> None:
        for path in paths:
            node = self.nodes.pop(path)
            for name in node.wanted:
                self._candidates[name].discard(path)
                changed.add(name)

    # -- resolving --------------------------------------------------------------

    def _resolve(
        self, path: str, *, follow_final: bool, lookup: Callable[[str], Node | None]
    ) -> str:
        parts = deque(p for p in path.split("/") if p)
        resolved: list[str] = []
        hops = 0
        while parts:
            name = parts.popleft()
            if name == ".":
                continue
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/".join([*resolved, name])
            node = lookup(candidate)
            if node is not None and node.kind == SYMLINK and (parts or follow_final):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise SymlinkLoop(path)
                if node.link.startswith("/"):
                    resolved = []
                parts.extendleft(reversed([p for p in node.link.split("/") if p]))
                continue
            resolved.append(name)
        return "/".join(resolved)

    def realpath(self, path: str) -> str | None:
        """``path`` with all symlinks resolved inside the root; None (and a warning) on a loop."""
        try:
            return self._resolve(path, follow_final=True, lookup=self.nodes.get)
        except SymlinkLoop:
            self.env.warn(path, "too many levels of symbolic links (a symlink loop); skipped")
            return None

    # -- the FileView protocol --------------------------------------------------

    def candidates(self, cataloger: str) -> list[str]:
        return sorted(self._candidates.get(cataloger, ()))

    def _file(self, path: str) -> tuple[str, Node] | None:
        node = self.nodes.get(path)
        if node is None or node.kind == SYMLINK:
            real = self.realpath(path)
            if real is None:
                return None
            path, node = real, self.nodes.get(real)
        if node is None or node.kind != FILE:
            return None
        return path, node

    def read(self, path: str) -> bytes | None:
        found = self._file(path)
        if found is None:
            return None
        real, node = found
        if node.content is not None:
            return node.content
        if self._loader is not None and node.wanted:
            return self._loader(real, node)
        return None

    def parse(self, path: str, key: str, parser: Callable[[bytes, Warn], T]) -> T | None:
        found = self._file(path)
        if found is None:
            return None
        real, node = found
        if node.memo is not None and key in node.memo:
            result, warnings = node.memo[key]
            for cause in warnings:
                self.env.warn(real, cause)
            return result  # type: ignore[no-any-return]
        data = self.read(real)
        if data is None:
            return None
        collected: list[str] = []
        result = parser(data, collected.append)
        for cause in collected:
            self.env.warn(real, cause)
        if node.memo is None:
            node.memo = {}
        node.memo[key] = (result, tuple(collected))
        return result

    def analysis(self, path: str, cataloger: str) -> Any:
        node = self.nodes.get(path)
        if node is None or node.kind != FILE:
            return None
        if node.analysis is not None and cataloger in node.analysis:
            return node.analysis[cataloger]
        if self._opener is None or cataloger not in node.wanted:
            return None
        result = None
        if self.env.over_limit(path, node.size, self.env.limits.max_archive_bytes):
            node.analysis = {**(node.analysis or {}), cataloger: None}
            return None
        try:
            with self._opener(path) as stream:
                streaming = as_streaming(self.selector.catalogers[cataloger])
                result = streaming.analyze(path, stream, node.size, self.env)
        except OSError as err:
            self.env.warn(path, f"cannot read ({err.strerror or err}); skipped")
        if node.analysis is None:
            node.analysis = {}
        node.analysis[cataloger] = result
        return result


# -- directories ------------------------------------------------------------------


def _open_inside(root: str, path: str) -> IO[bytes]:
    fd = os.open(os.path.join(root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


def _read_inside(root: str, path: str, size: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of a file expected to hold ``size``: one read() for most files.

    Plain descriptor reads, without a buffered file object per file (thousands of
    small metadata files make that setup cost add up).
    """
    fd = os.open(os.path.join(root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, min(size, limit) + 1)]
        total = len(chunks[0])
        while chunks[-1] and total <= limit:  # the file grew, or was short-read
            chunks.append(os.read(fd, limit + 1 - total))
            total += len(chunks[-1])
    finally:
        os.close(fd)
    return b"".join(chunks)[:limit]


def directory_tree(root: str, selector: Selector, env: ScanEnv) -> FileTree:
    """Walk ``root`` (never following symlinks) into a tree whose wanted files load lazily.

    Only what a cataloger can use becomes a node: wanted files and symlinks (which
    path resolution follows).  Directories and other files are never staged, since
    an absent node and an unwanted one read the same (nothing).  File types come
    from the directory entries; a file is ``lstat``-ed (relative to its directory's
    descriptor, so the kernel walks one name, not the whole path) only for what a
    cataloger asks of it: the execute bits, and the size of a wanted file.  A large
    tree is walked by two processes (see :func:`_walk_split`).
    """
    limits: Limits = env.limits

    def load(path: str, node: Node) -> bytes | None:
        if env.over_limit(path, node.size, limits.max_metadata_bytes):
            return None
        try:
            return _read_inside(root, path, node.size, limits.max_metadata_bytes)
        except OSError as err:
            env.warn(path, f"cannot read ({err.strerror or err}); skipped")
            return None

    tree = FileTree(selector, env, loader=load, opener=lambda path: _open_inside(root, path))
    tree.begin_layer()
    walk = _Walk(root, selector)
    pending = [""]
    while pending and len(pending) < _SPLIT_AT:  # breadth first, until there is work to share
        level, pending = pending, []
        for relative in level:
            walk.directory(relative, pending)
    _walk_split(walk, pending)
    for path, kind, mode, size, link, wanted in walk.found:
        tree.stage(path, Node(kind, mode, size, 0, link, wanted=wanted))
    for path, cause in walk.warnings:
        env.warn(path, cause)
    tree.commit_layer()
    return tree


_SPLIT_AT = 512  # directories pending before the rest of the walk is shared between two processes

Found = tuple[str, NodeKind, int, int, str, tuple[str, ...]]  # path, kind, mode, size, link, wanted


class _Walk:
    """What the walk found so far, as plain tuples (they cross a pipe from the helper)."""

    def __init__(self, root: str, selector: Selector) -> None:
        self.root = root
        self.selector = selector
        self.found: list[Found] = []
        self.warnings: list[tuple[str, str]] = []

    def all(self, pending: list[str]) -> None:
        while pending:
            self.directory(pending.pop(), pending)

    def take(self, queue: int, units: list[list[str]]) -> None:
        """Walk the units whose indexes this process reads from the ``queue`` pipe, until EOF."""
        while len(record := os.read(queue, 4)) == 4:
            self.all(list(units[int.from_bytes(record, "little")]))

    def directory(self, relative: str, pending: list[str]) -> None:
        """Record one directory's wanted files and symlinks; its subdirectories go to ``pending``."""
        root, selector, found = self.root, self.selector, self.found
        names, suffixes = selector.names, selector.suffixes
        need_mode = selector.executables  # then every regular file's mode matters
        try:  # the root may be a symlink (dir:LINK); below it, never follow one
            fd = os.open(
                f"{root}/{relative}" if relative else root,
                os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if relative else 0),
            )
        except OSError as err:
            self.warnings.append(
                (relative or ".", f"cannot list directory ({err.strerror or err}); skipped")
            )
            return
        prefix = f"{relative}/" if relative else ""
        parent_wanted = relative in selector.parents
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    name = entry.name
                    try:
                        if entry.is_file(follow_symlinks=False):  # the common case first
                            named = parent_wanted or name in names or name.endswith(suffixes)
                            if not (named or need_mode):
                                continue
                            info = entry.stat(follow_symlinks=False)
                            if not (named or info.st_mode & 0o111):
                                continue
                            path = prefix + name
                            wanted = tuple(c.name for c in selector.match(path, info.st_mode))
                            if wanted:
                                mode = stat.S_IMODE(info.st_mode)
                                found.append((path, FILE, mode, info.st_size, "", wanted))
                        elif entry.is_dir(follow_symlinks=False):
                            if not (
                                relative == "" and name in ("proc", "sys") and _is_mount(root, name)
                            ):
                                pending.append(prefix + name)
                        elif entry.is_symlink():
                            try:
                                link = os.readlink(name, dir_fd=fd)
                            except OSError:
                                link = ""
                            found.append((prefix + name, SYMLINK, 0o777, 0, link, ()))
                    except OSError as err:
                        self.warnings.append(
                            (prefix + name, f"cannot stat ({err.strerror or err}); skipped")
                        )
        except OSError as err:
            self.warnings.append(
                (relative or ".", f"cannot list directory ({err.strerror or err}); skipped")
            )
        finally:
            os.close(fd)


def _walk_split(walk: _Walk, pending: list[str]) -> None:
    """Walk ``pending`` here and in a forked helper, which share the directories as they go.

    The walk is system calls and small objects, bound by one core; a second
    process halves its wall time on a multi-core machine (what Trivy's goroutines
    get too).  The directories' indexes wait in a pipe, and each process takes the
    next one when it is free (reads of a few bytes from a pipe are atomic), so one
    large subtree cannot leave the other process idle.  The helper sends plain
    tuples back over a second pipe (``marshal``) and exits; if it fails in any
    way, the whole share is walked again here.  No fork while other threads run (a
    forked copy of a lock they hold would never be released).
    """
    if len(pending) < 2 or threading.active_count() > 1 or not hasattr(os, "fork"):
        walk.all(pending)
        return
    per_unit = -(-len(pending) // _MAX_UNITS)
    units = [pending[i : i + per_unit] for i in range(0, len(pending), per_unit)]
    queue_read, queue_write = os.pipe()
    try:  # at most _MAX_UNITS records: fits the pipe buffer, so this write never blocks
        os.write(queue_write, b"".join(i.to_bytes(4, "little") for i in range(len(units))))
    finally:
        os.close(queue_write)
    results_read, results_write = os.pipe()
    kept = len(walk.found), len(walk.warnings)
    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:  # the helper: walk, send, and leave without running any cleanup
        status = 1
        try:
            os.close(results_read)
            helper = _Walk(walk.root, walk.selector)
            helper.take(queue_read, units)
            data = marshal.dumps((helper.found, helper.warnings))
            with os.fdopen(results_write, "wb") as pipe:
                pipe.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(results_write)
    try:
        walk.take(queue_read, units)
    finally:
        os.close(queue_read)
    with os.fdopen(results_read, "rb") as pipe:
        data = pipe.read()
    status = os.waitpid(pid, 0)[1] if pid > 0 else 1
    try:
        found, warnings = marshal.loads(data) if status == 0 else (None, None)
    except (EOFError, ValueError, TypeError):
        found = warnings = None
    if not isinstance(found, list) or not isinstance(warnings, list):
        del walk.found[kept[0] :], walk.warnings[kept[1] :]  # the helper failed: walk it all
        walk.all(pending)
        return
    walk.found.extend(found)
    walk.warnings.extend(warnings)


_MAX_UNITS = 16384  # 4-byte records: 64 KiB, the smallest pipe buffer Linux gives


def _is_mount(root: str, name: str) -> bool:
    return os.path.ismount(os.path.join(root, name))
