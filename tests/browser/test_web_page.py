"""The web chat page in headless Chromium (the Debian package, driven by Playwright), through a
real Envoy to the real services: a streamed answer, two tabs on one thread, reload, share link,
cancel. Screenshots go to test-artifacts/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from deploy.stack.processes import ROOT
from tests.support.edge import Edge, running_edge
from tests.support.page import answer, send, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    if not (ROOT / "web" / "static" / "app.js").exists():
        pytest.fail("the page is not built: run `make web` (make test does)")
    with running_edge(tmp_path_factory.mktemp("web"), token_delay_ms=5) as edge:
        yield edge


@pytest.fixture
def site(served: Edge) -> str:
    return served.url


async def open_tab(context: BrowserContext, url: str) -> Page:
    """A new tab on `url`, once its stream is connected."""
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("#status")).to_have_text("connected")
    return page


async def test_chat_streams_and_stays_identical_across_tabs_reloads_and_links(
    site: str, browser: Browser
) -> None:
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    thread = f"web-{uuid.uuid4().hex[:10]}"
    first = await open_tab(context, f"{site}/#t={thread}")
    await expect(first.locator("#thread-id")).to_have_text(thread)

    await send(first, "hello tokens=40")
    user = first.locator(".bubble.user .text")
    assistant = first.locator(".bubble.assistant .text")
    await expect(user).to_have_text(["hello tokens=40"])
    await expect(assistant).to_have_text([answer(40)], timeout=20_000)
    await expect(first.locator(".bubble.streaming")).to_have_count(0)
    await shot(first, "1-answer")

    second = await context.new_page()  # a second tab on the same thread
    await second.goto(f"{site}/#t={thread}")
    await expect(second.locator(".bubble .text")).to_have_text(["hello tokens=40", answer(40)])
    await send(second, "again tokens=12")
    both = ["hello tokens=40", answer(40), "again tokens=12", answer(12)]
    for page in (first, second):
        await expect(page.locator(".bubble .text")).to_have_text(both, timeout=20_000)
    await shot(second, "2-second-tab")

    await first.reload()
    await expect(first.locator(".bubble .text")).to_have_text(both)

    await first.click("#share")
    link = await first.input_value("#share-link")
    assert link == f"{site}/#t={thread}"
    other = await (await browser.new_context()).new_page()  # someone the link was sent to
    await other.goto(link)
    await expect(other.locator(".bubble .text")).to_have_text(both)
    await expect(other.locator("#threads a")).to_have_count(1)


async def test_cancel_stops_the_answer_in_every_tab(site: str, browser: Browser) -> None:
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    thread = f"web-{uuid.uuid4().hex[:10]}"
    page = await open_tab(context, f"{site}/#t={thread}")
    watcher = await open_tab(context, f"{site}/#t={thread}")

    await send(page, "a long one tokens=1000")
    streaming = page.locator(".bubble.assistant.streaming .text")
    await expect(streaming).to_contain_text("tok5", timeout=20_000)
    await expect(page.locator("#cancel")).to_be_enabled()
    await page.click("#cancel")
    for tab in (page, watcher):
        await expect(tab.locator(".bubble.assistant .error")).to_have_text("answer cancelled")
        await expect(tab.locator("#cancel")).to_be_disabled()
    kept = await page.locator(".bubble.assistant .text").inner_text()
    assert kept and answer(1000).startswith(kept) and kept != answer(1000)
    assert await watcher.locator(".bubble.assistant .text").inner_text() == kept
    await shot(page, "3-cancelled")


async def test_a_page_that_loses_its_connection_resumes_without_gaps_or_duplicates(
    served: Edge, browser: Browser
) -> None:
    site = served.url
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    page = await open_tab(context, f"{site}/#t=web-{uuid.uuid4().hex[:10]}")
    await send(page, "through a drop tokens=400")
    streaming = page.locator(".bubble.assistant.streaming .text")
    await expect(streaming).to_contain_text("tok20", timeout=20_000)
    served.envoy.stop()  # the front door goes away mid-answer: the stream breaks
    await expect(page.locator("#status")).to_have_text("reconnecting…", timeout=20_000)
    served.envoy.start()
    await expect(page.locator(".bubble.assistant .text")).to_have_text(
        [answer(400)], timeout=30_000
    )
    await expect(page.locator(".bubble")).to_have_count(2)
    await shot(page, "4-resumed")
