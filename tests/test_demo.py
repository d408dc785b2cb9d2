"""`make demo` is one of the two Quick start commands: run its script end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_demo_runs_the_whole_flow(tmp_path: Path) -> None:
    env = {**os.environ, "ATTEST_DEMO_DIR": str(tmp_path / "demo")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "attest pipeline" in out
    assert '"verified": true' in out
    assert "ADMITTED: Deployment shop/shop-signed" in out
    assert "DENIED: Deployment shop/shop-unsigned" in out
    assert "no trusted signature" in out
    assert out.rstrip().endswith("(image layout, loopback registry, SQLite)")
    assert (tmp_path / "demo" / "image" / "index.json").is_file()
    # it ends with signed audit evidence for its own decisions, verified
    assert "chain VERIFIED (2 of 2 decisions verified)" in proc.stderr
    assert "Verified 1 attestation(s) of type https://attest.dev/evidence/v1" in proc.stderr
    evidence = (tmp_path / "demo" / "evidence.csv").read_text()
    assert "https://github.com/example/attest-demo/actions/runs/1" in evidence
