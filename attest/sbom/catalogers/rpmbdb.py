"""Read the values of a Berkeley DB hash database: rpm's legacy ``Packages`` file.

RHEL/CentOS 7 and 8 (and Amazon Linux 2) keep installed package headers in a
BerkeleyDB *hash* database, ``var/lib/rpm/Packages``.  Only reading is needed,
so this walks the pages directly instead of linking libdb: page 0 is the hash
metadata (magic ``0x061561``, page size, last page, byte order by the magic),
hash pages (types 2 and 13) hold key/data item pairs, and values too large for
a page live in a chain of overflow pages (type 7) that an ``H_OFFPAGE`` item
points to.  Every offset and chain is bounds-checked.
"""

from __future__ import annotations

import struct

HASH_MAGIC = 0x061561
_P_HASH_UNSORTED, _P_OVERFLOW, _P_HASHMETA, _P_HASH = 2, 7, 8, 13
_H_KEYDATA, _H_OFFPAGE = 1, 3
_PAGE_HEADER = 26
_CHECKSUM_FLAG = 0x01


class BdbError(ValueError):
    """The file is not a readable Berkeley DB hash database."""


def read_values(data: bytes) -> list[bytes]:
    """Every data item of a Berkeley DB hash file, in page order."""
    if len(data) < 512:
        raise BdbError("too short for a Berkeley DB file")
    for order in ("<", ">"):
        magic, _version, page_size = struct.unpack_from(order + "III", data, 12)
        if magic == HASH_MAGIC:
            break
    else:
        raise BdbError("not a Berkeley DB hash database (bad magic)")
    encrypted, page_type, meta_flags = data[24], data[25], data[26]
    if page_type != _P_HASHMETA:
        raise BdbError("page 0 is not hash metadata")
    if encrypted or meta_flags & _CHECKSUM_FLAG:
        raise BdbError("encrypted or checksummed databases are not supported")
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise BdbError(f"implausible page size {page_size}")
    (last_page,) = struct.unpack_from(order + "I", data, 32)
    pages = min(last_page + 1, len(data) // page_size)
    values: list[bytes] = []
    for number in range(1, pages):
        page = data[number * page_size : (number + 1) * page_size]
        if page[25] not in (_P_HASH, _P_HASH_UNSORTED):
            continue
        (entries,) = struct.unpack_from(order + "H", page, 20)
        if _PAGE_HEADER + 2 * entries > page_size:
            raise BdbError(f"page {number} claims {entries} entries")
        offsets = struct.unpack_from(f"{order}{entries}H", page, _PAGE_HEADER)
        for index in range(1, entries, 2):  # items alternate key, data
            values.append(_item(data, page, offsets, index, page_size, order))
    return values


def _item(
    data: bytes, page: bytes, offsets: tuple[int, ...], index: int, page_size: int, order: str
) -> bytes:
    start = offsets[index]
    end = offsets[index - 1] if index else page_size
    if not 0 < start < end <= page_size:
        raise BdbError("item offset out of range")
    kind = page[start]
    if kind == _H_KEYDATA:
        return page[start + 1 : end]
    if kind != _H_OFFPAGE:
        raise BdbError(f"unsupported item type {kind} (duplicates are not used by rpm)")
    first, total = struct.unpack_from(order + "II", page, start + 4)
    return _overflow(data, first, total, page_size, order)


def _overflow(data: bytes, first: int, total: int, page_size: int, order: str) -> bytes:
    parts: list[bytes] = []
    collected = 0
    number = first
    seen: set[int] = set()
    while collected < total:
        if number in seen or number == 0 or (number + 1) * page_size > len(data):
            raise BdbError(f"broken overflow chain at page {number}")
        seen.add(number)
        page = data[number * page_size : (number + 1) * page_size]
        if page[25] != _P_OVERFLOW:
            raise BdbError(f"page {number} is not an overflow page")
        (next_page,) = struct.unpack_from(order + "I", page, 16)
        (length,) = struct.unpack_from(order + "H", page, 22)  # bytes used on this page
        if length > page_size - _PAGE_HEADER:
            raise BdbError(f"overflow page {number} claims {length} bytes")
        parts.append(page[_PAGE_HEADER : _PAGE_HEADER + length])
        collected += length
        number = next_page
    return b"".join(parts)[:total]
