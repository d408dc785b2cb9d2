"""The AppSec view in real headless Chromium (Debian's chromium, driven by Playwright): sign in,
load the list, filter it, open a decision and read its reasons; hostile text stays text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from admission.testing.helpers import POD_KIND, deployment, review
from admission.testing.serve import TOKEN, Serve, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_IMAGE = "registry.example.com/<img src=x onerror=alert(1)>:1"
HOSTILE_USER = "<script>alert('user')</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run `make test` (scripts/system-deps.sh installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def recorded(serve, world, tmp_path: Path) -> Serve:
    """A server that has judged four requests: denied, allowed, denied (bad signer), hostile."""
    server = serve(world.config(tmp_path / "config.yaml"), db=str(tmp_path / "d.db"))
    requests_sent = [
        review(
            deployment(world.images["unsigned"], name="checkout", namespace="payments"),
            uid="uid-unsigned",
            namespace="payments",
        ),
        review(
            deployment(world.images["good"], name="shop", namespace="shop"),
            uid="uid-good",
            namespace="shop",
        ),
        review(
            deployment(world.images["other"], name="rogue", namespace="payments"),
            uid="uid-other",
            namespace="payments",
        ),
    ]
    hostile = review(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "evil", "namespace": "apps"},
            "spec": {"containers": [{"name": "c", "image": HOSTILE_IMAGE}]},
        },
        uid="uid-hostile",
        kind=POD_KIND,
    )
    hostile["request"]["userInfo"]["username"] = HOSTILE_USER
    requests_sent.append(hostile)
    for body in requests_sent:
        server.post("/validate", body)
    wait_for(
        lambda: server.ops("/decisions", token=TOKEN).text.count('class="decision"') == 4,
        what="four decisions recorded",
    )
    return server


def sign_in(page: Page, server: Serve) -> None:
    page.goto(f"{server.ops_url}/")
    expect(page.locator("h2")).to_have_text("Sign in")
    page.fill("#token", "not-the-token-at-all")
    page.click("#sign-in")
    expect(page.locator("#login-error")).to_have_text("That token is not valid.")
    page.fill("#token", TOKEN)
    page.click("#sign-in")
    expect(page).to_have_url(re.compile(r"/decisions$"))


def test_appsec_finds_a_denial_and_reads_why(browser, recorded: Serve) -> None:
    context = browser.new_context(ignore_https_errors=True)  # the test CA is not the browser's
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, recorded)
    rows = page.locator("tr.decision")
    expect(rows).to_have_count(4)
    expect(page.locator("#count")).to_have_text("4 decisions")

    # filter: denials in the payments namespace
    page.fill("input[name=namespace]", "payments")
    page.select_option("select[name=result]", "denied")
    page.click("#apply")
    expect(rows).to_have_count(2)
    expect(page.locator("tr.decision .result")).to_have_text(["denied", "denied"])
    assert "namespace=payments" in page.url and "result=denied" in page.url
    # narrow by image glob
    page.fill("input[name=image]", "*/admission-e2e/unsigned:*")
    page.click("#apply")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("payments/checkout")
    # a bad filter is explained, not a crash
    page.fill("input[name=since]", "last tuesday")
    page.click("#apply")
    expect(page.locator("#filter-error")).to_contain_text("time 'last tuesday'")
    page.fill("input[name=since]", "")
    page.click("#apply")

    # open the decision and read every reason
    rows.first.locator("a").click()
    expect(page.locator("#title")).to_contain_text("denied")
    expect(page.locator("#facts")).to_contain_text("CREATE Deployment payments/checkout")
    expect(page.locator("#facts")).to_contain_text("uid-unsigned")
    expect(page.locator("#messages li")).to_contain_text(["no trusted signature"])
    image = page.locator("section.image")
    expect(image.locator("h4")).to_have_text(recorded_image(page, "unsigned"))
    expect(image).to_contain_text("sha256:")
    expect(image).to_contain_text("apps")  # the matched image policy

    # the image signed by an untrusted key: its failed signature check and why
    page.goto(f"{recorded.ops_url}/decisions?image=*other*")
    page.locator("tr.decision a").first.click()
    failed = page.locator("table.checks tr", has_text="failed").first
    expect(failed).to_be_visible()
    expect(failed.locator("td").last).not_to_be_empty()
    expect(page.locator("#messages li").first).to_contain_text("other")
    assert dialogs == []
    context.close()


def recorded_image(page: Page, name: str) -> re.Pattern[str]:
    return re.compile(rf"^127\.0\.0\.1:\d+/admission-e2e/{name}:v1$")


def test_hostile_text_is_shown_as_text(browser, recorded: Serve) -> None:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, recorded)
    hostile_row = page.locator("tr.decision", has_text="apps/evil")
    expect(hostile_row).to_contain_text(HOSTILE_IMAGE)
    expect(hostile_row).to_contain_text(HOSTILE_USER)
    assert page.locator("img").count() == 0 and page.locator("main script").count() == 0
    hostile_row.locator("a").click()
    expect(page.locator("section.image h4")).to_have_text(HOSTILE_IMAGE)
    expect(page.locator("#facts")).to_contain_text(HOSTILE_USER)
    expect(page.locator("#messages li").first).to_contain_text("invalid image reference")
    assert page.locator("img").count() == 0 and page.locator("script").count() == 0
    html = page.content()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert dialogs == []

    # signing out ends the session
    page.click("text=Sign out")
    expect(page.locator("h2")).to_have_text("Sign in")
    page.goto(f"{recorded.ops_url}/decisions")
    expect(page.locator("h2")).to_have_text("Sign in")
    context.close()
