"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) that work without the internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on a machine that
cannot reach it (most name-server hosts). Here the scripts, styles and icon come from the
``fastapi-offline`` package (a pinned dependency; its ``static/`` folder is all it is used
for) and are served under :data:`ASSETS_URL`. Each page also carries a Content-Security-Policy
that lets it load nothing but the pod's own resources: ReDoc's sidebar names a logo on
``cdn.redoc.ly``, which the browser then never asks for, and Swagger UI's online validator is
switched off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
SELF_ONLY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
"""The pages' inline start-up scripts and styles run; anything not from the pod does not load."""


def _self_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = SELF_ONLY
    return page


def add_api_docs(app: FastAPI) -> None:
    """Serve /docs, its OAuth2 redirect page and /redoc for ``app`` (built with
    ``docs_url=None, redoc_url=None``), from the packaged assets."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"
    parameters: dict[str, Any] = {"validatorUrl": None, **(app.swagger_ui_parameters or {})}

    def assets(request: Request) -> tuple[str, str]:
        root = str(request.scope.get("root_path", ""))
        return root, f"{root}{ASSETS_URL}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root, url = assets(request)
        return _self_only(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=f"{root}{oauth2_redirect}",
                swagger_js_url=f"{url}/swagger-ui-bundle.js",
                swagger_css_url=f"{url}/swagger-ui.css",
                swagger_favicon_url=f"{url}/favicon.png",
                swagger_ui_parameters=parameters,
            )
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return _self_only(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root, url = assets(request)
        return _self_only(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{url}/redoc.standalone.js",
                redoc_favicon_url=f"{url}/favicon.png",
                with_google_fonts=False,
            )
        )
