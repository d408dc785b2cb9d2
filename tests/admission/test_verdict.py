"""judge() on its own: how Rego's findings are attributed to images, and the codes of every
reason.  An attribution decides whether a denial stays a denial or becomes a warn-mode
warning, so each way a finding could claim the wrong image is tried here."""

from __future__ import annotations

from typing import Any

from admission.verdict import ImageOutcome, Judgement, judge
from attest.policy import Finding

ENFORCED = "r.example/apps/web:v1"
AUDITED = "r.example/audit/tool:v1"


def images(*, unchanged: bool = False) -> list[ImageOutcome]:
    return [
        ImageOutcome(ENFORCED, "verified", policy="apps", mode="enforce", unchanged=unchanged),
        ImageOutcome(AUDITED, "verified", policy="audit", mode="warn", unchanged=unchanged),
    ]


def rego(*deny: Finding, operation: str = "CREATE", **kwargs: Any) -> Judgement:
    return judge(
        images(**kwargs),
        operation=operation,
        unmatched_images="deny",
        deny=deny,
        warn=(),
        policy_error=None,
    )


def test_a_finding_about_a_warn_mode_image_is_a_warning_with_its_code() -> None:
    finding = Finding(f"{AUDITED}: no provenance", AUDITED, "provenance-missing")
    judgement = rego(finding)
    assert judgement.result == "warned" and judgement.denials == ()
    warning = f"warn mode (audit): {AUDITED}: no provenance"
    assert judgement.warning_messages == (warning,)
    assert judgement.codes == {warning: "provenance-missing"}


def test_the_image_field_decides_not_what_the_message_says() -> None:
    # the message names the warn-mode image, the finding is about the enforced one
    named = rego(Finding(f"{AUDITED}: and its neighbour", ENFORCED, "c"))
    assert named.result == "denied" and named.messages == (f"{AUDITED}: and its neighbour",)


def test_a_finding_about_no_image_of_the_request_denies() -> None:
    for image in ("r.example/audit/tool", "", f"{AUDITED} ", AUDITED.upper()):
        judgement = rego(Finding(f"{AUDITED}: bad", image, "c"))
        assert judgement.result == "denied", image  # never a warning by near-miss
        assert judgement.messages == (f"{AUDITED}: bad",)


def test_plain_messages_are_attributed_by_their_leading_reference() -> None:
    leading = rego(Finding(f"{AUDITED}: not from an allowed builder"))
    assert leading.result == "warned"
    inside = rego(Finding(f"image {AUDITED} is not from an allowed builder"))
    assert inside.result == "denied"  # attributed to no image: it denies
    prefix_of_another = rego(Finding(f"{AUDITED}-old: bad"))
    assert prefix_of_another.result == "denied"
    both = rego(Finding(f"{AUDITED}: bad"), Finding(f"{ENFORCED}: bad"))
    assert both.result == "denied" and both.messages == (f"{ENFORCED}: bad",)


def test_update_notes_an_unchanged_image_from_the_image_field() -> None:
    finding = Finding("the builder is not allowed", ENFORCED, "provenance-builder")
    judgement = rego(finding, operation="UPDATE", unchanged=True)
    message = "the builder is not allowed (image unchanged by this update)"
    assert judgement.messages == (message,)
    assert judgement.codes == {message: "provenance-builder"}
    assert rego(finding, operation="CREATE", unchanged=True).messages == (finding.message,)


def test_the_webhook_codes_its_own_reasons() -> None:
    outcomes = [
        ImageOutcome("Bad/Ref", "invalid", error="uppercase"),
        ImageOutcome("r.example/other:v1", "unmatched"),
        ImageOutcome("r.example/apps/slow:v1", "timed_out", policy="apps", mode="enforce"),
        ImageOutcome("r.example/apps/gone:v1", "error", "HTTP 503", policy="apps", mode="enforce"),
    ]
    judgement = judge(
        outcomes,
        operation="CREATE",
        unmatched_images="deny",
        deny=(Finding("from rego", None, "rego-rule"), Finding("no code")),
        warn=(Finding("a warning", None, "rego-warning"),),
        policy_error=None,
    )
    assert [judgement.codes.get(m) for m in judgement.messages] == [
        "invalid-reference",
        "unmatched-image",
        "timed-out",
        "verification-error",
        "rego-rule",
        None,
    ]
    assert judgement.codes["a warning"] == "rego-warning"
    failed = judge(
        [], operation="CREATE", unmatched_images="deny", deny=(), warn=(), policy_error="x"
    )
    assert failed.result == "error" and failed.codes == {"policy error: x": "policy-error"}


def test_a_rego_finding_repeating_the_webhooks_own_is_said_once() -> None:
    untrusted = ImageOutcome(
        ENFORCED,
        "unverified",
        policy="apps",
        mode="enforce",
        findings=(Finding(f"{ENFORCED}: no trusted signature", ENFORCED, "untrusted"),),
    )
    judgement = judge(
        [untrusted],
        operation="CREATE",
        unmatched_images="deny",
        deny=(Finding(f"{ENFORCED}: no trusted signature", ENFORCED, "other-code"),),
        warn=(),
        policy_error=None,
    )
    assert judgement.messages == (f"{ENFORCED}: no trusted signature",)
    assert judgement.codes == {f"{ENFORCED}: no trusted signature": "untrusted"}
