"""GET /ui: the playground page (one HTML file, one script, one stylesheet; no build step).

The page only calls the public API (/classify, /v1/models, /admin/default) with relative URLs, so
it also works behind a proxy that mounts the service under a path prefix. Its assets ship as
package data in service/api/ui/ and nothing is fetched from elsewhere (the CSP says so to the browser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.responses import FileResponse, RedirectResponse

from service.errors import NotFound

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


root_router = APIRouter()
REDIRECT: dict[int | str, dict[str, Any]] = {
    307: {"description": "To the /ui playground", "headers": {"Location": {"schema": {"type": "string"}}}}
}


@root_router.get(
    "/",
    summary="Redirects to the /ui playground",
    response_class=RedirectResponse,
    status_code=307,
    responses=REDIRECT,
)
async def root_redirect() -> RedirectResponse:
    return RedirectResponse("ui/", status_code=307)  # relative: works under a path prefix too


@router.get("/ui")
async def ui_redirect() -> RedirectResponse:
    # The page lives at /ui/ so that its relative URLs (app.js, ../classify) resolve under any prefix.
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui/")
async def ui_page() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/ui/{asset}")
async def ui_asset(asset: str) -> FileResponse:
    if asset not in ASSETS:
        raise NotFound(f"no UI asset named {asset!r}")
    return FileResponse(UI_DIR / asset, media_type=ASSETS[asset], headers=HEADERS)
