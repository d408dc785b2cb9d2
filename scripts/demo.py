"""The demo behind `make demo`: the main job end to end on the embedded default.

Builds a small two-layer OCI image into an image layout under .demo/ and runs
the real `attest` command on it, printing each step.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
ATTEST = str(Path(sys.executable).with_name("attest"))


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(*args: str) -> str:
    print("$ attest " + " ".join(args), flush=True)
    proc = subprocess.run([ATTEST, *args], text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"demo: 'attest {' '.join(args)}' failed with exit code {proc.returncode}")
    return proc.stdout


def build_image(layout: Path) -> None:
    from attest.oci.builder import ImageBuilder
    from attest.oci.layout import LayoutStore

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
    top = builder.layer()
    top.file("app/VERSION", "1.0.0\n").whiteout("tmp/build-cache.txt")
    with tempfile.TemporaryDirectory() as work, LayoutStore(str(layout), create=True) as store:
        descriptor = builder.build(work).push(store, "demo")
    print(f"built oci:{layout.relative_to(ROOT)}:demo -> {descriptor.digest}")


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    layout = DEMO / "image"
    step("Build a two-layer OCI image into an image layout on disk (no daemon, no registry)")
    build_image(layout)
    step("Inspect it")
    run("inspect", f"oci:{layout}:demo")
    step("Inspect it as JSON")
    run("inspect", f"oci:{layout}:demo", "--output", "json")
    print("\ndemo: done")


if __name__ == "__main__":
    main()
