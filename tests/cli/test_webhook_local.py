"""The README's "Running the webhook locally" block runs as written (real openssl,
gunicorn over TLS and curl), on a free port instead of 8443."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from attest.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_readme_webhook_with_a_self_signed_certificate_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- quickpath:webhook-local -->")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL)
    assert block
    script = block.group(1).replace("8443", str(free_port()))
    shutil.copytree(ROOT / "keys-dev", tmp_path / "keys-dev")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    health, review = done.stdout.split("}", 1)
    assert json.loads(health + "}") == {"status": "ok"}
    answer = json.loads(review)
    assert answer["response"]["uid"] == "1" and answer["response"]["allowed"] is False
    assert "cannot reach registry localhost:5000" in answer["response"]["status"]["message"]
    listed = subprocess.run(
        [sys.executable, "-m", "attest", "decisions", "list", "--db", "decisions.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and "DENIED" in listed.stdout, listed.stdout + listed.stderr
