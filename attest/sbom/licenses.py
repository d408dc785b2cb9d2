"""License names as packages declare them, normalised to SPDX where that is unambiguous.

Every ecosystem spells licenses its own way: Debian's machine-readable
copyright files use DEP-5 short names (``GPL-2+``, ``Expat``), Python packages
use ``License-Expression``, a free-text ``License`` field or trove classifiers,
npm and Alpine mostly SPDX.  :func:`normalize` returns a valid SPDX identifier
or expression when the value is (or maps to) one, otherwise the trimmed name,
which the writers then emit as a named license rather than guessing.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cyclonedx import spdx

# DEP-5 / Debian short names that are not SPDX ids as written.
_DEBIAN = {
    "expat": "MIT",
    "artistic": "Artistic-1.0-Perl",
    "artistic-1": "Artistic-1.0",
    "artistic-2": "Artistic-2.0",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "psf-2": "PSF-2.0",
    "python": "Python-2.0",
    "zlib": "Zlib",
    "mpl-1.1": "MPL-1.1",
    "mpl-2.0": "MPL-2.0",
    "cc0": "CC0-1.0",
    "apache-2": "Apache-2.0",
    "lppl-1.3c": "LPPL-1.3c",
    "permissive": "",
    "public-domain": "",
}
# Compiled once: re's own cache is small, and license-expression fills it with its patterns.
_OPERATORS = re.compile(r"(?i)\s+(or|and)\s+|\s*,\s*(?:and\s+)?")
_WITH = re.compile(r"(?i)\s+(with)\s+")
_GNU = re.compile(r"(?i)(a?gpl|lgpl|gfdl)-?(\d(?:\.\d)?)(\+)?(?:-only|-or-later)?\Z")
_GNU_VERSIONS = {
    "1": "1.0",
    "2": "2.0",
    "3": "3.0",
    "2.1": "2.1",
    "1.1": "1.1",
    "1.2": "1.2",
    "1.3": "1.3",
}

# Trove classifiers -> SPDX ids (the common ones; others fall back to names).
_CLASSIFIERS = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "ISC License (ISCL)": "ISC",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "Python Software Foundation License": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "zlib/libpng License": "Zlib",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}
_CLASSIFIER_PREFIX = "License :: "


@lru_cache(maxsize=4096)
def is_spdx_id(value: str) -> bool:
    """Whether ``value`` is an SPDX license id, exactly as written."""
    return spdx.is_supported_id(value)


@lru_cache(maxsize=4096)
def is_spdx_expression(value: str) -> bool:
    """Whether ``value`` parses as an SPDX license expression (cached: parsing is slow)."""
    return spdx.is_expression(value)


def is_spdx(value: str) -> bool:
    """Whether ``value`` is a valid SPDX id or expression."""
    return bool(value) and (spdx.is_supported_id(value) or is_spdx_expression(value))


@lru_cache(maxsize=4096)
def normalize(value: str | None) -> str | None:
    """An SPDX id/expression for ``value`` if it is one (ids case-fixed), else the trimmed name."""
    if value is None:
        return None
    text = " ".join(value.split())
    if not text or text.upper() in ("UNKNOWN", "NONE", "NOASSERTION", "UNLICENSED", "SEE LICENSE"):
        return None
    return spdx.fixup_id(text) or text


@lru_cache(maxsize=4096)
def debian_short_name(name: str) -> str | None:
    """The SPDX id for one DEP-5 short name (``GPL-2+`` -> ``GPL-2.0-or-later``), or None."""
    name = name.strip()
    if name.endswith(","):
        name = name[:-1]
    lowered = name.lower()
    if lowered in _DEBIAN:
        return _DEBIAN[lowered] or None
    match = _GNU.match(name)
    if match:
        family = match.group(1).upper()
        version = _GNU_VERSIONS.get(match.group(2), match.group(2))
        candidate = f"{family}-{version}-{'or-later' if match.group(3) else 'only'}"
        return spdx.fixup_id(candidate)
    return spdx.fixup_id(name)


@lru_cache(maxsize=4096)
def debian_expression(value: str) -> str:
    """A DEP-5 ``License:`` value as SPDX when every part maps, else the value as written."""
    text = " ".join(value.split())
    if " with " in text.lower():
        return _with_exception(text)
    tokens = _OPERATORS.split(text)
    parts: list[str] = []
    for token in tokens:
        if token is None or not token.strip():
            continue
        if token.lower() in ("or", "and"):
            parts.append(token.upper())
            continue
        mapped = debian_short_name(token)
        if mapped is None:
            return text
        if parts and parts[-1] not in ("OR", "AND"):
            parts.append("AND")
        parts.append(mapped)
    expression = " ".join(parts)
    return expression if expression and is_spdx(expression) else text


_EXCEPTIONS = {
    "bison": "Bison-exception-2.2",
    "classpath": "Classpath-exception-2.0",
    "font": "Font-exception-2.0",
    "libtool": "Libtool-exception",
    "llvm": "LLVM-exception",
    "gcc-exception-3.1": "GCC-exception-3.1",
}


def _with_exception(text: str) -> str:
    """``GPL-3+ with Bison exception`` -> ``GPL-3.0-or-later WITH Bison-exception-2.2``."""
    license_part, _, exception_part = _WITH.split(text, maxsplit=1)
    license_id = debian_short_name(license_part)
    words = exception_part.lower().removesuffix(" exception").split()
    exception = _EXCEPTIONS.get(words[0]) if len(words) == 1 else None
    if license_id and exception and is_spdx(f"{license_id} WITH {exception}"):
        return f"{license_id} WITH {exception}"
    return text


def from_classifiers(classifiers: list[str]) -> list[str]:
    """SPDX ids (or names) from ``License ::`` trove classifiers."""
    found: list[str] = []
    for classifier in classifiers:
        if not classifier.startswith(_CLASSIFIER_PREFIX):
            continue
        leaf = classifier.rsplit(" :: ", 1)[-1].strip()
        if leaf in ("OSI Approved", "Other/Proprietary License", "DFSG approved"):
            continue
        value = _CLASSIFIERS.get(leaf, leaf)
        if value not in found:
            found.append(value)
    return found
