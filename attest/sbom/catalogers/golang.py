"""Go modules compiled into ELF binaries, from the build information Go embeds.

Since Go 1.18 the linker writes a ``.go.buildinfo`` blob: the magic
``\\xff Go buildinf:``, pointer size and flags, then the Go version and the
module information (``path``, ``mod``, ``dep``, ``=>`` replacement and ``build``
lines) as length-prefixed strings.  Seekable files are read through the ELF
section table; streamed layer entries are scanned for the magic instead, so a
binary is never buffered whole.  Each binary yields its main module (an
application), every dependency module and the Go standard library it was
built with (``pkg:golang/stdlib@1.22.1``), with edges from the main module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import IO

from packageurl import PackageURL

from attest.sbom.catalogers.base import FileView, Interest, ScanEnv, location
from attest.sbom.model import APPLICATION, Package

MAGIC = b"\xff Go buildinf:"
ELF_MAGIC = b"\x7fELF"
_INLINE_STRINGS = 0x2
_SCAN_CHUNK = 1 << 20
_WINDOW = 256 * 1024  # bytes decoded after a magic: version + module info fit easily
_MODINFO_SENTINEL = 16


@dataclass
class Module:
    path: str
    version: str
    sum: str = ""
    replaced_by: str | None = None


@dataclass
class BuildInfo:
    """What a Go binary says about how it was built."""

    go_version: str
    path: str = ""
    main: Module | None = None
    deps: list[Module] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)


class OldFormat(Exception):
    """Build info of Go < 1.18 (pointers into the data segment), which is not decoded."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def decode_blob(blob: bytes) -> BuildInfo | None:
    """Decode build info starting at its magic; None if this is not real build info."""
    if len(blob) < 32 or not blob.startswith(MAGIC) or blob[14] not in (4, 8):
        return None
    if not blob[15] & _INLINE_STRINGS:
        raise OldFormat
    try:
        length, pos = _varint(blob, 32)
        version = blob[pos : pos + length].decode("utf-8", "replace")
        pos += length
        length, pos = _varint(blob, pos)
        if pos + length > len(blob):
            return None
        modinfo = blob[pos : pos + length]
    except ValueError:
        return None
    if not version.startswith(("go", "devel")):
        return None
    if len(modinfo) >= 2 * _MODINFO_SENTINEL + 1 and modinfo[-_MODINFO_SENTINEL - 1] == 0x0A:
        modinfo = modinfo[_MODINFO_SENTINEL:-_MODINFO_SENTINEL]
    return parse_modinfo(version, modinfo.decode("utf-8", "replace"))


def parse_modinfo(go_version: str, text: str) -> BuildInfo:
    """Parse the ``path``/``mod``/``dep``/``=>``/``build`` lines of ``runtime/debug`` module info."""
    info = BuildInfo(go_version=go_version)
    last: Module | None = None
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if kind == "path":
            info.path = rest
        elif kind in ("mod", "dep") and fields and fields[0]:
            last = Module(
                fields[0],
                fields[1] if len(fields) > 1 else "",
                fields[2] if len(fields) > 2 else "",
            )
            if kind == "mod":
                info.main = last
            else:
                info.deps.append(last)
        elif kind == "=>" and last is not None and fields and fields[0]:
            target, version = fields[0], fields[1] if len(fields) > 1 else ""
            local = target.startswith((".", "/")) or version in ("", "(devel)")
            last.replaced_by = target if local else f"{target}@{version}"
            if not local:  # the code really compiled in is the replacement module
                last.path, last.version = target, version
                last.sum = fields[2] if len(fields) > 2 else ""
        elif kind == "build":
            key, _, value = rest.partition("=")
            info.settings[key] = value
    return info


_NO_SECTIONS = b""


