"""License normalisation: DEP-5 names, free-text copyright files, classifiers, SPDX pass-through."""

from __future__ import annotations

import pytest

from attest.sbom.catalogers.dpkg import parse_copyright
from attest.sbom.licenses import debian_expression, from_classifiers, normalize


@pytest.mark.parametrize(
    ("dep5", "spdx"),
    [
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("Expat", "MIT"),
        ("BSD-3-clause and ISC", "BSD-3-Clause AND ISC"),
        ("GPL-1+ or Artistic", "GPL-1.0-or-later OR Artistic-1.0-Perl"),
        ("GPL-3+ with Bison exception", "GPL-3.0-or-later WITH Bison-exception-2.2"),
        (
            "GPL-2+ with OpenSSL exception",
            "GPL-2+ with OpenSSL exception",
        ),  # no SPDX id: as written
        ("public-domain", "public-domain"),
    ],
)
def test_debian_short_names(dep5: str, spdx: str) -> None:
    assert debian_expression(dep5) == spdx


def test_copyright_files_machine_readable_and_free_text() -> None:
    dep5 = (
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        b"Upstream-Name: demo\n\nFiles: *\nCopyright: 2020 A\nLicense: GPL-2+\n\n"
        b"Files: lib/*\nCopyright: 2021 B\nLicense: Expat\n\n"
        b"License: GPL-2+\n This program is free software...\n"
    )
    assert parse_copyright(dep5, lambda _c: None) == ("GPL-2.0-or-later", "MIT")
    free = (
        b"This package is free software; you can redistribute it under the terms of the\n"
        b"GNU Lesser General Public License, version 2.1 (or, at your option, any later\n"
        b"version).  See /usr/share/common-licenses/LGPL-2.1 and /usr/share/common-licenses/GPL-3.\n"
    )
    assert parse_copyright(free, lambda _c: None) == (
        "GPL-3.0-only",
        "LGPL-2.1-only",
        "LGPL-2.1-or-later",
    )


def test_python_classifiers_and_spdx_values() -> None:
    assert from_classifiers(
        ["License :: OSI Approved :: MIT License", "License :: OSI Approved :: Apache Software License",
         "Programming Language :: Python"]
    ) == ["MIT", "Apache Software License"]  # fmt: skip
    assert normalize("mit") == "MIT"
    assert normalize("Apache-2.0 OR MIT") == "Apache-2.0 OR MIT"
    assert normalize("UNKNOWN") is None
    assert normalize("  Some  Custom\nLicense ") == "Some Custom License"
