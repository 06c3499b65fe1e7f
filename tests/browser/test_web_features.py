"""The chat features on the web page, as a person uses them (access control on, as `make run`):
feedback, regenerate and edit with version arrows over the kept branches, an attachment that
downloads, the thread list, and search with highlighted matches. Headless Chromium through a
real Envoy; screenshots go to test-artifacts/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from deploy.stack.processes import ROOT
from deploy.stack.waits import async_eventually
from tests.support.edge import Edge, running_edge
from tests.support.page import answer, send, shot, signed_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    if not (ROOT / "web" / "static" / "app.js").exists():
        pytest.fail("the page is not built: run `make web` (make test does)")
    with running_edge(tmp_path_factory.mktemp("features"), token_delay_ms=5, secure=True) as edge:
        yield edge


def answers(page: Page) -> object:
    return page.locator(".bubble.assistant")


async def test_feedback_regenerate_edit_and_versions(served: Edge, browser: Browser) -> None:
    ann = await signed_in(browser, f"{served.url}/", "ann")
    await expect(ann.locator("#status")).to_have_text("connected")
    await send(ann, "hello tokens=4")
    reply = ann.locator(".bubble.assistant").last
    await expect(reply.locator(".text")).to_have_text(answer(4))

    await reply.get_by_role("button", name="good answer").click()
    await expect(reply.get_by_role("button", name="good answer")).to_have_class("on")

    await reply.get_by_role("button", name="regenerate").click()
    await expect(ann.locator(".bubble")).to_have_count(2)  # the old answer is kept, not shown
    await expect(ann.locator(".bubble.assistant .version")).to_have_text("2/2")
    await expect(ann.locator("#status")).to_have_text("connected")
    await ann.locator(".bubble.assistant").get_by_role("button", name="previous version").click()
    await expect(ann.locator(".bubble.assistant .version")).to_have_text("1/2")
    await expect(  # the first answer, with its feedback
        ann.locator(".bubble.assistant").get_by_role("button", name="good answer")
    ).to_have_class("on")

    ann.once("dialog", lambda dialog: dialog.accept("edited tokens=2"))
    await ann.locator(".bubble.user").get_by_role("button", name="edit").click()
    await expect(ann.locator(".bubble .text")).to_have_text(["edited tokens=2", answer(2)])
    await expect(ann.locator(".bubble.user .version")).to_have_text("2/2")
    await ann.locator(".bubble.user").get_by_role("button", name="previous version").click()
    await expect(ann.locator(".bubble .text")).to_have_text(["hello tokens=4", answer(4)])
    await shot(ann, "6-branches-and-feedback")


async def test_attachments_thread_list_and_search(
    served: Edge, browser: Browser, tmp_path: Path
) -> None:
    ann = await signed_in(browser, f"{served.url}/", "ann")
    await expect(ann.locator("#status")).to_have_text("connected")
    word = f"quokka{uuid.uuid4().hex[:6]}"
    note = tmp_path / "note.txt"
    note.write_text("the file's own words")
    await ann.set_input_files("#file", str(note))
    await expect(ann.locator("#attached")).to_have_text("+ note.txt")
    await send(ann, f"see {word} tokens=1")
    link = ann.locator(".bubble.user .files a")
    await expect(link).to_have_text("⇩ note.txt")
    href = await link.get_attribute("href")
    assert href is not None
    downloaded = await ann.request.get(f"{served.url}{href}")
    assert downloaded.status == 200 and await downloaded.text() == "the file's own words"

    room = await ann.locator("#thread-id").inner_text()
    await expect(ann.locator("#threads a.current")).to_have_attribute("href", f"#t={room}")

    async def indexed() -> bool:
        reply = await ann.request.get(f"{served.url}/api/search?q={word}")
        return bool((await reply.json())["hits"])

    await async_eventually(indexed, within=5, interval=0.1)  # under SEARCH_RATE_PER_MIN
    await ann.click("#new-thread")  # elsewhere, then find the way back by searching
    await expect(ann.locator("#thread-id")).not_to_have_text(room)
    await ann.fill("#search", word)
    await ann.press("#search", "Enter")
    await expect(ann.locator("#results mark")).to_have_text(word)
    await shot(ann, "7-search")
    await ann.locator("#results a").first.click()
    await expect(ann.locator("#thread-id")).to_have_text(room)
    await expect(ann.locator(".bubble.user .text")).to_have_text(f"see {word} tokens=1")


async def test_rename_pin_archive_export_and_delete_a_thread(
    served: Edge, browser: Browser
) -> None:
    ann = await signed_in(browser, f"{served.url}/", "ann")
    await expect(ann.locator("#status")).to_have_text("connected")
    await send(ann, "plans tokens=1")
    await expect(ann.locator(".bubble.assistant .text")).to_have_text(answer(1))
    room = await ann.locator("#thread-id").inner_text()
    current = ann.locator("#threads li", has=ann.locator(f'a[href="#t={room}"]'))

    ann.once("dialog", lambda dialog: dialog.accept("Holiday plans"))
    await ann.click("#rename")
    await expect(ann.locator("#thread-title")).to_have_text("Holiday plans")
    await expect(current).to_contain_text("Holiday plans")
    await ann.click("#pin")
    await expect(current.locator(".pin")).to_have_count(1)

    exported = await ann.request.get(f"{served.url}{await ann.get_attribute('#export', 'href')}")
    lines = (await exported.text()).splitlines()
    assert '"format":"durablechat.session"' in lines[0] and '"renamed"' in lines[-1]

    await ann.click("#archive")
    await expect(current).to_have_count(0)
    await ann.check("#show-archived")
    await expect(current).to_contain_text("Holiday plans")
    await ann.uncheck("#show-archived")

    ann.once("dialog", lambda dialog: dialog.accept())
    await ann.click("#delete")
    await expect(ann.locator("#notice")).to_have_text("Deleted.")
    await ann.check("#show-archived")
    await expect(current).to_have_count(0)
