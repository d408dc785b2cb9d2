"""Configuration reloads that never put a half-written or mixed configuration in force
(issue 10, finding 7), with real files written by another process and ConfigMap
volumes laid out exactly as the kubelet does (tests/support/kubelet.py).

The attacks: a watcher that read the file mid-write kept that partial configuration
(a policy missing, so an unsigned image was admitted) with no error reported; a
policy bundle mounted from a ConfigMap was read twice (the visible symlinks and the
hidden ``..<timestamp>/`` directory) and failed to compile.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from admission.config import AdmissionConfig, load_config
from admission.runtime import build_runtime
from admission.testing.helpers import TlsFiles, deployment, key_policy, new_key, review
from admission.testing.webhook import start_webhook
from admission.testing.world import REPO, World
from admission.watcher import ConfigWatcher
from attest.policy import load_bundle
from tests.conftest import ROOT
from tests.support.kubelet import Volume

DEFAULT_POLICY = (ROOT / "policies" / "admission.rego").read_text()
EXTRA_DENY = """package attest.admission

import rego.v1

deny contains msg if {
	some img in input.images
	contains(img.reference, "/good")
	msg := sprintf("%s: frozen by the change board", [img.reference])
}
"""


def policies_text(key_file: Path, *, extra: int, unmatched: str = "deny") -> str:
    """A config whose enforce policy ``apps`` comes last, after ``extra`` filler policies,
    under ``unmatchedImages: allow``: any prefix of it that parses lacks ``apps``."""
    filler = [key_policy(f"filler-{i}", [f"other.example/{i}/*"], key_file) for i in range(extra)]
    apps = key_policy("apps", [f"127.0.0.1:*/{REPO}/*"], key_file)
    return yaml.safe_dump(
        {"unmatchedImages": unmatched, "imagePolicies": [*filler, apps]}, sort_keys=False
    )


def names(config: AdmissionConfig) -> list[str]:
    return [p.name for p in config.policies]


def policy_chunks(text: str) -> list[str]:
    """``text`` cut at each policy: every prefix of the chunks is a valid configuration."""
    parts = text.split("\n- name: ")
    return [parts[0], *(f"\n- name: {part}" for part in parts[1:])]


def slow_writer(path: Path, chunks: list[str], pause: float = 0.05) -> subprocess.Popen:
    """Another process rewriting ``path`` in place, one chunk at a time, ``pause`` apart."""
    code = (
        "import json, sys, time\n"
        "path, chunks, pause = sys.argv[1], json.load(sys.stdin), float(sys.argv[2])\n"
        "with open(path, 'w') as f:\n"
        "    for chunk in chunks:\n"
        "        f.write(chunk); f.flush(); time.sleep(pause)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(pause)], stdin=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(chunks))
    process.stdin.close()
    return process


def test_a_config_being_written_is_never_put_in_force(tmp_path: Path) -> None:
    key_file = new_key().write(tmp_path / "k.pub")
    path = tmp_path / "config.yaml"
    path.write_text(policies_text(key_file, extra=0))
    watcher = ConfigWatcher(str(path), lambda c: None, interval=0.01, settle=2.0)
    assert names(watcher.current().config) == ["apps"]
    final = policies_text(key_file, extra=12, unmatched="allow")
    writer = slow_writer(path, policy_chunks(final))
    seen: list[list[str]] = []
    while writer.poll() is None:
        seen.append(names(watcher.current().config))
        time.sleep(0.005)
    assert writer.wait() == 0
    end = time.monotonic() + 10
    while names(watcher.current().config) != names(load_config(str(path))):
        assert time.monotonic() < end, "the finished config was not loaded"
        time.sleep(0.02)
    assert len(seen) > 50 and all(s == ["apps"] for s in seen)  # never a partial one
    assert watcher.current().config.unmatched_images == "allow" and watcher.reloads == 1


def test_a_change_during_the_load_is_never_kept(tmp_path: Path) -> None:
    """The writer finishes while the watcher builds from the first half: the half is thrown
    away (and reported), never kept, and the finished file is loaded at the next check."""
    key_file = new_key().write(tmp_path / "k.pub")
    path = tmp_path / "config.yaml"
    path.write_text(policies_text(key_file, extra=0))
    final = policies_text(key_file, extra=3, unmatched="allow")
    half = final[: final.index("- name: apps")]  # valid YAML: the filler policies only
    builds: list[list[str]] = []

    def build(config: AdmissionConfig) -> None:
        builds.append(names(config))
        if names(config) == ["filler-0", "filler-1", "filler-2"]:
            path.write_text(final)  # the writer completes the file meanwhile

    watcher = ConfigWatcher(str(path), build, interval=0, settle=0)
    first = watcher.current()
    path.write_text(half)
    assert watcher.current() is first  # the half was built, then found moved: dropped
    assert "changed while it was being loaded" in (watcher.last_error or "")
    assert names(watcher.current().config) == ["filler-0", "filler-1", "filler-2", "apps"]
    assert watcher.last_error is None and watcher.reloads == 1
    assert ["filler-0", "filler-1", "filler-2"] in builds  # it was read, and not kept


def test_a_broken_half_keeps_the_last_good_config_and_says_why(tmp_path: Path) -> None:
    key_file = new_key().write(tmp_path / "k.pub")
    path = tmp_path / "config.yaml"
    path.write_text(policies_text(key_file, extra=0))
    watcher = ConfigWatcher(str(path), lambda c: None, interval=0, settle=0)
    first = watcher.current()
    final = policies_text(key_file, extra=3)
    path.write_text(final[: final.index("images:") + 8])  # cut after a key: no list yet
    assert watcher.current() is first
    assert "imagePolicies[filler-0].images must list at least one" in (watcher.last_error or "")
    path.write_text(final[: final.index("images:") + 8] + '["unterminated')
    assert watcher.current() is first
    assert "not valid YAML" in (watcher.last_error or "")
    path.write_text(final)
    assert len(watcher.current().config.policies) == 4 and watcher.last_error is None


def configmaps(tmp_path: Path, key_file: Path) -> tuple[Volume, Volume, Path]:
    """The config and the bundle as two ConfigMap volumes; returns them and the config path."""
    config_volume, bundle_volume = Volume(tmp_path / "config"), Volume(tmp_path / "bundle")
    bundle_volume.write({"admission.rego": DEFAULT_POLICY})
    config_volume.write(
        {
            "config.yaml": yaml.safe_dump(
                {
                    "imagePolicies": [key_policy("apps", [f"127.0.0.1:*/{REPO}/*"], key_file)],
                    "policy": {"bundle": "../bundle"},
                }
            )
        }
    )
    return config_volume, bundle_volume, config_volume.root / "config.yaml"


def test_a_configmap_bundle_is_read_once_and_swaps_are_followed(tmp_path: Path) -> None:
    key_file = new_key().write(tmp_path / "k.pub")
    _config_volume, bundle_volume, config_path = configmaps(tmp_path, key_file)
    assert len(bundle_volume.hidden()) == 2  # ..data and one ..<timestamp>/
    bundle = load_bundle(str(bundle_volume.root))
    assert list(bundle.modules) == ["admission.rego"]
    watcher = ConfigWatcher(str(config_path), build_runtime, interval=0, settle=0)
    try:
        first = watcher.current()
        assert first.runtime.engine.bundle_hash == bundle.hash
        assert first.config.bundle == str(bundle_volume.root)  # through the volume, unresolved
        bundle_volume.write({"admission.rego": DEFAULT_POLICY, "freeze.rego": EXTRA_DENY})
        second = watcher.current()
        assert second is not first and watcher.last_error is None
        assert second.runtime.engine.bundle_hash == load_bundle(str(bundle_volume.root)).hash
        assert second.runtime.engine.bundle_hash != first.runtime.engine.bundle_hash
        assert len(bundle_volume.hidden()) == 2  # the old version is gone
    finally:
        watcher.current().runtime.engine.close()


def test_a_swap_during_the_load_is_never_mixed(tmp_path: Path) -> None:
    """The kubelet swaps the config volume (new key, new policy) while the watcher builds
    from the old one: the mixed result is dropped and the new version loaded whole."""
    keys = [new_key() for _ in range(3)]
    config_volume = Volume(tmp_path / "config")

    def version(n: int, name: str = "") -> dict[str, bytes | str]:
        policy = key_policy(name or f"v{n}", [f"127.0.0.1:*/{REPO}/*"], Path("key.pub"))
        text = yaml.safe_dump({"imagePolicies": [policy]})
        return {"config.yaml": text, "key.pub": keys[n].public_pem}

    config_volume.write(version(0))
    path = str(config_volume.root / "config.yaml")
    swap_at: dict[str, Callable[[], None]] = {}

    def build(config: AdmissionConfig) -> str:
        action = swap_at.pop(names(config)[0], None)
        if action is not None:
            action()  # the kubelet swaps ..data while we build
        (authority,) = config.policies[0].verification.authorities
        return authority.public_key_pem.decode()

    swap_at["v0"] = lambda: config_volume.write(version(1))
    watcher = ConfigWatcher(path, build, interval=0, settle=0)  # even at start-up
    assert names(watcher.current().config) == ["v1"]
    assert watcher.current().runtime == keys[1].public_pem.decode()

    # the next version is swapped in, and swapped again while it is being built
    swap_at["v2"] = lambda: config_volume.write(version(0, "v0b"))
    config_volume.write(version(2))
    assert names(watcher.current().config) == ["v1"]  # v2 was built, then found moved
    assert "changed while it was being loaded" in (watcher.last_error or "")
    loaded = watcher.current()
    assert names(loaded.config) == ["v0b"] and watcher.last_error is None
    (authority,) = loaded.config.policies[0].verification.authorities
    assert authority.public_key_pem == keys[0].public_pem  # key and policy of one version
    assert loaded.runtime == keys[0].public_pem.decode()
    assert len(config_volume.hidden()) == 2


def test_served_from_configmaps_through_swaps_and_a_slow_writer(
    world: World, tls: TlsFiles, tmp_path: Path
) -> None:
    """The real webhook on ConfigMap volumes: starts (the bundle compiles), follows a swap of
    the bundle, and never admits the unsigned image while its config is rewritten slowly."""
    _config_volume, bundle_volume, config_path = configmaps(tmp_path, world.key_file)
    hook = start_webhook(config_path, tls, tmp_path)
    images = world.images  # type: ignore[attr-defined]
    try:

        def allowed(name: str, uid: str = "u") -> bool:
            status, body = hook.validate(review(deployment(images[name]), uid=uid))
            assert status == 200, body
            return bool(body["response"]["allowed"])

        assert allowed("good") and not allowed("unsigned")
        before = hook.get("/readyz").json()
        bundle_volume.write({"admission.rego": DEFAULT_POLICY, "freeze.rego": EXTRA_DENY})
        end = time.monotonic() + 20
        while hook.get("/readyz").json()["bundleHash"] == before["bundleHash"]:
            assert time.monotonic() < end, "the swapped bundle was not loaded"
            time.sleep(0.2)
        assert hook.get("/readyz").json()["configError"] is None
        assert not allowed("good")  # the new rule is in force

        # the config rewritten in place, slowly, into one whose every prefix lacks `apps`
        plain = tmp_path / "plain.yaml"
        plain.write_text(config_path.read_text().replace("../bundle", str(bundle_volume.root)))
        hook.stop()
        hook = start_webhook(plain, tls, tmp_path)
        answers: list[bool] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                answers.append(allowed("unsigned", uid=f"w{len(answers)}"))

        asker = threading.Thread(target=keep_asking)
        asker.start()
        final = policies_text(world.key_file, extra=40, unmatched="allow")
        writer = slow_writer(plain, policy_chunks(final), pause=0.1)
        assert writer.wait(timeout=60) == 0
        end = time.monotonic() + 15  # settled (2 s) and reloaded
        while hook.get("/readyz").json()["reloads"] == 0:
            assert time.monotonic() < end, "the rewritten config was not loaded"
            time.sleep(0.2)
        stop.set()
        asker.join()
        assert len(answers) > 10 and not any(answers)
        ready = hook.get("/readyz").json()
        assert ready["imagePolicies"][-1] == "apps" and len(ready["imagePolicies"]) == 41
        assert ready["configError"] is None
    finally:
        hook.stop()


@pytest.fixture
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from admission.testing.helpers import make_tls

    return make_tls(tmp_path_factory.mktemp("reload-tls"))
