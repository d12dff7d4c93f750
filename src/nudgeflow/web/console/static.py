"""/console/static/<file>: the console's CSS, scripts and bundled vendor code, from the
package (nothing loads from a CDN)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException
from starlette.responses import FileResponse

TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
    ".woff2": "font/woff2",
}


def static_root() -> Path:
    return Path(str(resources.files("nudgeflow.web.console").joinpath("static"))).resolve()


def static_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    root = static_root()

    @router.get("/console/static/{path:path}")
    def static_file(path: str) -> FileResponse:
        target = (root / path).resolve()
        # Only files under static/, of the kinds it holds: never ../ out of it.
        if not target.is_relative_to(root) or not target.is_file() or target.suffix not in TYPES:
            raise HTTPException(404, f"no console file {path!r}")
        # URLs carry ?v=<digest> (render.static_url): a cached copy is still checked, cheaply.
        return FileResponse(
            target,
            media_type=TYPES[target.suffix],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return router
