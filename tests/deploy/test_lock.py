"""requirements.lock: hash-pinned runtime dependencies that match pyproject.toml and install.

The lock pins the union of the base dependencies and every extra but ``test`` (the
webhook's extra included, when pyproject has one), so one lock serves the image, the
GitHub action and the GitLab template. Regenerate with ``make lock``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

LOCK = ROOT / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra, requirements in project.get("optional-dependencies", {}).items():
        if extra != "test":
            texts.extend(requirements)
    return [Requirement(text) for text in texts]


def parse_lock(text: str) -> dict[str, dict]:
    """Each pinned package: version, marker, hashes and who asked for it (``via``)."""
    pins: dict[str, dict] = {}
    current: dict | None = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            current = pins[name] = {"version": Version(match.group(2)), "marker": match.group(3),
                                    "hashes": [], "via": []}  # fmt: skip
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current["hashes"].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif current is not None and line.strip().startswith("#"):
            current["via"].append(line.strip("# ").removeprefix("via").strip())
    return pins


def test_lock_pins_exactly_what_pyproject_asks_for() -> None:
    pins = parse_lock(LOCK.read_text())
    assert len(pins) > 20
    for name, pin in pins.items():
        assert pin["hashes"] and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pin["hashes"]), name
    top_level = {name for name, pin in pins.items() if "attest (pyproject.toml)" in pin["via"]}
    wanted = runtime_requirements()
    assert top_level == {canonicalize_name(r.name) for r in wanted}
    for requirement in wanted:
        pin = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(pin["version"], prereleases=True), (
            f"{requirement}: the lock pins {pin['version']}; run make lock"
        )


def test_parse_lock_reads_markers_and_multi_line_via() -> None:
    text = (
        "cffi==2.1.1 ; platform_python_implementation != 'PyPy' \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via\n    #   attest (pyproject.toml)\n    #   cryptography\n"
    )
    (pin,) = parse_lock(text).values()
    assert pin["marker"] == "platform_python_implementation != 'PyPy'"
    assert pin["hashes"] == ["a" * 64, "b" * 64] and "attest (pyproject.toml)" in pin["via"]


@pytest.mark.slow
def test_lock_installs_in_a_fresh_venv_with_require_hashes(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*pip, *args], capture_output=True, text=True, timeout=900, check=False
        )

    done = run("install", "--require-hashes", "-r", str(LOCK))
    assert done.returncode == 0, done.stderr[-3000:]
    # attest itself on top, resolving nothing: every requirement must already be met
    done = run("install", "--no-deps", str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    check = run("check")
    assert check.returncode == 0, check.stdout + check.stderr
    smoke = subprocess.run([str(venv / "bin" / "attest"), "policy", "test", str(ROOT / "policies")],
                           capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert smoke.returncode == 0 and "PASS:" in smoke.stdout, smoke.stderr
    # the same pin with other hashes is refused (a fresh venv: nothing already installed)
    block = re.search(r"^certifi==.*?(?=^\S)", LOCK.read_text(), re.MULTILINE | re.DOTALL)
    assert block is not None
    tampered = tmp_path / "tampered.lock"
    tampered.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, block.group(0)))
    other = tmp_path / "other"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(other)], check=True, timeout=120
    )
    refused = subprocess.run(
        [*pip, "install", "--require-hashes", "--target", str(other / "t"), "-r", str(tampered)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr, refused.stderr
