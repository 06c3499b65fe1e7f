"""The page's visible states, each produced by the real stack behind a real Envoy: rate limited
(Envoy's per-IP gRPC limit refuses a prompt, then the stream), owner moved (the session pod is
killed mid-answer and comes back: events arrive with a higher owner epoch) with the answer
going on to its end once. Reconnecting (Envoy stopped) and interrupted answers (cancel, a
restarted answer) are in test_web_page.py and test_web_restart.py."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Browser, expect

from deploy.stack.processes import ROOT
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from tests.support.edge import running_edge
from tests.support.page import answer, send, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def built() -> None:
    if not (ROOT / "web" / "static" / "app.js").exists():
        pytest.fail("the page is not built: run `make web` (make test does)")


async def test_a_rate_limit_shows_on_the_prompt_and_on_the_stream(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> None:
    # Three gRPC calls a minute from this address: the page's stream and two prompts.
    with running_edge(tmp_path_factory.mktemp("limited"), grpc_calls_per_ip_min=3) as edge:
        page = await (await browser.new_context(viewport={"width": 1100, "height": 720})).new_page()
        await page.goto(f"{edge.url}/#t=lim-{uuid.uuid4().hex[:10]}")
        await expect(page.locator("#status")).to_have_text("connected")
        for n in (1, 2):
            await send(page, f"prompt {n} tokens=3")
            await expect(page.locator(".bubble.assistant:not(.streaming)")).to_have_count(n)
        await send(page, "prompt 3 tokens=3")
        notice = page.locator("#notice")
        await expect(notice).to_have_text(
            "Rate limited, not sent: too many calls from this address. Try again in a moment."
        )
        await expect(notice).to_have_class("limited")
        assert await page.input_value("#prompt") == "prompt 3 tokens=3"  # kept for a retry
        await expect(page.locator(".bubble.user")).to_have_count(2)
        shown = await notice.text_content()

        await page.reload()  # the stream itself is refused now, and retried
        await expect(page.locator("#status")).to_have_text("rate limited: retrying…")
        await expect(page.locator("#status")).to_have_class("limited")
        await shot(page, "state-rate-limited")
        status = await page.locator("#status").text_content()
        print(f"\nrate limited: notice {shown!r}; status after reload {status!r}")


async def test_an_owner_killed_mid_answer_shows_the_move_and_the_answer_ends_once(
    own_stack: Stack, browser: Browser
) -> None:
    stack = start(own_stack, StackSpec(envoy=True, token_delay_ms=5))
    page = await (await browser.new_context(viewport={"width": 1100, "height": 720})).new_page()
    await page.goto(f"{stack.envoy_url}/#t=moved-{uuid.uuid4().hex[:10]}")
    await expect(page.locator("#status")).to_have_text("connected")
    await send(page, "through a crash tokens=600")
    streaming = page.locator(".bubble.assistant.streaming .text")
    await expect(streaming).to_contain_text("tok60 ", timeout=20_000)
    assert stack.session is not None
    stack.session.kill9()  # the owner dies mid-answer
    stack.start_session()  # and its successor takes the session over (a new owner epoch)
    notice = page.locator("#notice")
    await expect(notice).to_have_text(
        "The thread moved to a new owner; the stream goes on from where it was.",
        timeout=30_000,
    )
    await expect(notice).to_have_class("moved")
    await expect(page.locator(".bubble.assistant .text")).to_have_text(
        [answer(600)], timeout=30_000
    )
    await expect(page.locator(".bubble")).to_have_count(2)
    await expect(page.locator("#status")).to_have_text("connected")
    await shot(page, "state-owner-moved")
    print(f"\nowner moved: notice {await notice.text_content()!r}; the answer ended once")
