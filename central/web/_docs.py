"""The API's documentation page (`/docs`), served entirely from this installation: Swagger
UI's files (5.x, which reads OpenAPI 3.1) come from the `swagger-ui-py` package (Swagger UI
and the package both Apache-2.0, its LICENSE beside the files) and the page starts it with
a script of ours, so it works without internet and without inline script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ._guard import SECURITY_HEADERS

__all__ = ["ASSETS", "mount_docs", "swagger_ui_files"]

ASSETS = "/docs/assets"

# Swagger UI (React) sets style attributes as it renders: this page alone allows inline
# styles. Scripts stay same-origin files, as on every other page.
_CSP = SECURITY_HEADERS["content-security-policy"].replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tillbridge relay API</title>
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-url="/openapi.json"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script src="/static/docs.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers={"content-security-policy": _CSP})


def swagger_ui_files() -> Path:
    """The folder of Swagger UI's distribution files in the installed package (found
    without importing it: only its files are wanted)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; it is one of the relay's dependencies")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def mount_docs(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_files())), "docs-assets")
    app.include_router(router)
