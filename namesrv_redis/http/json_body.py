"""Request bodies are JSON whatever their ``Content-Type`` says.

Every body the JSON API takes is a JSON object (a KV value, a write permission, an ACL
credential). Operators type ``curl -X PUT … -d '{"value": "x"}'``, and ``-d`` labels the body
``application/x-www-form-urlencoded``; FastAPI would then not parse it and answer 422 "Input
should be a valid dictionary". :class:`JsonBodyRoute` reads such a body as JSON instead (the
OpenAPI document keeps describing it as ``application/json``, which is what it must be), and
:func:`invalid_json` words the answer to a body that is not JSON at all.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

JSON = b"application/json"


def _is_json(content_type: bytes) -> bool:
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind.startswith(b"application/") and (kind.endswith(b"/json") or kind.endswith(b"+json"))


class JsonBodyRoute(APIRoute):
    """A route whose body, if it declares one, is parsed as JSON whatever its declared type."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def as_json(request: Request) -> Response:
            headers = request.scope["headers"]
            if not any(name == b"content-type" and _is_json(value) for name, value in headers):
                scope = dict(request.scope)
                scope["headers"] = [(n, v) for n, v in headers if n != b"content-type"] + [
                    (b"content-type", JSON)
                ]
                request = Request(scope, request.receive)
            return await handler(request)

        return as_json


def invalid_json(errors: list[Any]) -> str | None:
    """The answer's detail when the body was not JSON (None: some other validation error)."""
    for e in errors:
        if e.get("type") == "json_invalid":
            reason = (e.get("ctx") or {}).get("error", "invalid JSON")
            where = e.get("loc", ("body", 0))[-1]
            return (
                f"the request body is not JSON ({reason} at character {where}); send a JSON "
                'object such as {"enabled": false}, with or without Content-Type: '
                "application/json"
            )
    return None
