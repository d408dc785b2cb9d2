"""The one interface every cataloger implements, and what it is given to work with.

A cataloger declares its :class:`Interest` (which files it reads), so the
filesystem layer keeps exactly those while streaming layers, and then turns a
:class:`FileView` into packages with :meth:`Cataloger.catalog`.  Files that
are large and self-contained (Go binaries, Java archives) are instead handed
to :meth:`Cataloger.analyze` as a stream the moment they are read, and the
result is kept in place of the content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

from packageurl import PackageURL

from attest.sbom.model import OperatingSystem, Package

T = TypeVar("T")

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Interest:
    """Which files a cataloger reads.

    A file is a candidate when its base name is in ``names``, or ends with one of
    ``suffixes``, or its parent directory is in ``parents``, or (with ``executables``)
    it is a regular file with an execute bit; then ``accept(path)`` has the last word.
    ``stream`` means the content goes to :meth:`Cataloger.analyze` instead of memory.
    """

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    executables: bool = False
    stream: bool = False
    accept: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Limits:
    """Size limits that keep a hostile image from exhausting memory or disk."""

    max_metadata_bytes: int = 64 * 1024 * 1024  # one kept file (status, METADATA, rpmdb, …)
    max_archive_bytes: int = 1024 * 1024 * 1024  # one streamed archive or binary
    max_nested_depth: int = 4  # jars in jars in …
    max_nested_bytes: int = 256 * 1024 * 1024  # one nested archive unpacked


class FileView(Protocol):
    """Read access to the merged filesystem at one point of the scan."""

    def candidates(self, cataloger: str) -> list[str]:
        """Sorted paths (relative, no leading '/') of present files the cataloger wants."""
        ...

    def read(self, path: str) -> bytes | None:
        """Content of a wanted file (symlinks resolved inside the root), or None."""
        ...

    def realpath(self, path: str) -> str | None:
        """``path`` with every symlink resolved inside the root; None on a loop."""
        ...

    def parse(self, path: str, key: str, parser: Callable[[bytes, Warn], T]) -> T | None:
        """``parser(content, warn)`` for the current version of ``path``, computed once."""
        ...

    def analysis(self, path: str, cataloger: str) -> Any:
        """What ``analyze`` returned for the current version of ``path`` (None if nothing)."""
        ...


@dataclass
class ScanEnv:
    """Context for one cataloger run: the distribution, limits, and where warnings go."""

    operating_system: OperatingSystem | None
    limits: Limits = field(default_factory=Limits)
    warnings: list[str] = field(default_factory=list)

    def warn(self, path: str, cause: str) -> None:
        """Record that ``path`` was skipped (or read only in part) and why."""
        message = f"/{path.lstrip('/')}: {cause}"
        if message not in self.warnings:
            self.warnings.append(message)

    def over_limit(self, path: str, size: int, limit: int) -> bool:
        """Whether ``size`` is above ``limit``; if so, warn that ``path`` is skipped."""
        if size <= limit:
            return False
        self.warn(path, f"{size} bytes is above the {limit}-byte limit; skipped")
        return True


class Cataloger(Protocol):
    """Finds one ecosystem's packages."""

    name: str
    interest: Interest

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        """Every package of this ecosystem visible in ``view``."""
        ...


@runtime_checkable
class StreamingCataloger(Cataloger, Protocol):
    """A cataloger whose files (``interest.stream``) are too large to keep: each one is
    streamed through :meth:`analyze` once, and only the small result is kept."""

    def sniff(self, path: str, head: bytes) -> bool:
        """Whether the file is worth streaming, judged by its first bytes."""
        ...

    def analyze(self, path: str, stream: IO[bytes], size: int, env: ScanEnv) -> Any:
        """Digest one streamed file; the result must be small."""
        ...


def as_streaming(cataloger: Cataloger) -> StreamingCataloger:
    """``cataloger`` as the streaming cataloger its ``interest.stream`` says it is."""
    if not isinstance(cataloger, StreamingCataloger):
        raise TypeError(f"cataloger {cataloger.name} streams its files but cannot analyze them")
    return cataloger


def os_purl(
    kind: str,
    env: ScanEnv,
    default_namespace: str | None,
    name: str,
    version: str,
    **extra: str | None,
) -> PackageURL:
    """A purl of an OS package: the distribution as namespace and ``distro`` qualifier."""
    os_info = env.operating_system
    qualifiers = {key: value for key, value in extra.items() if value}
    if os_info is not None:
        qualifiers["distro"] = os_info.distro
    namespace = os_info.id if os_info is not None else default_namespace
    return PackageURL(kind, namespace, name, version, qualifiers or None)


def dependency_refs(package: Package, targets: Iterable[Package | None]) -> tuple[str, ...]:
    """The refs of the resolved ``targets``, in order, once each, never ``package`` itself."""
    refs: list[str] = []
    for target in targets:
        if target is not None and target is not package and target.ref not in refs:
            refs.append(target.ref)
    return tuple(refs)


def location(path: str) -> str:
    """A relative path as shown to users: with a leading '/'."""
    return "/" + path.lstrip("/")
