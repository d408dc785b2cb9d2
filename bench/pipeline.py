"""Benchmark ``attest pipeline``: wall time and the split by step, on two images.

* ``demo``: the small two-layer image ``make demo`` builds;
* ``debian-minbase``: the image ``bench/sbom.py`` builds and caches under
  ``.cache/bench/sbom/`` (Debian bookworm minbase by mmdebstrap, plus a layer with a
  Python venv); its builder is reused, so the first run here may build it.

Each image is pushed to a real ``docker-registry`` on loopback, into a fresh repository
per run (so every run does the same work), and ``attest pipeline`` runs as a separate
process with the dev key (``keys-dev/``), generic provenance flags and bundle storage;
``--keyless`` signs through the local Sigstore (Fulcio + Rekor from @sigstore/mock)
instead.  Printed: median wall time of the process and the median seconds of each step
from the pipeline's own JSON summary.

Usage: .venv/bin/python bench/pipeline.py [--runs 5] [--images demo,debian-minbase] [--keyless]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attest.oci.builder import ImageBuilder  # noqa: E402
from attest.oci.layout import LayoutStore  # noqa: E402
from attest.oci.manifest import Descriptor, Manifest  # noqa: E402
from attest.oci.registry import RegistryRepository  # noqa: E402
from attest.oci.transport import RegistryClient, RegistryOptions  # noqa: E402
from attest.pipeline import STEPS  # noqa: E402
from attest.testing import RegistryServer  # noqa: E402

ATTEST = str(Path(sys.executable).with_name("attest"))
KEY = str(ROOT / "keys-dev" / "cosign.key")
GENERIC = [
    "--builder-id", "https://ci.example.com/builders/bench",
    "--source-uri", "git+https://git.example.com/team/app@refs/heads/main",
    "--source-digest", "0123456789abcdef0123456789abcdef01234567",
]  # fmt: skip


def demo_image(work: Path) -> ImageBuilder:
    """The image scripts/demo.py builds: Debian os-release, a script, a whiteout."""
    builder = ImageBuilder(
        config={"Entrypoint": ["/app/hello.sh"], "User": "1000"},
        labels={"org.opencontainers.image.title": "attest demo"},
    )
    base = builder.layer()
    base.dir("etc").file(
        "etc/os-release",
        'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
    )
    base.file("app/hello.sh", "#!/bin/sh\necho hello from the attest demo\n", mode=0o755)
    base.file("tmp/build-cache.txt", "scratch file removed in the next layer\n")
    builder.layer().file("app/VERSION", "1.0.0\n").whiteout("tmp/build-cache.txt")
    return builder


class PushableLayout:
    """An image in an OCI layout on disk, pushed blob by blob (no re-compression)."""

    def __init__(self, layout: Path, tag: str) -> None:
        self.layout, self.tag = layout, tag
        with LayoutStore(str(layout)) as store:
            fetched = store.fetch_manifest(tag)
        assert isinstance(fetched.parsed, Manifest)
        self.manifest, self.raw, self.media_type = fetched.parsed, fetched.raw, fetched.media_type
        self.layers = self.manifest.layers

    def _path(self, digest: str) -> str:
        return str(self.layout / "blobs" / "sha256" / digest.split(":", 1)[1])

    def push(self, store: RegistryRepository, tag: str) -> None:
        for blob in (*self.manifest.layers, self.manifest.config):
            store.push_blob(blob, path=self._path(blob.digest))
        store.push_manifest(self.raw, self.media_type, tag)


def minbase_image(_work: Path) -> PushableLayout:
    """bench/sbom.py's Debian bookworm minbase image (built and cached there on first use)."""
    spec = importlib.util.spec_from_file_location("bench_sbom", ROOT / "bench" / "sbom.py")
    assert spec and spec.loader
    sbom_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sbom_bench)
    base, _layer, _merged = sbom_bench.build_inputs()
    return PushableLayout(base.parent / "image", "bench")


IMAGES: dict[str, Callable[[Path], Any]] = {
    "demo": demo_image,
    "debian-minbase": minbase_image,
}


def run_once(reference: str, extra: list[str], env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run(
        [ATTEST, "pipeline", reference, *extra, *GENERIC],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"attest pipeline failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def bench_image(
    name: str, server: RegistryServer, runs: int, extra: list[str], env: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="attest-bench-") as work:
        image = IMAGES[name](Path(work))
        built = image.build(Path(work) / "build") if isinstance(image, ImageBuilder) else image
        walls: list[float] = []
        steps: dict[str, list[float]] = {step: [] for step in (*STEPS, "total")}
        summary: dict = {}
        for run in range(runs):
            repository = f"bench/pipeline-{name}-{os.getpid()}-{run}"
            store = RegistryRepository(
                RegistryClient(server.address, options=RegistryOptions(timeout=300)), repository
            )
            built.push(store, "v1")
            store.close()
            wall, summary = run_once(f"{server.address}/{repository}:v1", extra, env)
            walls.append(wall)
            for step, seconds in summary["timings"].items():
                steps[step].append(seconds)
    size = sum(
        layer.size if isinstance(layer, Descriptor) else layer.descriptor.size
        for layer in built.layers
    )
    print(f"\n{name}: {summary['sbom']['components']} SBOM components, "
          f"{size / 1e6:.1f} MB of layers, {runs} runs, signer {summary['signer']}")  # fmt: skip
    print(f"  wall time (process)  median {statistics.median(walls):7.3f} s   "
          f"min {min(walls):7.3f} s   max {max(walls):7.3f} s")  # fmt: skip
    for step in (*STEPS, "total"):
        print(f"  {step:<20} median {statistics.median(steps[step]):7.3f} s")
    outside = [wall - total for wall, total in zip(walls, steps["total"], strict=True)]
    print(f"  {'startup+exit':<20} median {statistics.median(outside):7.3f} s"
          "   (interpreter, imports, key decryption: wall time outside the steps)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", default="demo,debian-minbase")
    parser.add_argument("--keyless", action="store_true", help="sign via the local Sigstore mock")
    args = parser.parse_args()
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        raise SystemExit(f"unknown image(s) {unknown}; choose from {sorted(IMAGES)}")
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GITLAB_CI")}
    mock = None
    if args.keyless:
        from attest.testing import SigstoreMock, node_harness_missing

        missing = node_harness_missing()
        if missing:
            raise SystemExit(missing)
        mock = SigstoreMock(Path(tempfile.mkdtemp(prefix="attest-bench-sigstore-"))).start()
        env["SIGSTORE_ID_TOKEN"] = mock.token(lifetime=3600)
        extra = ["--trust-config", mock.trust_config]
    else:
        env["ATTEST_PASSWORD"] = "attest-dev"
        extra = ["--key", KEY, "--tlog-upload=false"]  # offline: no transparency log
    server = RegistryServer().start()
    try:
        print(f"attest pipeline benchmark: registry {server.address}, {os.cpu_count()} CPUs")
        for name in names:
            bench_image(name, server, args.runs, extra, env)
    finally:
        server.stop()
        if mock is not None:
            mock.stop()


if __name__ == "__main__":
    main()
