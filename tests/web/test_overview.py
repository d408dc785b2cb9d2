"""The AppSec overview and per-image page: real server, real records, headless Chromium.

Decisions are made by the real webhook (allowed, denied, admitted by a signed
exception); the overview must chart them server-side (SVG, no JavaScript, the same
CSP), compute compliance, deny reasons, images without provenance, exceptions and
chain status, page beyond 1,000 rows, and answer JSON for every page.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from admission.decisions.store import open_database
from admission.testing.helpers import deployment, new_key, review
from admission.testing.samples import write_key_pair
from admission.testing.serve import TOKEN, Serve, wait_for
from admission.web.app import SECURITY_HEADERS
from tests.support.png import pixels
from tests.web.test_browser import browser, sign_in  # noqa: F401 (the Chromium fixture)
from tests.web.test_exceptions import config_with_exceptions, write_exception

JSON = {"Accept": "application/json"}


@pytest.fixture
def judged(serve, world, tmp_path: Path) -> Serve:
    """Allowed (shop), denied (payments), admitted by exception (payments), more allowed."""
    appsec = new_key()
    config = config_with_exceptions(world, tmp_path, appsec)
    unsigned = world.images["unsigned"]
    write_exception(
        tmp_path / "exceptions" / "soon.json",
        appsec,
        namespace="payments",
        image=unsigned.rsplit(":", 1)[0],
        expires=dt.datetime.now(dt.UTC) + dt.timedelta(hours=3),
        ticket="INC-7",
    )
    private, _public = write_key_pair(tmp_path)
    server = serve(config, db=str(tmp_path / "d.db"), extra=("--signing-key", str(private)))
    sent = [
        (world.images["good"], "shop", "good-1"),
        (world.images["good2"], "shop", "good-2"),
        (world.images["other"], "payments", "other-1"),  # denied: untrusted key
        (unsigned, "payments", "unsigned-1"),  # admitted by the exception
        (unsigned, "shop", "unsigned-2"),  # denied: the exception is for payments
    ]
    for image, namespace, uid in sent:
        server.post(
            "/validate",
            review(deployment(image, namespace=namespace), uid=uid, namespace=namespace),
        )

    def recorded() -> bool:
        response = server.ops("/decisions", token=TOKEN, headers=JSON)
        return response.ok and len(response.json()["decisions"]) == 5

    wait_for(recorded, what="five decisions recorded")
    return server


def test_overview_json_aggregates(judged: Serve, world) -> None:
    data = judged.ops("/overview", token=TOKEN, headers=JSON).json()
    series = data["admissions"]["series"]
    assert sum(series["allowed"]) == 2 and sum(series["denied"]) == 2
    assert sum(series["warned"]) == 1
    overall = data["compliance"]["overall"]
    assert (overall["admitted"], overall["compliant"], overall["excepted"]) == (3, 2, 1)
    by_namespace = {n["namespace"]: n for n in data["compliance"]["namespaces"]}
    assert by_namespace["payments"]["rate"] == 0.0 and by_namespace["shop"]["rate"] == 1.0
    reasons = {r["reason"]: r["count"] for r in data["denyReasons"]}
    assert any(r.startswith("no trusted signature") for r in reasons), reasons
    assert not any("127.0.0.1" in r for r in reasons)  # grouped without the image reference
    unproven = [i["reference"] for i in data["withoutProvenance"]]
    assert unproven == [world.images["unsigned"]]
    exceptions = data["exceptions"]
    assert [e["ticket"] for e in exceptions["expiringSoon"]] == ["INC-7"]  # within a day
    assert [e["ticket"] for e in exceptions["inForce"]] == ["INC-7"]
    chains = data["chains"]
    assert len(chains) == 1 and chains[0]["records"] == 5


def test_every_page_answers_json_and_keeps_the_csp(judged: Serve, world) -> None:
    decisions = judged.ops("/decisions", token=TOKEN, headers=JSON).json()["decisions"]
    digest = next(i["digest"] for d in decisions for i in d["images"] if i["digest"])
    for path in (
        "/overview",
        "/decisions",
        f"/decisions/{decisions[0]['id']}",
        f"/images/{digest}",
    ):
        response = judged.ops(path, token=TOKEN, headers=JSON)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith("application/json"), path
        html = judged.ops(path, token=TOKEN)
        assert html.headers["Content-Type"].startswith("text/html"), path
        for name, value in SECURITY_HEADERS.items():
            assert html.headers[name] == value, (path, name)
        assert "<script" not in html.text
    assert judged.ops("/overview", headers=JSON).status_code == 401
    assert judged.ops("/images/sha256:abc", token=TOKEN, headers=JSON).status_code == 400
    missing = "sha256:" + "0" * 64
    assert judged.ops(f"/images/{missing}", token=TOKEN, headers=JSON).status_code == 404


def test_per_image_page_has_signers_provenance_and_sbom(judged: Serve, world) -> None:
    decisions = judged.ops("/decisions?image=*good:*", token=TOKEN, headers=JSON).json()[
        "decisions"
    ]
    digest = decisions[0]["images"][0]["digest"]
    page = judged.ops(f"/images/{digest}", token=TOKEN, headers=JSON).json()
    assert page["references"] == [world.images["good"]]
    assert [d["id"] for d in page["decisions"]] == [decisions[0]["id"]]
    assert any(s["authority"] == "apps-key" for s in page["signers"])
    assert page["provenance"]["builderId"] == "https://ci.example.com/builder"
    assert page["sbom"]["format"] in ("CycloneDX", "SPDX")
    assert page["sbom"]["components"] == 0  # the test image's SBOM lists no components


def test_pagination_beyond_a_thousand_rows(judged: Serve, tmp_path: Path) -> None:
    """1,200 more records in the same database: every one is reachable page by page."""
    from admission.decisions.store import DecisionDatabase

    database: DecisionDatabase = open_database(str(tmp_path / "d.db"))
    try:
        from admission.decisions.store import prepare

        records = [
            prepare(
                {
                    "uid": f"bulk-{i}",
                    "time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                    "operation": "CREATE",
                    "kind": "Pod",
                    "namespace": "bulk",
                    "name": f"p{i}",
                    "user": "u",
                    "result": "allowed",
                    "images": [],
                }
            )
            for i in range(1200)
        ]
        database.append("bulk-replica", records)  # a replica of its own: the server's is busy
    finally:
        database.close()
    seen: list[int] = []
    url = "/decisions?namespace=bulk&limit=1000"
    while url:
        page = judged.ops(url, token=TOKEN, headers=JSON).json()
        seen += [d["id"] for d in page["decisions"]]
        url = page["older"]
        assert len(seen) <= 1200
    assert len(seen) == len(set(seen)) == 1200


def test_overview_in_chromium(browser, judged: Serve, tmp_path: Path) -> None:  # noqa: F811
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, judged)
    page.click("#nav-overview")
    expect(page.locator("#title")).to_have_text("AppSec overview")
    chart = page.locator("#admissions svg")
    expect(chart.locator("rect.bar-allowed")).to_have_count(1)
    expect(chart.locator("rect.bar-denied")).to_have_count(1)
    expect(page.locator("#compliance-overall")).to_have_text("66.7%")
    expect(page.locator("#deny-reasons")).to_contain_text("no trusted signature")
    expect(page.locator("#without-provenance")).to_contain_text("admission-e2e/unsigned:v1")
    expect(page.locator("#exceptions-table")).to_contain_text("INC-7")
    expect(page.locator("#chains tr.chain")).to_have_count(1)
    assert page.locator("script").count() == 0
    shot = chart.screenshot(path=str(tmp_path / "admissions.png"))
    width, height, found = pixels(shot)
    assert width > 300 and height > 100

    def near(colour: tuple[int, int, int]) -> bool:
        return any(sum(abs(a - b) for a, b in zip(p, colour, strict=True)) < 30 for p in found)

    assert near((0x3C, 0x9A, 0x5F)) and near((0xC0, 0x39, 0x2B)) and near((0xE0, 0xA8, 0x00))
    _, _, found = pixels(page.locator("#compliance svg").screenshot(path=str(tmp_path / "r.png")))
    assert near((0x3C, 0x9A, 0x5F)) and near((0xC0, 0x39, 0x2B))  # shop 100 %, payments 0 %
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    # from the overview to the image, then to its decision with the exception
    page.locator("#without-provenance a").first.click()
    expect(page.locator("#title")).to_have_text(re.compile(r"^sha256:[0-9a-f]{64}$"))
    expect(page.locator("#signers")).to_have_text("none verified")
    expect(page.locator("#decisions tr.decision")).to_have_count(2)
    page.locator("#decisions tr.decision", has_text="payments").locator("a").click()
    expect(page.locator("#exceptions")).to_contain_text("APPLIED")
    expect(page.locator("#exceptions")).to_contain_text("INC-7")
    expect(page.locator("#warnings li").first).to_contain_text("EXCEPTION")
    page.screenshot(path=str(tmp_path / "exception.png"), full_page=True)
    assert dialogs == []
    context.close()
