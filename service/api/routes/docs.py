"""/docs (Swagger UI) and /redoc without internet: their scripts and styles are served from the
installed fastapi-offline package, never a CDN, and the pages' CSP forbids loading anything from
elsewhere. URLs carry the root path, so the pages also work behind a proxy prefix."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse

from service.errors import NotFound

ASSET_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
# Swagger UI's page starts it with an inline script; nothing may come from another origin.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'"
)
TITLE = "clipserve API"

router = APIRouter(include_in_schema=False)


def _asset(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}/docs/assets/{name}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=f"{request.scope.get('root_path', '')}/openapi.json",
        title=TITLE,
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon.png"),
        oauth2_redirect_url=None,
    )
    page.headers["Content-Security-Policy"] = CSP
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    page = get_redoc_html(
        openapi_url=f"{request.scope.get('root_path', '')}/openapi.json",
        title=TITLE,
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon.png"),
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = CSP
    return page


@router.get("/docs/assets/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"no docs asset named {name!r}")
    return FileResponse(ASSET_DIR / name, media_type=ASSETS[name], headers={"Cache-Control": "max-age=86400"})
