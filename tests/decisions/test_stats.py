"""``DecisionStats``: bounded memory means capped maps, and what does not fit is counted, not lost."""

from __future__ import annotations

from admission.decisions.stats import DecisionStats, Limits, RecordView
from admission.testing.samples import decision, image


def view(number: int, document: dict) -> RecordView:
    return RecordView(
        number,
        "r",
        number,
        document["time"],
        document["namespace"],
        document["result"],
        "b",
        "t",
        document,
    )


def test_caps_count_what_does_not_fit() -> None:
    stats = DecisionStats(limits=Limits(images=2, reasons=1, namespaces=2, ids_per_image=1))
    for number in range(5):
        stats.add(
            view(number, decision(images=[image(f"reg/app-{number}:1")], namespace=f"ns-{number}"))
        )
    stats.add(view(9, decision(result="denied", images=[image("reg/a:1", verified=False)])))
    stats.add(view(10, decision(result="denied", messages=["something else entirely"])))
    data = stats.to_dict()
    assert data["records"] == 7 and data["admittedImages"] == 2
    assert data["truncated"] == {"images": 3, "namespaces": 5, "reasons": 1}
    assert sum(n["total"] for n in data["namespaces"].values()) == 2  # the rest is counted above
    assert data["compliance"]["admitted"] == 5  # every admission counts, listed or not
    (listed, *_) = stats.image_list()
    assert listed["decisionIds"] and len(listed["decisionIds"]) == 1


def test_a_record_without_exception_field_used_none_and_a_malformed_one_is_ignored() -> None:
    stats = DecisionStats()
    plain = decision()
    odd = decision()
    odd["exception"] = "not an object"
    used = decision()
    used["images"][0]["exception"] = {"id": "e-1", "signer": "s", "reason": "r", "expires": "x"}
    for number, document in enumerate((plain, odd, used)):
        stats.add(view(number, document))
    data = stats.to_dict()
    assert [e["id"] for e in data["exceptions"]] == ["e-1"]
    assert data["compliance"] == {"admitted": 3, "compliant": 2, "rate": 0.666667}
