"""Rego policy bundles on disk: one ``.rego`` file or a directory of them.

A bundle is the set of policy modules an engine compiles.  Unit tests
(``*_test.rego``) are not part of it; :func:`load_tests` adds them for
``attest policy test``.  The bundle hash (SHA-256 over the sorted module
texts, names excluded) identifies the policy in decision records, whichever
engine evaluated it.

Hidden entries (names starting with ``.``) are not part of a bundle: a ConfigMap
volume holds every file twice, as the visible symlink (``x.rego -> ..data/x.rego``)
and in the kubelet's hidden ``..<timestamp>/`` directory, and reading both would
declare every rule twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from attest.errors import PolicyError

MAX_MODULE_BYTES = 4 * 1024 * 1024
MAX_MODULES = 1000
EXAMPLES = "examples"
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
# Packages the engines generate themselves (regopy's one-query entry point); a bundle
# that declared one could answer in the engine's place.
RESERVED_PACKAGE = "attest_internal"


@dataclass(frozen=True)
class PolicyBundle:
    """Rego modules by name (path relative to the bundle root) and their combined hash."""

    path: str
    modules: dict[str, str]
    hash: str

    def packages(self) -> frozenset[str]:
        """Every package some module of the bundle declares."""
        return frozenset(package_of(name, text) for name, text in self.modules.items())


def bundle_hash(texts: list[str] | tuple[str, ...]) -> str:
    """``sha256:<hex>`` over the sorted module texts (each followed by a NUL)."""
    digest = hashlib.sha256()
    for text in sorted(texts):
        digest.update(text.encode())
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def package_of(name: str, text: str) -> str:
    """The package a module declares; :class:`PolicyError` if it declares none."""
    match = _PACKAGE.search(_strip_comments(text))
    if not match:
        raise PolicyError(f"policy {name}: no 'package' declaration")
    return match.group(1)


def check_not_reserved(name: str, package: str) -> None:
    """:class:`PolicyError` when module ``name`` declares a package the engines reserve."""
    if package == RESERVED_PACKAGE or package.startswith(RESERVED_PACKAGE + "."):
        raise PolicyError(
            f"policy {name}: package {package} is reserved for attest's own entry points "
            f"({RESERVED_PACKAGE}.*); rename it"
        )


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


def is_test_module(path: Path) -> bool:
    return path.name.endswith("_test.rego")


def module_files(root: Path) -> list[Path]:
    """The ``.rego`` files of a bundle directory, sorted: hidden files and directories
    (``..data``, ``..2026_01_01_…``, ``.git``) skipped, symlinked directories not followed,
    and ``examples/`` at the top skipped (policies/examples/ holds separate example
    bundles, each its own ``package attest.admission``)."""
    found: list[Path] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        if Path(directory) == root and EXAMPLES in subdirectories:
            subdirectories.remove(EXAMPLES)  # separate example bundles, never this one
        found.extend(
            Path(directory, name)
            for name in names
            if name.endswith(".rego") and not name.startswith(".")
        )
    return sorted(p for p in found if p.is_file())


def _read_modules(root: Path, *, tests: bool) -> dict[str, str]:
    if not root.exists():
        raise PolicyError(f"policy bundle {root}: no such file or directory")
    if root.is_file():
        if root.suffix != ".rego":
            raise PolicyError(f"policy bundle {root}: not a .rego file or a directory")
        files = [root]
        base = root.parent
    else:
        files = module_files(root)
        base = root
    modules: dict[str, str] = {}
    for file in files:
        if is_test_module(file) and not tests and root.is_dir():
            continue
        if len(modules) >= MAX_MODULES:
            raise PolicyError(f"policy bundle {root}: more than {MAX_MODULES} modules")
        name = file.relative_to(base).as_posix()
        try:
            size = file.stat().st_size
            if size > MAX_MODULE_BYTES:
                raise PolicyError(f"policy {file}: larger than {MAX_MODULE_BYTES} bytes")
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"policy {file}: not UTF-8 text") from None
        except OSError as err:
            raise PolicyError(f"policy {file}: cannot be read ({err.strerror})") from None
        check_not_reserved(name, package_of(name, text))
        modules[name] = text
    return modules


def load_bundle(path: str) -> PolicyBundle:
    """Load a ``.rego`` file or a directory of them (``*_test.rego`` excluded)."""
    root = Path(path)
    modules = _read_modules(root, tests=False)
    if not modules:
        raise PolicyError(f"policy bundle {path}: no .rego policy modules found")
    return PolicyBundle(path=str(path), modules=modules, hash=bundle_hash(list(modules.values())))


def load_tests(path: str) -> tuple[PolicyBundle, dict[str, str]]:
    """The bundle at ``path`` and, separately, its ``*_test.rego`` modules."""
    root = Path(path)
    everything = _read_modules(root, tests=True)
    tests = {n: t for n, t in everything.items() if n.endswith("_test.rego")}
    policies = {n: t for n, t in everything.items() if n not in tests}
    bundle = PolicyBundle(
        path=str(path), modules=policies, hash=bundle_hash(list(policies.values()))
    )
    return bundle, tests
