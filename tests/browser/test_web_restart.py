"""The web page when an answer's owner is killed mid-answer and the model answers afresh
(ANSWER_CONTINUE=restart): the streaming bubble's text is replaced, never appended to, at every
moment the page renders; the interrupted text stays as the answer's earlier version."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Browser, expect

from deploy.stack.processes import ROOT
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from tests.support.generations import generation, one_generation
from tests.support.page import shot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

RECORD = """() => {
  window.shown = [];
  const list = document.getElementById("messages");
  new MutationObserver(() => {
    for (const el of list.querySelectorAll(".bubble.assistant .text")) {
      window.shown.push(el.textContent);
    }
  }).observe(list, { childList: true, subtree: true, characterData: true });
}"""
"""Records every assistant text the page renders, as it renders it."""


async def test_a_restarted_answer_replaces_the_text_and_keeps_the_interrupted_version(
    own_stack: Stack, browser: Browser
) -> None:
    if not (ROOT / "web" / "static" / "app.js").exists():
        pytest.fail("the page is not built: run `make web` (make test does)")
    spec = StackSpec(
        envoy=True,
        token_delay_ms=5,
        model_env={"DEV_MODEL_ANSWERS": "fresh"},
        ai_env={"ANSWER_CONTINUE": "restart"},
    )
    stack = start(own_stack, spec)
    page = await (await browser.new_context(viewport={"width": 1100, "height": 720})).new_page()
    await page.goto(f"{stack.envoy_url}/#t=web-{uuid.uuid4().hex[:10]}")
    await expect(page.locator("#status")).to_have_text("connected")
    await page.evaluate(RECORD)
    await page.fill("#prompt", "long tokens=400")
    await page.click("#send")
    streaming = page.locator(".bubble.assistant.streaming .text")
    await expect(streaming).to_contain_text("g1tok40 ", timeout=20_000)
    assert stack.session is not None
    stack.session.kill9()
    stack.start_session()  # the same pod comes back; its model answers afresh
    final = page.locator(".bubble.assistant .text")
    await expect(final).to_have_text([generation(2, 400)], timeout=30_000)
    await shot(page, "7-restarted-answer")
    shown: list[str] = await page.evaluate("window.shown")
    assert any(text.startswith("g1tok0 ") for text in shown)
    glued = [text for text in shown if not one_generation(text)]
    assert not glued, glued[0][-200:]

    bubble = page.locator(".bubble.assistant")
    await expect(bubble.locator(".version")).to_have_text("2/2")
    await bubble.get_by_role("button", name="previous version").click()
    await expect(page.locator(".bubble.assistant .version")).to_have_text("1/2")
    earlier = page.locator(".bubble.assistant .text")
    await expect(earlier).to_contain_text("g1tok40")
    assert one_generation(await earlier.inner_text())
    await expect(page.locator(".bubble.assistant .error")).to_contain_text("interrupted")
