"""The page renders what models write (web/src/markdown.ts, messages.ts, scroll.ts): Markdown
answers and user messages, hostile Markdown and HTML that must not run, a code block's Copy
button, streaming that leaves finished messages' DOM alone, auto-scroll, and a phone-sized
layout. Real stack behind a real Envoy; the dev model answers `format=markdown` prompts with
ai_service/dev_markdown.py's document. Screenshots go to test-artifacts/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, expect

from ai_service.dev_markdown import ASKED
from deploy.stack.processes import ROOT
from tests.support.edge import Edge, running_edge
from tests.support.page import ARTIFACTS, answer, send

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

HOSTILE = "\n\n".join(
    [
        "# Hostile <script>window.pwned = 'script'</script>",
        "<img src=x onerror=\"window.pwned = 'img'\">",
        "<svg onload=\"window.pwned = 'svg'\"><circle r=1 /></svg>",
        "<iframe src=\"javascript:window.pwned = 'iframe'\"></iframe>",
        "<style>body { display: none }</style>",
        "<a href=\"javascript:window.pwned = 'raw-a'\">raw anchor</a>",
        "<div onclick=\"window.pwned = 'div'\" id=clickme>click me</div>",
        "[js link](javascript:window.pwned='md-link') [cased](JaVaScRiPt:window.pwned='case')",
        "[entity](&#106;avascript:window.pwned='entity') <javascript:window.pwned='auto'>",
        "[data](data:text/html;base64,PHNjcmlwdD53aW5kb3cucHduZWQ9J2RhdGEnPC9zY3JpcHQ+)",
        "[vb](vbscript:msgbox(1)) [file](file:///etc/passwd)",
        "![pixel](https://tracker.invalid/pixel.png) ![js](javascript:window.pwned='image')",
        "![data](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDEpIi8+)",
        "[safe](https://example.com/ok) and <mailto:someone@example.com>",
        "```html\n<script>window.pwned = 'fence'</script>\n<img src=x onerror=alert(1)>\n```",
        "`<b onmouseover=alert(1)>inline</b>`",
    ]
)

CHECK = """() => {
  const list = document.getElementById("messages");
  const bad = [];
  for (const el of list.querySelectorAll("*")) {
    const tag = el.tagName.toLowerCase();
    const banned = ["script", "iframe", "svg", "img", "style", "object", "embed", "form", "input"];
    if (banned.includes(tag)) bad.push("tag " + tag);
    for (const a of el.attributes) {
      const name = a.name;
      if (name.startsWith("on") || name === "style" || name === "src") bad.push(tag + " " + name);
    }
  }
  const links = [...list.querySelectorAll("a[href]")].filter((a) => !a.closest(".files"));
  for (const a of links) {
    const href = a.getAttribute("href");
    if (!/^(https?:|mailto:)/.test(href)) bad.push("href " + href);
    if (a.rel !== "noopener noreferrer nofollow") bad.push("rel " + a.rel);
  }
  return { bad, pwned: window.pwned ?? null, links: links.map((a) => a.getAttribute("href")) };
}"""
"""What the messages hold that could run, or fetch, or lead anywhere but http(s)/mailto."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    if not (ROOT / "web" / "static" / "app.js").exists():
        pytest.fail("the page is not built: run `make web` (make test does)")
    with running_edge(tmp_path_factory.mktemp("web-md"), token_delay_ms=5) as edge:
        yield edge


