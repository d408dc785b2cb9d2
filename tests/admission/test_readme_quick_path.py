"""The README's "I use Kyverno or gator" commands run as written, with the exit codes it states."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import ROOT

HEADING = "### I use Kyverno or gator"


def _commands() -> list[tuple[str, int]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(HEADING) :]
    block = section[
        section.index("```console") : section.index("```\n", section.index("```console") + 3)
    ]
    commands = []
    for line in block.splitlines():
        if line.startswith("$ "):
            code = re.search(r"# exit (\d+)", line)
            commands.append((line[2:], int(code.group(1)) if code else 0))
    return commands


def test_kyverno_gator_quick_path_runs_as_written(tmp_path: Path) -> None:
    commands = _commands()
    assert len(commands) == 4 and any("admission test" in c for c, _ in commands)
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command, expected in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == expected, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        if "review" in command and expected == 1:
            assert "DENIED: Pod shop/debug" in done.stdout
            assert "ADMITTED: Deployment shop/web" in done.stdout
    suite = ET.parse(tmp_path / "admission-tests.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("3", "0")
