"""`durablechat chat THREAD`: the seed WebSocket from a terminal, with a token.

Lines typed are sent as frames ((GET_HISTORY), (CANCEL) or a prompt); every frame received is
printed. `--send TEXT` sends one prompt, prints the frames up to its `[DONE]` and exits, for
scripts. The token (TOKEN, or --token) travels as the `bearer.<token>` WebSocket subprotocol,
never in the URL. Exit 1 when the gateway refuses the connection (its status is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import aiohttp
import click

DONE = "[DONE]"
WHY = {
    401: "no valid token (set TOKEN: durablechat token --user NAME)",
    403: "refused (origin or role)",
    404: "no such thread, or you have no access to it",
    429: "too many requests or open sockets; retry later",
}


async def _print_frames(ws: aiohttp.ClientWebSocketResponse, until_done: bool) -> None:
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            break
        click.echo(message.data)
        if until_done and message.data == DONE:
            return


async def _session(url: str, token: str, send: str | None) -> None:
    protocols = ("durablechat", f"bearer.{token}") if token else ("durablechat",)
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, protocols=protocols)
        except aiohttp.WSServerHandshakeError as exc:
            click.echo(f"error: HTTP {exc.status}: {WHY.get(exc.status, exc.message)}", err=True)
            sys.exit(1)
        async with ws:
            if send is not None:
                await ws.send_str(send)
                await _print_frames(ws, until_done=True)
                return
            printer = asyncio.create_task(_print_frames(ws, until_done=False))
            while line := await asyncio.to_thread(sys.stdin.readline):
                await ws.send_str(line.rstrip("\n"))
            printer.cancel()


@click.command(help=__doc__.split("\n\n")[0].split(": ", 1)[1])
@click.argument("thread")
@click.option(
    "--url",
    envvar="DURABLECHAT_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="the gateway or Envoy (DURABLECHAT_URL)",
)
@click.option("--token", envvar="TOKEN", default="", help="a JWT (TOKEN); none: anonymous")
@click.option("--send", default=None, help="send this one prompt, print until [DONE], exit")
def chat(thread: str, url: str, token: str, send: str | None) -> None:
    ws_url = "ws" + url.removeprefix("http").rstrip("/") + f"/ws/{thread}"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_session(ws_url, token, send))
