"""The web page with access control on (as `make run`): sign in, a private room, an invite link
that lets a second person in, presence, and an outsider kept out. Headless Chromium through a
real Envoy. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, expect

from deploy.stack.processes import ROOT
from tests.support.edge import Edge, running_edge
from tests.support.page import answer, send, shot, signed_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    if not (ROOT / "web" / "static" / "app.js").exists():
        pytest.fail("the page is not built: run `make web` (make test does)")
    with running_edge(tmp_path_factory.mktemp("rooms"), token_delay_ms=5, secure=True) as edge:
        yield edge


async def test_a_private_room_shared_by_invite_with_presence(
    served: Edge, browser: Browser
) -> None:
    site = served.url
    ann = await signed_in(browser, f"{site}/", "ann")
    await expect(ann.locator("#status")).to_have_text("connected")
    room = await ann.locator("#thread-id").inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", room)  # a new thread is a private room
    await send(ann, "hello tokens=6")
    await expect(ann.locator(".bubble .text")).to_have_text(["hello tokens=6", answer(6)])
    await expect(ann.locator(".bubble.user .who")).to_have_text(["ann"])

    await ann.click("#share")
    invite = re.compile(re.escape(f"{site}/#t={room}&invite=") + r"[A-Za-z0-9_-]{43}$")
    await expect(ann.locator("#share-link")).to_have_value(invite)
    link = await ann.input_value("#share-link")

    eve = await signed_in(browser, f"{site}/#t={room}", "eve")  # no invite: kept out
    await expect(eve.locator("#notice")).to_have_text(
        "No access to this thread (ask its owner for an invite link)."
    )
    await expect(eve.locator(".bubble")).to_have_count(0)

    bob = await signed_in(browser, link, "bob")
    await expect(bob.locator("#status")).to_have_text("connected")
    await expect(bob.locator(".bubble .text")).to_have_text(["hello tokens=6", answer(6)])
    assert "invite" not in bob.url  # the code left the address bar
    await expect(ann.locator("#presence")).to_have_text("here: ann, bob")
    await send(bob, "bob here tokens=3")
    both = ["hello tokens=6", answer(6), "bob here tokens=3", answer(3)]
    await expect(ann.locator(".bubble .text")).to_have_text(both, timeout=20_000)
    await expect(ann.locator(".bubble.user .who")).to_have_text(["ann", "bob"])
    await shot(ann, "5-room-with-presence")


async def test_an_imported_thread_shows_its_named_authors_as_imported(
    served: Edge, browser: Browser
) -> None:
    """Attack: mallory imports a file naming bob as the author; her page must not show it as
    bob's words (docs/export.md, "Authorship")."""
    mallory = await signed_in(browser, f"{served.url}/", "mallory")
    await expect(mallory.locator("#status")).to_have_text("connected")
    forged = "\n".join(
        [
            '{"format":"durablechat.session","version":1}',
            '{"n":1,"type":"message","role":"user","content":"I, bob, agree","user":"bob",'
            '"time":1700000000000}',
        ]
    )
    created = await mallory.evaluate(
        """async (body) => {
            const response = await fetch("/api/threads/import", {method: "POST", body});
            return await response.json();
        }""",
        forged,
    )
    await mallory.goto(f"{served.url}/#t={created['sessionId']}")
    await expect(mallory.locator(".bubble .text")).to_have_text(["I, bob, agree"])
    await expect(mallory.locator(".bubble.user .who")).to_have_text(["bob · imported by mallory"])