async def open_thread(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{url}/#t=md-{uuid.uuid4().hex[:10]}")
    await expect(page.locator("#status")).to_have_text("connected")
    return page


async def no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


async def test_a_markdown_answer_renders_at_desktop_and_phone_sizes(
    served: Edge, browser: Browser
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    page = await open_thread(context, served.url)
    await send(page, f"**Explain** durable sessions, with a table\n\n- in `{ASKED}`")
    user = page.locator(".bubble.user .text")
    await expect(user.locator("strong")).to_have_text("Explain")
    await expect(user.locator("li code")).to_have_text(ASKED)
    reply = page.locator(".bubble.assistant:not(.streaming) .text")
    await expect(reply.locator("h2")).to_have_text("Durable sessions", timeout=20_000)
    await expect(reply.locator("ol > li")).to_have_count(3)
    await expect(reply.locator("table tr")).to_have_count(3)
    await expect(reply.locator("th").first).to_have_text("Layer")
    link = reply.locator("a", has_text="design notes")
    await expect(link).to_have_attribute("href", "https://example.com/durable-chat/design")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(link).to_have_attribute("target", "_blank")
    code = reply.locator(".code pre code")
    await expect(code).to_contain_text("def resume(cursor):")
    await expect(code).to_contain_text("# <b>not bold</b>")  # HTML in a fence is text
    await expect(reply.locator(".code .lang")).to_have_text("python")
    ARTIFACTS.mkdir(exist_ok=True)
    shots = [ARTIFACTS / "markdown-desktop.png", ARTIFACTS / "markdown-phone.png"]
    await page.screenshot(path=str(shots[0]))
    await no_horizontal_scroll(page)

    await page.set_viewport_size(PHONE)
    await expect(reply.locator("h2")).to_be_visible()
    await no_horizontal_scroll(page)
    table_box = await reply.locator("table").evaluate(
        "t => [t.scrollWidth, t.clientWidth, getComputedStyle(t).overflowX]"
    )
    assert table_box[2] == "auto" and table_box[1] <= PHONE["width"], table_box
    pre_box = await reply.locator(".code pre").evaluate(
        "p => [p.scrollWidth, p.clientWidth, getComputedStyle(p).overflowX]"
    )
    assert pre_box[2] == "auto" and pre_box[1] < pre_box[0], pre_box  # the code scrolls in its box
    await reply.locator(".code").scroll_into_view_if_needed()
    await page.screenshot(path=str(shots[1]))
    print(f"\nscreenshots: {shots[0]} {shots[1]}; on the phone: table {table_box}, code {pre_box}")


async def test_a_code_blocks_copy_button_copies_its_code(served: Edge, browser: Browser) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
    page = await open_thread(context, served.url)
    await send(page, f"some code please {ASKED}")
    box = page.locator(".bubble.assistant:not(.streaming) .code")
    await expect(box.locator("pre code")).to_contain_text("def resume", timeout=20_000)
    await box.locator("button.copy").click()
    await expect(box.locator("button.copy")).to_have_text("Copied")
    copied = await page.evaluate("() => navigator.clipboard.readText()")
    expected = await box.locator("pre code").text_content()
    assert copied == expected
    assert copied.startswith("def resume(cursor):\n") and "<b>not bold</b>" in copied
    print(f"\ncopied from the code block: {copied!r}")


async def test_hostile_markdown_and_html_render_as_text_and_nothing_runs(
    served: Edge, browser: Browser
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    author = await open_thread(context, served.url)
    reader = await context.new_page()  # another person reading the same thread
    dialogs: list[str] = []
    requested: list[str] = []
    for page in (author, reader):
        page.on("dialog", lambda d: dialogs.append(d.message))
        page.on("request", lambda r: requested.append(r.url))
    await reader.goto(author.url)
    await send(author, HOSTILE + " tokens=3")
    for page in (author, reader):
        user = page.locator(".bubble.user .text")
        await expect(user.locator("h1")).to_contain_text("Hostile <script>")  # shown, not run
        await expect(user).to_contain_text("<img src=x onerror=")
        await expect(user).to_contain_text("[image: pixel]")
        await expect(user.locator("pre code")).to_contain_text("<script>window.pwned = 'fence'")
        await expect(user.locator("code").last).to_have_text("<b onmouseover=alert(1)>inline</b>")
        await expect(page.locator(".bubble.assistant .text")).to_have_text([answer(3)])
        await expect(page.locator("#clickme")).to_have_count(0)  # the div stayed text
        await expect(user).to_contain_text("[js link](javascript:")  # not a link: text
        found = await page.evaluate(CHECK)
        assert found["bad"] == [] and found["pwned"] is None, found
        assert set(found["links"]) == {
            "https://example.com/ok",
            "mailto:someone@example.com",
            "https://tracker.invalid/pixel.png",  # a link to the image, never fetched
        }, found["links"]
        print(
            f"\nhostile message on the {'author' if page is author else 'reader'}'s page: {found}"
        )
    assert dialogs == []
    assert not [url for url in requested if "tracker.invalid" in url or url.startswith("data:")]


async def test_streaming_leaves_finished_messages_dom_untouched(
    served: Edge, browser: Browser
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    page = await open_thread(context, served.url)
    await send(page, f"first {ASKED}")
    await expect(page.locator(".bubble.assistant:not(.streaming) h2")).to_have_count(
        1, timeout=20_000
    )
    await page.evaluate(
        """() => {
          window.before = [...document.querySelectorAll("#messages > li")];
          window.touched = 0;
          window.frames = 0;
          const watch = new MutationObserver((records) => (window.touched += records.length));
          for (const li of window.before) watch.observe(li, { subtree: true, childList: true,
            characterData: true, attributes: true });
          const list = document.getElementById("messages");
          new MutationObserver(() => window.frames++).observe(list, { subtree: true,
            childList: true, characterData: true });
        }"""
    )
    await send(page, "stream a long one tokens=600")
    await expect(page.locator(".bubble.assistant .text").last).to_have_text(
        answer(600), timeout=30_000
    )
    await expect(page.locator(".bubble.streaming")).to_have_count(0)
    same, touched, frames = await page.evaluate(
        """() => {
          const now = [...document.querySelectorAll("#messages > li")];
          return [window.before.every((li, i) => now[i] === li), window.touched, window.frames];
        }"""
    )
    assert same and touched == 0, (same, touched)
    print(
        f"\n600 deltas streamed: earlier messages' nodes identical, {touched} mutations in them; "
        f"{frames} mutation batches in the list"
    )


GAP = """const g = () => { const l = document.getElementById('messages');
  return [l.scrollHeight - l.scrollTop - l.clientHeight, l.scrollTop, l.scrollHeight]; };"""
"""Defines g(): the list's distance from the bottom, its scrollTop and scrollHeight."""


async def test_auto_scroll_follows_at_the_bottom_and_stops_when_the_reader_scrolls_up(
    served: Edge, browser: Browser
) -> None:
    # A phone: a narrow bubble grows fast enough within one answer (the AI service's 1024-token
    # default limit) to leave the screen, scroll away and come back.
    context = await browser.new_context(viewport=PHONE)
    page = await open_thread(context, served.url)
    await send(page, "a long one tokens=1000")
    streaming = page.locator(".bubble.assistant.streaming .text")
    gap = f"() => {{ {GAP} return g(); }}"
    await expect(streaming).to_contain_text("tok200 ", timeout=20_000)  # past one screen
    following = await page.evaluate(gap)
    assert following[1] > 200 and following[0] < 40, following  # it scrolled, to the end

    await page.hover("#messages")
    await page.mouse.wheel(0, -600)  # the reader scrolls up to read
    await page.wait_for_function(f"() => {{ {GAP} return g()[0] > 200; }}")
    held = (await page.evaluate(gap))[1]
    await page.wait_for_function(f"() => {{ {GAP} return g()[2] > {following[2]} + 300; }}")
    reading = await page.evaluate(gap)
    # It stayed where the reader put it (a smooth scroll may still carry it up, never down).
    assert reading[1] <= held and reading[0] > 400, (held, reading)

    await page.mouse.wheel(0, 100_000)  # back to the bottom: it follows again
    await page.wait_for_function(f"() => {{ {GAP} return g()[0] < 40; }}")
    bottom = await page.evaluate(gap)
    await page.wait_for_function(f"() => {{ {GAP} return g()[2] > {bottom[2]} + 200; }}")
    again = await page.evaluate(gap)
    assert again[0] < 40, again
    await expect(page.locator(".bubble.assistant .text")).to_have_text(
        [answer(1000)], timeout=20_000
    )
    print(
        f"\nscroll [gap, top, height]: following {following}, reader up {reading}, "
        f"back at the bottom {again}"
    )
