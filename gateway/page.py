"""The web chat page: `/` (index.html), `/app.js` (built by `make web`) and `/app.css`, from
WEB_DIR (default web/static). The page talks gRPC-web, so open it through Envoy, which routes
the API calls to the session pods and everything else here."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.errors import GatewayError

FILES = {"/": "index.html", "/app.js": "app.js", "/app.css": "app.css"}


class PageNotBuilt(GatewayError):
    status = 503
    code = "UNAVAILABLE"


class Page:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def add_routes(self, app: web.Application) -> None:
        for path in FILES:
            app.router.add_get(path, self.serve)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = self._directory / FILES[request.path]
        if not path.is_file():
            raise PageNotBuilt(f"{path.name} is missing: run `make web` to build the page")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
