"""The real OPA (``opa run --server``, built by scripts/peers.sh) on a free loopback port.

Tests point attest's remote engine at it, and the differential tests load each
policy into it through OPA's Policy API and evaluate a whole corpus of inputs in
one Data API request (:meth:`OpaServer.evaluate_batch`), so thousands of inputs
take a second, not thousands of round trips.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from attest.testing import free_port, stop_process
from tests.support.peers import peer_binary

START_TIMEOUT = 30.0
BATCH_PACKAGE = "attest_differential"


def opa(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``opa`` command line (``opa test``, ``opa eval``, …) and capture its output."""
    return subprocess.run(
        [peer_binary("opa"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def opa_builtins() -> frozenset[str]:
    """The names of every built-in function this OPA offers (``opa capabilities --current``)."""
    done = opa("capabilities", "--current")
    assert done.returncode == 0, done.stderr
    return frozenset(b["name"] for b in json.loads(done.stdout)["builtins"])


@dataclass
class OpaServer:
    """One ``opa run --server`` process; ``files`` are loaded at start (policy ids = paths)."""

    workdir: Path
    files: Sequence[Path] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"opa-{self.port}.log"

    def start(self) -> OpaServer:
        command = [
            peer_binary("opa"),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "error",
            "--disable-telemetry",
            *map(str, self.files),
        ]
        self.process = subprocess.Popen(
            command, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"opa exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                if self.session.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"opa did not come up: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        stop_process(self.process)
        self.session.close()

    def policies(self) -> list[str]:
        response = self.session.get(f"{self.url}/v1/policies", timeout=10)
        response.raise_for_status()
        return [policy["id"] for policy in response.json()["result"]]

    def put_policy(self, policy_id: str, text: str) -> requests.Response:
        """Load or replace one module through the Policy API (400 with OPA's errors if bad)."""
        return self.session.put(
            f"{self.url}/v1/policies/{policy_id}",
            data=text.encode(),
            headers={"Content-Type": "text/plain"},
            timeout=30,
        )

    def replace_policies(self, modules: dict[str, str]) -> requests.Response | None:
        """Make ``modules`` the only policies loaded; the first refusal, or ``None``."""
        for policy_id in self.policies():
            self.session.delete(f"{self.url}/v1/policies/{policy_id}", timeout=10)
        for name, text in sorted(modules.items()):
            response = self.put_policy(name, text)
            if response.status_code != 200:
                return response
        return None

    def data(self, path: str, input_doc: Any, *, strict: bool = True) -> requests.Response:
        """``POST /v1/data/<path>`` with ``{"input": input_doc}``."""
        params = {"strict-builtin-errors": "true"} if strict else {}
        return self.session.post(
            f"{self.url}/v1/data/{path}", json={"input": input_doc}, params=params, timeout=60
        )

    def evaluate_batch(
        self, package: str, docs: Sequence[Any]
    ) -> list[dict[str, list[Any]]] | None:
        """``deny`` and ``warn`` of ``package`` for every document, in one request.

        Each answer is ``{"deny": [value], "warn": [value]}``, an empty list where
        the rule is undefined.  ``None`` when the evaluation failed (a built-in
        error in any document fails the batch: ask per document to see which).
        """
        batch = f"""package {BATCH_PACKAGE}
import rego.v1
results := [r |
	some doc in input.batch
	r := {{
		"deny": [v | v := data.{package}.deny with input as doc],
		"warn": [v | v := data.{package}.warn with input as doc],
	}}
]
"""
        refused = self.put_policy(f"{BATCH_PACKAGE}.rego", batch)
        assert refused.status_code == 200, refused.text
        response = self.data(f"{BATCH_PACKAGE}/results", {"batch": list(docs)})
        if response.status_code != 200:
            return None
        return response.json()["result"]
