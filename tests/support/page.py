"""The web page under Playwright: send a prompt, sign in, screenshots into test-artifacts/."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from deploy.stack.processes import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def answer(tokens: int) -> str:
    return " ".join(f"tok{i}" for i in range(tokens))


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def send(page: Page, text: str) -> None:
    await page.fill("#prompt", text)
    await page.click("#send")


async def signed_in(browser: Browser, url: str, name: str) -> Page:
    """A new person's page on `url`, signed in by typing their name (the dev login)."""
    page = await (await browser.new_context(viewport={"width": 1100, "height": 720})).new_page()
    await page.goto(url)
    await expect(page.locator("#notice")).to_contain_text("Sign in")
    await page.fill("#user", name)
    await page.press("#user", "Enter")
    return page
