"""The OpenAPI document as the HTTP tier really answers.

FastAPI documents its own validation error body (``{"detail": [...]}``) for 422, and
``application/json`` for every 200; the tier answers validation errors with its
``{"error", "detail"}`` body (also for 400, 413 and 431), and streams ``/v1/events`` as
``text/event-stream``. :func:`install` rewrites the generated document accordingly.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_REF = {"$ref": "#/components/schemas/ErrorModel"}
SSE_PATH = "/v1/events"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def rewrite(schema: dict[str, Any]) -> dict[str, Any]:
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            params = {p.get("name") for p in op.get("parameters", [])}
            if "422" in responses:
                responses["422"] = _error("Invalid path, query or body value")
            if "wait" in params:
                responses["400"] = _error("Unparseable wait duration")
            if "requestBody" in op:
                responses["400"] = _error(
                    "The body is not JSON (it is read as JSON whatever its Content-Type)"
                )
            if "requestBody" in op or method in ("put", "post"):
                responses["413"] = _error("Request body too large")
            responses["431"] = _error("Request line and headers too large")
            if path == SSE_PATH and "200" in responses:
                responses["200"] = {
                    "description": "Server-Sent Events: `event: route` with a JSON `data:` "
                    "line per route change, and `:` comment lines as keep-alives",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
    schemas = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve the rewritten document at /openapi.json (generated once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = rewrite(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
