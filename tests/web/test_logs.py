"""Structured logs: every line JSON, one line per decision with its facts, never a secret."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path

from admission.jsonlog import JsonFormatter, redact
from admission.testing.helpers import deployment, key_policy, new_key, review, write_config
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions


def test_one_json_line_per_decision_and_no_credentials_anywhere(
    serve, htpasswd_registry, token_registry, push_image, tmp_path: Path
) -> None:
    basic, user, password = htpasswd_registry
    bearer, tokens = token_registry
    issued: list[str] = []
    original_issue = tokens.issue

    def issue(subject: str, scopes: list[str]) -> str:
        token = original_issue(subject, scopes)
        issued.append(token)
        return token

    tokens.issue = issue  # type: ignore[method-assign]  # record every bearer token handed out
    identity_token = "refresh-" + secrets.token_hex(16)
    tokens.refresh_tokens[identity_token] = "bob"
    basic_auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    auth_file = tmp_path / "dockerconfig.json"
    auth_file.write_text(
        json.dumps(
            {
                "auths": {
                    basic.address: {"auth": basic_auth},
                    bearer.address: {"identitytoken": identity_token},
                }
            }
        )
    )
    options = RegistryOptions(auth_files=(str(auth_file),), timeout=60)
    digests = {}
    for server in (basic, bearer):
        store = RegistryRepository(RegistryClient(server.address, options=options), "logs/app")
        digests[server.address] = push_image(store, "v1").digest
        store.close()
    key_file = new_key().write(tmp_path / "k.pub")
    config = write_config(
        tmp_path / "config.yaml",
        [key_policy("private", [f"{basic.address}/**", f"{bearer.address}/**"], key_file)],
        registryAuth=[str(auth_file)],
    )
    server = serve(config, db=str(tmp_path / "d.db"), extra=("--log-level", "debug"))
    before = len(issued)
    images = [f"{basic.address}/logs/app:v1", f"{bearer.address}/logs/app:v1"]
    answer = server.post("/validate", review(deployment(*images), uid="private-1"))
    assert answer["allowed"] is False  # unsigned: denied, after resolving both tags with auth
    missing = server.post(
        "/validate", review(deployment(f"{bearer.address}/logs/nothing:v9"), uid="private-2")
    )
    assert missing["allowed"] is False
    assert len(issued) > before, "the webhook authenticated with bearer tokens"
    assert server.stop() == 0

    text = server.log.read_text()
    for secret in (password, basic_auth, identity_token, *issued):
        assert secret not in text
    lines = server.log_lines()  # every line is one JSON object
    decisions = {line["uid"]: line for line in lines if line.get("event") == "admission_decision"}
    assert set(decisions) == {"private-1", "private-2"}
    first = decisions["private-1"]
    assert first["webhook"] == "validate" and first["result"] == "denied"
    assert (first["kind"], first["namespace"], first["name"]) == ("Deployment", "apps", "web")
    assert first["user"] == "alice" and first["operation"] == "CREATE"
    assert {i["reference"]: i["digest"] for i in first["images"]} == {
        images[0]: digests[basic.address],
        images[1]: digests[bearer.address],
    }
    assert all(i["policy"] == "private" for i in first["images"])
    assert first["messages"] and any("no trusted signature" in m for m in first["messages"])
    assert all(
        "no trusted signature" in m or "no verified SLSA provenance" in m for m in first["messages"]
    )
    assert set(first["latencyMs"]) >= {"resolve", "verify", "evaluate", "total"}
    assert "nothing" in decisions["private-2"]["messages"][0]  # the registry's error, no secrets
    assert sum(1 for line in lines if line.get("uid") == "private-1") == 1
    assert {line["level"] for line in lines} >= {"info", "debug"}


def test_the_formatter_scrubs_credentials_from_any_message() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    samples = {
        "Authorization: Bearer s3cr3t-token-value": "s3cr3t-token-value",
        "header Basic YWxpY2U6czNjcmV0LXBhc3M=": "YWxpY2U6czNjcmV0LXBhc3M=",
        'config {"auth": "YWxpY2U6czNjcmV0", "identitytoken": "refresh-1234"}': "refresh-1234",
        "password=hunter2 and token: abcdef123": "hunter2",
        f"token service answered {jwt}": jwt,
        "postgresql://appsec:db-pass@db.internal/attest unreachable": "db-pass",
    }
    for message, secret in samples.items():
        assert secret not in redact(message), message
        assert "[REDACTED]" in redact(message)
    assert redact("registry 127.0.0.1:5000 answered HTTP 401") == (
        "registry 127.0.0.1:5000 answered HTTP 401"
    )
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "got %s", ("Bearer abcdefgh12",), None
    )
    record.__dict__["fields"] = {"messages": ["password=hunter2"], "level": "forged"}
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error"  # extra fields cannot overwrite the core ones
    assert "abcdefgh12" not in line["message"] and line["messages"] == ["password=[REDACTED]"]
