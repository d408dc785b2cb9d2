"""The ``dir:`` walk: a large tree is shared with a forked helper and still read exactly once."""

from __future__ import annotations

import json
import marshal
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from attest.sbom import filesystem
from attest.sbom.catalogers import default_catalogers
from attest.sbom.catalogers.base import ScanEnv
from attest.sbom.filesystem import Selector, directory_tree


@pytest.fixture(scope="module")
def wide_tree(tmp_path_factory: pytest.TempPathFactory, go_binary: Path) -> Path:
    """More directories on one level than the walk keeps to itself, with wanted files in each."""
    root = tmp_path_factory.mktemp("wide")
    for index in range(filesystem._SPLIT_AT + 200):
        package = root / "srv/node_modules" / f"pkg{index}"
        package.mkdir(parents=True)
        (package / "package.json").write_text(
            json.dumps({"name": f"pkg{index}", "version": "1.0.0"})
        )
        (package / "index.js").write_text("module.exports = 1\n")
        if index % 50 == 0:
            (package / "bin").mkdir()
            shutil.copy(go_binary, package / "bin" / "tool")
            os.chmod(package / "bin" / "tool", 0o755)
            (package / "bin" / "link").symlink_to("tool")
            (package / "loop").symlink_to("loop")
    (root / "srv/unreadable").mkdir()
    (root / "srv/unreadable").chmod(0)
    return root


def _walked(root: Path) -> tuple[dict[str, Any], list[str]]:
    env = ScanEnv(None)
    tree = directory_tree(str(root), Selector(default_catalogers()), env)
    nodes = {p: (n.kind, n.mode, n.size, n.link, n.wanted) for p, n in tree.nodes.items()}
    return nodes, sorted(env.warnings)


def _single_process(root: Path) -> tuple[dict[str, Any], list[str]]:
    walk = filesystem._Walk(str(root), Selector(default_catalogers()))
    walk.all([""])
    nodes = {
        path: (kind, mode, size, link, wanted)
        for path, kind, mode, size, link, wanted in walk.found
    }
    env = ScanEnv(None)
    for path, cause in walk.warnings:
        env.warn(path, cause)
    return nodes, sorted(env.warnings)


def _counting_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    forks: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return forks


def test_the_shared_walk_finds_what_one_process_finds(
    wide_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forks = _counting_forks(monkeypatch)
    nodes, warnings = _walked(wide_tree)
    assert len(forks) == 1  # the helper really ran
    assert (nodes, warnings) == _single_process(wide_tree)
    npm = [p for p, node in nodes.items() if "npm" in node[4]]
    assert len(npm) == filesystem._SPLIT_AT + 200
    assert nodes["srv/node_modules/pkg0/bin/tool"][4] == ("go-binary",)
    assert nodes["srv/node_modules/pkg0/bin/link"][0] == filesystem.SYMLINK
    if os.geteuid() != 0:  # root reads a mode-0 directory anyway
        assert any(w.startswith("/srv/unreadable: cannot list directory") for w in warnings)


def test_a_failing_helper_costs_time_not_results(
    wide_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forks = _counting_forks(monkeypatch)

    def broken(value: object) -> bytes:
        raise ValueError("the helper cannot send")

    monkeypatch.setattr(marshal, "dumps", broken)  # only the helper sends
    assert _walked(wide_tree) == _single_process(wide_tree)
    assert len(forks) == 1
