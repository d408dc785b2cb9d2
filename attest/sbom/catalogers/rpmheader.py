"""Decode rpm header blobs, the per-package records every rpm database stores.

A blob is ``il`` and ``dl`` (big-endian counts), ``il`` index entries of
(tag, type, offset, count), then ``dl`` bytes of data.  Only the tags an SBOM
needs are decoded; every offset and count is bounds-checked, so a corrupt
header raises :class:`HeaderError` instead of reading garbage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

NAME, VERSION, RELEASE, EPOCH, SUMMARY = 1000, 1001, 1002, 1003, 1004
VENDOR, LICENSE, PACKAGER, URL, ARCH = 1011, 1014, 1015, 1020, 1022
OLDFILENAMES, SOURCERPM, PROVIDENAME, REQUIRENAME = 1027, 1044, 1047, 1049
DIRINDEXES, BASENAMES, DIRNAMES, MODULARITYLABEL = 1116, 1117, 1118, 5096

_INT16, _INT32, _STRING, _STRING_ARRAY, _I18NSTRING = 3, 4, 6, 8, 9
_MAX_ENTRIES = 0xFFFF
_MAX_DATA = 256 * 1024 * 1024
_WANTED = frozenset(
    {NAME, VERSION, RELEASE, EPOCH, SUMMARY, VENDOR, LICENSE, PACKAGER, URL, ARCH, OLDFILENAMES}
    | {SOURCERPM, PROVIDENAME, REQUIRENAME, DIRINDEXES, BASENAMES, DIRNAMES, MODULARITYLABEL}
)


class HeaderError(ValueError):
    """The blob is not a well-formed rpm header."""


@dataclass
class Header:
    """The fields of one installed rpm that an SBOM uses."""

    name: str = ""
    version: str = ""
    release: str = ""
    epoch: int | None = None
    arch: str | None = None
    summary: str | None = None
    license: str | None = None
    vendor: str | None = None
    packager: str | None = None
    url: str | None = None
    source_rpm: str | None = None
    modularity_label: str | None = None
    provides: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _strings(data: bytes, offset: int, count: int) -> list[str]:
    values = []
    for _ in range(count):
        end = data.find(b"\0", offset)
        if end < 0:
            raise HeaderError("unterminated string")
        values.append(data[offset:end].decode("utf-8", "replace"))
        offset = end + 1
    return values


def _ints(data: bytes, offset: int, count: int, size: int) -> list[int]:
    end = offset + count * size
    if end > len(data):
        raise HeaderError("integer array runs past the data")
    fmt = f">{count}{'i' if size == 4 else 'h'}"
    return list(struct.unpack_from(fmt, data, offset))


def parse(blob: bytes) -> Header:
    """Decode the fields of :class:`Header` from one header blob."""
    if len(blob) < 8:
        raise HeaderError("shorter than its 8-byte preamble")
    entries, data_length = struct.unpack_from(">II", blob, 0)
    if entries > _MAX_ENTRIES or data_length > _MAX_DATA:
        raise HeaderError(f"implausible size ({entries} entries, {data_length} bytes)")
    data_start = 8 + entries * 16
    if data_start + data_length > len(blob):
        raise HeaderError("truncated")
    data = blob[data_start : data_start + data_length]
    values: dict[int, list[str] | list[int]] = {}
    for index in range(entries):
        tag, kind, offset, count = struct.unpack_from(">iiii", blob, 8 + index * 16)
        if tag not in _WANTED:
            continue
        if offset < 0 or offset >= max(data_length, 1) or count < 0 or count > data_length:
            raise HeaderError(f"tag {tag} points outside the data")
        if kind == _STRING:
            values[tag] = _strings(data, offset, 1)
        elif kind in (_STRING_ARRAY, _I18NSTRING):
            values[tag] = _strings(data, offset, count)
        elif kind == _INT32:
            values[tag] = _ints(data, offset, count, 4)
        elif kind == _INT16:
            values[tag] = _ints(data, offset, count, 2)
    header = Header()

    def text(tag: int) -> str | None:
        found = values.get(tag)
        return str(found[0]) if found else None

    header.name = text(NAME) or ""
    header.version = text(VERSION) or ""
    header.release = text(RELEASE) or ""
    epoch = values.get(EPOCH)
    header.epoch = int(epoch[0]) if epoch else None
    header.arch = text(ARCH)
    header.summary = text(SUMMARY)
    header.license = text(LICENSE)
    header.vendor = text(VENDOR)
    header.packager = text(PACKAGER)
    header.url = text(URL)
    header.source_rpm = text(SOURCERPM)
    header.modularity_label = text(MODULARITYLABEL)
    header.provides = [str(v) for v in values.get(PROVIDENAME, [])]
    header.requires = [str(v) for v in values.get(REQUIRENAME, [])]
    header.files = _files(values)
    return header


def _files(values: dict[int, list[str] | list[int]]) -> list[str]:
    basenames = [str(v) for v in values.get(BASENAMES, [])]
    if basenames:
        dirnames = [str(v) for v in values.get(DIRNAMES, [])]
        indexes = [int(i) for i in values.get(DIRINDEXES, [])]
        if len(indexes) != len(basenames):
            raise HeaderError("file name tables disagree in length")
        files = []
        for base, index in zip(basenames, indexes, strict=True):
            if not 0 <= index < len(dirnames):
                raise HeaderError("file directory index out of range")
            files.append(dirnames[index] + base)
        return files
    return [str(v) for v in values.get(OLDFILENAMES, [])]
