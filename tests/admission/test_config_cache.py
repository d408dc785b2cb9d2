"""Admission configuration (validation, globs, namespaces, reload) and the verification cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from admission.cache import VerificationCache
from admission.config import glob_regex, load_config
from admission.errors import ConfigError
from admission.testing.helpers import fake_verification, key_policy, new_key, write_config
from admission.watcher import ConfigWatcher

DIGEST = "sha256:" + "1" * 64


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return new_key().write(tmp_path / "cosign.pub")


def test_full_config_loads(tmp_path: Path, key_file: Path) -> None:
    root = tmp_path / "root.json"
    root.write_text("{}")
    auth = tmp_path / "dockerconfig.json"
    auth.write_text('{"auths": {}}')
    path = write_config(
        tmp_path / "c.yaml",
        [
            key_policy(
                "apps",
                ["registry.example.com/apps/**"],
                key_file,
                threshold=1,
                mode="warn",
                attestations=["slsaprovenance1", "https://example.com/x/v1"],
                namespaces={"exclude": ["kube-*"]},
            ),
            {
                "name": "ci",
                "images": ["ghcr.io/acme/*"],
                "authorities": [
                    {
                        "name": "gh",
                        "keyless": {
                            "issuer": "https://token.actions.githubusercontent.com",
                            "subjectRegExp": "^https://github.com/acme/.*$",
                            "trustedRoot": "root.json",
                        },
                    },
                    {"name": "release", "key": {"pem": key_file.read_text()}},
                ],
                "threshold": 2,
            },
        ],
        deadlineSeconds=5,
        unmatchedImages="allow",
        registryAuth=["dockerconfig.json"],
        cache={"maxEntries": 10, "ttlSeconds": 30},
        namespaces={"exclude": ["kube-system"]},
    )
    config = load_config(str(path))
    apps, ci = config.policies
    assert apps.mode == "warn" and apps.attestations == (
        "https://slsa.dev/provenance/v1",
        "https://example.com/x/v1",
    )
    assert ci.verification.threshold == 2 and ci.verification.authorities[0].trusted_root == str(
        root
    )
    assert (config.deadline_seconds, config.unmatched_images, config.cache_max_entries) == (
        5.0,
        "allow",
        10,
    )
    assert config.registry_auth == (str(auth),)
    assert config.policy_for("registry.example.com/apps/team/web", "prod") is apps
    assert config.policy_for("registry.example.com/apps/team/web", "kube-public") is None
    assert config.policy_for("ghcr.io/acme/tool", "prod") is ci
    assert config.policy_for("ghcr.io/acme/deep/tool", "prod") is None
    assert not config.namespaces.applies("kube-system") and config.namespaces.applies("prod")
    assert str(key_file) in config.files and str(root) in config.files


@pytest.mark.parametrize(
    ("policy", "top", "message"),
    [
        ({"name": "a", "images": ["x"], "autorities": []}, {}, "unknown field 'autorities'"),
        ({"name": "a", "images": []}, {}, "images must list at least one"),
        ({"name": "a", "images": ["x"], "mode": "audit"}, {}, "mode must be one of enforce, warn"),
        ({"name": "a", "images": ["x"]}, {}, "no authorities"),
        (
            {"name": "a", "images": ["x"], "authorities": [{"name": "k", "key": {"pem": "nope"}}]},
            {},
            "not a PEM public key",
        ),
        (
            {"name": "a", "images": ["x"], "authorities": [{"name": "k"}]},
            {},
            "exactly one of 'key' or 'keyless'",
        ),
        (
            {
                "name": "a",
                "images": ["x"],
                "authorities": [{"name": "k", "keyless": {"issuer": "i", "subjectRegExp": "("}}],
            },
            {},
            "not a valid regular expression",
        ),
        (
            {
                "name": "a",
                "images": ["x"],
                "authorities": [{"name": "k", "keyless": {"issuer": "i"}}],
            },
            {},
            "needs a certificate identity",
        ),
        (
            {
                "name": "a",
                "images": ["x"],
                "authorities": [{"name": "k", "key": {"path": "missing.pub"}}],
            },
            {},
            "No such file",
        ),
        (None, {"deadlineSeconds": 60}, "deadlineSeconds must be between"),
        (None, {"unmatchedImages": "maybe"}, "unmatchedImages must be"),
        (None, {"policy": {"bundle": "nowhere"}}, "policy.bundle .*no such file"),
        (None, {"registryAuth": ["nope.json"]}, "registryAuth .*no such file"),
        (None, {"deadlineSeconds": True}, "must not be a boolean"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, policy, top, message) -> None:
    path = write_config(tmp_path / "c.yaml", [policy] if policy else [], **top)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_config_threshold_duplicates_and_yaml(tmp_path: Path, key_file: Path) -> None:
    path = write_config(tmp_path / "c.yaml", [key_policy("a", ["x"], key_file, threshold=2)])
    with pytest.raises(ConfigError, match="threshold 2 must be between 1 and 1"):
        load_config(str(path))
    path = write_config(tmp_path / "c.yaml", [key_policy("a", ["x"], key_file)] * 2)
    with pytest.raises(ConfigError, match="name 'a' is used twice"):
        load_config(str(path))
    (tmp_path / "bad.yaml").write_text("imagePolicies: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="No such file"):
        load_config(str(tmp_path / "absent.yaml"))


def test_globs() -> None:
    assert glob_regex("r.io/a/*").match("r.io/a/b")
    assert not glob_regex("r.io/a/*").match("r.io/a/b/c")
    assert glob_regex("r.io/a/**").match("r.io/a/b/c")
    assert glob_regex("127.0.0.1:*/x").match("127.0.0.1:5000/x")
    assert not glob_regex("r.io/a?c").match("r.io/a/c")
    assert not glob_regex("r.io/a.c").match("r.io/abc")


def test_watcher_reloads_and_keeps_last_good(tmp_path: Path, key_file: Path) -> None:
    path = write_config(tmp_path / "c.yaml", [key_policy("a", ["x/*"], key_file)])
    builds: list[int] = []
    watcher = ConfigWatcher(
        str(path), lambda c: builds.append(len(c.policies)) or len(builds), interval=0
    )
    first = watcher.current()
    assert first.runtime == 1 and watcher.last_error is None
    path.write_text("imagePolicies: [oops\n")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert watcher.current() is first
    assert "not valid YAML" in (watcher.last_error or "")
    write_config(path, [key_policy("a", ["x/*"], key_file), key_policy("b", ["y/*"], key_file)])
    os.utime(path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    second = watcher.current()
    assert [p.name for p in second.config.policies] == ["a", "b"]
    assert watcher.last_error is None and watcher.reloads == 1
    fingerprint = second.config.trust_fingerprint
    new_key().write(key_file)  # a key rotation is a change of trust material
    os.utime(key_file, ns=(time.time_ns() + 3 * 10**9, time.time_ns() + 3 * 10**9))
    assert watcher.current().config.trust_fingerprint != fingerprint


def test_cache_ttl_bound_and_keys() -> None:
    now = [0.0]
    cache = VerificationCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    result = fake_verification("r/a", DIGEST)
    cache.put(("r/a", DIGEST, "fp1"), result)
    assert cache.get(("r/a", DIGEST, "fp1")) is result
    assert cache.get(("r/a", DIGEST, "fp2")) is None  # other trust material
    assert cache.get(("r/b", DIGEST, "fp1")) is None  # other repository
    now[0] = 10.5
    assert cache.get(("r/a", DIGEST, "fp1")) is None and len(cache) == 0
    for name in ("r/1", "r/2", "r/3"):
        cache.put((name, DIGEST, "fp"), result)
    assert len(cache) == 2 and cache.get(("r/1", DIGEST, "fp")) is None
    assert cache.stats.evictions == 1 and cache.stats.hits == 1
    cache.put(
        ("r/e", DIGEST, "fp"), fake_verification("r/e", DIGEST, errors=("referrers: HTTP 500",))
    )
    assert cache.get(("r/e", DIGEST, "fp")) is None
    off = VerificationCache(max_entries=0)
    off.put(("r/a", DIGEST, "fp"), result)
    assert off.get(("r/a", DIGEST, "fp")) is None


def test_cache_keeps_only_verified_results() -> None:
    cache = VerificationCache()
    cache.put(("r/a", DIGEST, "fp"), fake_verification("r/a", DIGEST, verified=False))
    assert cache.get(("r/a", DIGEST, "fp")) is None


def test_tag_cache_is_off_by_default_and_expires() -> None:
    from admission.cache import TagCache

    off = TagCache()
    off.put("r/a:v1", DIGEST)
    assert off.get("r/a:v1") is None
    cache = TagCache(ttl_seconds=0.2, max_entries=1)
    cache.put("r/a:v1", DIGEST)
    assert cache.get("r/a:v1") == DIGEST
    cache.put("r/b:v1", DIGEST)
    assert cache.get("r/a:v1") is None  # bounded
    time.sleep(0.25)
    assert cache.get("r/b:v1") is None
