"""Where the built-in Rego policies are, in a checkout and in an installed package.

``policies/`` at the top of the repository is the one source of truth.  A
wheel installs a copy of it as data files (``[tool.setuptools.data-files]`` in
``pyproject.toml``) under ``<prefix>/share/attest/policies``, so the image and
any ``pip install`` find the same files without a second copy in the tree.
Lookup order: ``$ATTEST_POLICY_BUNDLE``; the checkout this module runs from
(editable installs, tests); the installed data files of the ``attest``
distribution; ``<sys.prefix>/share/attest/policies``.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

BUNDLE_VARIABLE = "ATTEST_POLICY_BUNDLE"
DATA_DIR = ("share", "attest", "policies")
_MARKER = "admission.rego"


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    policies = root / "policies"
    if (root / "pyproject.toml").is_file() and (policies / _MARKER).is_file():
        return policies
    return None


def _installed() -> Path | None:
    try:
        files = metadata.files("attest") or []
    except metadata.PackageNotFoundError:
        return None
    suffix = (*DATA_DIR, _MARKER)
    for entry in files:
        if tuple(entry.parts[-len(suffix) :]) == suffix:
            located = Path(str(entry.locate())).resolve()
            if located.is_file():
                return located.parent
    return None


def default_bundle() -> Path:
    """The built-in policy bundle directory (it may not exist; loading it says so)."""
    override = os.environ.get(BUNDLE_VARIABLE, "").strip()
    if override:
        return Path(override).expanduser()
    return _checkout() or _installed() or Path(sys.prefix).joinpath(*DATA_DIR)
