"""The ``dir:`` walk: a large tree is shared with a forked helper and still read exactly once."""

from __future__ import annotations

import json
import marshal
import multiprocessing
import os
import shutil
import threading
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


def _broken_send(value: object) -> bytes:
    raise ValueError("the helper cannot send")


def _walk_counting_forks(root: str, break_sending: bool) -> tuple[int, Any, list[str]]:
    """The walk in this process, counting its forks; ``break_sending`` breaks the helper."""
    forks: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    os.fork = fork  # type: ignore[assignment]  # a fresh process of its own: nothing to restore
    if break_sending:
        marshal.dumps = _broken_send  # type: ignore[assignment]  # only the helper sends
    nodes, warnings = _walked(Path(root))
    return len(forks), nodes, warnings


def _walk_alone(root: Path, *, break_sending: bool = False) -> tuple[int, Any, list[str]]:
    """The walk in a freshly spawned interpreter with one thread, as ``attest sbom`` runs it:
    the walk never forks beside other threads, and a test session has several."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_walk_counting_forks, (str(root), break_sending))


def test_the_shared_walk_finds_what_one_process_finds(wide_tree: Path) -> None:
    forks, nodes, warnings = _walk_alone(wide_tree)
    assert forks == 1  # the helper really ran
    assert (nodes, warnings) == _single_process(wide_tree)
    npm = [p for p, node in nodes.items() if "npm" in node[4]]
    assert len(npm) == filesystem._SPLIT_AT + 200
    assert nodes["srv/node_modules/pkg0/bin/tool"][4] == ("go-binary",)
    assert nodes["srv/node_modules/pkg0/bin/link"][0] == filesystem.SYMLINK
    if os.geteuid() != 0:  # root reads a mode-0 directory anyway
        assert any(w.startswith("/srv/unreadable: cannot list directory") for w in warnings)


def test_a_failing_helper_costs_time_not_results(wide_tree: Path) -> None:
    forks, nodes, warnings = _walk_alone(wide_tree, break_sending=True)
    assert forks == 1
    assert (nodes, warnings) == _single_process(wide_tree)


def test_no_fork_beside_other_threads(wide_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process with other threads (this test session) walks alone, with the same result."""
    monkeypatch.setattr(os, "fork", _broken_send)
    other = threading.Event()
    thread = threading.Thread(target=other.wait)
    thread.start()
    try:
        assert _walked(wide_tree) == _single_process(wide_tree)
    finally:
        other.set()
        thread.join()