def _from_sections(stream: IO[bytes]) -> bytes | None:
    """The ``.go.buildinfo`` section of a seekable ELF file, via its section headers.

    Returns None when the file has a section table without that section (not Go),
    and ``_NO_SECTIONS`` when there is no usable section table (scan instead).
    """
    stream.seek(0)
    ident = stream.read(64)
    if len(ident) < 52 or not ident.startswith(ELF_MAGIC):
        return None
    is64, endian = ident[4] == 2, "<" if ident[5] == 1 else ">"
    if is64:
        (shoff,) = struct.unpack_from(endian + "Q", ident, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", ident, 0x3A)
    else:
        (shoff,) = struct.unpack_from(endian + "I", ident, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", ident, 0x2E)
    if (
        not shoff
        or not 0 < shnum < 0x10000
        or shstrndx >= shnum
        or shentsize < (64 if is64 else 40)
    ):
        return None
    stream.seek(shoff)
    table = stream.read(shnum * shentsize)
    if len(table) < shnum * shentsize:
        return None

    def section(index: int) -> tuple[int, int, int]:
        base = index * shentsize
        if is64:
            (name,) = struct.unpack_from(endian + "I", table, base)
            offset, size = struct.unpack_from(endian + "QQ", table, base + 0x18)
        else:
            (name,) = struct.unpack_from(endian + "I", table, base)
            offset, size = struct.unpack_from(endian + "II", table, base + 0x10)
        return name, offset, size

    _, names_offset, names_size = section(shstrndx)
    stream.seek(names_offset)
    names = stream.read(min(names_size, 1 << 20))
    for index in range(shnum):
        name, offset, size = section(index)
        if names[name : name + 14] == b".go.buildinfo\0":
            stream.seek(offset)
            return stream.read(min(size, _WINDOW))
    return None


def _scan(stream: IO[bytes], head: bytes = b"") -> bytes | None:
    """Find build info in a forward-only stream; returns the bytes from the magic on."""
    buffer = head
    while True:
        start = 0
        while (found := buffer.find(MAGIC, start)) >= 0:
            window = buffer[found:]
            while len(window) < _WINDOW and (more := stream.read(_SCAN_CHUNK)):
                window += more
            if len(window) >= 32 and window[14] in (4, 8):
                return window
            buffer = window
            start = 1
        chunk = stream.read(_SCAN_CHUNK)
        if not chunk:
            return None
        buffer = buffer[-len(MAGIC) :] + chunk


def read_buildinfo(stream: IO[bytes]) -> BuildInfo | None:
    """The build info of an ELF Go binary in ``stream``, or None for anything else."""
    seekable = getattr(stream, "seekable", lambda: False)()
    if seekable:
        blob = _from_sections(stream)
        if blob is None:
            return None
        if blob is not _NO_SECTIONS:
            return decode_blob(blob)
        stream.seek(0)
    head = stream.read(len(ELF_MAGIC))
    if head != ELF_MAGIC:
        return None
    buffer = head
    while True:
        window = _scan(stream, buffer)
        if window is None:
            return None
        info = decode_blob(window)
        if info is not None:
            return info
        buffer = window[1:]


class GoBinaryCataloger:
    """Go modules of executable ELF files."""

    name = "go-binary"
    interest = Interest(executables=True, stream=True)

    @staticmethod
    def sniff(path: str, head: bytes) -> bool:
        return head.startswith(ELF_MAGIC)

    def analyze(self, path: str, stream: IO[bytes], size: int, env: ScanEnv) -> BuildInfo | None:
        try:
            return read_buildinfo(stream)
        except OldFormat:
            env.warn(path, "Go binary built before Go 1.18; its module information is not read")
        except (struct.error, ValueError) as err:
            env.warn(path, f"ELF file is malformed ({err}); skipped")
        return None

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        packages: list[Package] = []
        for path in view.candidates(self.name):
            info = view.analysis(path, self.name)
            if isinstance(info, BuildInfo):
                packages.extend(self._packages(path, info))
        return packages

    def _packages(self, path: str, info: BuildInfo) -> list[Package]:
        where = location(path)
        toolchain = info.go_version.removeprefix("go").split(" ", 1)[0]
        stdlib = Package(
            type="golang",
            name="stdlib",
            version=toolchain,
            purl=PackageURL("golang", None, "stdlib", toolchain),
            cataloger=self.name,
            location=where,
            ref=f"go:{path}:stdlib",
            licenses=("BSD-3-Clause",),
            properties={"attest:go:toolchain": info.go_version},
        )
        deps = [self._module(path, module) for module in info.deps]
        packages = [*deps, stdlib]
        main = info.main
        if main is not None:
            properties = {"attest:go:toolchain": info.go_version}
            for key in ("GOOS", "GOARCH", "vcs.revision", "vcs.time"):
                if info.settings.get(key):
                    properties[f"attest:go:{key}"] = info.settings[key]
            application = self._module(path, main)
            application.kind = APPLICATION
            application.properties.update(properties)
            application.depends = tuple(p.ref for p in packages)
            packages.insert(0, application)
        return packages

    def _module(self, path: str, module: Module) -> Package:
        namespace, _, name = module.path.rpartition("/")
        version = module.version if module.version not in ("", "(devel)") else None
        properties = {}
        if module.sum:
            properties["attest:go:sum"] = module.sum
        if module.replaced_by:
            properties["attest:go:replaced-by"] = module.replaced_by
        return Package(
            type="golang",
            name=module.path,
            version=module.version or "(devel)",
            purl=PackageURL("golang", namespace or None, name, version),
            cataloger=self.name,
            location=location(path),
            ref=f"go:{path}:{module.path}",
            properties=properties,
        )
